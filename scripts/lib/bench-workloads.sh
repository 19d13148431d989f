# shellcheck shell=bash
# shellcheck disable=SC2016 # bash -c '...' _ ARGS: expanded by the inner shell
# The workloads of scripts/bench.sh. Each runs on every available system in
# turn (same conditions, one after the other), times what it says it times,
# and verifies the result: a step whose output does not verify records
# FAILED, never a number. Source this file (after bench-systems.sh and
# bench-report.sh).
#
# What is timed:
#   returned  the command, until it returned (dd's conv=fsync included)
#   durable   returned + settle: until sys_NAME_settle says the data is where
#             the system keeps it (SecureVault: no upload pending in the
#             journal; rclone: no VFS upload queued or running; gocryptfs
#             and the plain dir: sync -f of the disk; JuiceFS: nothing,
#             its close() uploads)
#   cold      after bench_cold: durable, unmounted, local caches emptied,
#             kernel caches dropped, mounted again

T=""          # seconds the last `timed` command took
BENCH_ERR=""  # why the last step failed

# Seconds since $1 (an $EPOCHREALTIME), 3 decimals.
elapsed_since() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}

# timed LIMIT CMD...: runs the command CMD (not a shell function) with a
# time limit; sets T. On failure BENCH_ERR says why.
timed() {
    local limit=$1 t0 rc=0
    shift
    t0=$EPOCHREALTIME
    timeout -k 10 "$limit" "$@" >>"$STEP_LOG" 2>&1 || rc=$?
    T=$(elapsed_since "$t0")
    if ((rc == 124 || rc == 137)); then
        BENCH_ERR="timed out after ${limit} s: $1"
    elif ((rc != 0)); then
        BENCH_ERR="$1 exited with status $rc: $(tail -n 1 "$STEP_LOG" | cut -c1-160)"
    fi
    return "$rc"
}

# Runs sys_SYS_settle; sets T to its duration.
timed_settle() {
    local sys=$1 t0
    t0=$EPOCHREALTIME
    if ! "sys_${sys}_settle"; then
        T=$(elapsed_since "$t0")
        BENCH_ERR="not durable after ${BENCH_SETTLE_TIMEOUT} s"
        return 1
    fi
    T=$(elapsed_since "$t0")
}

add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
# per_sec AMOUNT SECONDS
per_sec() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "" }'; }

# Reads files into the page cache so the source is never the bottleneck.
warm() {
    find "$@" -type f -exec cat {} + >/dev/null
}

# True if SYS can run steps: set up, and its mount answers. A mount that
# stopped answering is mounted again once; if that fails the system is out
# for the rest of the run.
sys_ready() {
    local sys=$1
    [[ -z "${NA[$sys]:-}" ]] || return 1
    [[ "$sys" == plain ]] && return 0
    if is_mounted "${MNT[$sys]}" && mount_alive "${MNT[$sys]}"; then
        return 0
    fi
    say "[$sys] the mount is gone or hung: mounting it again"
    "sys_${sys}_unmount" >/dev/null 2>&1 || force_unmount "${MNT[$sys]}"
    if "sys_${sys}_mount" && mount_alive "${MNT[$sys]}"; then
        return 0
    fi
    NA["$sys"]="its mount was lost"
    FAILURES+=("$sys: the mount was lost and could not be mounted again; later steps skipped")
    return 1
}

# Runs step function STEP for each available system; on failure marks the
# listed metrics FAILED: for_systems WORKLOAD STEP METRIC...
for_systems() {
    local wl=$1 step=$2 sys
    shift 2
    for sys in "${SYSTEMS[@]}"; do
        sys_ready "$sys" || continue
        STEP_LOG="$BENCH_WORK/logs/$sys-$step.log"
        BENCH_ERR=""
        BENCH_CUR_DIR=""
        local t0=$SECONDS
        if ! "$step" "$sys" "$wl"; then
            res_fail "$wl" "$sys" "${BENCH_ERR:-failed}" "$@"
            # Leave nothing of it behind for the next workload.
            [[ -z "$BENCH_CUR_DIR" ]] || timeout -k 5 600 rm -rf -- "$BENCH_CUR_DIR" 2>/dev/null || true
        fi
        BENCH_SYS_SECS[$sys]=$((${BENCH_SYS_SECS[$sys]:-0} + SECONDS - t0))
        res_checkpoint
    done
}
declare -A BENCH_SYS_SECS=()  # seconds each system's steps took, all in

