//! The three browser-session cookies (API.md "Browser sessions"): names and
//! attributes written once.

use poem::http::HeaderValue;

/// Names and the `Secure` flag, from `TESSERA_COOKIE_SECURE`.
#[derive(Debug, Clone)]
pub struct CookieJar {
    pub secure: bool,
}

/// Which cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    /// The access token: every path, sent on same-site navigations.
    Access,
    /// The refresh token: only `/auth/browser/*`, never cross-site.
    Refresh,
    /// The CSRF token: readable by scripts, which echo it in `X-CSRF-Token`.
    Csrf,
}

impl Cookie {
    pub const ALL: [Cookie; 3] = [Cookie::Access, Cookie::Refresh, Cookie::Csrf];
}

impl CookieJar {
    pub fn name(&self, c: Cookie) -> &'static str {
        match (c, self.secure) {
            (Cookie::Access, true) => "__Host-tessera-access",
            (Cookie::Refresh, true) => "__Secure-tessera-refresh",
            (Cookie::Csrf, true) => "__Host-tessera-csrf",
            (Cookie::Access, false) => "tessera-access",
            (Cookie::Refresh, false) => "tessera-refresh",
            (Cookie::Csrf, false) => "tessera-csrf",
        }
    }

    fn attributes(&self, c: Cookie) -> &'static str {
        match c {
            Cookie::Access => "HttpOnly; SameSite=Lax; Path=/",
            Cookie::Refresh => "HttpOnly; SameSite=Strict; Path=/auth/browser",
            Cookie::Csrf => "SameSite=Lax; Path=/",
        }
    }

    /// `Set-Cookie` for `value`, living `max_age` seconds.
    pub fn set(&self, c: Cookie, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let line = format!(
            "{}={value}; Max-Age={}; {}{secure}",
            self.name(c),
            max_age.max(0),
            self.attributes(c)
        );
        HeaderValue::from_str(&line).unwrap_or_else(|_| self.clear(c))
    }

    /// `Set-Cookie` that deletes the cookie (same name, path and prefix rules).
    pub fn clear(&self, c: Cookie) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let line = format!(
            "{}=; Max-Age=0; {}{secure}",
            self.name(c),
            self.attributes(c)
        );
        HeaderValue::from_str(&line).unwrap_or(HeaderValue::from_static("x=; Max-Age=0"))
    }

    /// The value of cookie `c` in a request's `Cookie` headers (the first
    /// one: a duplicate planted by a sibling domain comes after ours for
    /// `__Host-` cookies, which no other domain can set).
    pub fn read<'a>(
        &self,
        c: Cookie,
        headers: impl Iterator<Item = &'a HeaderValue>,
    ) -> Option<String> {
        let name = self.name(c);
        headers
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_as_the_contract_says() {
        let jar = CookieJar { secure: true };
        assert_eq!(
            jar.set(Cookie::Access, "a.b.c", 900),
            "__Host-tessera-access=a.b.c; Max-Age=900; HttpOnly; SameSite=Lax; Path=/; Secure"
        );
        assert_eq!(
            jar.set(Cookie::Refresh, "r", 10),
            "__Secure-tessera-refresh=r; Max-Age=10; HttpOnly; SameSite=Strict; Path=/auth/browser; Secure"
        );
        assert_eq!(
            jar.set(Cookie::Csrf, "t", 10),
            "__Host-tessera-csrf=t; Max-Age=10; SameSite=Lax; Path=/; Secure"
        );
        assert_eq!(
            jar.clear(Cookie::Refresh),
            "__Secure-tessera-refresh=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/auth/browser; Secure"
        );
        let dev = CookieJar { secure: false };
        assert_eq!(
            dev.set(Cookie::Access, "a", 1),
            "tessera-access=a; Max-Age=1; HttpOnly; SameSite=Lax; Path=/"
        );
    }

    #[test]
    fn reads_the_named_cookie_only() {
        let jar = CookieJar { secure: true };
        let h = [
            HeaderValue::from_static("x=1; tessera-access=dev; __Host-tessera-access=tok"),
            HeaderValue::from_static("__Host-tessera-access=second"),
        ];
        assert_eq!(jar.read(Cookie::Access, h.iter()).as_deref(), Some("tok"));
        assert_eq!(jar.read(Cookie::Csrf, h.iter()), None);
        let empty = [HeaderValue::from_static("__Host-tessera-access=")];
        assert_eq!(jar.read(Cookie::Access, empty.iter()), None);
    }
}
