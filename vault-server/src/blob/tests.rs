//! One contract suite for [`BlobStore`], run against every backend.
//!
//! Each case takes the store as a trait object (plus a [`Fixture`] that can
//! look behind it for leftovers) and knows nothing of the backend;
//! [`suite!`] runs each one five times:
//! - `file`: a fresh temporary directory;
//! - `sqlite`: `db` on a fresh SQLite file, migrated by [`Store::migrate`];
//! - `mysql`: `db` on a fresh MariaDB/MySQL database `vault_b_<random>`
//!   created through `VAULT_TEST_MYSQL_ADMIN_URL`, migrated, and dropped
//!   afterwards even when the case fails;
//! - `s3`: the bucket `VAULT_TEST_S3_URL` names (a real S3-compatible server
//!   on loopback: `scripts/test.sh` runs `rclone serve s3`), shared by all
//!   cases, each of which uses fresh random owners;
//! - `tiered`: a `file` store with the small objects of batches in SQLite
//!   ([`with_small_in_db`], as the server runs `file:` by default).
//!
//! Without the variable for a service its runs are skipped with a message,
//! or fail when `VAULT_TEST_REQUIRE_SERVICES=1` (as `scripts/test.sh` sets
//! it). Backend-specific cases (file layout, sweeping, the 256 MiB memory
//! bound, `open`) follow the suite.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::ObjectId;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;

use super::*;
use crate::store::{MySqlStore, SqliteStore, Store};

const MIB: usize = 1024 * 1024;
/// S3's one-request limit: larger bodies take the multipart path.
const PART: usize = super::s3::PART_SIZE;
/// A limit no case reaches unless it means to.
const NO_LIMIT: u64 = u64::MAX;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// The store under test, and a way to look behind it.
#[derive(Debug, Clone)]
struct Fixture {
    store: Arc<dyn BlobStore>,
    behind: Behind,
}

#[derive(Debug, Clone)]
enum Behind {
    /// The store's temp directory.
    File(PathBuf),
    Db(DbPool),
    S3(Arc<S3Store>),
    /// A [`TieredStore`]: both.
    Tiered(PathBuf, DbPool),
}

impl Fixture {
    /// What failed or abandoned puts of `owner` left staged.
    async fn leftovers(&self, owner: AccountId) -> usize {
        match &self.behind {
            Behind::File(tmp) => std::fs::read_dir(tmp).unwrap().count(),
            Behind::Tiered(tmp, pool) => {
                std::fs::read_dir(tmp).unwrap().count() + db_leftovers(pool, owner).await
            }
            Behind::Db(pool) => db_leftovers(pool, owner).await,
            Behind::S3(s3) => s3.staged(owner).await.unwrap(),
        }
    }

    /// Waits (boundedly) until nothing of `owner` is staged: cleanup after a
    /// cancelled put runs in a spawned task.
    async fn assert_no_leftovers(&self, owner: AccountId) {
        for _ in 0..100 {
            if self.leftovers(owner).await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} leftovers of failed puts remain in the {} store",
            self.leftovers(owner).await,
            self.store.backend()
        );
    }
}

/// Chunks of `owner` that no object claims.
async fn db_leftovers(pool: &DbPool, owner: AccountId) -> usize {
    const Q: &str = "SELECT COUNT(*) FROM blob_chunks WHERE owner_id = ? AND \
         upload_id NOT IN (SELECT upload_id FROM blob_objects)";
    let (n,): (i64,) = match pool {
        DbPool::Sqlite(p) => sqlx::query_as(Q).bind(owner.0).fetch_one(p).await,
        DbPool::MySql(p) => sqlx::query_as(Q).bind(owner.0).fetch_one(p).await,
    }
    .unwrap();
    usize::try_from(n).unwrap()
}

fn required() -> bool {
    std::env::var("VAULT_TEST_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// The value of a service variable, or `None` after printing a skip line
/// (a panic when services are required).
fn service_var(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                !required(),
                "{var} is not set but VAULT_TEST_REQUIRE_SERVICES=1: start the services with \
                 `scripts/test.sh --services-only` and export the variables it prints"
            );
            eprintln!(
                "blob::tests::{test}: skipped ({var} is not set; `scripts/test.sh --services-only` starts the service)"
            );
            None
        }
    }
}

/// Awaits a spawned test body and re-raises its panic, after `cleanup`.
async fn run_body<Fut>(body: Fut, cleanup: impl Future<Output = ()>)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

async fn run_file<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = open(&format!("file:{}", root.display()), dir.path(), None)
        .await
        .unwrap();
    assert_eq!(store.backend(), "file");
    let fixture = Fixture {
        store,
        behind: Behind::File(root.join(".tmp")),
    };
    run_body(test(fixture), async move { drop(dir) }).await;
}

async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vault.sqlite").display());
    let db = SqliteStore::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let pool = DbPool::from(&db);
    let store = open("db", dir.path(), Some(pool.clone())).await.unwrap();
    assert_eq!(store.backend(), "db");
    let fixture = Fixture {
        store,
        behind: Behind::Db(pool),
    };
    run_body(test(fixture), async move {
        db.close().await;
        drop(dir);
    })
    .await;
}

