# shellcheck shell=bash
# A SecureVault account driven from a script: the `vault` command with a
# private client state, and registration / login answered with the codes the
# server writes to its development outbox (no SMTP). Source this file; used
# by scripts/demo.sh and scripts/bench.sh.
#
# Settings, read when the functions run:
#   VA_VAULT_BIN   the vault binary
#   VA_CLIENT      the client's private state: VA_CLIENT/config (session),
#                  VA_CLIENT/data (journal, control sockets, logs) and
#                  VA_CLIENT/xdg-cache; never the caller's ~/.config or ~/.cache
#   VA_SERVER_URL  the server (VAULT_SERVER); empty: the saved session's
#   VA_OUTBOX      the server's outbox directory (<server data dir>/outbox)
#   VA_PASSWORD    the account's password (given to vault as VAULT_PASSWORD)
#   VA_CODE_WAIT   seconds to wait for a mailed code (default 60)

# `vault ARGS` with the private client state.
va_vault() {
    env VAULT_CONFIG_DIR="$VA_CLIENT/config" VAULT_DATA_DIR="$VA_CLIENT/data" \
        XDG_CACHE_HOME="$VA_CLIENT/xdg-cache" \
        ${VA_SERVER_URL:+"VAULT_SERVER=$VA_SERVER_URL"} \
        "$VA_VAULT_BIN" "$@"
}

# The names of the mails in the outbox, sorted.
va_outbox_files() {
    [[ -d "$VA_OUTBOX" ]] || return 0
    find "$VA_OUTBOX" -maxdepth 1 -type f -name '*.eml' -printf '%f\n' | sort
}

# Waits for a new mail (one not in the list $2) carrying a "$1 code: NNNNNN"
# subject, and prints the code. Gives up when process $3 has exited or after
# VA_CODE_WAIT seconds.
va_wait_for_code() {
    local purpose=$1 before=$2 pid=$3
    local deadline=$((SECONDS + ${VA_CODE_WAIT:-60})) f code
    while ((SECONDS < deadline)); do
        while IFS= read -r f; do
            [[ -n "$f" ]] || continue
            grep -qxF -- "$f" <<<"$before" && continue
            # Unfold the headers, then find the subject's code.
            code=$(sed -e ':a' -e 'N' -e '$!ba' -e 's/\r//g' -e 's/\n[[:space:]]\{1,\}/ /g' "$VA_OUTBOX/$f" |
                grep -o "$purpose code: [0-9]\{6\}" | head -n 1 | grep -o '[0-9]\{6\}' || true)
            if [[ -n "$code" ]]; then
                printf '%s\n' "$code"
                return 0
            fi
        done < <(va_outbox_files)
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# Runs `vault ARGS` (ARGS after the purpose $1: "verification" or "login")
# with the password in VA_PASSWORD and answers the one code it asks for on
# its standard input with the code mailed to the outbox.
va_vault_with_code() {
    local purpose=$1
    shift
    local before fifo pid code rc=0
    before=$(va_outbox_files)
    mkdir -p -- "$VA_CLIENT"
    fifo="$VA_CLIENT/.code-fifo.$$"
    rm -f -- "$fifo"
    mkfifo -m 600 -- "$fifo"
    VAULT_PASSWORD="$VA_PASSWORD" va_vault "$@" <"$fifo" &
    pid=$!
    exec 3>"$fifo"
    rm -f -- "$fifo"
    if code=$(va_wait_for_code "$purpose" "$before" "$pid"); then
        printf '%s\n' "$code" >&3
    else
        echo "error: no $purpose code arrived in $VA_OUTBOX" >&2
    fi
    exec 3>&-
    wait "$pid" || rc=$?
    return "$rc"
}

# Registers EMAIL (verifying it with the mailed code), then logs in (with the
# mailed login code). Output of vault goes to LOG ($2).
va_register_and_login() {
    local email=$1 log=$2
    va_vault_with_code verification register --email "$email" >>"$log" 2>&1 || return 1
    va_vault_with_code login login --email "$email" >>"$log" 2>&1
}
