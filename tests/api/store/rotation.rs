//! Strict rotation and reuse, the grace window, concurrent rotation.

use super::*;

// ---------------------------------------------------------------- 2. strict rotation and reuse

pub(super) async fn rotate_then_strict_reuse(store: Store, _redis: RedisInfo) {
    let user = Uuid::now_v7();
    let s = record(user, 3600);
    start(&store, &s).await;
    let (j0, j1) = (s.current_jti, Uuid::now_v7());
    let t1 = now_ms();
    let iat1 = now_secs() + 7; // distinct from every other time field

    let r1 = expect_rotated(rotate(&store, s.sid, j0, j1, iat1, 0).await);
    let expected = after_rotation(&s, j1, iat1, &r1);
    assert_eq!(r1, expected, "Rotated record");
    assert_eq!(r1.current_jti, j1);
    assert_eq!(r1.parent_jti, Some(j0));
    assert!(r1.rotated_ms >= Some(t1), "rotated before the call");
    assert_eq!(r1.current_iat, iat1);
    assert_eq!(
        r1.expires_at, s.expires_at,
        "rotation must keep the absolute end"
    );
    assert_eq!(
        session(&store, s.sid).await,
        Some(expected.clone()),
        "stored record after rotation"
    );
    assert!(
        check(&store, s.sid, Uuid::now_v7()).await,
        "session dead after a rotation"
    );

    // The newest token rotates again (still strict).
    let j2 = Uuid::now_v7();
    let r2 = expect_rotated(rotate(&store, s.sid, j1, j2, iat1 + 1, 0).await);
    assert_eq!(r2, after_rotation(&expected, j2, iat1 + 1, &r2));

    // The spent parent again, strict: reuse revokes the whole session.
    let j3 = Uuid::now_v7();
    assert_eq!(
        rotate(&store, s.sid, j1, j3, iat1 + 2, 0).await,
        Rotation::Reused
    );
    assert!(
        !check(&store, s.sid, Uuid::now_v7()).await,
        "session alive after reuse"
    );
    assert!(!check(&store, s.sid, j2).await, "session alive after reuse");
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "record kept after reuse"
    );
    assert!(
        sessions(&store, user).await.iter().all(|x| x.sid != s.sid),
        "reused session still listed"
    );
    assert_eq!(
        rotate(&store, s.sid, j2, Uuid::now_v7(), iat1 + 3, 0).await,
        Rotation::Gone,
        "the newest token of a revoked session must not rotate"
    );
    // A spent token presented again stays reuse (API.md: "Presenting a spent
    // refresh token again is reuse").
    assert_eq!(
        rotate(&store, s.sid, j1, Uuid::now_v7(), iat1 + 4, 0).await,
        Rotation::Reused,
        "a spent token of a session revoked for reuse"
    );
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "reuse revived the session"
    );

    // An unknown session is Gone, not Reused.
    assert_eq!(
        rotate(
            &store,
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            iat1,
            0
        )
        .await,
        Rotation::Gone
    );
    // Strict mode: even the immediate parent a millisecond later is reuse.
    let s2 = record(user, 3600);
    start(&store, &s2).await;
    expect_rotated(rotate(&store, s2.sid, s2.current_jti, Uuid::now_v7(), iat1, 0).await);
    assert_eq!(
        rotate(&store, s2.sid, s2.current_jti, Uuid::now_v7(), iat1, 0).await,
        Rotation::Reused
    );
    assert_eq!(session(&store, s2.sid).await, None);
}

// ---------------------------------------------------------------- 3. grace window

pub(super) async fn grace_window(store: Store, _redis: RedisInfo) {
    // Short, because the window runs on the store's clock: the test waits
    // for it to pass.
    const GRACE: i64 = 1_200;
    let user = Uuid::now_v7();
    let iat = now_secs();

    // A: the immediate parent within the window, then after it.
    let a = record(user, 3600);
    start(&store, &a).await;
    let (j0, j1) = (a.current_jti, Uuid::now_v7());
    let ra = expect_rotated(rotate(&store, a.sid, j0, j1, iat, GRACE).await);
    assert_eq!(ra, after_rotation(&a, j1, iat, &ra));

    for i in 0..3 {
        let g = expect_grace(rotate(&store, a.sid, j0, Uuid::now_v7(), iat + 1, GRACE).await);
        assert_eq!(
            g.current_jti, j1,
            "grace #{i} must carry the current (latest) jti"
        );
        assert_eq!(g, ra, "grace #{i} must return the session unchanged");
        assert_eq!(
            session(&store, a.sid).await,
            Some(ra.clone()),
            "grace #{i} changed the session"
        );
        assert!(
            check(&store, a.sid, Uuid::now_v7()).await,
            "grace #{i} killed the session"
        );
    }

    // The parent after the window is reuse.
    tokio::time::sleep(Duration::from_millis(GRACE as u64 + 200)).await;
    assert_eq!(
        rotate(&store, a.sid, j0, Uuid::now_v7(), iat + 2, GRACE).await,
        Rotation::Reused
    );
    assert_eq!(
        session(&store, a.sid).await,
        None,
        "session kept after late reuse"
    );
    assert!(!check(&store, a.sid, Uuid::now_v7()).await);
    // A revoked session refreshes never, grace or not.
    assert_eq!(
        rotate(&store, a.sid, j1, Uuid::now_v7(), iat + 3, GRACE).await,
        Rotation::Gone
    );

    // B: a grandparent within the window is reuse.
    let b = record(user, 3600);
    start(&store, &b).await;
    let (b0, b1, b2) = (b.current_jti, Uuid::now_v7(), Uuid::now_v7());
    expect_rotated(rotate(&store, b.sid, b0, b1, iat, GRACE).await);
    let rb = expect_rotated(rotate(&store, b.sid, b1, b2, iat, GRACE).await);
    assert_eq!(rb.parent_jti, Some(b1));
    assert_eq!(
        rotate(&store, b.sid, b0, Uuid::now_v7(), iat, GRACE).await,
        Rotation::Reused,
        "a grandparent within the window must be reuse"
    );
    assert_eq!(session(&store, b.sid).await, None);
    assert!(!check(&store, b.sid, Uuid::now_v7()).await);
    // A revoked session refreshes never, grace or not (b1 is spent: reuse or gone).
    let late = rotate(&store, b.sid, b1, Uuid::now_v7(), iat, GRACE).await;
    assert!(
        matches!(late, Rotation::Reused | Rotation::Gone),
        "the parent of a revoked session must not get grace: {late:?}"
    );

    // C: a never-rotated session has no parent: a foreign jti is reuse.
    let c = record(user, 3600);
    start(&store, &c).await;
    assert_eq!(
        rotate(&store, c.sid, Uuid::now_v7(), Uuid::now_v7(), iat, GRACE).await,
        Rotation::Reused
    );
    assert_eq!(session(&store, c.sid).await, None);

    // D: after the window the current token still rotates normally.
    let d = record(user, 3600);
    start(&store, &d).await;
    let d1 = Uuid::now_v7();
    let rd = expect_rotated(rotate(&store, d.sid, d.current_jti, d1, iat, GRACE).await);
    let d2 = Uuid::now_v7();
    tokio::time::sleep(Duration::from_millis(GRACE as u64 + 200)).await;
    let rd2 = expect_rotated(rotate(&store, d.sid, d1, d2, iat, GRACE).await);
    assert_eq!(rd2, after_rotation(&rd, d2, iat, &rd2));
}

