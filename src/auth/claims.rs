//! The claims of Tessera's tokens (API.md, "Tokens").

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How the session's login was proven (RFC 8176 `amr` values): the
/// password alone, or the password and a one-time code. Serialised as the
/// list (`["pwd"]`, `["pwd", "otp"]`); a token without `amr` is `Pwd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
pub enum Amr {
    #[default]
    Pwd,
    PwdOtp,
}

impl Amr {
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Amr::Pwd => &["pwd"],
            Amr::PwdOtp => &["pwd", "otp"],
        }
    }
}

impl From<Amr> for Vec<String> {
    fn from(a: Amr) -> Self {
        a.methods().iter().map(|m| (*m).to_owned()).collect()
    }
}

impl TryFrom<Vec<String>> for Amr {
    type Error = &'static str;

    fn try_from(v: Vec<String>) -> Result<Self, Self::Error> {
        match v.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["pwd"] => Ok(Amr::Pwd),
            ["pwd", "otp"] => Ok(Amr::PwdOtp),
            _ => Err("unknown amr"),
        }
    }
}

/// Field order is the serialisation order, which must stay stable: the grace
/// rule re-signs the current refresh token byte-identically from these claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub typ: TokenType,
    pub sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<bool>,
    /// On access and refresh tokens since the second factor exists; the
    /// refresh token carries it so that rotation keeps the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Amr>,
}

impl Claims {
    pub fn amr(&self) -> Amr {
        self.amr.unwrap_or_default()
    }

    pub fn role(&self) -> Role {
        self.role.unwrap_or(Role::User)
    }

    pub fn is_fresh(&self) -> bool {
        self.fresh.unwrap_or(false)
    }
}

/// Valid claims for unit tests: issued now, one minute to live.
#[cfg(test)]
pub fn test_claims(typ: TokenType) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: "tessera".into(),
        aud: "tessera".into(),
        sub: Uuid::now_v7(),
        iat: now,
        nbf: now,
        exp: now + 60,
        jti: Uuid::now_v7(),
        typ,
        sid: Uuid::now_v7(),
        role: (typ == TokenType::Access).then_some(Role::User),
        fresh: (typ == TokenType::Access).then_some(true),
        amr: Some(Amr::Pwd),
    }
}