/// Largest object of a batch the `tiered` runs keep in the database: the
/// suite's batches have objects on both sides of it.
const TIERED_SMALL_MAX: u64 = 2000;

async fn run_tiered<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let url = format!("sqlite://{}", dir.path().join("vault.sqlite").display());
    let db = SqliteStore::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let pool = DbPool::from(&db);
    let main = open(&format!("file:{}", root.display()), dir.path(), None)
        .await
        .unwrap();
    let store = with_small_in_db(main, Some(pool.clone()), TIERED_SMALL_MAX);
    assert_eq!(store.backend(), "file");
    let fixture = Fixture {
        store,
        behind: Behind::Tiered(root.join(".tmp"), pool),
    };
    run_body(test(fixture), async move {
        db.close().await;
        drop(dir);
    })
    .await;
}

/// `admin` (a server URL, possibly with a database and parameters) with
/// its database replaced by `db`.
fn with_database(admin: &str, db: &str) -> String {
    let (base, params) = admin.split_once('?').unwrap_or((admin, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    if params.is_empty() {
        format!("{base}/{db}")
    } else {
        format!("{base}/{db}?{params}")
    }
}

async fn admin_exec(admin: &str, statement: String) {
    let mut conn = sqlx::MySqlConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect with VAULT_TEST_MYSQL_ADMIN_URL: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn run_mysql<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin) = service_var("VAULT_TEST_MYSQL_ADMIN_URL", &format!("mysql::{name}")) else {
        return;
    };
    let db_name = format!("vault_b_{}", hex::encode(random_token().unwrap()));
    admin_exec(
        &admin,
        format!("CREATE DATABASE {db_name} CHARACTER SET utf8mb4"),
    )
    .await;
    let drop_db = {
        let (admin, db_name) = (admin.clone(), db_name.clone());
        async move { admin_exec(&admin, format!("DROP DATABASE IF EXISTS {db_name}")).await }
    };
    let db = match MySqlStore::connect(&with_database(&admin, &db_name)).await {
        Ok(db) => db,
        Err(e) => {
            drop_db.await;
            panic!("cannot connect to the test database: {e}");
        }
    };
    if let Err(e) = db.migrate().await {
        drop_db.await;
        panic!("migrations failed: {e}");
    }
    let pool = DbPool::from(&db);
    let store = match open("db", Path::new("."), Some(pool.clone())).await {
        Ok(store) => store,
        Err(e) => {
            drop_db.await;
            panic!("open failed: {e}");
        }
    };
    let fixture = Fixture {
        store,
        behind: Behind::Db(pool),
    };
    run_body(test(fixture), async move {
        db.close().await;
        drop_db.await;
    })
    .await;
}

async fn run_s3<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = service_var("VAULT_TEST_S3_URL", &format!("s3::{name}")) else {
        return;
    };
    let s3 = Arc::new(S3Store::open(&url).await.unwrap());
    eprintln!(
        "blob::tests::s3::{name}: the server honours If-None-Match: {}",
        s3.conditional_writes()
    );
    // Through `open` too, which sweeps (with the long grace: cases running
    // in parallel keep their staging keys).
    let store = open(&url, Path::new("."), None).await.unwrap();
    assert_eq!(store.backend(), "s3");
    let fixture = Fixture {
        store,
        behind: Behind::S3(s3),
    };
    run_body(test(fixture), async {}).await;
}

/// Runs every listed case on every backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::run_file(super::$case).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::run_sqlite(super::$case).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::run_mysql(stringify!($case), super::$case).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::run_s3(stringify!($case), super::$case).await;
                }
            )*
        }
        mod tiered {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::run_tiered(super::$case).await;
                }
            )*
        }
    };
}

