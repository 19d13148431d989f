#!/usr/bin/env python3
"""Deterministic input data for scripts/bench.sh.

Every byte comes from Python's Mersenne Twister seeded with a fixed number,
so every machine benchmarks the same trees and files (the tarball's SHA-256
is printed into the results to show it). Standard library only.

  gen-data.py tree OUT.tar MANIFEST FILES   a source-like tree of FILES files
                                            (dirs of 5-40 entries, up to 6
                                            deep, text sizes ~ log-normal,
                                            median 3 KiB), written as a tar
                                            with fixed owners and times
  gen-data.py small DIR MANIFEST FILES SIZE FILES files of SIZE random bytes,
                                            all in DIR (one big directory)
  gen-data.py blobs DIR MANIFEST MIB        about MIB MiB of incompressible
                                            files of 256 KiB to 8 MiB

MANIFEST is in `sha256sum -c` format, paths relative to the tree's root.
"""

import hashlib
import io
import os
import random
import sys
import tarfile

MTIME = 1_700_000_000  # fixed: the tar is byte-for-byte the same everywhere

WORDS = (
    "fn let mut pub struct impl enum match if else for while loop return self "
    "Some None Ok Err use mod crate super async await where trait type const "
    "static unsafe move ref as in dyn Box Vec String Option Result u8 u32 u64 "
    "usize i64 bool true false buffer offset length chunk segment node inode "
    "parent child entry record version object cache journal upload commit key "
    "nonce seal open read write flush sync rename unlink mkdir rmdir attr size "
    "error context state handle request response server client token session"
).split()


def text_pool(rng, size):
    """About SIZE bytes of code-like text, lines of 0-12 words, indented."""
    out = []
    total = 0
    while total < size:
        indent = "    " * rng.randrange(0, 4)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 13)))
        line = line.rstrip() + ("; " if rng.random() < 0.3 else "") + "\n"
        out.append(line)
        total += len(line)
    return "".join(out).encode()


def write_manifest(path, entries):
    with open(path, "w", encoding="utf-8") as f:
        for name, digest in entries:
            f.write(f"{digest}  {name}\n")


def tree_layout(rng, files):
    """Directory paths and file paths of a source-like tree with FILES files."""
    exts = [".rs", ".c", ".h", ".py", ".md", ".txt", ".toml", ".json", ".js", ".go"]
    paths = []
    dirs = ["src"]
    queue = ["src"]
    n = 0
    while n < files:
        if not queue:
            queue = list(dirs)
        d = queue.pop(0)
        depth = d.count("/")
        for _ in range(rng.randrange(5, 41)):
            if n >= files:
                break
            if depth < 6 and rng.random() < 0.12:
                sub = f"{d}/{rng.choice(WORDS).lower()}_{len(dirs)}"
                dirs.append(sub)
                queue.append(sub)
            else:
                paths.append(f"{d}/{rng.choice(WORDS).lower()}_{n}{rng.choice(exts)}")
                n += 1
    return dirs, paths


def cmd_tree(out_tar, manifest, files):
    rng = random.Random(20240601)
    pool = text_pool(rng, 4 << 20)
    dirs, paths = tree_layout(rng, files)
    entries = []
    with tarfile.open(out_tar, "w", format=tarfile.GNU_FORMAT) as tar:

        def add(info, data=None):
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            add(info)
        for p in paths:
            size = min(int(rng.lognormvariate(8.0, 1.2)), 256 << 10)
            start = rng.randrange(0, len(pool) - size - 1)
            data = f"// {p}\n".encode() + pool[start : start + size]
            info = tarfile.TarInfo(p)
            info.size = len(data)
            info.mode = 0o755 if rng.random() < 0.05 else 0o644
            add(info, data)
            entries.append((p, hashlib.sha256(data).hexdigest()))
    write_manifest(manifest, entries)


def cmd_small(out_dir, manifest, files, size):
    rng = random.Random(4096)
    entries = []
    os.makedirs(out_dir, exist_ok=True)
    for i in range(files):
        rel = f"f{i:05d}"
        path = os.path.join(out_dir, rel)
        data = rng.randbytes(size)
        with open(path, "wb") as f:
            f.write(data)
        entries.append((rel, hashlib.sha256(data).hexdigest()))
    write_manifest(manifest, entries)


def cmd_blobs(out_dir, manifest, mib):
    rng = random.Random(1992)
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    total, i = 0, 0
    while total < mib << 20:
        size = min(rng.choice([256 << 10, 1 << 20, 2 << 20, 8 << 20]), (mib << 20) - total)
        data = rng.randbytes(size)
        rel = f"blob-{i:04d}.bin"
        with open(os.path.join(out_dir, rel), "wb") as f:
            f.write(data)
        entries.append((rel, hashlib.sha256(data).hexdigest()))
        total += size
        i += 1
    write_manifest(manifest, entries)


def main(argv):
    try:
        if argv[1] == "tree" and len(argv) == 5:
            cmd_tree(argv[2], argv[3], int(argv[4]))
        elif argv[1] == "small" and len(argv) == 6:
            cmd_small(argv[2], argv[3], int(argv[4]), int(argv[5]))
        elif argv[1] == "blobs" and len(argv) == 5:
            cmd_blobs(argv[2], argv[3], int(argv[4]))
        else:
            raise IndexError
    except (IndexError, ValueError):
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