BENCH_CUR_DIR=""  # the directory of the step running now

# Creates the directory bench-NAME of a workload in SYS's mount, empty, and
# sets BENCH_CUR_DIR (call it directly, not in $(...)).
bench_dir() {
    local d="${MNT[$1]}/bench-$2"
    if ! timeout -k 5 600 rm -rf -- "$d" || ! timeout -k 5 60 mkdir -p -- "$d"; then
        BENCH_ERR="could not create $d"
        return 1
    fi
    BENCH_CUR_DIR=$d
}

# Removes the step's directory and waits until that is durable (untimed;
# quick runs do not wait).
bench_dir_clean() {
    local sys=$1
    timeout -k 5 600 rm -rf -- "$BENCH_CUR_DIR" || {
        BENCH_ERR="could not remove $BENCH_CUR_DIR"
        return 1
    }
    [[ -n "$BENCH_QUICK" ]] || timed_settle "$sys"
}

# ---------------------------------------------------------------------------
# Sequential write (ends in fsync) and cold sequential read
# ---------------------------------------------------------------------------

define_rows_seq() {
    WL_SEQW="seq write $SEQ_LABEL"
    WL_SEQR="seq read $SEQ_LABEL, cold"
    res_row "$WL_SEQW" returned s lower "dd bs=1M conv=fsync from a random file in the page cache"
    res_row "$WL_SEQW" durable s lower
    res_row "$WL_SEQW" "durable throughput" MiB/s higher
    res_row "$WL_SEQR" time s lower "dd bs=1M to /dev/null; then SHA-256 compared"
    res_row "$WL_SEQR" throughput MiB/s higher
}

step_seq() {
    local sys=$1 d f ret st dur rd h
    bench_dir "$sys" seq || return 1
    d=$BENCH_CUR_DIR
    f="$d/seq.bin"
    warm "$SEQ_SRC"
    # Timed: the write of the whole file and its fsync.
    timed "$BENCH_STEP_TIMEOUT" dd if="$SEQ_SRC" of="$f" bs=1M conv=fsync status=none || return 1
    ret=$T
    timed_settle "$sys" || return 1
    st=$T
    dur=$(add "$ret" "$st")
    bench_cold "$sys" || return 1
    # Timed: reading it back, cold.
    timed "$BENCH_STEP_TIMEOUT" dd if="$f" of=/dev/null bs=1M status=none || return 1
    rd=$T
    h=$(timeout -k 5 "$BENCH_STEP_TIMEOUT" openssl dgst -sha256 -r "$f" | cut -d' ' -f1) || true
    [[ "$h" == "$SEQ_SHA" ]] || {
        BENCH_ERR="SHA-256 of the file read back differs from what was written"
        return 1
    }
    bench_dir_clean "$sys" || return 1
    res_set "$WL_SEQW" returned "$sys" "$ret"
    res_set "$WL_SEQW" durable "$sys" "$dur"
    res_set "$WL_SEQW" "durable throughput" "$sys" "$(per_sec "$SEQ_MIB" "$dur")"
    res_set "$WL_SEQR" time "$sys" "$rd"
    res_set "$WL_SEQR" throughput "$sys" "$(per_sec "$SEQ_MIB" "$rd")"
    say "[$sys] seq write ${SEQ_LABEL}: ${ret} s (durable ${dur} s), cold read ${rd} s"
}

wl_seq() {
    define_rows_seq
    say "workload: $WL_SEQW, then $WL_SEQR"
    # One failure fails the write and the read figures.
    local sys
    for_systems "$WL_SEQW" step_seq returned durable "durable throughput"
    # (res_fail marked the write row; mark the read row of the same systems)
    for sys in "${SYSTEMS[@]}"; do
        if [[ "$(res_get "$WL_SEQW" returned "$sys")" == FAILED ]]; then
            res_set "$WL_SEQR" time "$sys" FAILED
            res_set "$WL_SEQR" throughput "$sys" FAILED
        fi
    done
}

