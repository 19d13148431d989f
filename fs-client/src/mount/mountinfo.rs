//! What is mounted where: `/proc/self/mountinfo`, mount-point paths, and
//! stale SecureVault mounts.
//!
//! A mount point is compared by its absolute path with symbolic links
//! resolved. A FUSE mount whose daemon died answers every `stat` with
//! `ENOTCONN`, so [`resolve_dir`] resolves the parent and keeps the last
//! component as given instead of resolving the mount point itself.
//!
//! mountinfo escapes space, tab, newline and backslash in paths as octal
//! (`\040`, `\011`, `\012`, `\134`); [`unescape`] undoes that byte-exactly,
//! so paths that are not UTF-8 compare correctly too.
//!
//! A SecureVault mount is recognised by its source (`securevault`, the
//! `FSName` the daemon mounts with) and a `fuse` file-system type.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The source name every SecureVault mount carries.
pub const FS_NAME: &str = "securevault";
/// The FUSE subtype (`fuse.vault` in the mount table).
pub const SUBTYPE: &str = "vault";

/// One line of mountinfo, reduced to what the commands need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The file-system type (`fuse`, `fuse.vault`, `ext4`, ...).
    pub fs_type: String,
    /// The source (`securevault` for ours).
    pub source: String,
}

impl MountEntry {
    /// True for a SecureVault FUSE mount.
    pub fn is_securevault(&self) -> bool {
        self.source == FS_NAME && (self.fs_type == "fuse" || self.fs_type.starts_with("fuse."))
    }
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
pub fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Parses one mountinfo line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // Skip the mount options and the optional fields up to the separator.
    let mut rest = fields.skip(1).skip_while(|f| *f != "-");
    rest.next()?;
    let fs_type = rest.next()?;
    let source = rest.next()?;
    Some(MountEntry {
        mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
        fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
        source: String::from_utf8_lossy(&unescape(source)).into_owned(),
    })
}

/// Parses a whole mountinfo text, skipping lines it does not understand.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// The mounts of this process's mount namespace.
pub fn read() -> io::Result<Vec<MountEntry>> {
    let bytes = std::fs::read("/proc/self/mountinfo")?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// The mount on `dir` (the topmost, when several are stacked).
pub fn find(entries: &[MountEntry], dir: &Path) -> Option<MountEntry> {
    entries.iter().rev().find(|e| e.mount_point == dir).cloned()
}

/// The current mount on `dir`, if any.
pub fn mounted_at(dir: &Path) -> io::Result<Option<MountEntry>> {
    Ok(find(&read()?, dir))
}

/// True when `e` says the FUSE daemon behind a mount is gone (or its
/// connection was aborted through fusectl).
pub fn is_not_connected(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
}

/// True when `dir` is a FUSE mount whose daemon has died.
pub fn is_stale(dir: &Path) -> bool {
    matches!(std::fs::metadata(dir), Err(e) if is_not_connected(&e))
}

/// The absolute path of `dir` with symbolic links resolved. A dead FUSE
/// mount cannot be resolved itself, so then only its parent is.
pub fn resolve_dir(dir: &Path) -> io::Result<PathBuf> {
    match dir.canonicalize() {
        Ok(p) => Ok(p),
        Err(e) if is_not_connected(&e) => {
            let absolute = std::path::absolute(dir)?;
            match (absolute.parent(), absolute.file_name()) {
                (Some(parent), Some(name)) => Ok(parent.canonicalize()?.join(name)),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Detaches the mount on `dir` lazily (`umount2(MNT_DETACH)`, which needs
/// root, else `fusermount3 -uz`, else `umount -l`).
pub fn lazy_unmount(dir: &Path) -> io::Result<()> {
    if nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        return Ok(());
    }
    let mut last = io::Error::other("no unmount helper worked");
    for (program, args) in [
        ("fusermount3", &["-u", "-z", "--"][..]),
        ("umount", &["-l"][..]),
    ] {
        match Command::new(program)
            .args(args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                last = io::Error::other(format!("{program}: {said}"));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Unmounts `dir` normally (fails with `EBUSY` while files are open) with
/// `fusermount3 -u`, else `umount`. It runs in a helper process on
/// purpose: an unmount waits for the kernel to write back dirty pages
/// through the daemon, and a thread of the daemon stuck in that wait would
/// keep the daemon from ever exiting.
pub fn unmount(dir: &Path) -> io::Result<()> {
    let mut last = io::Error::other("no unmount helper worked");
    for (program, args) in [("fusermount3", &["-u", "--"][..]), ("umount", &[][..])] {
        let out = match Command::new(program)
            .args(args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        };
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        if said.contains("busy") {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        last = io::Error::other(format!("{program}: {}", said.trim()));
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
61 22 0:50 / /home/a/my\\040vault rw,nosuid,nodev,relatime shared:30 - fuse.vault securevault rw,user_id=0,group_id=0,default_permissions
62 22 0:51 / /tmp/tab\\011and\\134slash rw - fuse securevault rw,user_id=0
63 22 0:52 / /tmp/other rw - fuse.sshfs host:/x rw
garbage line
";

    #[test]
    fn mountinfo_lines_parse_with_escaped_paths() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 5);
        let proc_entry = entries.first().unwrap();
        assert_eq!(proc_entry.mount_point, PathBuf::from("/proc"));
        assert_eq!(proc_entry.fs_type, "proc");
        assert!(!proc_entry.is_securevault());

        let ours = find(&entries, Path::new("/home/a/my vault")).unwrap();
        assert_eq!(ours.fs_type, "fuse.vault");
        assert_eq!(ours.source, "securevault");
        assert!(ours.is_securevault());

        let odd = find(&entries, Path::new("/tmp/tab\tand\\slash")).unwrap();
        assert!(odd.is_securevault());

        let sshfs = find(&entries, Path::new("/tmp/other")).unwrap();
        assert!(!sshfs.is_securevault());
        assert!(find(&entries, Path::new("/home/a/my\\040vault")).is_none());
    }

    #[test]
    fn unescape_is_byte_exact_and_leaves_other_backslashes() {
        assert_eq!(unescape("a\\040b"), b"a b");
        assert_eq!(unescape("\\012"), b"\n");
        assert_eq!(unescape("x\\377y"), b"x\xffy");
        assert_eq!(unescape("trailing\\"), b"trailing\\");
        assert_eq!(unescape("\\08"), b"\\08");
        assert_eq!(unescape("\\777"), b"\\777");
        let path = PathBuf::from(OsString::from_vec(unescape("/m/\\303\\251t\\303\\251")));
        assert_eq!(path.as_os_str().as_bytes(), "/m/été".as_bytes());
    }

    #[test]
    fn the_topmost_of_stacked_mounts_wins() {
        let text = "\
1 0 0:1 / /m rw - ext4 /dev/a rw
2 1 0:2 / /m rw - fuse.vault securevault rw
";
        let entries = parse(text);
        assert!(find(&entries, Path::new("/m")).unwrap().is_securevault());
    }

    #[test]
    fn this_machine_has_a_root_mount_and_directories_resolve() {
        let entries = read().unwrap();
        assert!(entries.iter().any(|e| e.mount_point == Path::new("/")));
        let tmp = tempfile::tempdir().unwrap();
        let resolved = resolve_dir(tmp.path()).unwrap();
        assert!(resolved.is_absolute());
        assert!(!is_stale(tmp.path()));
        assert!(mounted_at(&resolved).unwrap().is_none());
    }
}
