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
//! adjusting it.

/// Every allocation of at least this many bytes is mapped on its own and
/// returned to the system when freed.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Applies [`MMAP_THRESHOLD`]. Call it once, first thing in `main`, before
/// any thread starts. Returns false where it does not apply (not glibc) or
/// glibc refused it.
pub fn bound_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(threshold) = libc::c_int::try_from(MMAP_THRESHOLD) else {
            return false;
        };
        // SAFETY: mallopt only changes a glibc malloc parameter; it takes
        // plain integers and touches no memory of ours.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        ok == 1
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
    fn glibc_takes_the_threshold() {
        // glibc answers 1 when it accepted the value, 0 when not (above
        // its 32 MiB maximum, for one): the call is really made.
        assert_eq!(
            bound_allocator(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