# ---------------------------------------------------------------------------
# Small files: create, ls -lR cold, read, delete; and ls -l of one big
# directory, cold
# ---------------------------------------------------------------------------

define_rows_small() {
    WL_SMALL="$SMALL_LABEL files of 4 KiB in one dir"
    WL_LSL="ls -l of one dir of $SMALL_LABEL entries, cold"
    res_row "$WL_SMALL" "create, returned" s lower "cp -r of a directory of $SMALL_FILES files of 4 KiB (random bytes) from the page cache"
    res_row "$WL_SMALL" "create, durable" s lower
    res_row "$WL_SMALL" "ls -lR, cold" s lower "after unmount, local caches and kernel caches dropped, mount"
    res_row "$WL_SMALL" "read all" s lower "sha256sum -c of every file, after the cold ls -l"
    res_row "$WL_SMALL" "delete, returned" s lower "rm -rf"
    res_row "$WL_SMALL" "delete, durable" s lower
    local when="after another cold remount"
    [[ -z "$BENCH_QUICK" ]] || when="right after the ls -lR (quick run)"
    res_row "$WL_LSL" time s lower "ls -l of the same directory $when"
}

step_small() {
    local sys=$1 d cret cdur lsr lsl rd dret ddur n
    bench_dir "$sys" small || return 1
    d=$BENCH_CUR_DIR
    warm "$SMALL_SRC"
    # Timed: creating every file (cp -r), then until durable.
    timed "$BENCH_STEP_TIMEOUT" cp -r "$SMALL_SRC" "$d/small" || return 1
    cret=$T
    timed_settle "$sys" || return 1
    cdur=$(add "$cret" "$T")
    bench_cold "$sys" || return 1
    # Timed: ls -lR, cold.
    timed "$BENCH_STEP_TIMEOUT" bash -c 'ls -lR -- "$1" >"$2"' _ "$d/small" "$BENCH_WORK/ls-out" || return 1
    lsr=$T
    n=$(grep -c '^-' "$BENCH_WORK/ls-out" || true)
    ((n == SMALL_FILES)) || {
        BENCH_ERR="ls -lR listed $n files, not $SMALL_FILES"
        return 1
    }
    # Timed: ls -l of the directory, cold again (quick runs: right after).
    if [[ -z "$BENCH_QUICK" ]]; then
        bench_cold "$sys" || return 1
    fi
    timed "$BENCH_STEP_TIMEOUT" bash -c 'ls -l -- "$1" >"$2"' _ "$d/small" "$BENCH_WORK/ls-out" || return 1
    lsl=$T
    n=$(grep -c '^-' "$BENCH_WORK/ls-out" || true)
    ((n == SMALL_FILES)) || {
        BENCH_ERR="ls -l listed $n entries, not $SMALL_FILES"
        return 1
    }
    # Timed: reading every file and checking its SHA-256.
    timed "$BENCH_STEP_TIMEOUT" bash -c 'cd -- "$1" && sha256sum -c --quiet -- "$2"' _ "$d/small" "$SMALL_MANIFEST" || {
        BENCH_ERR="reading the files back: ${BENCH_ERR}"
        return 1
    }
    rd=$T
    # Timed: deleting them, then until durable.
    timed "$BENCH_STEP_TIMEOUT" rm -rf -- "$d/small" || return 1
    dret=$T
    timed_settle "$sys" || return 1
    ddur=$(add "$dret" "$T")
    [[ ! -e "$d/small" ]] || {
        BENCH_ERR="$d/small still exists after rm -rf"
        return 1
    }
    res_set "$WL_SMALL" "create, returned" "$sys" "$cret"
    res_set "$WL_SMALL" "create, durable" "$sys" "$cdur"
    res_set "$WL_SMALL" "ls -lR, cold" "$sys" "$lsr"
    res_set "$WL_SMALL" "read all" "$sys" "$rd"
    res_set "$WL_SMALL" "delete, returned" "$sys" "$dret"
    res_set "$WL_SMALL" "delete, durable" "$sys" "$ddur"
    res_set "$WL_LSL" time "$sys" "$lsl"
    say "[$sys] $SMALL_LABEL small files: create ${cret} s (durable ${cdur} s), ls -lR ${lsr} s, ls -l ${lsl} s, read ${rd} s, delete ${dret} s (durable ${ddur} s)"
}