suite![
    round_trips,
    not_found,
    digest_mismatch_leaves_nothing,
    too_large_leaves_nothing,
    broken_body_leaves_nothing,
    cancelled_put_leaves_nothing,
    write_once,
    ranges,
    delete_is_idempotent,
    owners_are_separate_namespaces,
    concurrent_puts_one_wins,
    put_many_stores_each_and_checks_each,
    put_many_of_a_full_batch,
    delete_many_deletes_each_listed_and_nothing_else,
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A fresh owner, so cases sharing one bucket never meet.
fn owner() -> AccountId {
    let [a, b, c, d, e, f, _, _] = random_token().unwrap()[..8].try_into().unwrap();
    // Positive, like real account ids.
    AccountId(i64::from_be_bytes([0, a, b, c, d, e, f, 1]))
}

fn oid() -> ObjectId {
    ObjectId::random().unwrap()
}

/// `len` deterministic pseudo-random bytes (xorshift), different per seed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The CRC-32C the client announces.
fn crc(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

/// A body of `bytes` in pieces of `piece` bytes (odd sizes on purpose, so
/// pieces straddle chunk and part boundaries).
fn body(bytes: &[u8], piece: usize) -> PutBody {
    let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces).boxed()
}

async fn put(
    s: &dyn BlobStore,
    owner: AccountId,
    id: ObjectId,
    bytes: &[u8],
) -> Result<u64, BlobError> {
    s.put(
        owner,
        id,
        body(bytes, 100_003),
        NO_LIMIT,
        Checksum::Crc32c(crc(bytes)),
    )
    .await
}

async fn read(
    s: &dyn BlobStore,
    owner: AccountId,
    id: ObjectId,
    range: Option<Range<u64>>,
) -> Result<(u64, Vec<u8>), BlobError> {
    let (len, stream) = s.get(owner, id, range).await?;
    let pieces: Vec<Bytes> = stream.try_collect().await?;
    Ok((len, pieces.concat()))
}

async fn read_all(s: &dyn BlobStore, owner: AccountId, id: ObjectId) -> Vec<u8> {
    let (len, bytes) = read(s, owner, id, None).await.unwrap();
    assert_eq!(len, bytes.len() as u64);
    bytes
}

fn u(n: usize) -> u64 {
    n as u64
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/// Sizes around every boundary: empty, 1 byte, 1 MiB chunks (db), 5 MiB
/// (several chunks), and past S3's one-request limit (multipart + copy).
async fn round_trips(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    let part = PART;
    for (i, len) in [
        0,
        1,
        MIB - 1,
        MIB,
        MIB + 1,
        5 * MIB,
        part,
        part + 1,
        2 * part + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let id = oid();
        let bytes = data(len, i as u64);
        assert!(!s.exists(a, id).await.unwrap());
        assert_eq!(
            put(s, a, id, &bytes).await.unwrap(),
            u(len),
            "put of {len} bytes"
        );
        assert!(s.exists(a, id).await.unwrap());
        let got = read_all(s, a, id).await;
        assert!(got == bytes, "round trip of {len} bytes differs");
    }
    // Pieces of one byte and of several MiB come out the same.
    for piece in [1, 3 * MIB] {
        let id = oid();
        let bytes = data(if piece == 1 { 4099 } else { 7 * MIB }, 99);
        s.put(
            a,
            id,
            body(&bytes, piece),
            NO_LIMIT,
            Checksum::Sha256(sha(&bytes)),
        )
        .await
        .unwrap();
        assert!(read_all(s, a, id).await == bytes);
    }
    f.assert_no_leftovers(a).await;
}

async fn not_found(f: Fixture) {
    let s = &*f.store;
    let (a, id) = (owner(), oid());
    assert!(matches!(s.get(a, id, None).await, Err(BlobError::NotFound)));
    assert!(matches!(
        s.get(a, id, Some(0..1)).await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        s.get(a, id, Some(0..0)).await,
        Err(BlobError::NotFound)
    ));
    assert!(!s.exists(a, id).await.unwrap());
}

async fn digest_mismatch_leaves_nothing(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    for len in [0, 10, 5 * MIB, PART + 5] {
        let id = oid();
        let bytes = data(len, 1);
        let mut wrong_sha = sha(&bytes);
        wrong_sha[0] ^= 1;
        for wrong in [
            Checksum::Sha256(wrong_sha),
            Checksum::Crc32c(crc(&bytes) ^ 1),
        ] {
            let err = s.put(a, id, body(&bytes, 65_536), NO_LIMIT, wrong).await;
            assert!(
                matches!(err, Err(BlobError::DigestMismatch)),
                "{len} {wrong:?}: {err:?}"
            );
            assert!(!s.exists(a, id).await.unwrap());
        }
        assert!(matches!(s.get(a, id, None).await, Err(BlobError::NotFound)));
        // The name is still free: the right body goes in.
        assert_eq!(put(s, a, id, &bytes).await.unwrap(), u(len));
        assert!(read_all(s, a, id).await == bytes);
    }
    f.assert_no_leftovers(a).await;
}

async fn too_large_leaves_nothing(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    for len in [1, 2 * MIB + 1, PART + 2 * MIB] {
        let bytes = data(len, 2);
        let limit = u(len) - 1;
        let id = oid();
        let err = s
            .put(
                a,
                id,
                body(&bytes, 100_000),
                limit,
                Checksum::Sha256(sha(&bytes)),
            )
            .await;
        assert!(
            matches!(err, Err(BlobError::TooLarge { limit: l }) if l == limit),
            "{len}: {err:?}"
        );
        assert!(!s.exists(a, id).await.unwrap());
        // Exactly at the limit is fine.
        assert_eq!(
            s.put(
                a,
                id,
                body(&bytes, 100_000),
                u(len),
                Checksum::Sha256(sha(&bytes))
            )
            .await
            .unwrap(),
            u(len)
        );
    }
    // The limit stops an endless body: the store does not read it all.
    let endless = futures_util::stream::repeat_with(|| Ok(Bytes::from(vec![7u8; 65_536]))).boxed();
    let id = oid();
    let err = s
        .put(a, id, endless, u(3 * MIB), Checksum::Sha256([0; 32]))
        .await;
    assert!(matches!(err, Err(BlobError::TooLarge { .. })), "{err:?}");
    assert!(!s.exists(a, id).await.unwrap());
    f.assert_no_leftovers(a).await;
}

/// A body that fails after `good` bytes.
fn broken_body(good: usize) -> PutBody {
    let pieces = data(good, 3)
        .chunks(300_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))))
        .collect::<Vec<_>>();
    futures_util::stream::iter(pieces).boxed()
}

