//! The sender every replica runs: it claims due outbox rows, renders and
//! delivers them, and deletes each once delivered.
//!
//! A claim is one statement that sets `claimed_until` on a batch of due,
//! unclaimed rows and returns them (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so replicas polling together take disjoint rows; SQLite's
//! one writer connection serialises claims). A sender that dies leaves its
//! claim to lapse, and the row is taken again. A temporary failure (no
//! connection, timeout, 4xx) retries the row alone with exponential
//! backoff; a permanent one (5xx) marks it failed and empties its body.
//! Neither holds up the rest of the queue (Kratos #1598).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, DurationRound, Utc};
use entity::{one_time_link, outbox};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query},
};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use uuid::Uuid;

use super::{
    Kind, Purpose, links,
    templates::render,
    transport::{SendError, Transport},
};
use crate::{error::ApiError, metrics, state::AppState};

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// How often an idle sender looks for due mail.
    pub poll: Duration,
    /// How long a claim holds a row: longer than one delivery can take
    /// (the SMTP timeout is 10 s per command), or a slow send is taken
    /// over and sent twice.
    pub claim_ttl: Duration,
    /// Rows per claim.
    pub batch: u64,
    /// The longest wait between two tries of one mail.
    pub max_backoff: Duration,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            claim_ttl: Duration::from_secs(60),
            batch: 10,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// The running sender. `drain` stops it; dropping the handle stops it too
/// (at once, releasing its claims).
pub struct Sender {
    deadline: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

/// Starts the sender on the runtime.
pub fn start(state: Arc<AppState>, settings: SenderSettings) -> Sender {
    let (deadline, rx) = watch::channel(None);
    let worker = Worker {
        transport: Transport::new(&state.mail.delivery),
        state,
        settings,
    };
    Sender {
        deadline,
        task: tokio::spawn(worker.run(rx)),
    }
}

/// How long a sender may take to release its claims after its deadline.
const RELEASE_TIME: Duration = Duration::from_secs(2);

impl Sender {
    /// Keeps delivering due mail until none is due or `grace` has passed,
    /// then stops and releases the claims it still holds (the SIGTERM path,
    /// after the HTTP server drained).
    pub async fn drain(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let _ = self.deadline.send(Some(deadline));
        let mut task = self.task;
        if tokio::time::timeout_at(deadline + RELEASE_TIME, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("mail sender did not stop in time; its claims lapse by themselves");
            task.abort();
        }
    }
}

struct Worker {
    state: Arc<AppState>,
    settings: SenderSettings,
    transport: Transport,
}

enum Round {
    /// Claimed mail: there may be more due.
    Busy {
        /// A delivery failed for now (server unreachable, 4xx): the
        /// sender pauses before the next round instead of spinning through
        /// the queue against a server that is down.
        deferred: bool,
    },
    /// Nothing due.
    Idle,
    /// The deadline passed during the round.
    Stopped,
}

/// How one mail's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent, given up, or dropped (nothing to retry).
    Done,
    /// Failed for now; retried later.
    Deferred,
}

/// A failure of the outbox's own bookkeeping (a database error): logged,
/// and the row is taken again once its claim lapses.
struct Failure(String);

impl From<sea_orm::DbErr> for Failure {
    fn from(e: sea_orm::DbErr) -> Self {
        Failure(e.to_string())
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e.to_string())
    }
}

/// The wait after a database error: doubles up to this.
const MAX_DB_BACKOFF: Duration = Duration::from_secs(10);

