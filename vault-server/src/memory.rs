//! The allocator setting that keeps the server's memory bounded.
//!
//! glibc serves an allocation from its heaps unless it is above the mmap
//! threshold, and that threshold rises (up to 32 MiB) each time a large
//! mmapped block is freed. After the first Argon2id hash (19 MiB) or object
//! buffer (4 MiB) was freed, later ones came from the heaps of whichever
//! threads ran them, and the freed memory stayed there. vault-load's 50
//! clients registering and logging in left the server at 410-546 MiB RSS
//! before a single upload. A fixed 4 MiB threshold maps and unmaps every
//! large block: the same run peaks at 60 MiB with unchanged requests/s
//! (issue 6). Setting the threshold explicitly also stops glibc from
//! adjusting it, and so the trim threshold too.
//!
//! That left the trim threshold at its 128 KiB default: every heap handed
//! back its free top as soon as it passed 128 KiB, and the next allocation
//! faulted the pages in and zeroed them again. A cold read of 1 GiB sends
//! it in 256 KiB `pread` buffers, one after another, and the server's page
//! faults (fault entry, page clearing, memcg charging) were about 7% of the
//! whole machine's CPU in `scripts/bench.sh --workloads seq`. A heap now
//! keeps up to [`TRIM_THRESHOLD`] free at its top, and there are at most
//! [`ARENAS`] heaps (glibc's default is 8 per core, one per thread that
//! allocates), so what stays mapped but free is bounded at
//! `ARENAS * TRIM_THRESHOLD`.

/// Every allocation of at least this many bytes is mapped on its own and
/// returned to the system when freed.
pub const MMAP_THRESHOLD: usize = 4 << 20;
/// Free memory a heap keeps at its top instead of returning it.
pub const TRIM_THRESHOLD: usize = 8 << 20;
/// At most this many malloc heaps (arenas).
pub const ARENAS: usize = 2;

/// Applies [`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`] and [`ARENAS`]. Call it
/// once, first thing in `main`, before any thread starts. Returns false
/// where it does not apply (not glibc) or glibc refused a setting.
pub fn bound_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut all = true;
        for (param, value) in [
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (libc::M_ARENA_MAX, ARENAS),
        ] {
            let Ok(value) = libc::c_int::try_from(value) else {
                return false;
            };
            // SAFETY: mallopt only changes a glibc malloc parameter; it
            // takes plain integers and touches no memory of ours.
            #[allow(unsafe_code)]
            let ok = unsafe { libc::mallopt(param, value) };
            all &= ok == 1;
        }
        all
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_settings() {
        // glibc answers 1 when it accepted the value, 0 when not (above
        // its 32 MiB maximum, for one): the call is really made.
        assert_eq!(
            bound_allocator(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
