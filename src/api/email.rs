//! Password recovery and verified addresses (API.md "Email"): thin
//! handlers over `accounts::recovery` and `accounts::verification`.

use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Example};
use secrecy::SecretString;

use super::{
    Tag,
    responses::NoContent,
    security::Access,
    text::{Email, Password, Text},
    users::User,
};
use crate::{
    accounts::{recovery, verification},
    error::ApiResult,
    state::AppState,
};

#[derive(Object)]
#[oai(example)]
pub struct ForgotPassword {
    pub email: Email,
}

impl Example for ForgotPassword {
    fn example() -> Self {
        ForgotPassword {
            email: Email("ada@example.com".into()),
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct ResetPassword {
    /// The token from the reset link (the part after `#token=`).
    pub token: Text,
    pub new_password: Password,
    /// A current second-factor code, for accounts that have one.
    pub code: Option<Text>,
}

impl Example for ResetPassword {
    fn example() -> Self {
        ResetPassword {
            token: Text("q3N1c2tOZ0l2d0tqZ2R3c2VjcmV0LXRva2VuLWhlcmU".into()),
            new_password: Password("a new correct horse battery".into()),
            code: None,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct VerifyEmail {
    /// The token from the verification link (the part after `#token=`).
    pub token: Text,
}

impl Example for VerifyEmail {
    fn example() -> Self {
        VerifyEmail {
            token: Text("q3N1c2tOZ0l2d0tqZ2R3c2VjcmV0LXRva2VuLWhlcmU".into()),
        }
    }
}

/// The request was taken; what happens next is told only by mail.
#[derive(Object)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum AcceptedResponse {
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

fn accepted() -> AcceptedResponse {
    AcceptedResponse::Accepted(Json(Accepted {
        status: "accepted".into(),
    }))
}

pub struct EmailApi;

#[OpenApi(tag = "Tag::Auth")]
impl EmailApi {
    /// Ask for a password-reset mail. The answer is the same whether or not
    /// the address has an account.
    #[oai(
        path = "/auth/password/forgot",
        method = "post",
        operation_id = "forgot_password"
    )]
    async fn forgot(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<ForgotPassword>,
    ) -> ApiResult<AcceptedResponse> {
        let ip = super::client::client_meta(&state, req).ip;
        recovery::forgot(&state, &body.0.email.0, ip.as_deref()).await?;
        Ok(accepted())
    }

    /// Set a new password with the token of a reset link. Ends every
    /// session; logs nobody in.
    #[oai(
        path = "/auth/password/reset",
        method = "post",
        operation_id = "reset_password"
    )]
    async fn reset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<ResetPassword>,
    ) -> ApiResult<NoContent> {
        let ip = super::client::client_meta(&state, req).ip;
        let body = body.0;
        recovery::reset(
            &state,
            &body.token.0,
            SecretString::from(body.new_password.0),
            body.code.as_ref().map(|c| c.0.as_str()),
            ip.as_deref(),
        )
        .await?;
        Ok(NoContent::Done)
    }

    /// Verify an address with the token of a verification (or
    /// address-change) link.
    #[oai(
        path = "/auth/email/verify",
        method = "post",
        operation_id = "verify_email"
    )]
    async fn verify(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<VerifyEmail>,
    ) -> ApiResult<Json<User>> {
        let ip = super::client::client_meta(&state, req).ip;
        let user = verification::verify(&state, &body.0.token.0, ip.as_deref()).await?;
        Ok(Json(user.into()))
    }

    /// Send the verification mail again (or the confirmation of a pending
    /// address change). Older links stop working.
    #[oai(
        path = "/auth/email/resend",
        method = "post",
        operation_id = "resend_verification"
    )]
    async fn resend(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Access,
    ) -> ApiResult<AcceptedResponse> {
        let ip = super::client::client_meta(&state, req).ip;
        let current = super::users::me(&state.db, &auth.0).await?;
        verification::resend(&state, current, ip.as_deref()).await?;
        Ok(accepted())
    }
}
