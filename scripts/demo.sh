#!/usr/bin/env bash
# SecureVault demo: your own vault, mounted at ./vault-demo, in one command.
#
#   scripts/demo.sh          install fuse3 if missing (as root), build
#                            (release), start a local server (SQLite, data
#                            in ./vault-demo-data, loopback only, mail to
#                            its outbox), register a demo account, log in
#                            and mount it at ./vault-demo. Safe to run
#                            again: it reuses what is already there.
#   scripts/demo.sh stop     unmount (after uploading what is pending) and
#                            stop the server; the data stays, and
#                            scripts/demo.sh brings it all back
#   scripts/demo.sh status   what is running
#   scripts/demo.sh tour     a tour of the crypto core (no server, no mount)
#
# Settings: VAULT_PASSWORD (the demo account's password; default: one
# generated on the first run, printed and kept in
# vault-demo-data/demo-password so re-runs can mount), VAULT_DEMO_EMAIL
# (default demo@example.com), VAULT_DEMO_DIR (default ./vault-demo),
# VAULT_DEMO_DATA (default ./vault-demo-data).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/vault-account.sh
source scripts/lib/vault-account.sh

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

# Take what the demo reads from the environment, then drop every other
# VAULT_* variable so nothing from the caller's shell reaches the server or
# the client by accident.
VA_PASSWORD=${VAULT_PASSWORD:-}
EMAIL=${VAULT_DEMO_EMAIL:-demo@example.com}
DEMO_DATA=$(realpath -m -- "${VAULT_DEMO_DATA:-$ROOT/vault-demo-data}")
MOUNT_DIR=$(realpath -m -- "${VAULT_DEMO_DIR:-$ROOT/vault-demo}")
for name in $(compgen -e); do
    if [[ "$name" == VAULT_* ]]; then
        unset "$name"
    fi
done

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SERVER_DATA="$DEMO_DATA/server"
CLIENT="$DEMO_DATA/client"
PIDFILE="$DEMO_DATA/server.pid"
PORTFILE="$DEMO_DATA/server.port"
LOG="$DEMO_DATA/server.log"
PASSFILE="$DEMO_DATA/demo-password"
REGISTERED="$DEMO_DATA/registered"
ENVFILE="$DEMO_DATA/env"
OUTBOX="$SERVER_DATA/outbox"
# For scripts/lib/vault-account.sh (VA_PASSWORD is set above).
VA_VAULT_BIN="$BIN/vault"
VA_CLIENT="$CLIENT"
VA_OUTBOX="$OUTBOX"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

# The pid of the demo's running server, if one runs.
server_pid() {
    [[ -s "$PIDFILE" ]] || return 1
    local pid exe
    pid=$(<"$PIDFILE")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [[ "${exe##*/}" == vault-server ]] || return 1
    printf '%s\n' "$pid"
}

server_url() {
    printf 'http://127.0.0.1:%s\n' "$(<"$PORTFILE")"
}

# True if something accepts connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_server() {
    mkdir -p -- "$SERVER_DATA"
    local port=0
    if [[ -s "$PORTFILE" ]]; then
        port=$(<"$PORTFILE")
        # Someone else took it meanwhile: let the kernel pick another.
        port_busy "$port" && port=0
    fi
    local _
    for _ in 1 2; do
        [[ -f "$LOG" ]] && mv -f -- "$LOG" "$LOG.old"
        : >"$LOG"
        # Run from its data dir (so no stray .env is read), in its own
        # session (so closing this terminal does not stop it); the inner
        # shell writes its own pid, then becomes the server.
        # shellcheck disable=SC2016 # $$, $0 and $1 are the inner shell's
        (
            cd -- "$SERVER_DATA"
            VAULT_DATA_DIR="$SERVER_DATA" VAULT_LISTEN="127.0.0.1:$port" \
                setsid bash -c 'echo $$ >"$0"; exec "$1"' "$PIDFILE" "$BIN/vault-server" \
                </dev/null >>"$LOG" 2>&1 &
        )
        local deadline=$((SECONDS + 60)) line=""
        while ((SECONDS < deadline)); do
            line=$(grep -m1 -o 'vault-server listening on http://127\.0\.0\.1:[0-9]*' "$LOG" || true)
            [[ -n "$line" ]] && break
            if [[ -s "$PIDFILE" ]] && ! kill -0 "$(<"$PIDFILE")" 2>/dev/null; then
                break
            fi
            sleep 0.1
        done
        if [[ -n "$line" ]]; then
            printf '%s\n' "${line##*:}" >"$PORTFILE"
            return 0
        fi
        if ((port != 0)); then
            say "the server could not use port $port; trying another"
            port=0
            continue
        fi
        break
    done
    tail -n 30 -- "$LOG" >&2 || true
    die "the server did not start (its log above, in $LOG)"
}

