//! The codes: a TOTP step is accepted once, a challenge dies when used or
//! after 5 wrong codes, recovery codes work once and can be replaced, and
//! wrong codes are failed logins.

use reqwest::Method;

use super::*;

crate::sql_backends!(
    a_code_is_accepted_once,
    used_unknown_and_dead_challenges_are_invalid,
    recovery_codes_work_once_and_a_new_set_replaces_the_old,
    wrong_codes_count_as_failed_logins,
);

async fn a_code_is_accepted_once(b: Backend) {
    let app = mfa_app(b).await;
    let (_, mut factor) = user_with_factor(&app, "ann").await;
    let code = factor.app.fresh_code().await;
    let first = challenge(&app, "ann").await;
    verified(&app, &first, &code).await;
    // The challenge is spent with its session started.
    verify(&app, &first, &code)
        .await
        .assert_error(401, "TokenInvalid");
    // The same step again, with a new challenge: refused.
    let second = challenge(&app, "ann").await;
    verify(&app, &second, &code)
        .await
        .assert_error(401, "InvalidCredentials");
    // That challenge lives on (one try spent): a good code still works.
    let t = verified(&app, &second, &factor.recovery[0]).await;
    assert_eq!(claims(&t.access)["amr"], json!(["pwd", "otp"]));
    // The step was spent for the account, not the challenge: never again.
    let third = challenge(&app, "ann").await;
    verify(&app, &third, &code)
        .await
        .assert_error(401, "InvalidCredentials");
}

async fn used_unknown_and_dead_challenges_are_invalid(b: Backend) {
    let app = mfa_app(b).await;
    let (_, mut factor) = user_with_factor(&app, "ann").await;
    let real = challenge(&app, "ann").await;
    let mut altered: Vec<char> = real.chars().collect();
    altered[10] = if altered[10] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let right = factor.app.fresh_code().await;
    for garbage in [
        "".to_owned(),
        "garbage".to_owned(),
        "A".repeat(43),
        "A".repeat(44),
        "é".repeat(43),
        format!("{real}="),
        altered,
    ] {
        verify(&app, &garbage, &right)
            .await
            .assert_error(401, "TokenInvalid");
    }
    // The real one was not spent by the guesses: 5 wrong codes...
    for _ in 0..5 {
        verify(&app, &real, &factor.app.wrong_code())
            .await
            .assert_error(401, "InvalidCredentials");
    }
    // ...and it is dead, for a right TOTP code and a recovery code alike.
    verify(&app, &real, &right)
        .await
        .assert_error(401, "TokenInvalid");
    verify(&app, &real, &factor.recovery[0])
        .await
        .assert_error(401, "TokenInvalid");
    // Neither code was spent there: a new login takes both.
    verified(&app, &challenge(&app, "ann").await, &right).await;
    verified(&app, &challenge(&app, "ann").await, &factor.recovery[0]).await;
}

async fn recovery_codes_work_once_and_a_new_set_replaces_the_old(b: Backend) {
    let app = mfa_app(b).await;
    let (ann, factor) = user_with_factor(&app, "ann").await;
    let old = factor.recovery.clone();

    // Hyphens optional, any case, spaces around.
    let loose = format!(" {} ", old[0].replace('-', "").to_uppercase());
    let t = verified(&app, &challenge(&app, "ann").await, &loose).await;
    assert_eq!(claims(&t.access)["amr"], json!(["pwd", "otp"]));
    // Once only, in any spelling.
    let token = challenge(&app, "ann").await;
    for spelling in [old[0].clone(), old[0].to_uppercase(), loose] {
        verify(&app, &token, &spelling)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    // The others still work, as shown.
    verified(&app, &token, &old[1]).await;

    // A new set needs a fresh token and a code.
    let stale = app.non_fresh(&login_with(&app, "ann", &old[2]).await).await;
    let regenerate = |code: String, access: String| {
        let app = app.clone();
        async move {
            app.post_json(
                "/auth/mfa/recovery-codes",
                &json!({ "code": code }),
                Some(&access),
            )
            .await
        }
    };
    regenerate(old[3].clone(), stale.access.clone())
        .await
        .assert_error(401, "FreshTokenNeeded");
    regenerate(factor.app.wrong_code(), ann.access.clone())
        .await
        .assert_error(401, "InvalidCredentials");
    regenerate(old[0].clone(), ann.access.clone())
        .await
        .assert_error(401, "InvalidCredentials");
    let new = recovery_codes(&regenerate(old[3].clone(), ann.access.clone()).await);
    assert!(new.iter().all(|c| !old.contains(c)), "{old:?} {new:?}");

    // The old set stops working (4 wrong tries of a challenge's 5), the
    // new one works.
    let token = challenge(&app, "ann").await;
    for unused in &old[4..8] {
        verify(&app, &token, unused)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    verified(&app, &token, &new[0]).await;
    let token = challenge(&app, "ann").await;
    for unused in &old[8..] {
        verify(&app, &token, unused)
            .await
            .assert_error(401, "InvalidCredentials");
    }
    verified(&app, &token, &new[9]).await;
    assert_eq!(me(&app, &ann.access).await["mfa_enabled"], true);
}

async fn wrong_codes_count_as_failed_logins(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.login_max_failures = 3;
        c.login_max_failures_per_ip = 1000;
    })
    .await;
    let (_, mut factor) = user_with_factor(&app, "ann").await;
    let token = challenge(&app, "ann").await;
    for _ in 0..3 {
        verify(&app, &token, &factor.app.wrong_code())
            .await
            .assert_error(401, "InvalidCredentials");
    }
    // Over the limit: 429 even with the right code, which is not spent...
    let right = factor.app.fresh_code().await;
    let r = verify(&app, &token, &right).await;
    assert_too_many(&r, app.config.login_window.as_secs());
    // ...and the password login of the account is over it too: one counter.
    let r = app.login_email("ann@example.com", PASSWORD).await;
    assert_too_many(&r, app.config.login_window.as_secs());

    // A wrong code when removing the factor counts as well.
    let (bob, mut bobs) = user_with_factor(&app, "bob").await;
    let remove = |code: String| {
        let (app, access) = (app.clone(), bob.access.clone());
        async move {
            app.send_json(
                Method::DELETE,
                "/auth/mfa/totp",
                &json!({ "code": code }),
                Some(&access),
            )
            .await
        }
    };
    for _ in 0..3 {
        remove(bobs.app.wrong_code())
            .await
            .assert_error(401, "InvalidCredentials");
    }
    let r = remove(bobs.app.fresh_code().await).await;
    assert_too_many(&r, app.config.login_window.as_secs());
    // Still on: the right code was refused with the 429.
    assert_eq!(me(&app, &bob.access).await["mfa_enabled"], true);
}

#[track_caller]
fn assert_too_many(r: &Resp, window: u64) {
    r.assert_error(429, "TooManyRequests");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {r:?}"));
    assert!((1..=window).contains(&retry), "Retry-After {retry}: {r:?}");
}
