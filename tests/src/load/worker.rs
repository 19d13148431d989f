//! One simulated client's load: until the deadline, write one small file
//! after another into its vault's root, with the requests a mount makes for
//! a new file of one chunk:
//!
//! 1. `POST /v1/nodes`: the node, with its entry (keyed name tag, encrypted
//!    name) and a sealed version-1 record (what `create(2)` does);
//! 2. `PUT /v1/objects/{id}`: the object, with `Content-Length` and
//!    `x-vault-sha256` (what the background uploader does);
//! 3. `POST /v1/nodes/{id}/commit`: version 2, its sealed record listing the
//!    object with its digest (the commit that follows).
//!
//! Names and records are real client-side crypto under the account's vault
//! key. Object bodies come from a [`BodyPool`] of random bytes generated
//! once: the server never decrypts an object, it only checks its length and
//! SHA-256, so random bytes are indistinguishable from ciphertext to it,
//! and the generator, sharing the machine with the server, spends no CPU
//! encrypting or hashing during the run.
//!
//! Every request's latency is recorded, failed ones included (they are
//! counted as errors too); after a failure the rest of that file's steps are
//! skipped, and after a transport failure the client pauses briefly so a
//! dead server does not turn the loop into a busy spin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use common::api::Base64;
use common::api::tree::{CommitRequest, CreateNodeRequest, EntrySpec, Kind, NodeInfo, paths};
use common::crypto::attrs::{NodeAttributes, NodeKind, ObjectEntry, Timestamp, seal_attributes};
use common::crypto::content::{ObjectCheck, ObjectDigest, plaintext_len};
use common::crypto::name::{encrypt_name, name_tag};
use common::{NodeId, ObjectId};
use reqwest::Method;

use super::account::{Session, UID};
use super::http::CallError;

/// The most bytes the body pool holds (fewer bodies for large objects).
const POOL_BYTES: usize = 256 << 20;
/// The most distinct bodies in the pool.
const POOL_BODIES: usize = 16;
/// The pause after a request got no answer at all.
const TRANSPORT_PAUSE: Duration = Duration::from_millis(100);
/// How many error messages each client keeps for the report.
const KEPT_ERRORS: usize = 3;

/// The three requests of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST /v1/nodes`.
    Create,
    /// `PUT /v1/objects/{id}`.
    Upload,
    /// `POST /v1/nodes/{id}/commit`.
    Commit,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 3] = [Step::Create, Step::Upload, Step::Commit];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Upload => "upload",
            Step::Commit => "commit",
        }
    }

    fn index(self) -> usize {
        match self {
            Step::Create => 0,
            Step::Upload => 1,
            Step::Commit => 2,
        }
    }
}

/// One object body and its digest.
#[derive(Debug, Clone, Copy)]
pub struct Body {
    /// The bytes (generated once, alive for the whole process).
    pub bytes: &'static [u8],
    /// Their SHA-256.
    pub digest: ObjectDigest,
    /// The same as 64 hex digits (the upload header).
    pub digest_hex: &'static str,
}

/// The object bodies every client uploads in turn.
#[derive(Debug)]
pub struct BodyPool {
    bodies: Vec<Body>,
    /// The plaintext length an object of this size holds (what the sealed
    /// record says).
    plain_len: u64,
}

impl BodyPool {
    /// Generates up to [`POOL_BODIES`] random bodies of `size` bytes.
    ///
    /// # Errors
    ///
    /// When the OS has no randomness.
    pub fn generate(size: usize) -> anyhow::Result<Self> {
        let count = pool_count(size);
        let mut bodies = Vec::with_capacity(count);
        for _ in 0..count {
            let mut bytes = vec![0u8; size];
            getrandom::fill(&mut bytes)?;
            let digest = ObjectDigest::of(&bytes);
            let hex = data_encoding::HEXLOWER.encode(digest.as_bytes());
            // Lives as long as the process: uploads borrow it with no copy.
            bodies.push(Body {
                bytes: Vec::leak(bytes),
                digest,
                digest_hex: String::leak(hex),
            });
        }
        let size64 = size as u64;
        let plain_len = plaintext_len(size64)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(size64);
        Ok(Self { bodies, plain_len })
    }

    fn get(&self, n: u64) -> Option<Body> {
        let len = self.bodies.len() as u64;
        usize::try_from(n.checked_rem(len)?)
            .ok()
            .and_then(|i| self.bodies.get(i).copied())
    }
}

/// How many bodies of `size` bytes the pool holds.
fn pool_count(size: usize) -> usize {
    (POOL_BYTES / size.max(1)).clamp(1, POOL_BODIES)
}

/// Counters every client adds to, for progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests answered (or failed).
    pub requests: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
}