wl_small() {
    define_rows_small
    say "workload: $WL_SMALL (create, ls -lR cold, ls -l cold, read, delete)"
    for_systems "$WL_SMALL" step_small "create, returned" "create, durable" "ls -lR, cold" \
        "read all" "delete, returned" "delete, durable"
    local sys
    for sys in "${SYSTEMS[@]}"; do
        if [[ "$(res_get "$WL_SMALL" "create, returned" "$sys")" == FAILED ]]; then
            res_set "$WL_LSL" time "$sys" FAILED
        fi
    done
}

# ---------------------------------------------------------------------------
# A source tree: untar, then rsync -a of it within the mount
# ---------------------------------------------------------------------------

define_rows_tree() {
    WL_UNTAR="untar, $TREE_LABEL files"
    WL_RSYNC="rsync -a, $TREE_LABEL files"
    res_row "$WL_UNTAR" returned s lower "tar -xf of a generated source tree ($TREE_FILES files, $TREE_MIB MiB; bench/gen-data.py), tarball in the page cache"
    res_row "$WL_UNTAR" durable s lower
    local when="after a cold remount"
    [[ -z "$BENCH_QUICK" ]] || when="at once (quick run)"
    res_row "$WL_RSYNC" returned s lower "rsync -a of the untarred tree to a sibling dir in the mount; the copy is verified $when"
    res_row "$WL_RSYNC" durable s lower
}

# Checks the tree in $1 against the manifest: every file's SHA-256, and the
# count.
verify_tree() {
    local dir=$1 n
    timeout -k 5 "$BENCH_STEP_TIMEOUT" bash -c 'cd -- "$1" && sha256sum -c --quiet -- "$2"' \
        _ "$dir" "$TREE_MANIFEST" >>"$STEP_LOG" 2>&1 || {
        BENCH_ERR="$dir does not match the tree's checksums"
        return 1
    }
    n=$(timeout -k 5 300 find "$dir" -type f | wc -l)
    ((n == TREE_FILES)) || {
        BENCH_ERR="$dir holds $n files, not $TREE_FILES"
        return 1
    }
}

step_tree() {
    local sys=$1 d uret udur rret rdur
    bench_dir "$sys" tree || return 1
    d=$BENCH_CUR_DIR
    mkdir -p -- "$d/tree" || return 1
    warm "$TREE_TAR"
    # Timed: tar -xf, then until durable.
    timed "$BENCH_STEP_TIMEOUT" tar -xf "$TREE_TAR" -C "$d/tree" || return 1
    uret=$T
    timed_settle "$sys" || return 1
    udur=$(add "$uret" "$T")
    verify_tree "$d/tree" || return 1
    # Timed: rsync -a within the mount, then until durable.
    timed "$BENCH_STEP_TIMEOUT" rsync -a -- "$d/tree/" "$d/copy/" || return 1
    rret=$T
    timed_settle "$sys" || return 1
    rdur=$(add "$rret" "$T")
    # The copy is checked as stored: after a cold remount (quick runs: warm).
    if [[ -z "$BENCH_QUICK" ]]; then
        bench_cold "$sys" || return 1
    fi
    verify_tree "$d/copy" || return 1
    # (The trees stay: deleting 2 x TREE_FILES files on the slower systems
    # would add minutes and measure nothing; each workload has its own dir.)
    res_set "$WL_UNTAR" returned "$sys" "$uret"
    res_set "$WL_UNTAR" durable "$sys" "$udur"
    res_set "$WL_RSYNC" returned "$sys" "$rret"
    res_set "$WL_RSYNC" durable "$sys" "$rdur"
    say "[$sys] untar ${uret} s (durable ${udur} s), rsync -a ${rret} s (durable ${rdur} s)"
}

wl_tree() {
    define_rows_tree
    say "workload: $WL_UNTAR, then $WL_RSYNC"
    for_systems "$WL_UNTAR" step_tree returned durable
    local sys
    for sys in "${SYSTEMS[@]}"; do
        if [[ "$(res_get "$WL_UNTAR" returned "$sys")" == FAILED ]]; then
            res_set "$WL_RSYNC" returned "$sys" FAILED
            res_set "$WL_RSYNC" durable "$sys" FAILED
        fi
    done
}

