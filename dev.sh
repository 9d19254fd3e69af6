#!/usr/bin/env bash
# cogent's developer entry point. Installs what the build needs (Debian packages), then:
#   ./dev.sh demo    build in ./build and run build/examples/demo
#   ./dev.sh test    the checks (format, layers, clang-tidy; see ./dev.sh lint), then build and
#                    run the suite twice: ./build (normal) and ./build-asan (AddressSanitizer +
#                    UndefinedBehaviorSanitizer); the last line printed is "N passed, N failed"
#                    over both (skips on the line before), a failed check counting as one failure
#                    (with CI=true a skip fails and warnings are errors)
#   ./dev.sh lint    build in ./build and run only the checks
#   ./dev.sh format  reformat the C/C++ files with clang-format (what the format check wants)
#   ./dev.sh bench   build in ./build and run bench/run.sh [ARGS...]
set -euo pipefail

# Every Debian package the build, the tests and the examples need. Add new ones here.
PACKAGES=(
    g++
    meson
    ninja-build
    pkg-config
    libboost-context-dev
    libev-dev
    libc-ares-dev
    doctest-dev
    clang-format
    clang-tidy-19
    python3
    binutils
    gdb
    libssl-dev openssl
    postgresql libpq-dev postgresql-client redis-server redis-tools libhiredis-dev libcurl4-openssl-dev curl xz-utils zstd memcached libmemcached-dev
)
# What `./dev.sh bench` needs on top: the load generator and the servers it compares against.
BENCH_PACKAGES=(
    wrk
    python3-gevent
    python3-matplotlib
    util-linux
    nginx
)
JOBS=2  # the machine has 2 cores, shared

cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo "dev.sh: $*" >&2; }

# ensure_packages [PKG...]: install those of PACKAGES and the given ones that dpkg does not
# report as installed (apt-get update once, then apt-get install -y).
ensure_packages() {
    local wanted=("${PACKAGES[@]}" "$@")
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "dpkg-query not found: not a Debian system; install these yourself: ${wanted[*]}"
        return 0
    fi
    local missing=() p status
    for p in "${wanted[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ "$status" == "install ok installed" ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "missing packages (${missing[*]}) and not root, without sudo: install them as root"
            return 1
        fi
    fi
    log "installing missing packages: ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# configure DIR [MESON_OPTIONS...]: meson setup, or reconfigure if DIR is already a build dir.
configure() {
    local dir=$1
    shift
    if [[ -f "$dir/meson-private/coredata.dat" ]]; then
        # A reconfigure can fail when the old dir came from another meson version: start over.
        meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# Meson options of every build: in CI (CI=true) a compiler warning fails the build.
BUILD_OPTIONS=()
[[ "${CI:-}" == "true" ]] && BUILD_OPTIONS+=(-Dwerror=true)

# build DIR [MESON_OPTIONS...]: configure and compile.
build() {
    local dir=$1
    shift
    configure "$dir" "${BUILD_OPTIONS[@]}" "$@" && meson compile -C "$dir" -j "$JOBS"
}

# ---- checks -------------------------------------------------------------------------------------
# Each prints what is wrong and how to fix it, and returns non-zero on a finding.

# The C/C++ files clang-format owns.
format_files() {
    find src include patch tests bench examples -type f \
        \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.c' -o -name '*.cc' \) | sort
}

# check_format: every C/C++ file as .clang-format wants it.
check_format() {
    local out
    if ! out=$(format_files | xargs clang-format --dry-run --Werror 2>&1); then
        echo "$out" | grep -E '^[^ ].*: error:' | sed 's/:[0-9]*:[0-9]*: error:.*//' | sort -u |
            sed 's/^/  not formatted: /' >&2
        log "format check FAILED: run ./dev.sh format (clang-format -i) and commit the result"
        return 1
    fi
    log "format check passed"
}

# check_layers DIR: no object file of the library uses a higher layer (scripts/check_layers.py).
check_layers() {
    if ! python3 scripts/check_layers.py "$1"; then
        log "layer check FAILED: a file uses a layer above its own (see CONTRIBUTING.md, Layers)"
        return 1
    fi
    log "layer check passed"
}

# check_tidy DIR: clang-tidy (.clang-tidy) over the translation units of src/ and patch/, with
# DIR's compile_commands.json. Version 19: clang 14 (Debian's default) cannot parse libstdc++
# 12's <source_location>.
check_tidy() {
    local dir=$1 start=$SECONDS ok=true
    local tidy=clang-tidy-19 runner=run-clang-tidy-19
    if ! command -v "$tidy" >/dev/null || ! command -v "$runner" >/dev/null; then
        log "clang-tidy FAILED: $tidy / $runner not found (Debian package clang-tidy-19)"
        return 1
    fi
    # -Wno-error: in CI the compile commands carry -Werror, which would turn clang's own
    # warnings (not ours to judge here: gcc's -Werror build does) into errors.
    "$runner" -quiet -clang-tidy-binary "$(command -v "$tidy")" -extra-arg=-Wno-error \
        -p "$dir" -j "$JOBS" "^$PWD/(src|patch)/.*\.cpp$" >"$dir/clang-tidy.log" 2>&1 || ok=false
    if ! $ok; then
        grep -E '(warning|error):' "$dir/clang-tidy.log" | sort -u >&2 || cat "$dir/clang-tidy.log" >&2
        log "clang-tidy FAILED (full output: $dir/clang-tidy.log): fix the findings above, or see"
        log "  .clang-tidy for the checks and CONTRIBUTING.md for when a NOLINT is acceptable"
        return 1
    fi
    log "clang-tidy passed ($((SECONDS - start)) s)"
}

# run_check NAME CMD...: run a check; a failure counts as one failed test in the totals.
run_check() {
    local name=$1
    shift
    echo
    echo "================ check: $name ================"
    if ! "$@"; then
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
        FAILED_CHECKS+=("$name")
    fi
}

cmd_demo() {
    ensure_packages
    build build
    echo
    exec build/examples/demo
}

cmd_bench() {
    ensure_packages "${BENCH_PACKAGES[@]}"
    build build
    if [[ ! -f bench/run.sh ]]; then
        log "bench/run.sh does not exist yet: no benchmarks to run"
        return 0
    fi
    bash bench/run.sh "$@"
}

# Totals over every build of `./dev.sh test`.
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
FAILED_CHECKS=()

# summary_count LOG KEY: the number on meson test's last summary line "KEY:   N".
summary_count() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" |
        awk -v key="$2" '$0 ~ "^" key ":[ \t]+[0-9]+[ \t]*$" { n = $NF } END { print n + 0 }'
}

# run_suite NAME DIR [MESON_OPTIONS...]: build DIR and run meson test there; add to the totals.
# Never exits early: a failing build counts as one failure and the caller moves on.
run_suite() {
    local name=$1 dir=$2
    shift 2
    echo
    echo "================ $name build ($dir) ================"
    if ! build "$dir" "$@"; then
        log "$name build FAILED (counted as 1 failure)"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
        return 0
    fi

    local out rc
    out=$(mktemp)
    set +e
    meson test -C "$dir" --print-errorlogs 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e

    local ok xfail fail upass skipped timeout
    ok=$(summary_count "$out" "Ok")
    xfail=$(summary_count "$out" "Expected Fail")
    fail=$(summary_count "$out" "Fail")
    upass=$(summary_count "$out" "Unexpected Pass")
    skipped=$(summary_count "$out" "Skipped")
    timeout=$(summary_count "$out" "Timeout")
    rm -f "$out"

    local passed=$((ok + xfail)) failed=$((fail + upass + timeout))
    if ((rc != 0 && failed == 0)); then
        # meson test failed without a failing test to show for it (a build step inside it, a
        # crash of the runner): do not let that pass as green.
        log "$name: meson test exited with status $rc (counted as 1 failure)"
        failed=1
    fi
    log "$name: $passed passed, $failed failed, $skipped skipped"
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + skipped))
}