impl Worker {
    async fn run(self, mut rx: watch::Receiver<Option<Instant>>) {
        let mut db_backoff = Duration::ZERO;
        let mut server_backoff = Duration::ZERO;
        loop {
            let draining = match *rx.borrow() {
                Some(deadline) if Instant::now() >= deadline => break,
                Some(_) => true,
                None => false,
            };
            if rx.has_changed().is_err() && !draining {
                // The handle was dropped without `drain`.
                break;
            }
            let wait = match self.round(&rx).await {
                Ok(Round::Busy { deferred: false }) => {
                    db_backoff = Duration::ZERO;
                    server_backoff = Duration::ZERO;
                    continue;
                }
                Ok(Round::Busy { deferred: true }) if draining => break,
                Ok(Round::Busy { deferred: true }) => {
                    db_backoff = Duration::ZERO;
                    server_backoff =
                        (server_backoff * 2).clamp(self.settings.poll, self.settings.max_backoff);
                    server_backoff
                }
                Ok(Round::Stopped) => break,
                Ok(Round::Idle) if draining => break,
                Ok(Round::Idle) => {
                    db_backoff = Duration::ZERO;
                    self.settings.poll
                }
                Err(Failure(e)) => {
                    db_backoff = (db_backoff * 2).clamp(self.settings.poll, MAX_DB_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?db_backoff, "mail sender: database error");
                    db_backoff
                }
            };
            // Asleep until the next poll, or woken at once by `drain`.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = rx.changed() => {}
            }
        }
        tracing::debug!("mail sender stopped");
    }

    async fn round(&self, rx: &watch::Receiver<Option<Instant>>) -> Result<Round, Failure> {
        if !self.anything_due().await? {
            self.report_oldest().await?;
            return Ok(Round::Idle);
        }
        let (until, rows) = self.claim().await?;
        if rows.is_empty() {
            // Another replica was faster.
            self.report_oldest().await?;
            return Ok(Round::Idle);
        }
        // The batch is delivered concurrently (lettre's pool holds several
        // connections): one slow mail does not hold up the others, and a
        // replica sends more than one mail per round trip.
        let unfinished = parking_lot::Mutex::new(rows.iter().map(|r| r.id).collect::<Vec<_>>());
        let deferred = std::sync::atomic::AtomicBool::new(false);
        let batch = futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(rows),
            None,
            |row| {
                let (unfinished, deferred) = (&unfinished, &deferred);
                async move {
                    let id = row.id;
                    if self.deliver(row).await == Outcome::Deferred {
                        deferred.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    unfinished.lock().retain(|i| *i != id);
                }
            },
        );
        tokio::select! {
            biased;
            () = deadline_passed(rx.clone()) => {
                // Cut short (an unfinished send counts as not sent: the
                // mail goes out again later rather than never).
                let ids = unfinished.lock().clone();
                self.release(&ids, until).await;
                return Ok(Round::Stopped);
            }
            () = batch => {}
        }
        self.report_oldest().await?;
        Ok(Round::Busy {
            deferred: deferred.into_inner(),
        })
    }

    /// Due: not failed, its time come, not claimed by a live sender.
    fn due(now: DateTime<Utc>) -> Condition {
        Condition::all()
            .add(outbox::Column::FailedAt.is_null())
            .add(outbox::Column::NextAttemptAt.lte(now))
            .add(
                Condition::any()
                    .add(outbox::Column::ClaimedUntil.is_null())
                    .add(outbox::Column::ClaimedUntil.lt(now)),
            )
    }

    /// The cheap look before a claim (a write): on the reader.
    async fn anything_due(&self) -> Result<bool, Failure> {
        let found: Option<Uuid> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Id)
            .filter(Self::due(Utc::now()))
            .limit(1)
            .into_tuple()
            .one(self.state.reader())
            .await?;
        Ok(found.is_some())
    }

    /// Claims up to `batch` due rows, oldest first, in one statement.
    async fn claim(&self) -> Result<(DateTime<Utc>, Vec<outbox::Model>), Failure> {
        let now = Utc::now();
        let until = micros(now + chrono_duration(self.settings.claim_ttl));
        let mut pick = Query::select();
        pick.column(outbox::Column::Id)
            .from(outbox::Entity)
            .cond_where(Self::due(now))
            .order_by(outbox::Column::CreatedAt, Order::Asc)
            .limit(self.settings.batch);
        // SQLite's query builder leaves the lock clause out.
        pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        let mut rows = outbox::Entity::update_many()
            .col_expr(outbox::Column::ClaimedUntil, Expr::value(until))
            .filter(outbox::Column::Id.in_subquery(pick))
            .exec_with_returning(&self.state.db)
            .await?;
        rows.sort_by_key(|r| r.created_at);
        Ok((until, rows))
    }

    async fn deliver(&self, row: outbox::Model) -> Outcome {
        let id = row.id;
        match self.try_deliver(row).await {
            Ok(outcome) => outcome,
            Err(Failure(e)) => {
                tracing::warn!(mail = %id, error = %e, "mail sender: database error; the mail is tried again when its claim lapses");
                Outcome::Done
            }
        }
    }

    async fn try_deliver(&self, row: outbox::Model) -> Result<Outcome, Failure> {
        let row = if row.kind == Kind::PasswordForgot.as_str() {
            match resolve_forgot(&self.state, row).await? {
                Some(row) => row,
                None => return Ok(Outcome::Done),
            }
        } else {
            row
        };
        let Some(kind) = Kind::parse(&row.kind) else {
            return self
                .give_up(&row, &format!("unknown mail kind {:?}", row.kind))
                .await
                .map(|()| Outcome::Done);
        };
        let action_url = match purpose_of(kind) {
            None => None,
            Some(purpose) => match self.link_url(&row, purpose).await? {
                Some(url) => Some(url),
                None => {
                    // A dead link (superseded, spent, expired, its user
                    // deleted): nothing worth sending.
                    outbox::Entity::delete_by_id(row.id)
                        .exec(&self.state.db)
                        .await?;
                    return Ok(Outcome::Done);
                }
            },
        };
        let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        let rendered = match render(kind, &data, &self.state.mail, action_url.as_deref()) {
            Ok(r) => r,
            Err(e) => return self.give_up(&row, &e).await.map(|()| Outcome::Done),
        };
        match self
            .transport
            .send(&self.state.mail.from, &row.recipient, &rendered)
            .await
        {
            Ok(()) => {
                // Counted first: it was delivered, whatever the bookkeeping
                // below meets (and a reader that sees the row gone sees
                // the count).
                metrics::mail_sent();
                // Delivered: the body goes with the row.
                outbox::Entity::delete_by_id(row.id)
                    .exec(&self.state.db)
                    .await?;
                Ok(Outcome::Done)
            }
            Err(SendError::Temporary(e)) => {
                self.retry_later(&row, &e).await.map(|()| Outcome::Deferred)
            }
            Err(SendError::Permanent(e)) => self.give_up(&row, &e).await.map(|()| Outcome::Done),
        }
    }

    /// The link's URL, with its token derived again; `None` when the link
    /// is no longer usable.
    async fn link_url(
        &self,
        row: &outbox::Model,
        purpose: Purpose,
    ) -> Result<Option<String>, Failure> {
        let Some(link_id) = row.link_id else {
            tracing::warn!(mail = %row.id, kind = %row.kind, "mail without its link; dropped");
            return Ok(None);
        };
        let Some(link) = one_time_link::Entity::find_by_id(link_id)
            .one(&self.state.db)
            .await?
        else {
            tracing::debug!(mail = %row.id, "the mail's link is gone (superseded or spent); dropped");
            return Ok(None);
        };
        if link.purpose != purpose.as_str() || link.expires_at <= Utc::now() {
            tracing::debug!(mail = %row.id, "the mail's link expired or has another purpose; dropped");
            return Ok(None);
        }
        let token = self.state.mail.link_key.token(link_id);
        if links::hash(&token) != link.token_hash {
            tracing::warn!(
                mail = %row.id,
                "the mail's link was made with another key (TESSERA_DATA_KEY or the signing secret changed); dropped"
            );
            return Ok(None);
        }
        Ok(Some(self.state.mail.link_url(purpose, &token)))
    }

    async fn retry_later(&self, row: &outbox::Model, error: &str) -> Result<(), Failure> {
        let wait = backoff(row.attempts, self.settings.max_backoff);
        tracing::info!(mail = %row.id, kind = %row.kind, attempts = row.attempts + 1, retry_in = ?wait, error, "mail not delivered; retrying later");
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                ExprTrait::add(Expr::col(outbox::Column::Attempts), 1),
            )
            .col_expr(
                outbox::Column::NextAttemptAt,
                Expr::value(Utc::now() + chrono_duration(wait)),
            )
            .col_expr(
                outbox::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error.to_owned()))
            .filter(outbox::Column::Id.eq(row.id))
            .exec(&self.state.db)
            .await?;
        metrics::mail_retried();
        Ok(())
    }

    /// Final failure: the row stays (for the operator) without its body.
    async fn give_up(&self, row: &outbox::Model, error: &str) -> Result<(), Failure> {
        tracing::warn!(mail = %row.id, kind = %row.kind, error, "mail refused for good; not retried");
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                ExprTrait::add(Expr::col(outbox::Column::Attempts), 1),
            )
            .col_expr(outbox::Column::FailedAt, Expr::value(Utc::now()))
            .col_expr(
                outbox::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(outbox::Column::Data, Expr::value("{}"))
            .col_expr(outbox::Column::LastError, Expr::value(error.to_owned()))
            .filter(outbox::Column::Id.eq(row.id))
            .exec(&self.state.db)
            .await?;
        metrics::mail_failed();
        Ok(())
    }

    /// Gives unfinished claims back so another sender takes them at once.
    async fn release(&self, ids: &[Uuid], until: DateTime<Utc>) {
        if ids.is_empty() {
            return;
        }
        let result = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(outbox::Column::Id.is_in(ids.iter().copied()))
            // Only while the claim is still ours.
            .filter(outbox::Column::ClaimedUntil.eq(until))
            .exec(&self.state.db)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "mail sender: cannot release its claims; they lapse by themselves");
        }
    }

    async fn report_oldest(&self) -> Result<(), Failure> {
        let oldest: Option<DateTime<Utc>> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::CreatedAt)
            .filter(outbox::Column::FailedAt.is_null())
            .order_by_asc(outbox::Column::CreatedAt)
            .limit(1)
            .into_tuple()
            .one(self.state.reader())
            .await?;
        let age = oldest
            .and_then(|t| (Utc::now() - t).to_std().ok())
            .unwrap_or(Duration::ZERO);
        metrics::mail_oldest_unsent(age);
        Ok(())
    }
}