# ---------------------------------------------------------------------------
# restic backup into a repository in the mount
# ---------------------------------------------------------------------------

define_rows_restic() {
    WL_RESTIC="restic backup, $RESTIC_MIB MiB"
    res_row "$WL_RESTIC" returned s lower "restic backup of $RESTIC_MIB MiB of incompressible files into a new repository in the mount; verified with restic check --read-data"
    res_row "$WL_RESTIC" durable s lower
}

step_restic() {
    local sys=$1 d ret dur
    bench_dir "$sys" restic || return 1
    d=$BENCH_CUR_DIR
    export RESTIC_PASSWORD=bench-restic-password
    export RESTIC_CACHE_DIR="$BENCH_WORK/restic-cache/$sys"
    rm -rf -- "$RESTIC_CACHE_DIR"
    timeout -k 5 300 restic init --repo "$d/repo" >>"$STEP_LOG" 2>&1 || {
        BENCH_ERR="restic init failed: $(tail -n 1 "$STEP_LOG")"
        return 1
    }
    warm "$RESTIC_SRC"
    # Timed: the backup, then until durable.
    timed "$BENCH_STEP_TIMEOUT" restic backup --quiet --repo "$d/repo" "$RESTIC_SRC" || return 1
    ret=$T
    timed_settle "$sys" || return 1
    dur=$(add "$ret" "$T")
    timeout -k 5 "$BENCH_STEP_TIMEOUT" restic check --read-data --repo "$d/repo" >>"$STEP_LOG" 2>&1 || {
        BENCH_ERR="restic check --read-data failed: $(tail -n 1 "$STEP_LOG")"
        return 1
    }
    bench_dir_clean "$sys" || return 1
    res_set "$WL_RESTIC" returned "$sys" "$ret"
    res_set "$WL_RESTIC" durable "$sys" "$dur"
    say "[$sys] restic backup ${ret} s (durable ${dur} s)"
}

wl_restic() {
    define_rows_restic
    say "workload: $WL_RESTIC"
    for_systems "$WL_RESTIC" step_restic returned durable
}

# ---------------------------------------------------------------------------
# fio: random 4 KiB reads (cold) and writes in one file
# ---------------------------------------------------------------------------

define_rows_fio() {
    local when="after a cold remount"
    [[ -z "$BENCH_QUICK" ]] || when="at once (quick run)"
    WL_FIOR="fio random read 4 KiB, $FIO_LABEL file, ${BENCH_QUICK:+warm (quick run)}"
    [[ -n "$BENCH_QUICK" ]] || WL_FIOR+=cold
    WL_FIOW="fio random write 4 KiB, $FIO_LABEL file"
    res_row "$WL_FIOR" IOPS IOPS higher "psync, $FIO_READ_SECS s, every block's crc32c header checked (--verify)"
    res_row "$WL_FIOW" "IOPS, returned" IOPS higher "$FIO_WRITE_IOS writes, psync, ending in fsync (end_fsync); verified with --verify_only $when"
    res_row "$WL_FIOW" "IOPS, durable" IOPS higher
}

# fio JSON: the field $2 (read.iops, ...) of the first job.
fio_field() {
    sv_syspython - "$1" "$2" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])
job = doc["jobs"][0]
if job.get("error"):
    sys.exit(1)
sect, key = sys.argv[2].split(".")
print(job[sect][key])
PY
}

