//! Micro-benchmarks of the token path (issue 10, BENCHMARKS.md
//! "Micro-benchmarks"): signing an access token, verifying one (signature
//! and claims, no store), the token store's `check` that `authorize_access`
//! makes, and `authorize_access` itself (verify + check).
//!
//! The store benches use the in-memory store; with `TESSERA_BENCH_REDIS_URL`
//! set they also run against a `RedisStore` at that URL (keys under a fresh
//! `tessera-bench:<uuid>:` prefix, ended afterwards and expiring anyway).
//! Without it the Redis benches are skipped with a note: a bench is not a
//! test.
//!
//!     cargo bench --bench tokens
//!     cargo bench --bench tokens -- --quick
//!     TESSERA_BENCH_REDIS_URL=redis://127.0.0.1:6379/ cargo bench --bench tokens

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding},
};
use secrecy::SecretString;
use tessera::auth::{
    claims::{Claims, Role, TokenType},
    keys::{KeyRing, RingSettings},
    store::{MemoryStore, RedisStore, SessionRecord, TokenStore, now_secs},
    tokens::{TokenEngine, TokenSettings},
};
use tokio::runtime::Runtime;
use uuid::Uuid;

const ISSUER: &str = "tessera";
const AUDIENCE: &str = "tessera";
/// TESSERA_ACCESS_TTL's default.
const ACCESS_TTL: i64 = 900;

/// The two signing set-ups the service has: HS256 (`TESSERA_JWT_SECRET`)
/// and EdDSA (`TESSERA_JWT_ED25519_KEY_FILE`).
fn rings() -> Vec<(&'static str, KeyRing)> {
    let secret = SecretString::from("bench-secret-0123456789abcdef0123456789abcdef".to_owned());
    let hs256 = KeyRing::new(RingSettings {
        secret: Some(&secret),
        previous_secrets: &[],
        ed25519_private_pem: None,
        previous_public_pems: &[],
        issuer: ISSUER,
        audience: AUDIENCE,
        leeway_secs: 0,
    })
    .expect("HS256 key ring");
    let pem = SigningKey::from_bytes(&[7; 32])
        .to_pkcs8_pem(LineEnding::LF)
        .expect("Ed25519 PEM")
        .to_string();
    let eddsa = KeyRing::new(RingSettings {
        secret: None,
        previous_secrets: &[],
        ed25519_private_pem: Some(&pem),
        previous_public_pems: &[],
        issuer: ISSUER,
        audience: AUDIENCE,
        leeway_secs: 0,
    })
    .expect("EdDSA key ring");
    vec![("hs256", hs256), ("eddsa", eddsa)]
}

/// A live session, as `TokenEngine::start_session` writes it.
fn session() -> SessionRecord {
    let now = now_secs();
    SessionRecord {
        sid: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        current_jti: Uuid::now_v7(),
        current_iat: now,
        parent_jti: None,
        rotated_ms: None,
        created_at: now,
        last_used_at: now,
        // Long enough for a full run; Redis expires the keys after it.
        expires_at: now + 3600,
        user_agent: Some("bench".into()),
        ip: Some("127.0.0.1".into()),
    }
}

/// Access claims as the engine issues them (`TokenEngine::access_claims`):
/// a fresh jti, the strings copied from the settings.
fn access_claims(issuer: &str, audience: &str, s: &SessionRecord) -> Claims {
    let now = now_secs();
    Claims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: s.user_id,
        iat: now,
        nbf: now,
        exp: (now + ACCESS_TTL).min(s.expires_at),
        jti: Uuid::now_v7(),
        typ: TokenType::Access,
        sid: s.sid,
        role: Some(Role::User),
        fresh: Some(true),
        amr: Some(tessera::auth::claims::Amr::Pwd),
    }
}

fn sign_and_verify(c: &mut Criterion) {
    let s = session();
    for (alg, ring) in rings() {
        c.bench_function(&format!("sign_access/{alg}"), |b| {
            b.iter(|| {
                let claims = access_claims(ISSUER, AUDIENCE, black_box(&s));
                ring.sign(&claims).expect("sign")
            })
        });
        let token = ring
            .sign(&access_claims(ISSUER, AUDIENCE, &s))
            .expect("sign");
        c.bench_function(&format!("verify_access/{alg}"), |b| {
            b.iter(|| {
                ring.verify(black_box(&token), TokenType::Access)
                    .expect("verify")
            })
        });
    }
}

fn engine(store: Arc<dyn TokenStore>) -> TokenEngine {
    let (_, keys) = rings().swap_remove(0);
    TokenEngine {
        cache: None,
        keys,
        store,
        settings: TokenSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            access_ttl: ACCESS_TTL,
            refresh_ttl: 3600,
            reuse_grace_ms: 0,
            max_sessions: 100,
        },
    }
}

/// `check` and `authorize_access` (HS256) against one store, named `kind`.
fn bench_store(c: &mut Criterion, rt: &Runtime, kind: &str, store: Arc<dyn TokenStore>) {
    let s = session();
    rt.block_on(store.start_session(&s, 100))
        .expect("start_session");
    let claims = access_claims(ISSUER, AUDIENCE, &s);
    // References the `async move` blocks copy: a future may not borrow
    // from the closure that makes it.
    let (st, cl) = (&store, &claims);
    c.bench_function(&format!("store_check/{kind}"), |b| {
        b.to_async(rt).iter(|| async move {
            let live = st
                .check(black_box(cl.sid), black_box(cl.jti))
                .await
                .expect("check");
            assert!(live, "the session is live");
        })
    });
    let engine = engine(store.clone());
    let token = engine.keys.sign(&claims).expect("sign");
    let (en, tok) = (&engine, token.as_str());
    c.bench_function(&format!("authorize_access/hs256/{kind}"), |b| {
        b.to_async(rt).iter(|| async move {
            en.authorize_access(black_box(tok))
                .await
                .expect("authorize_access")
        })
    });
    // Leave nothing behind (Redis would expire it after an hour anyway).
    let _ = rt.block_on(store.end_session(s.user_id, s.sid));
}

fn store_check(c: &mut Criterion) {
    // A current-thread runtime: each iteration is one await, and no
    // scheduler hop between threads is measured.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_store(c, &rt, "memory", Arc::new(MemoryStore::new()));
    match std::env::var("TESSERA_BENCH_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let prefix = format!("tessera-bench:{}:", Uuid::new_v4().simple());
            // The connection manager spawns its driver task: in the runtime.
            let redis = {
                let _rt = rt.enter();
                RedisStore::new(url.trim(), &prefix).expect("TESSERA_BENCH_REDIS_URL")
            };
            if let Err(e) = rt.block_on(redis.ping()) {
                panic!("TESSERA_BENCH_REDIS_URL={url}: {e}");
            }
            bench_store(c, &rt, "redis", Arc::new(redis));
        }
        _ => eprintln!(
            "note: TESSERA_BENCH_REDIS_URL is not set: skipping store_check/redis and \
             authorize_access/hs256/redis"
        ),
    }
}

criterion_group!(benches, sign_and_verify, store_check);
criterion_main!(benches);
