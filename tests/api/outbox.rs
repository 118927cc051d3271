//! The mail outbox and its sender against a real SMTP server
//! (tests/smtp/server.py): delivered once with both parts, kept while the
//! server is down, retried on 4xx without holding up the queue, given up
//! on 5xx, delivered after a restart, once across two replicas, after a
//! dead sender's claim lapses, never for a dead link, drained on stop.

use std::time::{Duration, Instant};

use chrono::Utc;
use entity::outbox;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, TransactionTrait};
use serde_json::json;
use tessera::mail::{
    Kind, Purpose, SenderSettings, links,
    outbox::{NewMail, enqueue},
};
use uuid::Uuid;

use crate::helpers::{
    Backend, PASSWORD, TestApp,
    smtp::{Mail, MailServer, Mailbox, shared_mail_server},
    spawn_app, spawn_with_config, spawn_with_sender, test_config, test_sender_settings,
};

crate::sql_backends!(
    a_mail_is_delivered_once_with_both_parts_and_then_forgotten,
    a_link_mail_carries_a_token_that_works_once,
    a_mail_whose_link_was_superseded_is_not_sent,
    mail_queued_while_the_server_is_down_goes_out_when_it_returns,
    a_temporary_refusal_is_retried_without_holding_up_the_queue,
    a_permanent_refusal_is_given_up_and_its_body_deleted,
    mail_left_unsent_is_delivered_after_a_restart,
    a_dead_senders_claim_is_respected_until_it_lapses,
    the_log_delivery_logs_and_forgets_the_mail,
    drain_delivers_what_is_due_then_stops,
    drain_gives_back_the_claims_it_cannot_finish,
);

const MAIL_WAIT: Duration = Duration::from_secs(15);

/// An address no other test uses (the SMTP server is shared).
fn address(local: &str) -> String {
    format!(
        "{local}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn queue(app: &TestApp, kind: Kind, to: &str, link_id: Option<Uuid>) -> Uuid {
    enqueue(
        &app.state.db,
        NewMail {
            kind,
            recipient: to.to_owned(),
            link_id,
            data: json!({"username": "ann"}),
        },
    )
    .await
    .expect("enqueue")
}

async fn row(app: &TestApp, id: Uuid) -> Option<outbox::Model> {
    outbox::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .expect("read the outbox")
}

/// Waits until `done(row)` holds for the row `id` (`None`: deleted).
async fn wait_for_row(
    app: &TestApp,
    id: Uuid,
    what: &str,
    done: impl Fn(&Option<outbox::Model>) -> bool,
) -> Option<outbox::Model> {
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let r = row(app, id).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "outbox row {id}: not {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until_deleted(app: &TestApp, id: Uuid) {
    wait_for_row(app, id, "deleted", Option::is_none).await;
}

/// The value of a metric series (process-wide: compare increases).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let r = app.get("/metrics", None).await;
    r.assert_status(200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Registers a user over HTTP and returns its id.
async fn user(app: &TestApp, email: &str) -> Uuid {
    let name = format!("u{}", &Uuid::new_v4().simple().to_string()[..10]);
    let r = app.register(&name, email, PASSWORD).await;
    r.assert_status(201);
    r.str("id").parse().expect("user id")
}

async fn a_mail_is_delivered_once_with_both_parts_and_then_forgotten(b: Backend) {
    let app = spawn_app(b).await;
    let sent_before = metric(&app, "tessera_mail_sent_total").await;
    let to = address("ann");
    let id = queue(&app, Kind::PasswordChanged, &to, None).await;

    let mails = app.wait_for_mails(&to, 1, MAIL_WAIT).await;
    let mail = &mails[0];
    assert_eq!(mail.content_type, "multipart/alternative", "{}", mail.raw);
    assert_eq!(mail.from, app.config.mail_from);
    assert!(mail.subject.contains("Tessera"), "{}", mail.subject);
    assert!(mail.subject.contains("password"), "{}", mail.subject);
    for part in [&mail.text, &mail.html] {
        assert!(part.contains("Hello ann,"), "{part}");
        assert!(part.contains("not you"), "{part}");
    }
    assert!(mail.html.contains("<h1"), "{}", mail.html);
    assert!(!mail.text.contains('<'), "{}", mail.text);

    // Delivered: the row (and its body) is gone, and it is not sent again.
    wait_until_deleted(&app, id).await;
    assert!(metric(&app, "tessera_mail_sent_total").await > sent_before);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.mails_to(&to).len(), 1);
}

async fn a_link_mail_carries_a_token_that_works_once(b: Backend) {
    let app = spawn_app(b).await;
    let to = address("lena");
    let user_id = user(&app, &to).await;
    let db = &app.state.db;
    let txn = db.begin().await.expect("begin");
    let link = links::create(
        &txn,
        &app.state.mail.link_key,
        user_id,
        Purpose::Reset,
        None,
        app.state.mail.reset_ttl,
    )
    .await
    .expect("create link");
    let id = queue_on(&txn, Kind::PasswordReset, &to, Some(link)).await;
    // What the database holds never opens the link.
    let stored = outbox::Entity::find_by_id(id)
        .one(&txn)
        .await
        .expect("read")
        .expect("row");
    let token = app.state.mail.link_key.token(link);
    assert!(!format!("{stored:?}").contains(&token));
    txn.commit().await.expect("commit");

    let mails = wait_for_subject(&app, &to, "Reset").await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.link_token().as_deref(), Some(token.as_str()));
    let url = format!("{}/reset-password#token={token}", app.state.mail.link_base);
    assert_eq!(mail.link().as_deref(), Some(url.as_str()));
    assert!(
        mail.html.contains(&format!("href=\"{url}\"")),
        "{}",
        mail.html
    );
    assert!(mail.text.contains("1 hour"), "{}", mail.text);
    wait_until_deleted(&app, id).await;

    // The mailed token is the link's, and it works once.
    links::consume(db, &token, &[Purpose::Reset])
        .await
        .expect("the mailed token opens the link");
    assert!(links::consume(db, &token, &[Purpose::Reset]).await.is_err());
}