step_fio() {
    local sys=$1 d f common rr wret wdur out
    bench_dir "$sys" fio || return 1
    d=$BENCH_CUR_DIR
    f="$d/fio.dat"
    out="$BENCH_WORK/fio-$sys.json"
    common=(--filename="$f" --size="${FIO_MIB}M" --bs=4k --ioengine=psync --direct=0
        --fallocate=none --verify=crc32c --verify_state_save=0 --randrepeat=1
        --output-format=json --output="$out")
    # Untimed: lay the file out (1 MiB writes) with a checkable header in
    # every 4 KiB block, make it durable, go cold.
    timed "$BENCH_STEP_TIMEOUT" fio --name=layout "${common[@]}" --rw=write --bs=1M --verify_interval=4k \
        --do_verify=0 --end_fsync=1 || return 1
    if [[ -z "$BENCH_QUICK" ]]; then
        bench_cold "$sys" || return 1
    fi
    # Timed: random reads for a fixed time; fio checks each block's header.
    timed $((FIO_READ_SECS + BENCH_STEP_TIMEOUT)) fio --name=randread "${common[@]}" --rw=randread \
        --time_based --runtime="$FIO_READ_SECS" || {
        BENCH_ERR="fio randread: $BENCH_ERR"
        return 1
    }
    rr=$(fio_field "$out" read.iops) || {
        BENCH_ERR="fio randread reported an error"
        return 1
    }
    # Timed: a fixed number of random writes and the final fsync, then until
    # durable. IOPS = writes / time.
    timed "$BENCH_STEP_TIMEOUT" fio --name=randwrite "${common[@]}" --rw=randwrite \
        --io_size=$((FIO_WRITE_IOS * 4))k --do_verify=0 --end_fsync=1 || {
        BENCH_ERR="fio randwrite: $BENCH_ERR"
        return 1
    }
    wret=$T
    timed_settle "$sys" || return 1
    wdur=$(add "$wret" "$T")
    if [[ -z "$BENCH_QUICK" ]]; then
        bench_cold "$sys" || return 1
    fi
    # Untimed: fio replays the same writes (same seed) and checks every
    # block written.
    timeout -k 5 "$BENCH_STEP_TIMEOUT" fio --name=randwrite "${common[@]}" --rw=randwrite \
        --io_size=$((FIO_WRITE_IOS * 4))k --verify_only >>"$STEP_LOG" 2>&1 || {
        BENCH_ERR="fio --verify_only found blocks that differ from what was written"
        return 1
    }
    bench_dir_clean "$sys" || return 1
    res_set "$WL_FIOR" IOPS "$sys" "$(awk -v v="$rr" 'BEGIN { printf "%.0f", v }')"
    res_set "$WL_FIOW" "IOPS, returned" "$sys" "$(per_sec "$FIO_WRITE_IOS" "$wret")"
    res_set "$WL_FIOW" "IOPS, durable" "$sys" "$(per_sec "$FIO_WRITE_IOS" "$wdur")"
    say "[$sys] fio randread $(res_get "$WL_FIOR" IOPS "$sys") IOPS, randwrite $(res_get "$WL_FIOW" "IOPS, returned" "$sys") IOPS (durable $(res_get "$WL_FIOW" "IOPS, durable" "$sys"))"
}

wl_fio() {
    define_rows_fio
    say "workload: $WL_FIOR, $WL_FIOW"
    for_systems "$WL_FIOR" step_fio IOPS
    local sys
    for sys in "${SYSTEMS[@]}"; do
        if [[ "$(res_get "$WL_FIOR" IOPS "$sys")" == FAILED ]]; then
            res_set "$WL_FIOW" "IOPS, returned" "$sys" FAILED
            res_set "$WL_FIOW" "IOPS, durable" "$sys" FAILED
        fi
    done
}

# ---------------------------------------------------------------------------
# Memory: the daemons over the whole run, and SecureVault writing 10 GiB
# ---------------------------------------------------------------------------

WL_MEM="memory"

# Peak RSS of every daemon over the run (each mount is a new process: the
# highest VmHWM of them) and of vault-server.
record_peak_rss() {
    local sys
    res_row "$WL_MEM" "daemon peak RSS, whole run" MiB lower "highest VmHWM of the FUSE daemon process over all mounts of the run (JuiceFS: its largest process)"
    res_row "$WL_MEM" "server peak RSS, whole run" MiB lower "VmHWM of vault-server at the end of the run (SecureVault only)"
    for sys in "${SYSTEMS[@]}"; do
        [[ "$sys" == plain ]] && continue
        [[ -z "${NA[$sys]:-}" ]] && track_peak_rss "$sys"
        if [[ -n "${PEAK_KIB[$sys]:-}" ]]; then
            res_set "$WL_MEM" "daemon peak RSS, whole run" "$sys" "$(awk -v k="${PEAK_KIB[$sys]}" 'BEGIN { printf "%.1f", k / 1024 }')"
        fi
    done
    if [[ -n "${SVB_SERVER_PID:-}" ]]; then
        local kib
        kib=$(vm_hwm_kib "$SVB_SERVER_PID")
        [[ -n "$kib" ]] && res_set "$WL_MEM" "server peak RSS, whole run" securevault \
            "$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')"
    fi
}