async fn broken_body_leaves_nothing(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    for good in [0, 3 * MIB + 5, PART * 2 + 1] {
        let id = oid();
        let err = s
            .put(
                a,
                id,
                broken_body(good),
                NO_LIMIT,
                Checksum::Sha256([0; 32]),
            )
            .await;
        assert!(matches!(err, Err(BlobError::Io(_))), "{good}: {err:?}");
        assert!(!s.exists(a, id).await.unwrap());
    }
    f.assert_no_leftovers(a).await;
}

/// The caller drops a put half-way (the client disconnected and the
/// request's future was dropped): nothing visible, nothing left behind.
async fn cancelled_put_leaves_nothing(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    for good in [2 * MIB + 1, PART * 2 + 1] {
        let id = oid();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let head = futures_util::stream::iter(
            data(good, 4)
                .chunks(256 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        // After the head, tell the test and then never end.
        let tail = futures_util::stream::once(async move {
            let _ = tx.send(());
            futures_util::future::pending::<Result<Bytes, std::io::Error>>().await
        });
        let put = s.put(
            a,
            id,
            head.chain(tail).boxed(),
            NO_LIMIT,
            Checksum::Sha256([0; 32]),
        );
        tokio::select! {
            r = put => panic!("the put ended: {r:?}"),
            _ = rx => {}
        }
        // `put` is dropped here, mid-body.
        assert!(!s.exists(a, id).await.unwrap());
    }
    f.assert_no_leftovers(a).await;
}

async fn write_once(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    for len in [0, 100, 3 * MIB, PART + 1] {
        let id = oid();
        let first = data(len, 5);
        let second = data(len + 1, 6);
        put(s, a, id, &first).await.unwrap();
        for other in [&second, &first] {
            let err = put(s, a, id, other).await;
            assert!(matches!(err, Err(BlobError::Exists)), "{len}: {err:?}");
        }
        assert!(
            read_all(s, a, id).await == first,
            "{len}: the first content changed"
        );
    }
    f.assert_no_leftovers(a).await;
}

fn small(bytes: &[u8]) -> SmallObject {
    SmallObject {
        id: oid(),
        data: Bytes::copy_from_slice(bytes),
        sha256: sha(bytes),
    }
}

/// A batch's objects: all stored and readable; each checked like a `put`
/// (digest, limit, write-once), and what a failed one staged is gone.
async fn put_many_stores_each_and_checks_each(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    let objects: Vec<SmallObject> = (0..40).map(|i| small(&data(i * 97, i as u64))).collect();
    s.put_many(a, &objects, NO_LIMIT).await.unwrap();
    for o in &objects {
        assert!(
            read_all(s, a, o.id).await == o.data,
            "{} bytes",
            o.data.len()
        );
    }
    s.put_many(a, &[], NO_LIMIT).await.unwrap();

    // Each failure is the one `put` gives; the good objects of a failed
    // batch may be visible, and the caller deletes them.
    let again = [small(b"fresh"), objects[3].clone()];
    let err = s.put_many(a, &again, NO_LIMIT).await;
    assert!(matches!(err, Err(BlobError::Exists)), "{err:?}");
    assert!(read_all(s, a, objects[3].id).await == objects[3].data);
    let mut wrong = small(b"tampered");
    wrong.sha256 = sha(b"something else");
    let err = s.put_many(a, std::slice::from_ref(&wrong), NO_LIMIT).await;
    assert!(matches!(err, Err(BlobError::DigestMismatch)), "{err:?}");
    assert!(!s.exists(a, wrong.id).await.unwrap());
    let big = small(&data(100, 9));
    let err = s.put_many(a, std::slice::from_ref(&big), 99).await;
    assert!(
        matches!(err, Err(BlobError::TooLarge { limit: 99 })),
        "{err:?}"
    );
    assert!(!s.exists(a, big.id).await.unwrap());
    s.delete(a, again[0].id).await.unwrap();
    f.assert_no_leftovers(a).await;
}

async fn delete_many_deletes_each_listed_and_nothing_else(f: Fixture) {
    let s = &*f.store;
    let (a, b) = (owner(), owner());
    let smalls: Vec<SmallObject> = (0..5)
        .map(|i| small(&data(500 + i * 31, i as u64)))
        .collect();
    s.put_many(a, &smalls, NO_LIMIT).await.unwrap();
    // A big one (several chunks; the configured store for the tiered one).
    let big_id = oid();
    let big = data(2 * MIB + 3, 40);
    put(s, a, big_id, &big).await.unwrap();
    // B's object under the id of one of A's that stays.
    let shared = smalls[4].id;
    put(s, b, shared, &data(700, 41)).await.unwrap();
    assert!(s.delete_many(&[]).await.is_empty());
    let listed = [
        (a, smalls[0].id),
        (a, big_id),
        (a, oid()), // never existed: no error
        (a, smalls[2].id),
        (b, shared),
    ];
    let results = s.delete_many(&listed).await;
    assert_eq!(results.len(), listed.len());
    for (res, (who, id)) in results.iter().zip(&listed) {
        assert!(res.is_ok(), "{res:?}");
        assert!(!s.exists(*who, *id).await.unwrap());
    }
    // What was not listed is untouched, A's object under B's id too.
    for o in [&smalls[1], &smalls[3], &smalls[4]] {
        assert!(read_all(s, a, o.id).await == o.data);
    }
    // Again: all gone already, still no error.
    assert!(s.delete_many(&listed).await.iter().all(Result::is_ok));
    let rest: Vec<_> = [1, 3, 4].iter().map(|&i| (a, smalls[i].id)).collect();
    assert!(s.delete_many(&rest).await.iter().all(Result::is_ok));
    f.assert_no_leftovers(a).await;
    f.assert_no_leftovers(b).await;
}

/// A full batch: more objects and more bytes than one statement of the
/// database store carries, all stored.
async fn put_many_of_a_full_batch(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    let objects: Vec<SmallObject> = (0..300)
        .map(|i| small(&data(if i % 2 == 0 { 8 * 1024 } else { 1500 }, i)))
        .collect();
    s.put_many(a, &objects, NO_LIMIT).await.unwrap();
    for o in &objects {
        assert!(read_all(s, a, o.id).await == o.data);
    }
    f.assert_no_leftovers(a).await;
}

async fn ranges(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    let len = 3 * MIB + 12_345;
    let bytes = data(len, 7);
    let id = oid();
    put(s, a, id, &bytes).await.unwrap();
    let n = u(len);
    let m = u(MIB);
    let cases: Vec<Range<u64>> = vec![
        0..1,
        0..10,
        5..6,
        1000..200_000,
        m - 1..m + 1,       // across a chunk boundary
        m - 10..2 * m + 10, // across two
        m..2 * m,           // exactly one chunk
        2 * m..n,           // to the end
        n - 1..n,           // the last byte
        0..n,               // all of it
        n - 5..n + 100,     // past the end: clamped
        7..u64::MAX,        // open-ended
    ];
    for r in cases {
        let (total, got) = read(s, a, id, Some(r.clone()))
            .await
            .unwrap_or_else(|e| panic!("range {r:?}: {e}"));
        assert_eq!(total, n, "{r:?}");
        let end = usize::try_from(r.end.min(n)).unwrap();
        let start = usize::try_from(r.start).unwrap();
        assert!(got == bytes[start..end], "range {r:?} differs");
    }
    // Empty ranges: anywhere up to the end.
    for at in [0, 17, m, n] {
        let (total, got) = read(s, a, id, Some(at..at)).await.unwrap();
        assert_eq!((total, got.len()), (n, 0), "{at}..{at}");
    }
    // Starting at the end: empty.
    let (_, got) = read(s, a, id, Some(n..n + 10)).await.unwrap();
    assert!(got.is_empty());
    // Starting past the end, or backwards: not satisfiable.
    #[allow(clippy::reversed_empty_ranges)]
    for r in [n + 1..n + 2, n + 1..n + 1, u64::MAX - 1..u64::MAX, 10..5] {
        let err = s.get(a, id, Some(r.clone())).await.err();
        assert!(
            matches!(err, Some(BlobError::RangeNotSatisfiable { len }) if len == n),
            "{r:?}: {err:?}"
        );
    }
    // An empty object: only empty ranges at 0.
    let empty = oid();
    put(s, a, empty, b"").await.unwrap();
    assert_eq!(read(s, a, empty, Some(0..0)).await.unwrap(), (0, vec![]));
    assert_eq!(read(s, a, empty, Some(0..5)).await.unwrap(), (0, vec![]));
    assert!(matches!(
        s.get(a, empty, Some(1..2)).await.err(),
        Some(BlobError::RangeNotSatisfiable { len: 0 })
    ));
}

async fn delete_is_idempotent(f: Fixture) {
    let s = &*f.store;
    let a = owner();
    let id = oid();
    s.delete(a, id).await.unwrap(); // never existed
    let bytes = data(2 * MIB + 1, 8);
    put(s, a, id, &bytes).await.unwrap();
    s.delete(a, id).await.unwrap();
    assert!(!s.exists(a, id).await.unwrap());
    assert!(matches!(s.get(a, id, None).await, Err(BlobError::NotFound)));
    s.delete(a, id).await.unwrap();
    // The name can be used again after a delete.
    let again = data(100, 9);
    put(s, a, id, &again).await.unwrap();
    assert!(read_all(s, a, id).await == again);
    f.assert_no_leftovers(a).await;
}

async fn owners_are_separate_namespaces(f: Fixture) {
    let s = &*f.store;
    let (a, b) = (owner(), owner());
    let id = oid();
    let for_a = data(1000, 10);
    let for_b = data(2000, 11);
    put(s, a, id, &for_a).await.unwrap();
    // B does not see A's object...
    assert!(!s.exists(b, id).await.unwrap());
    assert!(matches!(s.get(b, id, None).await, Err(BlobError::NotFound)));
    assert!(matches!(
        s.get(b, id, Some(0..1)).await,
        Err(BlobError::NotFound)
    ));
    // ...cannot delete it...
    s.delete(b, id).await.unwrap();
    assert!(s.exists(a, id).await.unwrap());
    // ...and has its own object under the same id.
    put(s, b, id, &for_b).await.unwrap();
    assert!(read_all(s, a, id).await == for_a);
    assert!(read_all(s, b, id).await == for_b);
    s.delete(a, id).await.unwrap();
    assert!(!s.exists(a, id).await.unwrap());
    assert!(read_all(s, b, id).await == for_b);
}

async fn concurrent_puts_one_wins(f: Fixture) {
    const WRITERS: usize = 4;
    let a = owner();
    for len in [1000, 2 * MIB + 3, PART + 3] {
        let id = oid();
        let bodies: Vec<Vec<u8>> = (0..WRITERS).map(|i| data(len, 100 + i as u64)).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = bodies
            .iter()
            .cloned()
            .map(|bytes| {
                let (store, barrier) = (f.store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    put(&*store, a, id, &bytes).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(n) => {
                    assert_eq!(n, u(len));
                    winners.push(i);
                }
                Err(BlobError::Exists) => {}
                Err(e) => panic!("{len}: writer {i} failed with {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{len}: winners {winners:?}");
        let got = read_all(&*f.store, a, id).await;
        assert!(
            got == bodies[winners[0]],
            "{len}: the object is not the winner's body"
        );
    }
    f.assert_no_leftovers(a).await;
}

// ---------------------------------------------------------------------------
// Backend-specific cases
// ---------------------------------------------------------------------------

use std::ops::Range;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

#[tokio::test]
async fn file_layout_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = FileStore::open(&root).await.unwrap();
    let id: ObjectId = "ab0123456789abcdef0123456789abcd".parse().unwrap();
    let owner = AccountId(42);
    put(&store, owner, id, b"hello").await.unwrap();
    let path = root.join("42").join("ab").join(id.to_string());
    assert_eq!(store.object_path(owner, id), path);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    for d in [
        &root,
        &root.join(".tmp"),
        &root.join("42"),
        &root.join("42/ab"),
    ] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    // The temp file is gone once the object is in place.
    assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
    // The same for objects stored together, in a directory made for them.
    let many: ObjectId = "cd0123456789abcdef0123456789abcd".parse().unwrap();
    let object = SmallObject {
        id: many,
        data: Bytes::from_static(b"batched"),
        sha256: sha(b"batched"),
    };
    store.put_many(owner, &[object], NO_LIMIT).await.unwrap();
    let path = root.join("42").join("cd").join(many.to_string());
    assert_eq!(std::fs::read(&path).unwrap(), b"batched");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&root.join("42/cd")), 0o700);
    assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
}

/// The tiered store puts a batch's small objects in the database and the
/// rest in files, keeps names write-once across both, and reads, deletes
/// and sweeps both.
#[tokio::test]
async fn tiered_keeps_small_batch_objects_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let url = format!("sqlite://{}", dir.path().join("v.sqlite").display());
    let db = SqliteStore::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let pool = DbPool::from(&db);
    let main = Arc::new(FileStore::open(&root).await.unwrap());
    let s = with_small_in_db(main.clone(), Some(pool.clone()), 100);
    let rows = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM blob_objects")
            .fetch_one(db.pool())
            .await
            .unwrap();
        n
    };
    let a = AccountId(7);
    let tiny = small(&data(100, 1));
    let larger = small(&data(101, 2));
    s.put_many(a, &[tiny.clone(), larger.clone()], NO_LIMIT)
        .await
        .unwrap();
    assert_eq!(rows().await, 1, "the 100-byte object is a row");
    assert!(!main.object_path(a, tiny.id).exists());
    assert!(
        main.object_path(a, larger.id).is_file(),
        "101 bytes: a file"
    );
    for o in [&tiny, &larger] {
        assert!(read_all(&*s, a, o.id).await == o.data);
        assert!(s.exists(a, o.id).await.unwrap());
    }
    let (len, part) = s.get(a, tiny.id, Some(10..20)).await.unwrap();
    assert_eq!(len, 100);
    let part: Vec<Bytes> = part.try_collect().await.unwrap();
    assert_eq!(part.concat(), &tiny.data[10..20]);

    // Write-once across the tiers, both ways.
    let err = put(&*s, a, tiny.id, b"other").await;
    assert!(matches!(err, Err(BlobError::Exists)), "{err:?}");
    let streamed = oid();
    put(&*s, a, streamed, b"streamed").await.unwrap();
    assert!(
        main.object_path(a, streamed).is_file(),
        "a put goes to the files"
    );
    let mut again = small(b"tiny again");
    again.id = streamed;
    let err = s.put_many(a, &[again], NO_LIMIT).await;
    assert!(matches!(err, Err(BlobError::Exists)), "{err:?}");
    assert!(read_all(&*s, a, streamed).await == b"streamed".as_slice());
    assert_eq!(rows().await, 1, "the refused batch left no row");

    // Deletes find either tier; a second delete is a no-op.
    for id in [tiny.id, larger.id, streamed] {
        s.delete(a, id).await.unwrap();
        s.delete(a, id).await.unwrap();
        assert!(!s.exists(a, id).await.unwrap());
        assert!(matches!(
            s.get(a, id, None).await.err(),
            Some(BlobError::NotFound)
        ));
    }
    assert_eq!(rows().await, 0);
    let (chunks,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM blob_chunks")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(chunks, 0, "a deleted object's chunks are gone");

    // A read of known size looks in the likely tier first, and finds
    // objects in the other as well.
    let kept = small(&data(50, 3));
    let big = small(&data(300, 4));
    s.put_many(a, &[kept.clone(), big.clone()], NO_LIMIT)
        .await
        .unwrap();
    for o in [&kept, &big] {
        for hint in [o.size(), 1, 1 << 30] {
            let (len, got) = s.get_sized(a, o.id, None, hint).await.unwrap();
            let got: Vec<Bytes> = got.try_collect().await.unwrap();
            assert_eq!(
                (len, got.concat()),
                (o.size(), o.data.to_vec()),
                "hint {hint}"
            );
        }
    }
    assert!(matches!(
        s.get_sized(a, oid(), None, 1 << 30).await.err(),
        Some(BlobError::NotFound)
    ));

    // Off: no database, or the database is the store already; with 0 bytes
    // nothing new goes to the database, and what is there stays readable.
    assert_eq!(with_small_in_db(main.clone(), None, 100).backend(), "file");
    let off = with_small_in_db(main.clone(), Some(pool.clone()), 0);
    let o = small(b"x");
    let empty = small(b"");
    off.put_many(a, &[o.clone(), empty.clone()], NO_LIMIT)
        .await
        .unwrap();
    assert!(main.object_path(a, o.id).is_file());
    assert!(
        main.object_path(a, empty.id).is_file(),
        "not even empty ones"
    );
    assert_eq!(rows().await, 1, "only the earlier row");
    assert!(read_all(&*off, a, kept.id).await == kept.data);
    let (_, got) = off.get_sized(a, kept.id, None, kept.size()).await.unwrap();
    let got: Vec<Bytes> = got.try_collect().await.unwrap();
    assert_eq!(got.concat(), kept.data.to_vec());
    off.delete(a, kept.id).await.unwrap();
    assert_eq!(rows().await, 0, "and deletable");
    db.close().await;
}

#[tokio::test]
async fn file_open_sweeps_only_old_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    FileStore::open(&root).await.unwrap();
    let tmp = root.join(".tmp");
    let old = tmp.join("1-old");
    let fresh = tmp.join("1-fresh");
    std::fs::write(&old, b"x").unwrap();
    std::fs::write(&fresh, b"y").unwrap();
    let long_ago = std::time::SystemTime::now() - SWEEP_GRACE - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    open(&format!("file:{}", root.display()), dir.path(), None)
        .await
        .unwrap();
    assert!(!old.exists(), "the old temp file was not swept");
    assert!(fresh.exists(), "a temp file within the grace was swept");
}

