#!/usr/bin/python3
"""Green threads (issue 14), measured: an unmodified thread-per-connection server under
`cogent-run --threads` against the same binary on OS threads and against a hand-written libev
server; how many connections and threads each holds.

    bench/threaded_http.py [--build DIR] [--rounds R] [--duration S] [--quick] [--no-build]

Servers (same protocol and responses as bench/http.py's):
  real    DIR/examples/threaded_http                      one OS thread per connection
  green   DIR/patch/cogent-run --threads -- threaded_http  the same binary, threads as greenlets
  libev   DIR/bench/http_libev                            hand-written libev C server

Parts, each printed as `NAME VALUE UNIT` lines on stdout (progress on stderr), then a table:
1. CPU per request at 100 keep-alive connections (wrk -t1 -c100), server pinned to one CPU
   and wrk to the other, runs alternating server by server over --rounds rounds, medians (as
   bench/http.py measures). Targets: green <= 0.6x real, <= 1.5x libev.
2. wrk -c10000 (fd limits raised to the hard limit) against a fresh green server and a fresh
   real one: socket errors (target 0 for green), req/s, the server's OS threads and peak RSS.
3. Connections held at once: DIR/bench/conn10k opens N connections (default: 100,000, or as
   many as the fd hard limit allows the server, minus a margin), keeps them all open and sends requests
   over all of them; green and real side by side.
4. Threads alive at once: DIR/bench/thread_max (plain C) with OS threads (they stop near
   kernel.pid_max / vm.max_map_count / 2: about 32,000 here) and under --threads (target
   100,000).
Exit status 0 if every target was met, 1 if one missed, 2 for a setup problem.
"""
import argparse
import importlib.util
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(HERE)

# bench/http.py's Server, wrk runner and CPU clock (loaded by path: "http" is a stdlib name).
_spec = importlib.util.spec_from_file_location("cogent_http_bench", os.path.join(HERE, "http.py"))
hb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hb)

TARGET_VS_REAL = 0.6
TARGET_VS_LIBEV = 1.5
TARGET_THREADS = 100000


def log(*a):
    print("threaded_http.py:", *a, file=sys.stderr, flush=True)


def figure(name, value, unit):
    print(f"{name} {value} {unit}", flush=True)


class Args:  # what hb.run_wrk reads
    def __init__(self, connections, wrk_threads=1):
        self.connections = connections
        self.wrk_threads = wrk_threads


def os_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def run_sampling(cmd, server):
    """Runs client `cmd` (fd limit raised) to its end, sampling the server's OS threads; returns
    (stdout, stderr, exit status, the most OS threads seen)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=hb.raise_nofile)
    peak_threads = 0
    while proc.poll() is None:
        try:
            peak_threads = max(peak_threads, os_threads(server.pid))
        except OSError:
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    return out, err, proc.returncode, peak_threads


def wrk_many(server, connections, duration, cpu):
    """wrk -c`connections` with the fd limit raised; samples the server's OS threads."""
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
        f"http://127.0.0.1:{server.port}/"]
    out, err, returncode, peak_threads = run_sampling(cmd, server)
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({returncode}): {err or out}")
    requests = int(m.group(1))
    secs = float(m.group(2)) * {"s": 1, "ms": 1e-3, "m": 60}.get(m.group(3), 1)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"requests": requests, "rps": requests / secs if secs else 0.0, "errors": errors,
            "threads": peak_threads, "rss_kib": hb.peak_rss_kib(server.pid)}


def hold(server, build, conns, rounds, cpu):
    """conn10k against `server`: all `conns` open at once, `rounds` request rounds."""
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        os.path.join(build, "bench", "conn10k"), "--port", str(server.port), "--conns",
        str(conns), "--rounds", str(rounds)]
    out, err, returncode, peak_threads = run_sampling(cmd, server)
    m = re.search(r"conn10k conns=(\d+) rounds=(\d+) errors=(\d+) open_s=([\d.]+) "
                  r"rounds_s=([\d.]+) total_s=([\d.]+)", out)
    if not m:
        return {"ok": False, "errors": -1, "text": f"conn10k failed: {err.strip()[-300:]}"}
    errors = int(m.group(3))
    return {"ok": errors == 0 and returncode == 0, "errors": errors,
            "open_s": float(m.group(4)), "threads": peak_threads,
            "rss_kib": hb.peak_rss_kib(server.pid) if server.proc.poll() is None else 0}


