//! The load generator behind `vault-load` (issue 6: the server under 50
//! concurrent uploading clients, its requests per second, p99 latency and
//! bounded memory).
//!
//! A run has two phases:
//!
//! 1. **Setup** (not measured): one account per simulated client,
//!    registered, verified and logged in through the real flows, the codes
//!    read from the server's mail directory ([`mail`], [`account`]); then
//!    the vault roots. All clients set up concurrently.
//! 2. **Load** (measured): every client starts at the same instant and,
//!    until `--seconds` have passed, writes one small file after another
//!    with the requests a mount makes for it ([`worker`]): create the node,
//!    upload its object, commit. Requests in flight at the deadline finish
//!    and count; the phase lasts until the last one has.
//!
//! [`report`] turns the latencies into percentiles, samples the server's
//! memory from `/proc` when given its pid, and writes the one line on
//! stdout; progress goes to stderr. The generator runs on the same machine
//! as the server (it reads the server's mail directory, and only loopback
//! servers are accepted), so it keeps its own work small: object bodies are
//! generated once, and only names and records are encrypted per file.
//!
//! The modules live under `tests/src/load/` and are compiled only into the
//! `vault-load` binary (`tests/src/bin/vault_load.rs`), not the test
//! harness library.

pub mod account;
pub mod http;
pub mod mail;
pub mod report;
pub mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::task::JoinSet;

use self::account::{Session, SetupContext};
use self::http::Http;
use self::mail::Outbox;
use self::report::{Latency, RssSampler, Summary};
use self::worker::{BodyPool, Measured, Progress, Step};

/// How often a progress line is written during the load phase.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `vault-load`: drives a SecureVault server with concurrent clients that
/// each write small files (create node, upload object, commit), and prints
/// one line of results.
///
/// Prints on stdout, as its last and only line:
///
///   clients=N requests=N req_per_s=F p50_ms=F p99_ms=F max_ms=F errors=N
///   [server_peak_rss_kib=N server_start_rss_kib=N server_max_sampled_rss_kib=N
///   server_load_start_rss_kib=N server_load_max_rss_kib=N server_end_rss_kib=N]
///   files=N files_per_s=F upload_mib_per_s=F seconds=F
///   create_p99_ms=F upload_p99_ms=F commit_p99_ms=F
///
/// (one line; the server_* keys only with --server-pid: VmRSS at the start,
/// its largest 200 ms sample, VmRSS when the load phase starts after setup
/// and its largest sample in that phase, VmRSS at the end, and VmHWM, the
/// kernel's peak over the server's life; setup's logins make the server
/// hash 2 auth keys per client with Argon2, so only the load_* figures are
/// the uploads alone). Progress and errors
/// go to stderr. Exits 0 after a clean run, 1 when any request failed (the
/// line is printed anyway), 2 when setup failed (no line).
///
/// The server must be on this machine (loopback address) and send its mail
/// to a directory this tool can read: with VAULT_SMTP_URL unset, that is
/// `<VAULT_DATA_DIR>/outbox` (a Maildir, with its `new/`, works too). Every
/// client is a new account registered from 127.0.0.1, and the auth
/// endpoints are rate-limited per IP: start the server with, e.g.,
/// VAULT_AUTH_RATE_PER_MINUTE=100000 VAULT_AUTH_BURST=10000, or setup waits
/// out the limits (about a second per client beyond the burst of 20 at the
/// defaults). Each account's quota (VAULT_QUOTA_BYTES, default 10 GiB) must
/// hold what one client uploads in --seconds; runs longer than the access
/// token's lifetime (VAULT_ACCESS_TOKEN_TTL) refresh it.
///
/// Example:
///
///   VAULT_DATA_DIR=/tmp/vd VAULT_LISTEN=127.0.0.1:8080 \
///   VAULT_AUTH_RATE_PER_MINUTE=100000 VAULT_AUTH_BURST=10000 vault-server &
///
///   vault-load --server http://127.0.0.1:8080 --outbox /tmp/vd/outbox \
///   --clients 50 --seconds 20 --server-pid $!
#[derive(Debug, Parser)]
#[command(name = "vault-load", version, verbatim_doc_comment)]
pub struct Options {
    /// The server's base URL (http://127.0.0.1:PORT; loopback only).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The server's mail directory (`<VAULT_DATA_DIR>/outbox`, or a Maildir).
    #[arg(long, value_name = "DIR")]
    pub outbox: PathBuf,
    /// Concurrent simulated clients, one account each.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,
    /// Length of the measured phase in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// Bytes per uploaded object (the default is a 256 KiB file's object).
    #[arg(long, value_name = "BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub object_size: u64,
    /// The server's pid: report its memory (VmRSS, VmHWM) from /proc.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Seconds allowed for setting up all clients.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub setup_timeout: u64,
    /// Seconds allowed for one request.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub request_timeout: u64,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The load phase ran: its summary.
    Ran(Summary),
    /// Setup failed: nothing was measured.
    SetupFailed(anyhow::Error),
}