#[tokio::test]
async fn db_sweep_removes_only_old_unclaimed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v.sqlite").display());
    let db = SqliteStore::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let store = DbStore::new(DbPool::from(&db));
    let a = AccountId(1);
    let kept = oid();
    let bytes = data(MIB + 1, 12);
    put(&store, a, kept, &bytes).await.unwrap();
    // Leftovers of two crashed uploads: one old, one recent.
    for (upload, staged_at) in [([1u8; 16], 1_000i64), ([2u8; 16], i64::MAX / 2)] {
        sqlx::query(
            "INSERT INTO blob_chunks (owner_id, object_id, upload_id, idx, data, staged_at) \
             VALUES (1, ?, ?, 0, x'00', ?)",
        )
        .bind(oid().as_bytes().as_slice())
        .bind(upload.as_slice())
        .bind(staged_at)
        .execute(db.pool())
        .await
        .unwrap();
    }
    // The committed object's chunks are old too, but claimed.
    assert_eq!(store.sweep(Duration::from_secs(60)).await.unwrap(), 1);
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM blob_chunks")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        left,
        2 + 1,
        "two chunks of the object and the recent leftover"
    );
    assert!(read_all(&store, a, kept).await == bytes);
    db.close().await;
}

#[tokio::test]
async fn open_checks_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "ftp://x", "dbx", "s3://B"] {
        assert!(
            matches!(open(bad, dir.path(), None).await, Err(BlobError::Config(_))),
            "{bad:?} was accepted"
        );
    }
    assert!(matches!(
        open("db", dir.path(), None).await,
        Err(BlobError::Config(_))
    ));
    // A bare `file:` is `<data dir>/objects`.
    let store = open("file:", dir.path(), None).await.unwrap();
    put(&*store, AccountId(1), oid(), b"x").await.unwrap();
    assert!(dir.path().join("objects/1").is_dir());
}

