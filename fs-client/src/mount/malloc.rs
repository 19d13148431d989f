//! glibc malloc settings for a mounting process, applied once at start,
//! before any thread exists.
//!
//! The daemon streams data as 64 KiB plaintext segments and 4 MiB
//! ciphertext chunks, allocated on one thread (a tokio worker, the blocking
//! pool) and freed on another when the memory cache evicts them. Left to
//! its defaults glibc makes this cost far more memory than the cache holds:
//! every thread that allocates gets its own arena (up to 8 per core), each
//! keeping its freed blocks, and the mmap threshold rises to 4 MiB after
//! the first chunk is freed, so chunks land in those arenas too. Measured
//! with `scripts/bench.sh --workloads seq` (1 GiB written and read back
//! cold, 64 MiB memory cache), the daemon's peak RSS was 146–181 MiB with
//! the defaults and 118–123 MiB with two arenas and a fixed 1 MiB
//! threshold; reading a 10 GiB file, 267 MiB before and 116–145 MiB with
//! the same settings given through the environment.
//!
//! A fixed threshold also turns off glibc's dynamic adjustment of it. The
//! values only tune the allocator; nothing depends on them for
//! correctness, and a libc other than glibc keeps its own behaviour.
#![allow(unsafe_code)]

/// At most this many malloc arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;
/// Blocks from this size up are mapped on their own and returned to the
/// system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1024 * 1024;

/// Applies the settings; false if glibc refused one (its default stays).
/// Call before starting threads.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut all = true;
        for (param, value) in [
            (libc::M_ARENA_MAX, ARENAS),
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ] {
            // SAFETY: mallopt only changes allocator parameters, takes the
            // allocator's own lock, and is given parameters and values
            // glibc documents.
            all &= unsafe { libc::mallopt(param, value) } == 1;
        }
        all
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        assert!(super::tune());
    }
}