# A test case skips (COGENT_SKIP in tests/support.hpp, meson's "Skipped") when the machine lacks
# what it needs: root (port 53, a mount namespace), IPv6 on the loopback, a program from
# PACKAGES. CI has all of it, so there nothing may skip: COGENT_TEST_NO_SKIP=1 makes a skip a
# failure. This also gives the loopback IPv6 when it has none (a container may start without).
ci_prepare() {
    export COGENT_TEST_NO_SKIP=1
    if [[ $(id -u) -ne 0 ]]; then
        log "CI=true but not root: the test cases that need root will fail instead of skipping"
    fi
    local v6=/proc/sys/net/ipv6/conf/lo/disable_ipv6
    if [[ ! -e $v6 ]]; then
        log "CI=true but this kernel has no IPv6: the IPv6 test cases will fail"
    elif [[ $(cat "$v6") != 0 ]]; then
        log "enabling IPv6 on the loopback (::1) for the IPv6 test cases"
        local sudo=()
        [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo=(sudo)
        echo 0 | "${sudo[@]}" tee "$v6" >/dev/null ||
            log "could not enable IPv6 on the loopback: the IPv6 test cases will fail"
    fi
}

cmd_test() {
    ensure_packages
    if [[ "${CI:-}" == "true" ]]; then
        ci_prepare
    fi
    run_check format check_format
    run_suite normal build
    run_check layers check_layers build
    run_check clang-tidy check_tidy build

    # Stop at the first report and make it a failure; print UBSan's stack traces.
    export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}"
    # -O1 (ASan's advice) and no bench/: the build is most of the run's time.
    run_suite "ASan/UBSan" build-asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Doptimization=1 -Dbench=false

    echo
    ((${#FAILED_CHECKS[@]} == 0)) || log "failed checks: ${FAILED_CHECKS[*]}"
    log "skipped: $TOTAL_SKIPPED"
    echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
    ((TOTAL_FAILED == 0))
}

cmd_lint() {
    ensure_packages
    run_check format check_format
    if build build; then
        run_check layers check_layers build
        run_check clang-tidy check_tidy build
    else
        log "build FAILED"
        FAILED_CHECKS+=(build)
    fi
    ((${#FAILED_CHECKS[@]} == 0)) || {
        log "failed checks: ${FAILED_CHECKS[*]}"
        return 1
    }
    log "all checks passed"
}

cmd_format() {
    ensure_packages
    format_files | xargs clang-format -i
    log "reformatted with clang-format (.clang-format); review with git diff"
}

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
    demo) cmd_demo ;;
    test) cmd_test ;;
    lint) cmd_lint ;;
    format) cmd_format ;;
    bench)
        shift
        cmd_bench "$@"
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