/// Puts of one name from separate instances (as from two servers sharing a
/// bucket): only the server's conditional writes can keep them write-once,
/// so this runs only where the server honours `If-None-Match`.
#[tokio::test(flavor = "multi_thread")]
async fn s3_instances_race_one_wins() {
    let Some(url) = service_var("VAULT_TEST_S3_URL", "s3_instances_race_one_wins") else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(S3Store::open(&url).await.unwrap()));
    }
    if !stores.iter().all(|s| s.conditional_writes()) {
        eprintln!(
            "blob::tests::s3_instances_race_one_wins: skipped (the server ignores \
             If-None-Match: write-once holds within one instance only)"
        );
        return;
    }
    let a = owner();
    for len in [1000, PART + 3] {
        let id = oid();
        let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
        let tasks: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, barrier) = (store.clone(), barrier.clone());
                let bytes = data(len, 200 + i as u64);
                tokio::spawn(async move {
                    barrier.wait().await;
                    put(&*store, a, id, &bytes).await.map(|_| bytes)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(bytes) => winners.push(bytes),
                Err(BlobError::Exists) => {}
                Err(e) => panic!("{len}: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{len}: {} winners", winners.len());
        assert!(read_all(&*stores[0], a, id).await == winners[0]);
    }
}

#[test]
fn range_resolution() {
    assert_eq!(resolve_range(None, 10).unwrap(), 0..10);
    assert_eq!(resolve_range(Some(2..5), 10).unwrap(), 2..5);
    assert_eq!(resolve_range(Some(2..50), 10).unwrap(), 2..10);
    assert_eq!(resolve_range(Some(10..10), 10).unwrap(), 10..10);
    assert_eq!(resolve_range(Some(10..20), 10).unwrap(), 10..10);
    assert!(resolve_range(Some(11..20), 10).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = Some(5..4);
    assert!(resolve_range(backwards, 10).is_err());
}

// ---------------------------------------------------------------------------
// Memory bound: 256 MiB through the file store
// ---------------------------------------------------------------------------

/// The process's resident set, in bytes (`VmRSS` of /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

const RSS_OBJECT: usize = 256 * MIB;
const RSS_BOUND: u64 = 64 * MIB as u64;
const RSS_PROBE_VAR: &str = "VAULT_TEST_BLOB_RSS_PROBE";

/// Streams a 256 MiB object through `put` and `get` of the file store and
/// checks that the resident set never grows by 64 MiB or more. The
/// measurement runs in a child process running only [`rss_probe`], so
/// the other tests' allocations cannot blur it.
#[test]
fn streaming_256_mib_keeps_rss_bounded() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "blob::tests::rss_probe",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RSS_PROBE_VAR, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the RSS probe failed");
    assert!(
        stdout.contains("rss_probe: measured") || stderr.contains("rss_probe: measured"),
        "the RSS probe did not run"
    );
}

