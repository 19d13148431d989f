# shellcheck shell=bash
# Dependency installer for the test suite and the demo. Source this file,
# then call ensure_packages (the test suite) or sv_install_packages PKG...
# Installs only what is missing; fails clearly otherwise.

# Debian packages the test suite needs (FUSE, private MariaDB, a real SMTP
# server, and the tools the integration tests and benchmarks drive: the
# mount tests run cp, rsync, tar, git, sqlite3, restic, setfattr/getfattr,
# touch, truncate, diff and mariadb-dump in the mount).
SV_DEBIAN_PACKAGES=(
    fuse3
    mariadb-server
    mariadb-client
    python3-aiosmtpd
    python3-pip
    python3-venv
    sqlite3
    rsync
    git
    tar
    restic
    attr
    xxd
    curl
    procps
    pkg-config
    coreutils
    diffutils
    util-linux
)

# What scripts/demo.sh needs beyond the Rust toolchain: fusermount3.
# shellcheck disable=SC2034 # used by scripts/demo.sh
SV_DEMO_PACKAGES=(
    fuse3
)

# Prints the packages from the arguments that dpkg does not report as installed.
sv_missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        if [[ "$status" != "installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# Installs those of the given Debian packages that are missing (as root,
# with apt-get; otherwise says what to run and fails). Verifies the result.
sv_install_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "error: dpkg-query not found; this script supports Debian/Ubuntu only (needs: $*)" >&2
        return 1
    fi

    local -a missing=()
    local pkg
    while IFS= read -r pkg; do
        [[ -n "$pkg" ]] && missing+=("$pkg")
    done < <(sv_missing_packages "$@")

    ((${#missing[@]} == 0)) && return 0
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "error: missing Debian packages; install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
    echo "installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq; then
        echo "error: apt-get update failed" >&2
        return 1
    fi
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null; then
        echo "error: apt-get install failed for: ${missing[*]}" >&2
        return 1
    fi
    # Verify: a package that apt "installed" but dpkg still reports as
    # missing (half-configured) is an error, not something to ignore.
    local -a still=()
    while IFS= read -r pkg; do
        [[ -n "$pkg" ]] && still+=("$pkg")
    done < <(sv_missing_packages "${missing[@]}")
    if ((${#still[@]} > 0)); then
        echo "error: packages still not installed after apt-get: ${still[*]}" >&2
        return 1
    fi
}

# Everything the test suite needs: the Debian packages and the Rust components.
ensure_packages() {
    sv_install_packages "${SV_DEBIAN_PACKAGES[@]}" || return 1
    ensure_rust_components
}

# rustfmt and clippy are needed by the fmt and clippy steps.
ensure_rust_components() {
    local -a comps=()
    cargo fmt --version >/dev/null 2>&1 || comps+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || comps+=(clippy)
    ((${#comps[@]} == 0)) && return 0
    if command -v rustup >/dev/null 2>&1; then
        echo "installing missing Rust components: ${comps[*]}"
        if ! rustup component add "${comps[@]}"; then
            echo "error: rustup component add ${comps[*]} failed" >&2
            return 1
        fi
    else
        echo "error: missing Rust components (${comps[*]}) and no rustup to install them" >&2
        return 1
    fi
}