# The highest VmHWM (KiB) of SecureVault's daemon now.
sv_daemon_hwm() {
    local pid kib max=0
    for pid in $(sys_securevault_pids); do
        kib=$(vm_hwm_kib "$pid")
        [[ -n "$kib" ]] && ((kib > max)) && max=$kib
    done
    echo "$max"
}

# SecureVault only: one file of BIG_GIB GiB (the random source of the seq
# workload, repeated) written on a fresh mount, the daemon's VmHWM read after the fsync;
# then read back cold on a fresh mount and checked.
wl_big() {
    local sys=securevault wl="write $BIG_GIB GiB (SecureVault)" d f wt rt hw hr h
    res_row "$wl" "daemon peak RSS, writing" MiB lower "VmHWM of a fresh daemon after writing one $BIG_GIB GiB file (dd conv=fsync); target <= 64 MiB + --memory-cache ${BENCH_SV_MEMORY_CACHE_MIB} MiB"
    res_row "$wl" "daemon peak RSS, reading" MiB lower "VmHWM of a fresh daemon after reading it back, cold (SHA-256 compared)"
    res_row "$wl" "write throughput, durable" MiB/s higher
    res_row "$wl" "cold read throughput" MiB/s higher
    [[ " ${SYSTEMS[*]} " == *" securevault "* ]] || return 0
    say "workload: $wl (daemon memory)"
    STEP_LOG="$BENCH_WORK/logs/securevault-big.log"
    sys_ready "$sys" || return 0
    local metrics=("daemon peak RSS, writing" "daemon peak RSS, reading" "write throughput, durable" "cold read throughput")
    bench_dir "$sys" big || {
        res_fail "$wl" "$sys" "$BENCH_ERR" "${metrics[@]}"
        return 0
    }
    d=$BENCH_CUR_DIR
    f="$d/big.bin"
    say "[$sys] SHA-256 of the $BIG_GIB GiB input"
    local want reps=$((BIG_GIB * 1024 / SEQ_MIB)) i
    want=$(for ((i = 0; i < reps; i++)); do cat "$SEQ_SRC"; done | openssl dgst -sha256 -r | cut -d' ' -f1)
    # A fresh daemon, so its VmHWM is this file's.
    if ! bench_cold "$sys"; then
        res_fail "$wl" "$sys" "$BENCH_ERR" "${metrics[@]}"
        return 0
    fi
    # Timed: the write of the whole file and its fsync.
    if ! timed $((BIG_GIB * 600)) bash -c 'for ((i = 0; i < $1; i++)); do cat "$2"; done |
            dd of="$3" bs=1M iflag=fullblock conv=fsync status=none' _ "$reps" "$SEQ_SRC" "$f"; then
        res_fail "$wl" "$sys" "$BENCH_ERR" "${metrics[@]}"
        return 0
    fi
    wt=$T
    hw=$(sv_daemon_hwm)
    if ! bench_cold "$sys"; then
        res_fail "$wl" "$sys" "$BENCH_ERR" "${metrics[@]}"
        return 0
    fi
    local t0=$EPOCHREALTIME
    h=$(timeout -k 5 $((BIG_GIB * 600)) openssl dgst -sha256 -r "$f" | cut -d' ' -f1) || true
    rt=$(elapsed_since "$t0")
    hr=$(sv_daemon_hwm)
    if [[ "$h" != "$want" ]]; then
        res_fail "$wl" "$sys" "SHA-256 of the $BIG_GIB GiB file read back differs" "${metrics[@]}"
        return 0
    fi
    bench_dir_clean "$sys" || true
    res_set "$wl" "daemon peak RSS, writing" "$sys" "$(awk -v k="$hw" 'BEGIN { printf "%.1f", k / 1024 }')"
    res_set "$wl" "daemon peak RSS, reading" "$sys" "$(awk -v k="$hr" 'BEGIN { printf "%.1f", k / 1024 }')"
    res_set "$wl" "write throughput, durable" "$sys" "$(per_sec $((BIG_GIB * 1024)) "$wt")"
    res_set "$wl" "cold read throughput" "$sys" "$(per_sec $((BIG_GIB * 1024)) "$rt")"
    say "[$sys] $BIG_GIB GiB: write ${wt} s, daemon VmHWM $((hw / 1024)) MiB; read ${rt} s, VmHWM $((hr / 1024)) MiB"
    local limit=$((64 + BENCH_SV_MEMORY_CACHE_MIB))
    TARGETS+=("daemon peak RSS writing a $BIG_GIB GiB file <= 64 MiB + memory cache ($limit MiB)|$((hw / 1024)) MiB|$( ((hw / 1024 <= limit)) && echo met || echo MISSED)")
}