async fn queue_on(
    conn: &impl sea_orm::ConnectionTrait,
    kind: Kind,
    to: &str,
    link: Option<Uuid>,
) -> Uuid {
    enqueue(
        conn,
        NewMail {
            kind,
            recipient: to.to_owned(),
            link_id: link,
            data: json!({"username": "lena"}),
        },
    )
    .await
    .expect("enqueue")
}

/// This app's mails to `to` whose subject contains `subject` (other mails
/// may go to the same address, e.g. a verification after registering).
async fn wait_for_subject(app: &TestApp, to: &str, subject: &str) -> Vec<Mail> {
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let mails: Vec<_> = app
            .mails_to(to)
            .into_iter()
            .filter(|m| m.subject.contains(subject))
            .collect();
        if !mails.is_empty() {
            return mails;
        }
        if Instant::now() >= deadline {
            let got: Vec<_> = app.mails_to(to).into_iter().map(|m| m.subject).collect();
            panic!("no mail \"{subject}\" to {to}; got {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_mail_whose_link_was_superseded_is_not_sent(b: Backend) {
    let app = spawn_app(b).await;
    let to = address("sam");
    let user_id = user(&app, &to).await;
    let key = &app.state.mail.link_key;
    let ttl = app.state.mail.reset_ttl;
    // Two requests committed together: the first one's link is replaced
    // before any sender can see its mail.
    let txn = app.state.db.begin().await.expect("begin");
    let old = links::create(&txn, key, user_id, Purpose::Reset, None, ttl)
        .await
        .expect("link");
    let old_mail = queue_on(&txn, Kind::PasswordReset, &to, Some(old)).await;
    let new = links::create(&txn, key, user_id, Purpose::Reset, None, ttl)
        .await
        .expect("link");
    let new_mail = queue_on(&txn, Kind::PasswordReset, &to, Some(new)).await;
    txn.commit().await.expect("commit");

    let mails = wait_for_subject(&app, &to, "Reset").await;
    wait_until_deleted(&app, old_mail).await;
    wait_until_deleted(&app, new_mail).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resets: Vec<_> = app
        .mails_to(&to)
        .into_iter()
        .filter(|m| m.subject.contains("Reset"))
        .collect();
    assert_eq!(resets.len(), 1, "only the live link is mailed: {resets:?}");
    assert_eq!(mails[0].link_token(), Some(key.token(new)));
    // The dropped mail was not a failure.
    assert!(row(&app, old_mail).await.is_none());
}

async fn mail_queued_while_the_server_is_down_goes_out_when_it_returns(b: Backend) {
    let mut server = MailServer::start();
    let mut config = test_config(b).await;
    config.smtp_url = Some(server.url().into());
    let app = spawn_with_config(config, b).await;
    let port = server.port;
    server.stop();

    let retried_before = metric(&app, "tessera_mail_retried_total").await;
    let to = [address("ann"), address("bob")];
    let ids = [
        queue(&app, Kind::PasswordChanged, &to[0], None).await,
        queue(&app, Kind::PasswordChanged, &to[1], None).await,
    ];
    for id in ids {
        let r = wait_for_row(&app, id, "retried", |r| {
            r.as_ref().is_some_and(|r| r.attempts >= 1)
        })
        .await
        .expect("row kept");
        assert!(r.failed_at.is_none(), "{r:?}");
        assert!(r.last_error.is_some(), "{r:?}");
    }
    assert!(metric(&app, "tessera_mail_retried_total").await > retried_before);
    assert!(app.mails_to(&to[0]).is_empty());

    let _server = MailServer::start_on(port);
    for (to, id) in to.iter().zip(ids) {
        assert_eq!(app.wait_for_mails(to, 1, MAIL_WAIT).await.len(), 1);
        wait_until_deleted(&app, id).await;
    }
}

async fn a_temporary_refusal_is_retried_without_holding_up_the_queue(b: Backend) {
    let app = spawn_app(b).await;
    // The refused mail is the oldest: it is claimed first every time.
    let refused = address("tempfail");
    let refused_id = queue(&app, Kind::PasswordChanged, &refused, None).await;
    let others: Vec<String> = (0..3).map(|i| address(&format!("other{i}"))).collect();
    for to in &others {
        queue(&app, Kind::PasswordChanged, to, None).await;
    }
    for to in &others {
        app.wait_for_mails(to, 1, MAIL_WAIT).await;
    }
    let r = wait_for_row(&app, refused_id, "retried twice", |r| {
        r.as_ref().is_some_and(|r| r.attempts >= 2)
    })
    .await
    .expect("the refused mail stays queued");
    assert!(r.failed_at.is_none(), "a 4xx is not final: {r:?}");
    assert_ne!(r.data, "{}", "its body is kept for the next try");
    assert!(
        r.last_error.as_deref().is_some_and(|e| e.contains("451")),
        "{r:?}"
    );
    assert!(r.next_attempt_at > r.created_at);
    assert!(app.mails_to(&refused).is_empty());
}

async fn a_permanent_refusal_is_given_up_and_its_body_deleted(b: Backend) {
    let app = spawn_app(b).await;
    let failed_before = metric(&app, "tessera_mail_failed_total").await;
    let refused = address("permfail");
    let refused_id = queue(&app, Kind::PasswordChanged, &refused, None).await;
    let other = address("other");
    queue(&app, Kind::PasswordChanged, &other, None).await;

    app.wait_for_mails(&other, 1, MAIL_WAIT).await;
    let r = wait_for_row(&app, refused_id, "failed", |r| {
        r.as_ref().is_some_and(|r| r.failed_at.is_some())
    })
    .await
    .expect("a failed mail stays visible");
    assert_eq!(r.data, "{}", "the body is deleted");
    assert_eq!(r.attempts, 1);
    assert!(r.claimed_until.is_none());
    assert!(
        r.last_error.as_deref().is_some_and(|e| e.contains("550")),
        "{r:?}"
    );
    assert!(metric(&app, "tessera_mail_failed_total").await > failed_before);

    // Never tried again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(row(&app, refused_id).await.map(|r| r.attempts), Some(1));
    assert!(app.mails_to(&refused).is_empty());
}

async fn mail_left_unsent_is_delivered_after_a_restart(b: Backend) {
    let config = test_config(b).await;
    // A replica that queued mail and stopped before sending it (no sender).
    let to: Vec<String> = (0..3).map(|i| address(&format!("r{i}"))).collect();
    {
        let state = tessera::state::AppState::build(&config)
            .await
            .expect("build");
        for to in &to {
            enqueue(
                &state.db,
                NewMail {
                    kind: Kind::PasswordChanged,
                    recipient: to.clone(),
                    link_id: None,
                    data: json!({"username": "ann"}),
                },
            )
            .await
            .expect("enqueue");
        }
        state.db.clone().close().await.ok();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        shared_mails_to(&to[0]).is_empty(),
        "nothing ran before the restart"
    );

    let app = spawn_with_config(config, b).await;
    for to in &to {
        assert_eq!(app.wait_for_mails(to, 1, MAIL_WAIT).await.len(), 1);
    }
    let deadline = Instant::now() + MAIL_WAIT;
    let mut left = outbox::Entity::find()
        .all(&app.state.db)
        .await
        .expect("read");
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = outbox::Entity::find()
            .all(&app.state.db)
            .await
            .expect("read");
    }
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_deliver_each_mail_once() {
    let b = Backend::PostgresRedis;
    let config = test_config(b).await;
    // Small batches: both replicas take part.
    let settings = SenderSettings {
        batch: 3,
        ..test_sender_settings()
    };
    let one = spawn_with_sender(config.clone(), b, settings.clone()).await;
    let two = spawn_with_sender(config, b, settings).await;
    let to: Vec<String> = (0..30).map(|i| address(&format!("m{i}"))).collect();
    for (i, to) in to.iter().enumerate() {
        let app = if i % 2 == 0 { &one } else { &two };
        queue(app, Kind::PasswordChanged, to, None).await;
    }
    for to in &to {
        one.wait_for_mails(to, 1, MAIL_WAIT).await;
    }
    let deadline = Instant::now() + MAIL_WAIT;
    while !outbox::Entity::find()
        .all(&one.state.db)
        .await
        .expect("read")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the outbox did not empty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for to in &to {
        assert_eq!(one.mails_to(to).len(), 1, "{to} got a duplicate");
    }
}

async fn a_dead_senders_claim_is_respected_until_it_lapses(b: Backend) {
    let app = spawn_app(b).await;
    let to = address("crash");
    const CLAIM: Duration = Duration::from_secs(3);
    let start = Instant::now();
    // As a sender that claimed the row and died before sending leaves it;
    // written in one transaction so the live sender never saw it unclaimed.
    let txn = app.state.db.begin().await.expect("begin");
    let id = queue_on(&txn, Kind::PasswordChanged, &to, None).await;
    let mut claimed: outbox::ActiveModel = outbox::Entity::find_by_id(id)
        .one(&txn)
        .await
        .expect("read")
        .expect("row")
        .into();
    claimed.claimed_until = Set(Some(
        Utc::now() + chrono::Duration::from_std(CLAIM).expect("claim"),
    ));
    claimed.update(&txn).await.expect("claim the row");
    txn.commit().await.expect("commit");

    app.assert_no_mail_to(&to, CLAIM - Duration::from_millis(700))
        .await;
    assert_eq!(app.wait_for_mails(&to, 1, MAIL_WAIT).await.len(), 1);
    assert!(start.elapsed() >= CLAIM, "sent before the claim lapsed");
    wait_until_deleted(&app, id).await;
}

async fn the_log_delivery_logs_and_forgets_the_mail(b: Backend) {
    let mut config = test_config(b).await;
    config.smtp_url = None;
    let app = spawn_with_config(config, b).await;
    assert!(matches!(
        app.state.mail.delivery,
        tessera::mail::Delivery::Log
    ));
    let sent_before = metric(&app, "tessera_mail_sent_total").await;
    let to = address("logged");
    let id = queue(&app, Kind::PasswordChanged, &to, None).await;
    wait_until_deleted(&app, id).await;
    assert!(metric(&app, "tessera_mail_sent_total").await > sent_before);
    // Nothing went over SMTP.
    assert!(shared_mails_to(&to).is_empty());
}

/// Mails to `to` on the shared SMTP server, whichever app sent them.
fn shared_mails_to(to: &str) -> Vec<Mail> {
    Mailbox::of_url(shared_mail_server())
        .all()
        .into_iter()
        .filter(|m| m.is_to(to))
        .collect()
}

async fn drain_delivers_what_is_due_then_stops(b: Backend) {
    let config = test_config(b).await;
    // An idle sender that would not look again for an hour.
    let settings = SenderSettings {
        poll: Duration::from_secs(3600),
        ..test_sender_settings()
    };
    let app = spawn_with_sender(config, b, settings).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to: Vec<String> = (0..3).map(|i| address(&format!("d{i}"))).collect();
    for to in &to {
        queue(&app, Kind::PasswordChanged, to, None).await;
    }
    app.assert_no_mail_to(&to[0], Duration::from_millis(300))
        .await;

    let started = Instant::now();
    app.drain_sender(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    for to in &to {
        assert_eq!(app.mails_to(to).len(), 1, "delivered by drain: {to}");
    }
    assert!(
        outbox::Entity::find()
            .all(&app.state.db)
            .await
            .expect("read")
            .is_empty()
    );

    // Stopped: nothing more goes out.
    let late = address("late");
    queue(&app, Kind::PasswordChanged, &late, None).await;
    app.assert_no_mail_to(&late, Duration::from_millis(800))
        .await;
}

async fn drain_gives_back_the_claims_it_cannot_finish(b: Backend) {
    let server = MailServer::start();
    let mut config = test_config(b).await;
    config.smtp_url = Some(server.url().into());
    let app = spawn_with_config(config, b).await;
    // A hung server: the send waits (up to the SMTP timeout).
    server.freeze();
    let to = address("hung");
    let id = queue(&app, Kind::PasswordChanged, &to, None).await;
    wait_for_row(&app, id, "claimed", |r| {
        r.as_ref().is_some_and(|r| r.claimed_until.is_some())
    })
    .await;

    let started = Instant::now();
    app.drain_sender(Duration::from_secs(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "drain overran its grace: {:?}",
        started.elapsed()
    );
    let r = row(&app, id).await.expect("the mail stays queued");
    assert!(r.claimed_until.is_none(), "claim given back: {r:?}");
    assert!(r.failed_at.is_none(), "{r:?}");
    server.thaw();
}