stop_server() {
    local pid
    pid=$(server_pid) || {
        rm -f -- "$PIDFILE"
        return 0
    }
    say "stopping the server (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "the server did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f -- "$PIDFILE"
}

# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

# `vault ARGS` with the demo's private client state (never ~/.config); the
# account helpers (va_*) are in scripts/lib/vault-account.sh.
vault() {
    VA_SERVER_URL="$(server_url)" va_vault "$@"
}

# Registration and login read their codes from the server's outbox.
vault_with_code() {
    VA_SERVER_URL="$(server_url)" va_vault_with_code "$@"
}

# live, stale (the daemon is gone; the kernel still lists the mount) or none.
mount_state() {
    local esc=${MOUNT_DIR//\\/\\134}
    esc=${esc// /\\040}
    esc=${esc//$'\t'/\\011}
    esc=${esc//$'\n'/\\012}
    if ! M="$esc" awk '$5 == ENVIRON["M"] { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo none
    elif stat -- "$MOUNT_DIR/." >/dev/null 2>&1; then
        echo live
    else
        echo stale
    fi
}

load_password() {
    if [[ -n "$VA_PASSWORD" ]]; then
        return 0
    fi
    if [[ -s "$PASSFILE" ]]; then
        VA_PASSWORD=$(<"$PASSFILE")
        return 0
    fi
    return 1
}

write_env_file() {
    cat >"$ENVFILE.tmp" <<EOF
# source this file to use the demo's vault with the vault command
export VAULT_CONFIG_DIR=$(printf '%q' "$CLIENT/config")
export VAULT_DATA_DIR=$(printf '%q' "$CLIENT/data")
export VAULT_SERVER=$(printf '%q' "$(server_url)")
export PATH=$(printf '%q' "$BIN"):\$PATH
EOF
    mv -f -- "$ENVFILE.tmp" "$ENVFILE"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_start() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    sv_install_packages "${SV_DEMO_PACKAGES[@]}" ||
        die "the demo needs fuse3 (for fusermount3); run it as root once, or install it"
    [[ -c /dev/fuse ]] ||
        die "/dev/fuse does not exist: load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse"
    [[ -r /dev/fuse && -w /dev/fuse ]] ||
        die "/dev/fuse is not readable and writable by $(id -un): run the demo as root or join the fuse group"

    say "building (release)"
    cargo build --release --locked -p vault-server -p fs-client --bins

    mkdir -p -- "$DEMO_DATA" "$CLIENT/data" "$CLIENT/cache" "$CLIENT/xdg-cache"
    # (A stale mount cannot even be stat'ed; `vault mount` cleans it below.)
    [[ "$(mount_state)" != none ]] || mkdir -p -- "$MOUNT_DIR"
    chmod 700 -- "$DEMO_DATA"
    # Keep the demo's data out of git status.
    [[ -f "$DEMO_DATA/.gitignore" ]] || printf '*\n' >"$DEMO_DATA/.gitignore"

    local pid
    if pid=$(server_pid); then
        say "the server is already running: $(server_url) (pid $pid)"
    else
        say "starting the server (SQLite and objects in $SERVER_DATA, mail to $OUTBOX)"
        start_server
        pid=$(server_pid) || die "the server is not running (log: $LOG)"
        say "server: $(server_url) (pid $pid, log $LOG)"
    fi
    write_env_file

    local generated=0
    if [[ -f "$REGISTERED" ]]; then
        say "reusing the demo account $(<"$REGISTERED")"
    else
        if ! load_password; then
            VA_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
            (
                umask 077
                printf '%s\n' "$VA_PASSWORD" >"$PASSFILE"
            )
            generated=1
        fi
        say "registering $EMAIL (the verification code is read from the outbox)"
        vault_with_code verification register --email "$EMAIL" ||
            die "registration failed (server log: $LOG)"
        printf '%s\n' "$EMAIL" >"$REGISTERED"
    fi
    EMAIL=$(<"$REGISTERED")

    if vault status >/dev/null 2>&1; then
        say "already logged in as $EMAIL"
    else
        load_password ||
            die "the password of $EMAIL is needed to log in: set VAULT_PASSWORD"
        say "logging in as $EMAIL (the login code is read from the outbox)"
        vault_with_code login login --email "$EMAIL" ||
            die "login failed (server log: $LOG)"
    fi

    local state
    state=$(mount_state)
    if [[ "$state" == live ]]; then
        say "already mounted at $MOUNT_DIR"
    else
        [[ "$state" == stale ]] && say "cleaning a stale mount at $MOUNT_DIR"
        say "mounting the vault at $MOUNT_DIR"
        if load_password; then
            VAULT_PASSWORD="$VA_PASSWORD" vault mount "$MOUNT_DIR" --cache-dir "$CLIENT/cache" ||
                die "vault mount failed (its logs: $CLIENT/data/logs)"
        else
            # Without a password `vault mount` can still use the key that
            # `vault login` left in the kernel keyring.
            vault mount "$MOUNT_DIR" --cache-dir "$CLIENT/cache" </dev/null ||
                die "vault mount failed; if it needs the password of $EMAIL, set VAULT_PASSWORD"
        fi
    fi

    local rel_mount=${MOUNT_DIR#"$PWD"/} rel_data=${DEMO_DATA#"$PWD"/}
    cat <<EOF

SecureVault demo is running.

  vault:    $MOUNT_DIR
            an ordinary directory: names, contents, modes, times and
            xattrs are encrypted on this machine before they reach the server
  account:  $EMAIL
EOF
    if ((generated)); then
        cat <<EOF
  password: $VA_PASSWORD
            (generated for the demo and kept in $rel_data/demo-password so
            that re-runs can mount; a real account's password is never stored)
EOF
    fi
    cat <<EOF
  server:   $(server_url) (pid $(server_pid || echo '?')), data in $rel_data/server,
            log $rel_data/server.log, mails in $rel_data/server/outbox

Try it:
  echo 'hello, vault' > $rel_mount/hello.txt && cat $rel_mount/hello.txt
  cp -a /etc/default $rel_mount/ && ls -la $rel_mount/default
  grep -r 'hello, vault' $rel_data/ || echo "not in the server's files nor in the caches: only ciphertext"
  source $rel_data/env && vault status      # the vault command, with the demo's session

Stop it (unmounts after uploading what is pending, stops the server, keeps the data):
  scripts/demo.sh stop
Start it again: scripts/demo.sh    Start over: scripts/demo.sh stop && rm -rf $rel_data
EOF
}

cmd_stop() {
    if [[ -s "$PORTFILE" ]]; then
        local state
        state=$(mount_state)
        if [[ "$state" != none ]]; then
            say "unmounting $MOUNT_DIR (uploading what is pending)"
            if ! vault unmount "$MOUNT_DIR"; then
                if [[ "$(mount_state)" != none ]] && command -v fusermount3 >/dev/null 2>&1; then
                    say "vault unmount failed; detaching the mount with fusermount3 -uz"
                    fusermount3 -uz -- "$MOUNT_DIR" || true
                fi
            fi
        fi
    fi
    stop_server
    say "stopped; the data stays in $DEMO_DATA (scripts/demo.sh starts it again)"
}

cmd_status() {
    local pid
    if pid=$(server_pid); then
        echo "server:  running, $(server_url), pid $pid"
    else
        echo "server:  stopped"
    fi
    echo "mount:   $(mount_state) ($MOUNT_DIR)"
    if [[ -f "$REGISTERED" ]]; then
        echo "account: $(<"$REGISTERED")"
    else
        echo "account: none yet"
    fi
    if [[ -n "${pid:-}" ]]; then
        vault status || true
    fi
}

cmd_tour() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    say "a tour of the crypto core"
    cargo run --release --locked -q -p common --example tour
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    tour) cmd_tour ;;
    -h | --help | help) usage ;;
    *)
        echo "error: unknown command '$1' (try --help)" >&2
        exit 2
        ;;
esac