# ---------------------------------------------------------------------------
# The server under concurrent clients (vault-load, when it is built)
# ---------------------------------------------------------------------------

wl_load() {
    local wl="server, $LOAD_CLIENTS clients uploading" dir log out line
    res_row "$wl" "requests/s" req/s higher "vault-load: $LOAD_CLIENTS clients for $LOAD_SECS s against a fresh vault-server (MariaDB, objects in file:)"
    res_row "$wl" "p50 latency" ms lower
    res_row "$wl" "p99 latency" ms lower
    res_row "$wl" errors count lower
    res_row "$wl" "files uploaded/s" files/s higher
    res_row "$wl" "upload throughput" MiB/s higher
    res_row "$wl" "server peak RSS" MiB lower
    [[ " ${SYSTEMS[*]} " == *" securevault "* ]] || return 0
    if [[ ! -x "$BENCH_BIN/vault-load" ]]; then
        say "[securevault] load test: vault-load is not built (cargo build --release --locked -p tests --bin vault-load); skipped"
        NOTES+=("$wl: not built (the vault-load binary does not exist yet)")
        local m
        for m in "requests/s" "p50 latency" "p99 latency" errors "files uploaded/s" "upload throughput" "server peak RSS"; do
            res_set "$wl" "$m" securevault "not built"
        done
        return 0
    fi
    say "workload: $wl"
    dir="$BENCH_WORK/load-server"
    log="$dir/server.log"
    mkdir -p "$dir/data" "$dir/objects"
    out="$BENCH_WORK/logs/vault-load.out"
    if ! mariadb_root 'CREATE DATABASE vault_load CHARACTER SET utf8mb4' ||
        ! start_vault_server "$dir/data" "$log" "${VAULT_TEST_MYSQL_ADMIN_URL}/vault_load" \
            "file:$dir/objects" VAULT_AUTH_RATE_PER_MINUTE=1000000 VAULT_AUTH_BURST=100000; then
        res_fail "$wl" securevault "the load test's server did not start" "requests/s" "p50 latency" "p99 latency" errors "server peak RSS"
        return 0
    fi
    if ! timeout -k 10 $((LOAD_SECS + 600)) "$BENCH_BIN/vault-load" --server "$VSERVER_URL" \
        --outbox "$dir/data/outbox" --clients "$LOAD_CLIENTS" --seconds "$LOAD_SECS" \
        --server-pid "$VSERVER_PID" >"$out" 2>"$out.err"; then
        res_fail "$wl" securevault "vault-load failed: $(tail -n 1 "$out.err")" "requests/s" "p50 latency" "p99 latency" errors "server peak RSS"
    else
        line=$(grep 'req_per_s=' "$out" | tail -n 1)
        kv() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
        res_set "$wl" "requests/s" securevault "$(kv req_per_s)"
        res_set "$wl" "p50 latency" securevault "$(kv p50_ms)"
        res_set "$wl" "p99 latency" securevault "$(kv p99_ms)"
        res_set "$wl" errors securevault "$(kv errors)"
        res_set "$wl" "files uploaded/s" securevault "$(kv files_per_s)"
        res_set "$wl" "upload throughput" securevault "$(kv upload_mib_per_s)"
        local kib
        kib=$(kv server_peak_rss_kib)
        [[ -n "$kib" ]] && res_set "$wl" "server peak RSS" securevault "$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')"
        say "[securevault] load: $line"
    fi
    kill -TERM "$VSERVER_PID" 2>/dev/null || true
    wait_pid_gone "$VSERVER_PID" 30 || kill -KILL "$VSERVER_PID" 2>/dev/null || true
}