/// Refuses anything but an `http://` URL of a loopback host: the generator
/// reads the server's mail directory, so the server is on this machine, and
/// a load test must never be aimed at someone else's server.
fn check_server(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--server {url}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "--server {url}: the host must be a loopback address (127.0.0.0/8, [::1] or localhost)"
        );
    }
    Ok(())
}

/// Runs setup and the load phase.
pub async fn run(opts: &Options) -> Outcome {
    let mut sampler = match opts.server_pid.map(RssSampler::start).transpose() {
        Ok(s) => s,
        Err(e) => return Outcome::SetupFailed(e),
    };
    let (sessions, pool) = match set_up_all(opts).await {
        Ok(v) => v,
        Err(e) => return Outcome::SetupFailed(e),
    };
    let clients = sessions.len();
    if let Some(s) = sampler.as_mut() {
        s.load_starts();
    }
    let progress = Arc::new(Progress::default());
    let pool = Arc::new(pool);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    eprintln!(
        "vault-load: {clients} clients writing {}-byte objects for {} s",
        opts.object_size, opts.seconds
    );
    let mut workers = JoinSet::new();
    for mut session in sessions {
        let (pool, progress) = (pool.clone(), progress.clone());
        workers.spawn(async move {
            let res = worker::run(&mut session, &pool, &progress, deadline).await;
            (session.email, res)
        });
    }
    let ticker = tokio::spawn(report_progress(progress.clone(), start));
    let mut measured = Vec::with_capacity(clients);
    let mut fatal = Vec::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((_, Ok(m))) => measured.push(m),
            Ok((email, Err(e))) => fatal.push(format!("{email}: {e:#}")),
            Err(e) => fatal.push(format!("a client task failed: {e}")),
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    let memory = sampler.map(RssSampler::finish);
    for f in &fatal {
        eprintln!("vault-load: client stopped early: {f}");
    }
    let mut summary = summarize(clients, measured, elapsed, memory);
    // A client that had to stop is an error of the run too.
    summary.errors += fatal.len() as u64;
    Outcome::Ran(summary)
}

/// Checks the options and the server, opens the mail directory and sets up
/// every client; also generates the object bodies.
async fn set_up_all(opts: &Options) -> anyhow::Result<(Vec<Session>, BodyPool)> {
    check_server(&opts.server)?;
    let object_size = usize::try_from(opts.object_size).context("--object-size is too large")?;
    let timeout = Duration::from_secs(opts.request_timeout.max(1));
    let probe = Http::new(&opts.server, timeout)?;
    let ready = probe
        .probe("/readyz")
        .await
        .with_context(|| format!("the server at {} does not answer", opts.server))?;
    if ready != 200 {
        bail!(
            "the server at {} is not ready (GET /readyz answered {ready})",
            opts.server
        );
    }
    let outbox = Outbox::open(&opts.outbox)?;
    let pool = BodyPool::generate(object_size)?;

    let setup_start = Instant::now();
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag)?;
    let run_tag = data_encoding::HEXLOWER.encode(&tag);
    let (kdf, keys) = account::shared_keys().await?;
    let cx = Arc::new(SetupContext {
        outbox,
        kdf,
        keys,
        deadline: setup_start + Duration::from_secs(opts.setup_timeout),
        run_tag: run_tag.clone(),
    });
    eprintln!(
        "vault-load: setting up {} accounts (load-{run_tag}-NNN@load.test)",
        opts.clients
    );
    let mut setups = JoinSet::new();
    for i in 0..opts.clients {
        let http = Http::new(&opts.server, timeout)?;
        let index = usize::try_from(i)?;
        let cx = cx.clone();
        setups.spawn(async move { (index, account::set_up(http, index, &cx).await) });
    }
    let mut sessions = Vec::with_capacity(setups.len());
    let limit = Duration::from_secs(opts.setup_timeout);
    while let Some(joined) = tokio::time::timeout_at(cx.deadline.into(), setups.join_next())
        .await
        .with_context(|| format!("setup took longer than {} s", limit.as_secs()))?
    {
        let (index, result) = joined.context("a setup task failed")?;
        sessions.push(result.with_context(|| format!("setting up client {index}"))?);
    }
    eprintln!(
        "vault-load: setup done in {:.1} s",
        setup_start.elapsed().as_secs_f64()
    );
    Ok((sessions, pool))
}

