//! The one rotation decision (API.md "Tokens"): what presenting a refresh
//! token does to its session. A pure function over what the store holds, the
//! presented jti and the *store's* clock, so every replica decides the grace
//! window against the same time. The memory store calls `decide`; the Redis
//! script (`store/redis.rs`, `ROTATE`) mirrors it branch by branch, and the
//! shared store suite (tests/api/store.rs) keeps the two equal.

use uuid::Uuid;

/// What the store holds for the presented session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A live session: its current refresh token, the one that token
    /// replaced and when (store clock, unix ms).
    Live {
        current: Uuid,
        parent: Option<Uuid>,
        rotated_ms: Option<i64>,
    },
    /// A session revoked for reuse, with the token that was current then.
    Tombstone { last_current: Uuid },
    /// Nothing: ended, revoked by an account change, or expired.
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The presented token is current: spend it, the session gets a new one.
    Rotate,
    /// The immediate parent within the grace: re-issue the current token,
    /// change nothing.
    Grace,
    /// An older token of a live session: revoke the session (leave a
    /// tombstone so its spent tokens stay "reused").
    RevokeForReuse,
    /// A spent token of a session already revoked for reuse.
    AlreadyReused,
    /// No session (or the last current token of a reused one): revoked.
    Gone,
}

/// The whole rule. `grace_ms` is `TESSERA_REFRESH_REUSE_GRACE` (0 = strict).
pub fn decide(held: Held, presented: Uuid, now_ms: i64, grace_ms: i64) -> Decision {
    match held {
        Held::Nothing => Decision::Gone,
        // The token current at revocation was never spent: merely revoked.
        Held::Tombstone { last_current } if last_current == presented => Decision::Gone,
        Held::Tombstone { .. } => Decision::AlreadyReused,
        Held::Live { current, .. } if current == presented => Decision::Rotate,
        Held::Live {
            parent: Some(parent),
            rotated_ms: Some(at),
            ..
        } if grace_ms > 0 && parent == presented && now_ms - at <= grace_ms => Decision::Grace,
        Held::Live { .. } => Decision::RevokeForReuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The truth table: every branch, and the edges of the grace window.
    #[test]
    fn truth_table() {
        let (cur, parent, older) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let live = |rotated_ms| Held::Live {
            current: cur,
            parent: Some(parent),
            rotated_ms,
        };
        let fresh_session = Held::Live {
            current: cur,
            parent: None,
            rotated_ms: None,
        };
        let t = 1_000_000;
        use Decision::*;
        let table: &[(Held, Uuid, i64, i64, Decision)] = &[
            (Held::Nothing, cur, t, 0, Gone),
            (Held::Nothing, cur, t, 10_000, Gone),
            (Held::Tombstone { last_current: cur }, cur, t, 0, Gone),
            (
                Held::Tombstone { last_current: cur },
                parent,
                t,
                0,
                AlreadyReused,
            ),
            (
                Held::Tombstone { last_current: cur },
                parent,
                t,
                10_000,
                AlreadyReused,
            ),
            (fresh_session, cur, t, 0, Rotate),
            (fresh_session, older, t, 10_000, RevokeForReuse),
            (live(Some(t)), cur, t, 0, Rotate),
            (live(Some(t)), cur, t + 99_999, 10_000, Rotate),
            // Strict: the parent is reuse even a millisecond later.
            (live(Some(t)), parent, t, 0, RevokeForReuse),
            // Grace: the parent within G (inclusive), not after.
            (live(Some(t)), parent, t, 10_000, Grace),
            (live(Some(t)), parent, t + 10_000, 10_000, Grace),
            (live(Some(t)), parent, t + 10_001, 10_000, RevokeForReuse),
            // An older ancestor is reuse whatever the grace.
            (live(Some(t)), older, t, 10_000, RevokeForReuse),
            // A parent without a rotation time cannot be within grace.
            (live(None), parent, t, 10_000, RevokeForReuse),
        ];
        for (i, (held, presented, now, grace, want)) in table.iter().enumerate() {
            assert_eq!(
                decide(*held, *presented, *now, *grace),
                *want,
                "row {i}: {held:?} presented {presented} at {now} grace {grace}"
            );
        }
    }
}
