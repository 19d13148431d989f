#!/usr/bin/env bash
# SecureVault: the whole test run, as CI runs it (.ci/run).
#
#   scripts/test.sh                  install what is missing, start private
#                                    MariaDB + SMTP + S3, then fmt, dependency
#                                    check, clippy, build, tests, fuzz check,
#                                    format cross-check
#   scripts/test.sh --quick          the same without clippy
#   scripts/test.sh --services-only  start the services, print their
#                                    variables and wait (Ctrl-C stops them)
#
# The services are private instances under one temporary directory and are
# always stopped on exit (success, failure or Ctrl-C).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"

# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

QUICK=0
SERVICES_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --services-only) SERVICES_ONLY=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "error: unknown option '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

# One target dir for every build, the fuzz workspace and the Python venv too.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

START=$SECONDS
CURRENT_STEP=""
DONE_STEPS=()

fmt_secs() {
    local s=$1
    if ((s >= 60)); then
        printf '%dm%02ds' $((s / 60)) $((s % 60))
    else
        printf '%ds' "$s"
    fi
}

# EXIT hook (runs before the services stop): the one-line summary.
summary() {
    local rc=$1 total
    total=$(fmt_secs $((SECONDS - START)))
    local done_list="none"
    if ((${#DONE_STEPS[@]} > 0)); then
        done_list=$(printf '%s, ' "${DONE_STEPS[@]}")
        done_list=${done_list%, }
    fi
    echo
    if [[ "$CURRENT_STEP" == "services-only" ]]; then
        echo "==> services stopped (exit $rc) after $total"
    elif ((rc == 0)); then
        echo "==> PASSED: ${done_list}; total $total"
    elif [[ -n "$CURRENT_STEP" ]]; then
        echo "==> FAILED at '$CURRENT_STEP' (exit $rc) after $total; passed before it: ${done_list}"
    else
        echo "==> FAILED (exit $rc) after $total; passed: ${done_list}"
    fi
}

# run_step NAME COMMAND...: a header, the command, its time. Under set -e a
# failing command ends the script; the summary names the step.
run_step() {
    local name=$1
    shift
    CURRENT_STEP=$name
    printf '\n==> %s\n' "$name"
    local t0=$SECONDS
    "$@"
    DONE_STEPS+=("$name $(fmt_secs $((SECONDS - t0)))")
    CURRENT_STEP=""
}

start_services() {
    check_fuse
    start_mariadb
    start_smtp
    start_s3
    # Tests fail instead of skipping when a service variable is missing.
    export VAULT_TEST_REQUIRE_SERVICES=1
}

print_service_env() {
    local var
    for var in VAULT_TEST_MYSQL_URL VAULT_TEST_MYSQL_ADMIN_URL VAULT_TEST_SMTP_URL \
        VAULT_TEST_MAILDIR VAULT_TEST_S3_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
        VAULT_TEST_FUSE VAULT_TEST_REQUIRE_SERVICES; do
        printf 'export %s=%q\n' "$var" "${!var}"
    done
}

# scripts/verify_format.py cross-checks the on-disk format with an independent
# Python implementation; it needs cryptography and argon2-cffi, kept in a venv
# under the target dir and reused between runs.
verify_format() {
    local venv="$CARGO_TARGET_DIR/pyenv"
    if ! "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
        rm -rf -- "$venv"
        if ! python3 -m venv "$venv"; then
            echo "error: 'python3 -m venv $venv' failed (python3 is $(command -v python3))" >&2
            return 1
        fi
    fi
    if ! "$venv/bin/python" -c 'import cryptography, argon2.low_level' >/dev/null 2>&1; then
        "$venv/bin/python" -m pip install --disable-pip-version-check -q cryptography argon2-cffi
    fi
    "$venv/bin/python" scripts/verify_format.py
}

sv_add_exit_hook summary

echo "==> SecureVault test run in $ROOT"
echo "    $(cargo --version 2>/dev/null || echo 'cargo: not found'); $(rustc --version 2>/dev/null || echo 'rustc: not found')"
echo "    target dir: $CARGO_TARGET_DIR${CI:+; CI=$CI}"

run_step "packages" ensure_packages
run_step "services" start_services

if ((SERVICES_ONLY)); then
    echo
    echo "# Services are running. Variables for the tests (also in $SV_WORK/env):"
    print_service_env | tee "$SV_WORK/env"
    echo "# MariaDB shell: mariadb --no-defaults -h127.0.0.1 -P$SV_MARIADB_PORT -uvault -p$SV_MARIADB_PASSWORD vault_test"
    echo "# Press Ctrl-C to stop them."
    CURRENT_STEP="services-only"
    # Returns when a service dies; a signal runs the trap (clean stop).
    set +e
    wait -n "${SV_PIDS[@]}"
    set -e
    echo "error: a service exited unexpectedly" >&2
    exit 1
fi

run_step "cargo fmt --all --check" cargo fmt --all --check
run_step "scripts/check-deps.sh" scripts/check-deps.sh
if ((QUICK)); then
    echo
    echo "==> cargo clippy: skipped (--quick)"
else
    run_step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
fi
run_step "cargo build" cargo build --workspace --all-targets --locked
# The tests start the binaries just built instead of building them again
# (see tests/src/lib.rs, binary()).
run_step "cargo test" env VAULT_TEST_PREBUILT=1 cargo test --workspace --locked
if [[ -f fuzz/Cargo.toml ]]; then
    run_step "cargo check (fuzz)" cargo check --manifest-path fuzz/Cargo.toml --locked
fi
if [[ -f scripts/verify_format.py ]]; then
    run_step "scripts/verify_format.py" verify_format
fi