/// What one client measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Latency of every request, per [`Step`] (indexed as [`Step::ALL`]).
    pub latencies: [Vec<Duration>; 3],
    /// Failed requests.
    pub errors: u64,
    /// Files completed (all three steps succeeded).
    pub files: u64,
    /// Object bytes uploaded successfully.
    pub uploaded_bytes: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
}

impl Measured {
    fn record<T>(
        &mut self,
        progress: &Progress,
        step: Step,
        started: Instant,
        result: Result<T, CallError>,
    ) -> Option<T> {
        if let Some(v) = self.latencies.get_mut(step.index()) {
            v.push(started.elapsed());
        }
        progress.requests.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if self.first_errors.len() < KEPT_ERRORS {
                    self.first_errors.push(e.to_string());
                }
                None
            }
        }
    }
}

/// Writes files until `deadline`.
///
/// # Errors
///
/// Only when the client cannot go on at all: its crypto failed, or its
/// session could not be refreshed. Refused or unanswered requests are
/// counted, not returned.
pub async fn run(
    session: &mut Session,
    pool: &BodyPool,
    progress: &Progress,
    deadline: Instant,
) -> anyhow::Result<Measured> {
    let mut m = Measured::default();
    let root = NodeId::ROOT;
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        session.refresh_if_due().await?;
        n += 1;
        let body = pool.get(n).context("the body pool is empty")?;
        let name = format!("load-{n:08}.bin");
        let node = NodeId::random()?;
        let mut attrs = NodeAttributes::new(NodeKind::File, 0o644, UID, UID, Timestamp::now());
        let create = CreateNodeRequest {
            id: node,
            kind: Kind::File,
            record: Base64(seal_attributes(&session.keys.attributes, node, 1, &attrs)?),
            entry: Some(EntrySpec {
                parent: root,
                tag: name_tag(&session.keys.name_tag, root, name.as_bytes())?,
                encrypted_name: Base64(encrypt_name(
                    &session.keys.name_encryption,
                    root,
                    node,
                    name.as_bytes(),
                )?),
            }),
            objects: Vec::new(),
        };
        let t = Instant::now();
        let res: Result<NodeInfo, _> = session
            .http
            .json(
                Method::POST,
                paths::NODES,
                Some(&create),
                Some(&session.access),
            )
            .await;
        let transport = res.as_ref().is_err_and(CallError::is_transport);
        if m.record(progress, Step::Create, t, res).is_none() {
            pause_if(transport).await;
            continue;
        }

        let object = ObjectId::random()?;
        let t = Instant::now();
        let res = session
            .http
            .put_object(&session.access, object, body.bytes, body.digest_hex)
            .await;
        let transport = res.as_ref().is_err_and(CallError::is_transport);
        if m.record(progress, Step::Upload, t, res).is_none() {
            pause_if(transport).await;
            continue;
        }
        m.uploaded_bytes += body.bytes.len() as u64;

        attrs.size = pool.plain_len;
        attrs.objects = vec![ObjectEntry {
            id: object,
            offset: 0,
            len: pool.plain_len,
            check: ObjectCheck::Digest(body.digest),
        }];
        let now = Timestamp::now();
        attrs.mtime = now;
        attrs.ctime = now;
        let commit = CommitRequest {
            expected_version: 1,
            record: Base64(seal_attributes(&session.keys.attributes, node, 2, &attrs)?),
            objects: vec![object],
        };
        let path = paths::NODE_COMMIT.replace("{id}", &node.to_string());
        let t = Instant::now();
        let res: Result<NodeInfo, _> = session
            .http
            .json(Method::POST, &path, Some(&commit), Some(&session.access))
            .await;
        let transport = res.as_ref().is_err_and(CallError::is_transport);
        if m.record(progress, Step::Commit, t, res).is_some() {
            m.files += 1;
        } else {
            pause_if(transport).await;
        }
    }
    Ok(m)
}

async fn pause_if(transport: bool) {
    if transport {
        tokio::time::sleep(TRANSPORT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_pool_is_bounded_and_records_a_valid_plaintext_length() {
        let pool = BodyPool::generate(262_144).unwrap();
        assert_eq!(pool.bodies.len(), POOL_BODIES);
        // 4 segments of 64 KiB less the header and tags.
        assert_eq!(pool.plain_len, 262_144 - 28 - 4 * 16);
        let body = pool.get(17).unwrap();
        assert_eq!(body.bytes.len(), 262_144);
        assert_eq!(body.digest, ObjectDigest::of(body.bytes));
        assert_eq!(body.digest_hex.len(), 64);

        assert_eq!(pool_count(100 << 20), 2);
        assert_eq!(pool_count(1 << 30), 1);
        // Not a possible ciphertext length: the record says the size itself.
        let odd = BodyPool::generate(10).unwrap();
        assert_eq!(odd.plain_len, 10);
    }
}
