//! The second factor's endpoints (API.md "Second factor (TOTP)"); the rules
//! are in `accounts::mfa`.

use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};

use super::{
    Tag,
    auth::{Tokens, tokens},
    params::Id,
    responses::NoContent,
    security::{AdminFresh, Fresh},
    text::Text,
};
use crate::{
    accounts::mfa,
    auth::claims::Claims,
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A new, unconfirmed TOTP factor: show it once, then confirm it with a
/// first code.
#[derive(Object)]
pub struct TotpEnrolment {
    /// The secret in base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...`: what the QR code holds.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code (a standalone `<svg>` element).
    pub qr_svg: String,
}

/// Recovery codes: shown this once; each works once in place of a code.
#[derive(Object)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// A code from the authenticator app (6 digits) or, where it says so, a
/// recovery code.
#[derive(Object)]
#[oai(example)]
pub struct MfaCode {
    pub code: Text,
}

impl Example for MfaCode {
    fn example() -> Self {
        MfaCode {
            code: Text("123456".into()),
        }
    }
}

/// The `mfa_token` of a login's 403 `MfaRequired` and a code (TOTP or
/// recovery code).
#[derive(Object)]
#[oai(example)]
pub struct MfaVerify {
    pub mfa_token: Text,
    pub code: Text,
}

impl Example for MfaVerify {
    fn example() -> Self {
        MfaVerify {
            mfa_token: Text("Zm9yIGV4YW1wbGUgb25seSwgbm90IGEgcmVhbCB0b2tlbg".into()),
            code: Text("123456".into()),
        }
    }
}

#[derive(ApiResponse)]
enum Enrolled {
    /// The secret is a credential: never cached.
    #[oai(status = 200)]
    Ok(Json<TotpEnrolment>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum Codes {
    /// Codes are credentials: never cached.
    #[oai(status = 200)]
    Ok(Json<RecoveryCodes>, #[oai(header = "Cache-Control")] String),
}

fn codes(list: Vec<String>) -> Codes {
    Codes::Ok(
        Json(RecoveryCodes {
            recovery_codes: list,
        }),
        "no-store".into(),
    )
}

/// The fresh-token caller of a factor change (`accounts::mfa::Caller`).
fn caller(state: &AppState, req: &Request, claims: &Claims) -> mfa::Caller {
    mfa::Caller {
        user_id: claims.sub,
        sid: claims.sid,
        ip: crate::http::client_ip(req, state.settings.trust_forwarded),
    }
}

pub struct MfaApi;

#[OpenApi(tag = "Tag::Auth")]
impl MfaApi {
    /// Start enrolling a TOTP factor (fresh token): a new secret, its
    /// otpauth:// URI and QR code. Replaces an unconfirmed factor; 409 while
    /// one is active.
    #[oai(path = "/auth/mfa/totp", method = "post", operation_id = "enroll_totp")]
    async fn enrol(&self, state: Data<&Arc<AppState>>, auth: Fresh) -> ApiResult<Enrolled> {
        let e = mfa::enrol(&state, auth.0.sub).await?;
        Ok(Enrolled::Ok(
            Json(TotpEnrolment {
                secret: e.secret,
                otpauth_uri: e.otpauth_uri,
                qr_svg: e.qr_svg,
            }),
            "no-store".into(),
        ))
    }

    /// Confirm the new factor with a first code from the app: it is active
    /// from now on, and the 10 recovery codes are returned (this once). The
    /// caller's other sessions end.
    #[oai(
        path = "/auth/mfa/totp/confirm",
        method = "post",
        operation_id = "confirm_totp"
    )]
    async fn confirm(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Fresh,
        body: Json<MfaCode>,
    ) -> ApiResult<Codes> {
        let list = mfa::confirm(&state, &caller(&state, req, &auth.0), &body.0.code.0).await?;
        Ok(codes(list))
    }

    /// Remove the factor and its recovery codes, given a code (TOTP or
    /// recovery code). The caller's other sessions end.
    #[oai(
        path = "/auth/mfa/totp",
        method = "delete",
        operation_id = "delete_totp"
    )]
    async fn remove(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Fresh,
        body: Json<MfaCode>,
    ) -> ApiResult<NoContent> {
        mfa::remove(&state, &caller(&state, req, &auth.0), &body.0.code.0).await?;
        Ok(NoContent::Done)
    }

    /// A new set of 10 recovery codes, given a code; the old set stops
    /// working. The caller's other sessions end.
    #[oai(
        path = "/auth/mfa/recovery-codes",
        method = "post",
        operation_id = "regenerate_recovery_codes"
    )]
    async fn regenerate(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Fresh,
        body: Json<MfaCode>,
    ) -> ApiResult<Codes> {
        let list = mfa::regenerate(&state, &caller(&state, req, &auth.0), &body.0.code.0).await?;
        Ok(codes(list))
    }

    /// Finish a login that answered 403 `MfaRequired`: its `mfa_token` and
    /// a code start the session (a fresh access token with
    /// `amr: ["pwd", "otp"]`). A token allows 5 codes within 300 s.
    #[oai(
        path = "/auth/mfa/verify",
        method = "post",
        operation_id = "verify_mfa"
    )]
    async fn verify(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<MfaVerify>,
    ) -> ApiResult<Tokens> {
        let meta = super::client::client_meta(&state, req);
        let body = body.0;
        let issued = mfa::verify(&state, &body.mfa_token.0, &body.code.0, meta).await?;
        Ok(tokens(issued))
    }

    /// Remove a user's second factor (fresh admin token), for a user who
    /// lost both the app and the recovery codes. Their sessions end.
    #[oai(
        path = "/users/:id/mfa",
        method = "delete",
        operation_id = "delete_user_mfa",
        tag = "Tag::Users"
    )]
    async fn admin_remove(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AdminFresh,
        id: Path<Id>,
    ) -> ApiResult<NoContent> {
        let id = id.0.uuid()?;
        let keep = (id == auth.0.sub).then_some(auth.0.sid);
        if !mfa::admin_remove(&state, id, keep).await? {
            return Err(ApiError::not_found());
        }
        Ok(NoContent::Done)
    }
}