def thread_max(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    m = re.search(r"thread_max alive=(\d+) stopped_by=(.*) create_s=([\d.]+) rss_kib=(-?\d+) "
                  r"os_threads=(-?\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"thread_max failed ({out.returncode}): {out.stderr[-300:]}")
    return {"alive": int(m.group(1)), "why": m.group(2), "create_s": float(m.group(3)),
            "rss_kib": int(m.group(4)), "os_threads": int(m.group(5))}


def main():
    ap = argparse.ArgumentParser(description="green threads: threaded_http under --threads")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="meson build dir (default: build; use a release build for figures)")
    ap.add_argument("--no-build", action="store_true", help="do not build first")
    ap.add_argument("--rounds", type=int, help="runs per server at 100 connections (default 5, "
                    "quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 5, quick 3)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3 s runs")
    ap.add_argument("--hold", type=int, default=0, help="connections to hold in part 3 (default: "
                    "100,000, or the fd hard limit minus 200 if that is lower)")
    ap.add_argument("--max-threads", type=int, default=TARGET_THREADS,
                    help=f"part 4's thread count target (default {TARGET_THREADS})")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    duration = args.duration or (3 if args.quick else 5)
    if rounds < 1 or duration < 1 or args.hold < 0 or args.max_threads < 1:
        ap.error("--rounds, --duration and --max-threads must be at least 1, --hold at least 0")
    build = os.path.abspath(args.build)
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            log(f"{tool} not found: install the Debian package "
                f"{'wrk' if tool == 'wrk' else 'util-linux'}")
            return 2
    if not os.path.exists(os.path.join(build, "build.ninja")):
        log(f"{build} is not a meson build dir: run `meson setup {build}` first")
        return 2
    # meson target names (the shim's file name carries its version)
    targets = ["threaded_http", "cogent-run", "cogent_patch", "http_libev", "conn10k",
               "thread_max"]
    if not args.no_build:
        if subprocess.run(["meson", "compile", "-C", build, "-j2"] + targets,
                          stdout=sys.stderr).returncode:
            log("build failed")
            return 2
    threaded = os.path.join(build, "examples", "threaded_http")
    run = os.path.join(build, "patch", "cogent-run")
    exes = {"real": [threaded], "green": [run, "--threads", "--", threaded],
            "libev": [os.path.join(build, "bench", "http_libev")]}
    affinity = sorted(os.sched_getaffinity(0))
    cpus = (affinity[0], affinity[1]) if len(affinity) >= 2 else (None, None)
    logdir = os.path.join(build, "bench")
    os.makedirs(logdir, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log(f"build {build} ({hb.buildtype(build)}); fd limit {soft}/{hard}; server on CPU "
        f"{cpus[0]}, clients on CPU {cpus[1]}")
    miss = 0
    rows = []

    # 1. CPU per request at 100 connections.
    log(f"part 1: wrk -t1 -c100, {rounds} rounds of {duration} s per server")
    procs, runs = {}, {s: [] for s in exes}
    try:
        for s in exes:
            procs[s] = hb.Server(f"threaded_{s}", exes[s], cpus[0], logdir)
        for s in exes:
            procs[s].wait_ready()
        for s in exes:
            hb.run_wrk(procs[s], "plain", 1, Args(100), cpus[1])
        for r in range(1, rounds + 1):
            for s in exes:
                res = hb.run_wrk(procs[s], "plain", duration, Args(100), cpus[1])
                runs[s].append(res)
                log(f"round {r}/{rounds} {s:5}: {res['cpu_us']:6.3f} us/req "
                    f"{res['rps']:9.0f} req/s  busy {res['busy'] * 100:3.0f}%"
                    + (f"  ERRORS {res['errors']}" if res["errors"] else ""))
    finally:
        for p in procs.values():
            p.stop()
    cpu = {s: statistics.median(x["cpu_us"] for x in runs[s]) for s in exes}
    rps = {s: statistics.median(x["rps"] for x in runs[s]) for s in exes}
    errs = {s: sum(x["errors"] for x in runs[s]) for s in exes}
    for s in exes:
        figure(f"threaded_http_{s}_cpu_per_req_us", f"{cpu[s]:.3f}", "us")
    vs_real, vs_libev = cpu["green"] / cpu["real"], cpu["green"] / cpu["libev"]
    figure("threaded_http_green_vs_real", f"{vs_real:.2f}", "x")
    figure("threaded_http_green_vs_libev", f"{vs_libev:.2f}", "x")
    for s in exes:
        ok = errs[s] == 0
        target = {"green": f"<= {TARGET_VS_REAL}x real, <= {TARGET_VS_LIBEV}x libev"}.get(s, "-")
        if s == "green":
            ok = ok and vs_real <= TARGET_VS_REAL and vs_libev <= TARGET_VS_LIBEV
        status = ("PASS" if ok else "MISS") if s == "green" else ("-" if ok else "ERRORS")
        miss += status in ("MISS", "ERRORS")
        rows.append((f"100 conns: {s}", f"{cpu[s]:.3f} us/req, {rps[s]:,.0f} req/s, "
                     f"{cpu[s] / cpu['real']:.2f}x real, {cpu[s] / cpu['libev']:.2f}x libev",
                     target, status))

    # 2. wrk -c10000.
    log("part 2: wrk -t1 -c10000 -d5s, fresh servers")
    for s in ("green", "real"):
        srv = hb.Server(f"threaded_{s}_10k", exes[s], cpus[0], logdir)
        try:
            srv.wait_ready()
            res = wrk_many(srv, 10000, 5, cpus[1])
        finally:
            srv.stop()
        log(f"  {s}: {res['requests']} requests, {res['rps']:.0f} req/s, errors "
            f"{res['errors']}, OS threads {res['threads']}, peak RSS {res['rss_kib'] // 1024} MiB")
        figure(f"threaded_http_{s}_c10000_errors", res["errors"], "errors")
        figure(f"threaded_http_{s}_c10000_os_threads", res["threads"], "threads")
        ok = res["errors"] == 0 or s == "real"
        miss += not ok
        rows.append((f"wrk -c10000: {s}", f"{res['errors']} errors, {res['rps']:,.0f} req/s, "
                     f"{res['threads']} OS threads, {res['rss_kib'] // 1024} MiB",
                     "0 errors" if s == "green" else "-",
                     ("PASS" if ok else "MISS") if s == "green" else "-"))

    # 3. Connections held at once.
    conns = args.hold or min(hard - 200, 100000)
    log(f"part 3: {conns} connections held at once (fd hard limit {hard})")
    for s in ("green", "real"):
        srv = hb.Server(f"threaded_{s}_hold", exes[s], cpus[0], logdir)
        try:
            srv.wait_ready()
            res = hold(srv, build, conns, 2, cpus[1])
        finally:
            srv.stop()
        if "open_s" in res:
            log(f"  {s}: errors {res['errors']}, opened in {res['open_s']:.2f} s, OS threads "
                f"{res['threads']}, peak RSS {res['rss_kib'] // 1024} MiB")
        else:
            log(f"  {s}: {res['text']}")
        figure(f"threaded_http_{s}_held_connections", conns if res["ok"] else 0, "connections")
        miss += s == "green" and not res["ok"]
        rows.append((f"{conns} conns held: {s}",
                     (f"{res['errors']} errors, {res['threads']} OS threads, "
                      f"{res['rss_kib'] // 1024} MiB" if "open_s" in res else res["text"]),
                     "0 errors" if s == "green" else "-",
                     ("PASS" if res["ok"] else "MISS") if s == "green" else "-"))

    # 4. Threads alive at once.
    tm = os.path.join(build, "bench", "thread_max")
    n = str(args.max_threads)
    log(f"part 4: threads alive at once, up to {n}")
    for s, argv in (("real", [tm, "--max", n]), ("green", [run, "--threads", "--", tm, "--max", n])):
        res = thread_max(argv)
        log(f"  {s}: {res['alive']} alive (stopped by: {res['why']}) in {res['create_s']:.2f} s, "
            f"{res['os_threads']} OS threads, RSS {res['rss_kib'] // 1024} MiB")
        figure(f"{s}_thread_max", res["alive"], "threads")
        ok = res["alive"] >= args.max_threads
        miss += s == "green" and not ok
        rows.append((f"threads alive: {s}", f"{res['alive']:,} (stopped by: {res['why']}), "
                     f"{res['os_threads']:,} OS threads, {res['rss_kib'] // 1024} MiB",
                     f">= {args.max_threads:,}" if s == "green" else "-",
                     ("PASS" if ok else "MISS") if s == "green" else "-"))

    print(f"\nthreaded_http ({hb.buildtype(build)} build; {rounds} rounds of {duration} s at 100 "
          f"connections; fd hard limit {hard})")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in [("what", "figure", "target", "status")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 1 if miss else 0


if __name__ == "__main__":
    sys.exit(main())