/// Writes a progress line to stderr every [`PROGRESS_EVERY`].
async fn report_progress(progress: Arc<Progress>, start: Instant) {
    let mut last = 0u64;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let requests = progress.requests.load(Ordering::Relaxed);
        eprintln!(
            "vault-load: {:>5.1} s: {requests} requests ({:.0}/s in the last {} s), {} errors",
            start.elapsed().as_secs_f64(),
            (requests - last) as f64 / PROGRESS_EVERY.as_secs_f64(),
            PROGRESS_EVERY.as_secs(),
            progress.errors.load(Ordering::Relaxed),
        );
        last = requests;
    }
}

/// Merges the clients' measurements; writes the per-step breakdown and the
/// first errors to stderr.
fn summarize(
    clients: usize,
    measured: Vec<Measured>,
    elapsed: Duration,
    memory: Option<report::ServerMemory>,
) -> Summary {
    let mut per_step: [Vec<Duration>; 3] = Default::default();
    let (mut errors, mut files, mut uploaded_bytes) = (0, 0, 0);
    let mut first_errors = Vec::new();
    for m in measured {
        for (all, mine) in per_step.iter_mut().zip(m.latencies) {
            all.extend(mine);
        }
        errors += m.errors;
        files += m.files;
        uploaded_bytes += m.uploaded_bytes;
        first_errors.extend(m.first_errors);
    }
    let mut all: Vec<Duration> = per_step.iter().flatten().copied().collect();
    let requests = all.len() as u64;
    let all = Latency::of(&mut all);
    let mut steps = Vec::new();
    for (step, samples) in Step::ALL.iter().zip(per_step.iter_mut()) {
        let l = Latency::of(samples);
        eprintln!(
            "vault-load: {:<6} n={:<7} p50={:>8.2} ms p99={:>8.2} ms max={:>8.2} ms",
            step.name(),
            l.count,
            l.p50_ms,
            l.p99_ms,
            l.max_ms
        );
        steps.push((step.name(), l));
    }
    for e in first_errors.iter().take(10) {
        eprintln!("vault-load: error: {e}");
    }
    Summary {
        clients,
        requests,
        elapsed,
        all,
        errors,
        files,
        uploaded_bytes,
        steps,
        memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_servers_are_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.0.0.2:1/",
            "http://localhost:9000",
            "http://[::1]:8080",
        ] {
            assert!(check_server(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:8080",
            "http://10.0.0.1:8080",
            "http://example.invalid",
            "127.0.0.1:8080",
            "http://[::2]:80",
        ] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_documented_command_line_parses() {
        let o = Options::try_parse_from([
            "vault-load",
            "--server",
            "http://127.0.0.1:1",
            "--outbox",
            "/tmp/o",
            "--clients",
            "50",
            "--seconds",
            "20",
            "--object-size",
            "262144",
            "--server-pid",
            "42",
        ]);
        let o = o
            .ok()
            .filter(|o| o.clients == 50 && o.server_pid == Some(42));
        assert!(o.is_some());
        assert!(Options::try_parse_from(["vault-load", "--server", "x"]).is_err());
    }
}