/// The page a link mail opens.
fn purpose_of(kind: Kind) -> Option<Purpose> {
    match kind {
        Kind::VerifyEmail => Some(Purpose::Verify),
        Kind::ConfirmNewEmail => Some(Purpose::EmailChange),
        Kind::PasswordReset => Some(Purpose::Reset),
        Kind::EmailChangeNotice | Kind::PasswordChanged | Kind::PasswordForgot => None,
    }
}

/// A forgot request, decided off the request path: a reset mail for an
/// existing, unblocked account (the row, turned into `password_reset`), or
/// nothing (`None`, the row deleted).
pub async fn resolve_forgot(
    state: &AppState,
    row: outbox::Model,
) -> Result<Option<outbox::Model>, ApiError> {
    crate::accounts::recovery::resolve_forgot(state, row).await
}

/// 1 s, 2 s, 4 s ... after the 1st, 2nd, 3rd failure, at most `max`.
pub fn backoff(attempts_before: i32, max: Duration) -> Duration {
    let doublings = Ord::min(u32::try_from(attempts_before).unwrap_or(0), 30);
    Duration::from_secs(1u64 << doublings).min(max)
}

/// Resolves once `drain`'s deadline has passed (or the handle is gone).
async fn deadline_passed(mut rx: watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *rx.borrow_and_update();
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
}

/// PostgreSQL keeps microseconds: a claim compared for equality later must
/// be written at that precision.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::microseconds(1))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (0..12).map(|a| backoff(a, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(i32::MAX, max), max);
        assert_eq!(backoff(-1, max), Duration::from_secs(1));
    }
}
