//! Login answers take as long for an unknown address as for a known one, so
//! timing does not tell whether an address has an account.
//!
//! Its own test binary, and one test for both backends, so no other test of
//! this suite runs beside it and skews the clock. Each known/unknown pair is
//! measured back to back and the median of the pairs' ratios is compared, so
//! a slow moment affects both sides alike; a real leak (a second Argon2 run
//! for unknown addresses measured ~1.7) fails every attempt, noise does not.

use std::time::Instant;

use tests::account::unique_email;
use tests::{Backend, TestAccount, TestServer};

const PAIRS: usize = 21;
const ATTEMPTS: usize = 3;

async fn median_ratio(srv: &TestServer) -> f64 {
    // One wrong-password attempt per address, so no back-off interferes:
    // registered (unverified is enough) addresses vs unknown ones.
    let mut known = Vec::new();
    for _ in 0..PAIRS {
        let a = TestAccount::new("timing").await;
        srv.register(&a).await;
        known.push(a.email);
    }
    let key = [0x5a; 32];
    srv.api
        .login(&unique_email("warmup"), &key)
        .await
        .expect(401);
    let mut ratios = Vec::new();
    for email in &known {
        let start = Instant::now();
        srv.api.login(email, &key).await.expect(401);
        let k = start.elapsed();
        let start = Instant::now();
        srv.api
            .login(&unique_email("timing-nobody"), &key)
            .await
            .expect(401);
        let u = start.elapsed();
        ratios.push(u.as_secs_f64() / k.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    ratios.get(PAIRS / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn login_takes_as_long_for_an_unknown_address() {
    for backend in [Backend::Sqlite, Backend::MariaDb] {
        let Some(srv) = TestServer::start(backend).await else {
            continue;
        };
        let mut seen = Vec::new();
        for _ in 0..ATTEMPTS {
            let ratio = median_ratio(&srv).await;
            seen.push(ratio);
            if (0.75..1.33).contains(&ratio) {
                break;
            }
        }
        let last = *seen.last().unwrap();
        assert!(
            (0.75..1.33).contains(&last),
            "{backend:?}: median time ratio unknown/known address in {ATTEMPTS} attempts: {seen:.2?}: \
             the answer's timing tells whether an address has an account"
        );
    }
}