/// The child half of [`streaming_256_mib_keeps_rss_bounded`]; does nothing
/// unless started by it.
#[test]
fn rss_probe() {
    if std::env::var_os(RSS_PROBE_VAR).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("objects")).await.unwrap();
        // The body: 64 KiB slices of one shared 1 MiB block, made as the
        // store pulls them (the test itself holds 1 MiB).
        let block = Bytes::from(data(MIB, 13));
        let pieces = move || {
            let block = block.clone();
            (0..RSS_OBJECT / (64 * 1024)).map(move |i| {
                let at = (i * 64 * 1024) % MIB;
                block.slice(at..at + 64 * 1024)
            })
        };
        let mut hasher = Sha256::new();
        for piece in pieces() {
            hasher.update(&piece);
        }
        let digest: [u8; 32] = hasher.finalize().into();

        let base = rss();
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(base));
        let sample = {
            let peak = peak.clone();
            move || {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
            }
        };
        let sample_put = sample.clone();
        let body = futures_util::stream::iter(pieces().enumerate())
            .map(move |(i, piece)| {
                if i % 64 == 0 {
                    sample_put();
                }
                Ok(piece)
            })
            .boxed();
        let (a, id) = (AccountId(1), oid());
        let len = store
            .put(a, id, body, u(RSS_OBJECT), Checksum::Sha256(digest))
            .await
            .unwrap();
        assert_eq!(len, u(RSS_OBJECT));
        sample();

        let (total, mut stream) = store.get(a, id, None).await.unwrap();
        assert_eq!(total, u(RSS_OBJECT));
        let mut hasher = Sha256::new();
        let (mut read, mut next_sample) = (0usize, 0usize);
        while let Some(piece) = stream.try_next().await.unwrap() {
            hasher.update(&piece);
            read += piece.len();
            if read >= next_sample {
                sample();
                next_sample += 4 * MIB;
            }
        }
        assert_eq!(read, RSS_OBJECT);
        assert_eq!(<[u8; 32]>::from(hasher.finalize()), digest);
        sample();

        let end = rss();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        let growth = peak.saturating_sub(base);
        println!(
            "rss_probe: measured VmRSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB: \
             peak growth {:.1} MiB while streaming {} MiB through put and get",
            base as f64 / MIB as f64,
            peak as f64 / MIB as f64,
            end as f64 / MIB as f64,
            growth as f64 / MIB as f64,
            RSS_OBJECT / MIB,
        );
        assert!(
            growth < RSS_BOUND,
            "RSS grew by {growth} bytes (bound {RSS_BOUND})"
        );
    });
}
