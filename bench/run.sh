#!/usr/bin/env bash
# Build cogent (build/), run build/bench/cogent-bench and compare the figures with the targets
# of issues 2, 5 and 6.
#
#   bench/run.sh [FIGURE...]     # no FIGURE: every figure, then the HTTP benchmark
#   bench/run.sh http [ARGS...]  # only the HTTP benchmark of issue 4: bench/http.py ARGS
#                                # (HTTP_BENCH_QUICK=1 for a quick run; see bench/http.py)
#   bench/run.sh threads [ARGS...]  # only the green-thread benchmark of issue 14 (release build
#                                # in build-rel/): bench/threaded_http.py ARGS (--quick: quick)
#   bench/run.sh https [ARGS...]  # only the TLS benchmark, https_hello against nginx (release
#                                # build in build-rel/): bench/https.py ARGS (--quick: quick)
#
# Prints the raw `NAME VALUE UNIT` lines, then a table: figure, value, target, PASS/MISS
# ("-" for figures without a target; target "—" and status "-" for the informative figures,
# which the issue measures but sets no number for). Exit status: 0 if nothing missed, 1 if a
# figure missed its target, 2 for a bad figure name, other non-zero if the build or the benchmark
# failed.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ ! -f build/build.ninja ]; then
    meson setup build >&2
fi
ninja -C build -j2 >&2
if [ "${1:-}" = threads ]; then
    shift
    [ -f build-rel/build.ninja ] || meson setup build-rel --buildtype=release >&2
    exec bench/threaded_http.py --build build-rel "$@"
fi
if [ "${1:-}" = https ]; then
    shift
    [ -f build-rel/build.ninja ] || meson setup build-rel --buildtype=release >&2
    exec bench/https.py --build build-rel "$@"
fi
if [ "${1:-}" = http ]; then
    shift
    exec bench/http.py --build build --no-build "$@"
fi

out=$(build/bench/cogent-bench "$@")
printf '%s\n\n' "$out"

status=0
printf '%s\n' "$out" | awk '
    { value[$1] = $2; unit[$1] = $3; order[++n] = $1 }
    END {
        # name -> maximum allowed value (switch_ns: relative to boost_switch_ns)
        limit["switch_ratio"] = 1.5;        tdesc["switch_ratio"] = "<= 1.5 x"
        limit["yield_ns"] = 40;             tdesc["yield_ns"] = "<= 40 ns"
        limit["spawn_join_ns"] = 200;       tdesc["spawn_join_ns"] = "<= 200 ns"
        limit["blocked_rss_bytes"] = 4608;  tdesc["blocked_rss_bytes"] = "<= 4608 bytes"
        limit["queue_item_ns"] = 50;        tdesc["queue_item_ns"] = "<= 50 ns"
        # issue 5: 1000 lookups at once / one lookup; 1.0 is the floor, 1000 is one by one
        limit["dns_concurrent"] = 1.5;      tdesc["dns_concurrent"] = "<= 1.5 x (floor 1.0)"
        info["dns_roundtrip_us"] = 1
        # issue 6: the monkey patch (bench/patch_bench.cpp), with the shim / without it
        limit["patch_passthrough_ratio"] = 1.03; tdesc["patch_passthrough_ratio"] = "<= 1.03 x"
        limit["patch_pingpong_ratio"] = 1.10;    tdesc["patch_pingpong_ratio"] = "<= 1.10 x"
        # the sync family: an uncontended mutex under the shim / under glibc; green waits against
        # the same between real threads (thread_*, informative)
        limit["patch_mutex_passthrough_ratio"] = 1.10
        tdesc["patch_mutex_passthrough_ratio"] = "<= 1.10 x"
        info["green_mutex_handoff_ns"] = 1; info["thread_mutex_handoff_ns"] = 1
        info["green_cond_pingpong_ns"] = 1; info["thread_cond_pingpong_ns"] = 1
        # green threads (--threads): the target is against real threads, checked by hand
        info["green_thread_create_join_ns"] = 1; info["thread_create_join_ns"] = 1
        limit["green_thread_rss_bytes"] = 6144; tdesc["green_thread_rss_bytes"] = "<= 6144 bytes"
        info["thread_rss_bytes"] = 1
        # informative: no numeric target
        info["queue_item_bounded_ns"] = 1; info["channel_item_ns"] = 1
        info["event_wake_ns"] = 1;         info["semaphore_handoff_ns"] = 1
        if ("boost_switch_ns" in value) {
            limit["switch_ns"] = 1.5 * value["boost_switch_ns"]
            tdesc["switch_ns"] = sprintf("<= %.2f ns (1.5 x boost)", limit["switch_ns"])
        } else {
            tdesc["switch_ns"] = "<= 1.5 x boost_switch_ns"
        }
        printf "%-26s %14s  %-28s %s\n", "figure", "value", "target", "status"
        printf "%-26s %14s  %-28s %s\n", "------", "-----", "------", "------"
        miss = 0
        for (i = 1; i <= n; i++) {
            k = order[i]
            status = "-"
            if (k in limit) {
                if (value[k] + 0 <= limit[k]) status = "PASS"; else { status = "MISS"; miss++ }
            } else if (k in tdesc) {
                status = "?"
            }
            t = (k in tdesc) ? tdesc[k] : "-"
            # "—" is one column but three bytes: pad it by hand (awk widths count bytes).
            if (k in info) t = "—                           "
            else t = sprintf("%-28s", t)
            printf "%-26s %14s  %s %s\n", k, value[k] " " unit[k], t, status
        }
        if (miss) printf "\n%d figure(s) missed their target\n", miss
        exit miss ? 1 : 0
    }' || status=$?
# The HTTP benchmark (its own table; exit status 1 if it missed a target).
if [ $# -eq 0 ]; then
    printf '\n'
    bench/http.py --build build --no-build || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
fi
exit "$status"