// ---------------------------------------------------------------- 4. concurrent rotation

const RACERS: usize = 16;

/// `RACERS` concurrent rotations of `presented`, each with its own new jti.
async fn race(store: &Store, sid: Uuid, presented: Uuid, grace_ms: i64) -> Vec<(Uuid, Rotation)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let new_jti = Uuid::now_v7();
                barrier.wait().await;
                let r = store
                    .rotate(&RotateRequest {
                        sid,
                        presented,
                        new_jti,
                        new_iat: now_secs(),
                        grace_ms,
                    })
                    .await
                    .expect("rotate failed");
                (new_jti, r)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for t in tasks {
        out.push(t.await.expect("racer panicked"));
    }
    out
}

fn tally(results: &[(Uuid, Rotation)]) -> (usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0);
    for (_, r) in results {
        match r {
            Rotation::Rotated(_) => t.0 += 1,
            Rotation::WithinGrace(_) => t.1 += 1,
            Rotation::Reused => t.2 += 1,
            Rotation::Gone => t.3 += 1,
        }
    }
    t
}

pub(super) async fn concurrent_rotation_strict(store: Store, _redis: RedisInfo) {
    let s = record(Uuid::now_v7(), 3600);
    start(&store, &s).await;
    let results = race(&store, s.sid, s.current_jti, 0).await;
    let (rotated, grace, reused, gone) = tally(&results);
    assert_eq!(
        (rotated, grace, reused, gone),
        (1, 0, RACERS - 1, 0),
        "strict race: want exactly one Rotated and every loser Reused \
         (Rotated, WithinGrace, Reused, Gone)"
    );
    assert_eq!(
        session(&store, s.sid).await,
        None,
        "session alive after a strict race"
    );
    assert!(!check(&store, s.sid, Uuid::now_v7()).await);
    let (winner_jti, _) = results
        .iter()
        .find(|(_, r)| matches!(r, Rotation::Rotated(_)))
        .unwrap();
    assert!(
        !matches!(
            rotate(&store, s.sid, *winner_jti, Uuid::now_v7(), now_secs(), 0).await,
            Rotation::Rotated(_) | Rotation::WithinGrace(_)
        ),
        "the winner's token must die with the session"
    );
}

pub(super) async fn concurrent_rotation_grace(store: Store, _redis: RedisInfo) {
    let s = record(Uuid::now_v7(), 3600);
    start(&store, &s).await;
    let results = race(&store, s.sid, s.current_jti, 10_000).await;
    let (rotated, grace, reused, gone) = tally(&results);
    assert_eq!(
        (rotated, grace, reused, gone),
        (1, RACERS - 1, 0, 0),
        "grace race: want one Rotated and every other WithinGrace \
         (Rotated, WithinGrace, Reused, Gone)"
    );
    let (winner_jti, winner) = results
        .iter()
        .find_map(|(j, r)| match r {
            Rotation::Rotated(rec) => Some((*j, rec.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(winner.current_jti, winner_jti);
    assert_eq!(winner.parent_jti, Some(s.current_jti));
    for (_, r) in &results {
        if let Rotation::WithinGrace(rec) = r {
            assert_eq!(
                rec.current_jti, winner_jti,
                "grace must carry the winner's jti"
            );
            assert_eq!(rec, &winner, "grace must return the winner's session");
        }
    }
    assert_eq!(
        session(&store, s.sid).await,
        Some(winner),
        "session after a grace race"
    );
    assert!(
        check(&store, s.sid, Uuid::now_v7()).await,
        "session dead after a grace race"
    );
}
