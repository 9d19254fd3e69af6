#!/usr/bin/python3
"""The TLS benchmark: cogent's https_hello against nginx, server CPU time per request and per
new TLS connection, side by side.

    bench/https.py [--build DIR] [--rounds R] [--duration S] [--quick] [--chart PNG] ...
    HTTPS_BENCH_QUICK=1 bench/https.py      # the same as --quick
    bench/run.sh https [ARGS...]            # the same with --build build-rel (release)

Servers (one process, one thread each; the same certificate and key, self-signed, made with the
openssl CLI in a temporary directory: ECDSA P-256 by default, --key-type rsa2048 for RSA):
  cogent  DIR/examples/https_hello --cert --key   cogent's TLS server (examples/https_hello.cpp);
          its plain-HTTP figure is DIR/examples/http_hello's
  nginx   Debian's nginx, `daemon off; master_process off; worker_processes 1;` (the measured
          process is the worker), TLS on one port and plain HTTP on another, keepalive_requests
          1000000, access_log off, server_tokens off, `ssl_protocols TLSv1.2 TLSv1.3;
          ssl_session_tickets on;` and the default ssl_session_cache (none: stateless tickets
          only), `location / { default_type text/plain; return 200 "Hello, World!"; }`
Both negotiate TLS 1.3 with OpenSSL's default groups and ciphers (x25519, TLS_AES_256_GCM_SHA384;
the table's title says what was negotiated). Both answer every request with a 200 and the
13-byte body "Hello, World!"; nginx's response also carries Server, Date and Connection headers
(nginx cannot drop them): the table's notes give both sizes.

Figures (the table: median over --rounds runs of each figure and server):
  keep-alive HTTPS   server CPU time per request under wrk (1 thread, 100 keep-alive
                     connections, https URL). Target: cogent <= 1.05x nginx.
  keep-alive HTTP    the same over plain HTTP (cogent: http_hello; nginx: its plain port), to
                     show what TLS costs. Informative.
  full handshakes    new TLS connections per second of server CPU: DIR/bench/tls_handshakes
                     (bench/tls_handshakes.c, OpenSSL directly, 4 client processes) makes
                     connections for --duration seconds, each a full handshake, one request,
                     the response, close_notify, the server's close.
                     Target: cogent >= 0.95x nginx.
  resumed handshakes the same, each client process offering the TLS 1.3 session ticket of its
                     first connection every time (a resumption, verified: the client fails if
                     one is not resumed). Target: cogent >= 0.95x nginx.

How it measures (as bench/http.py): the servers are pinned to one CPU and the clients (wrk,
tls_handshakes) to another with taskset; the server's CPU time (utime+stime, from its CPU-time
clock, ns precision; /proc/PID/stat as the fallback) is read before and after each run. All
servers run for the whole benchmark (idle ones cost nothing); after a 1 s warm-up of every
figure and server, each round runs every figure on every server, the servers' order
alternating from round to round.

Prints progress on stderr and ONE table on stdout; writes every run to DIR/bench/https_runs.tsv
and the chart (bench/https_chart.py, needs python3-matplotlib) to --chart (default
DIR/bench/https_chart.png). Exit status 0 if every target was met, 1 if one missed (or a run had
errors), 2 for a setup problem (among them: https_hello not built, so no target was checked;
--servers nginx runs nginx alone and exits 0).
"""
import argparse
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(HERE)
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"Hello, World!"
RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Length: 13\r\n"
            b"Content-Type: text/plain\r\n"
            b"\r\n"
            b"Hello, World!")
ALL_SERVERS = ["cogent", "nginx"]
# figure -> (client, tls, unit, lower is better)
FIGURES = {
    "keepalive_https": ("wrk", True, "us/req", True),
    "keepalive_http": ("wrk", False, "us/req", True),
    "full": ("handshakes", True, "conn/cpu_s", False),
    "resumed": ("handshakes", True, "conn/cpu_s", False),
}
# Targets: cogent/nginx at most (CPU per request) or at least (connections per CPU second).
TARGETS = {"keepalive_https": ("<=", 1.05), "full": (">=", 0.95), "resumed": (">=", 0.95)}


def log(*a):
    print("https.py:", *a, file=sys.stderr, flush=True)


# The helpers bench/http.py already has (as bench/threaded_http.py loads them).
_spec = importlib.util.spec_from_file_location("cogent_http_bench", os.path.join(HERE, "http.py"))
hb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hb)
buildtype, free_port, raise_nofile, cpu_seconds = (hb.buildtype, hb.free_port, hb.raise_nofile,
                                                   hb.cpu_seconds)


def make_cert(tmp, key_type):
    """A self-signed certificate for CN=localhost (and IP 127.0.0.1) and its key."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    newkey = {"ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
              "rsa2048": ["-newkey", "rsa:2048"]}[key_type]
    r = subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert] + newkey, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl req failed: {r.stderr}")
    return cert, key


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx_error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        listen 127.0.0.1:{http_port};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""


class Server:
    """A server process pinned to `cpu`; `ports` maps "tls"/"http" to the ports it serves."""

    def __init__(self, name, argv, ports, cpu, logdir, port_args=True):
        self.name = name
        self.ports = ports
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.logpath = os.path.join(logdir, f"https_{name}.log")
        self.logf = open(self.logpath, "wb")
        if port_args:
            argv = argv + ["--port", str(next(iter(ports.values()))), "--host", "127.0.0.1"]
        # taskset execs the server: the PID is the server's own.
        self.proc = subprocess.Popen(pin + argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     preexec_fn=raise_nofile)
        self.pid = self.proc.pid

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}: "
                               f"{self.log_tail()}")

    def log_tail(self):
        self.logf.flush()
        with open(self.logpath, "rb") as f:
            return f.read()[-500:].decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def tls_client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_responses(s, count):
    """Reads `count` HTTP responses (Content-Length framed); returns (raw bytes, bodies)."""
    got = b""
    bodies = []
    pos = 0
    while len(bodies) < count:
        end = got.find(b"\r\n\r\n", pos)
        if end >= 0:
            head = got[pos:end].decode(errors="replace")
            m = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
            if not head.startswith("HTTP/1.1 200 ") or not m:
                raise RuntimeError(f"not a 200 response with a Content-Length: {head!r}")
            stop = end + 4 + int(m.group(1))
            if len(got) >= stop:
                bodies.append(got[end + 4:stop])
                pos = stop
                continue
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed after {len(bodies)} of {count} responses: "
                               f"{got[:300]!r}")
        got += chunk
    return got, bodies


def check_protocol(server, kind, exact):
    """Two pipelined requests, one split across writes: exactly two 200 responses with the body
    (byte-identical to http_hello's when `exact`). Returns (bytes of one response, TLS version,
    cipher)."""
    with socket.create_connection(("127.0.0.1", server.ports[kind]), timeout=5) as raw:
        s = tls_client_context().wrap_socket(raw) if kind == "tls" else raw
        s.settimeout(5)
        s.sendall(REQUEST + REQUEST[:10])
        time.sleep(0.02)
        s.sendall(REQUEST[10:])
        got, bodies = read_responses(s, 2)
        s.settimeout(0.1)
        try:
            extra = s.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            extra = b""
        if bodies != [BODY, BODY] or extra or (exact and got != RESPONSE * 2):
            raise RuntimeError(f"{server.name} ({kind}): wrong response to two pipelined "
                               f"requests: {(got + extra)[:400]!r}")
        version, cipher = (s.version(), s.cipher()[0]) if kind == "tls" else (None, None)
        return len(got) // 2, version, cipher


def wait_ready(server, kinds, timeout=10.0):
    deadline = time.monotonic() + timeout
    for kind in kinds:
        while True:
            server.alive()
            try:
                with socket.create_connection(("127.0.0.1", server.ports[kind]), timeout=1):
                    break
            except (ConnectionRefusedError, socket.timeout):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name} did not accept connections on port "
                                       f"{server.ports[kind]} within {timeout} s")
                time.sleep(0.05)


def run_wrk(server, kind, duration, args, cpu):
    scheme = "https" if kind == "tls" else "http"
    url = f"{scheme}://127.0.0.1:{server.ports[kind]}/"
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{duration}s", "--timeout",
        "5s", url]
    server.alive()
    t0 = time.monotonic()
    c0 = cpu_seconds(server.pid)
    out = subprocess.run(cmd, capture_output=True, text=True)
    c1 = cpu_seconds(server.pid)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out.stdout)
    if not m:
        raise RuntimeError(f"cannot parse wrk's output:\n{out.stdout}")
    requests = int(m.group(1))
    secs = float(m.group(2)) * {"s": 1, "ms": 1e-3, "m": 60}.get(m.group(3), 1)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                  out.stdout)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if m:
        errors += int(m.group(1))
    cpu_s = c1 - c0
    return {"count": requests, "seconds": secs, "cpu_s": cpu_s,
            "value": cpu_s / max(requests, 1) * 1e6, "rate": requests / secs if secs else 0.0,
            "busy": cpu_s / wall if wall else 0.0, "errors": errors, "resumed": 0,
            "tickets": 0.0}


def run_handshakes(server, mode, duration, args, cpu, exe):
    cmd = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [
        exe, "--port", str(server.ports["tls"]), "--mode", mode, "--duration", str(duration),
        "--procs", str(args.procs)]
    server.alive()
    t0 = time.monotonic()
    c0 = cpu_seconds(server.pid)
    out = subprocess.run(cmd, capture_output=True, text=True)
    c1 = cpu_seconds(server.pid)
    wall = time.monotonic() - t0
    m = re.search(r"conns=(\d+) resumed=(\d+) errors=(\d+) seconds=([\d.]+) per_s=[\d.]+ "
                  r"tickets_per_conn=([\d.]+) version=(\S+) cipher=(\S+) group=(\S+)", out.stdout)
    if not m:
        raise RuntimeError(f"tls_handshakes failed ({out.returncode}): {out.stderr[-600:]}"
                           f"{out.stdout}")
    conns, resumed, errors = int(m.group(1)), int(m.group(2)), int(m.group(3))
    secs = float(m.group(4))
    if out.returncode != 0:
        # Errors are counted and reported; a failed resumption too (it is one of the figures).
        log(f"tls_handshakes ({server.name}, {mode}) exited {out.returncode}: "
            f"{out.stderr.strip()[-600:]}")
        errors = max(errors, 1)
    cpu_s = c1 - c0
    return {"count": conns, "seconds": secs, "cpu_s": cpu_s,
            "value": conns / cpu_s if cpu_s > 0 else 0.0, "rate": conns / secs if secs else 0.0,
            "busy": cpu_s / wall if wall else 0.0, "errors": errors, "resumed": resumed,
            "tickets": float(m.group(5)),
            "negotiated": f"{m.group(6)} {m.group(7)} {m.group(8)}"}


def main():
    quick_env = os.environ.get("HTTPS_BENCH_QUICK", "") not in ("", "0")
    ap = argparse.ArgumentParser(description="TLS benchmark: cogent's https_hello against nginx",
                                 epilog="Environment: HTTPS_BENCH_QUICK=1 means --quick.")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-rel"),
                    help="meson build dir holding the servers (default: build-rel, a release "
                    "build)")
    ap.add_argument("--no-build", action="store_true", help="do not run ninja first")
    ap.add_argument("--rounds", type=int, help="runs per server and figure (default 5, quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per run (default 5, quick 2)")
    ap.add_argument("--quick", action="store_true", default=quick_env,
                    help="2 rounds of 2 s runs (about 1 minute in all)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of " + ",".join(ALL_SERVERS))
    ap.add_argument("--figures", default=",".join(FIGURES), help="comma-separated subset of "
                    + ",".join(FIGURES))
    ap.add_argument("--key-type", default="ecdsa-p256", choices=["ecdsa-p256", "rsa2048"],
                    help="the certificate's key (default ecdsa-p256)")
    ap.add_argument("--connections", type=int, default=100, help="wrk connections (100)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    ap.add_argument("--procs", type=int, default=4,
                    help="tls_handshakes client processes (connections at once; 4)")
    ap.add_argument("--cogent-standin", choices=["nginx"],
                    help="test this script without https_hello: run a second nginx in the "
                    "cogent column (its figures are nginx's, no target is checked)")
    ap.add_argument("--chart", help="PNG to write (default BUILD/bench/https_chart.png)")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    duration = args.duration or (2 if args.quick else 5)
    build = os.path.abspath(args.build)
    servers = [s for s in args.servers.split(",") if s]
    figures = [f for f in args.figures.split(",") if f]
    for s in servers:
        if s not in ALL_SERVERS:
            ap.error(f"unknown server {s!r}: choose from {', '.join(ALL_SERVERS)}")
    for f in figures:
        if f not in FIGURES:
            ap.error(f"unknown figure {f!r}: choose from {', '.join(FIGURES)}")
    if rounds < 1 or duration < 1:
        ap.error("--rounds and --duration must be at least 1")

    for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux"), ("nginx", "nginx"),
                      ("openssl", "openssl")):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            log(f"{tool} not found: install the Debian package {pkg}")
            return 2
    nginx_exe = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not os.path.exists(os.path.join(build, "build.ninja")):
        log(f"{build} is not a meson build dir: run `meson setup {build} --buildtype=release` "
            f"first")
        return 2

    if not args.no_build:
        targets = ["bench/tls_handshakes", "examples/http_hello"]
        if os.path.exists(os.path.join(ROOT, "examples", "https_hello.cpp")):
            targets.append("examples/https_hello")
        r = subprocess.run(["ninja", "-C", build, "-j2"] + targets, stdout=sys.stderr)
        if r.returncode != 0:
            log("build failed (is TLS built? meson configure -Dtls=enabled; Debian: libssl-dev)")
            return 2
    hs_exe = os.path.join(build, "bench", "tls_handshakes")
    https_exe = os.path.join(build, "examples", "https_hello")
    http_exe = os.path.join(build, "examples", "http_hello")
    if any(FIGURES[f][0] == "handshakes" for f in figures) and not os.path.exists(hs_exe):
        log(f"{hs_exe} not built (TLS left out of this build? it needs OpenSSL 3, libssl-dev)")
        return 2
    standin = args.cogent_standin
    cogent_missing = False
    if "cogent" in servers and not standin and not os.path.exists(https_exe):
        log(f"{https_exe} is not built: NO COGENT FIGURES, nginx alone (no target checked; "
            f"--cogent-standin nginx runs a stand-in to test this script)")
        servers.remove("cogent")
        cogent_missing = True
    if "nginx" not in servers:
        log("nginx, the baseline, is required")
        return 2

    affinity = sorted(os.sched_getaffinity(0))
    cpus = (affinity[0], affinity[1]) if len(affinity) >= 2 else (None, None)
    if cpus[0] is None:
        log("fewer than 2 CPUs: not pinning servers and clients")
    logdir = os.path.join(build, "bench")
    os.makedirs(logdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="cogent-https-")
    cert, key = make_cert(tmp, args.key_type)
    key_desc = {"ecdsa-p256": "ECDSA P-256", "rsa2048": "RSA 2048"}[args.key_type]
    log(f"build {build} ({buildtype(build)}); servers {', '.join(servers)}"
        f"{' (cogent: stand-in nginx)' if standin else ''}; figures {', '.join(figures)}; "
        f"{rounds} rounds of {duration} s; {key_desc} certificate in {tmp}; wrk "
        f"-t{args.wrk_threads} -c{args.connections}; tls_handshakes --procs {args.procs}; "
        f"servers on CPU {cpus[0]}, clients on CPU {cpus[1]}")

    def start_nginx(name):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        ports = {"tls": free_port(), "http": free_port()}
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=d, tls_port=ports["tls"], http_port=ports["http"],
                                      cert=cert, key=key))
        return Server(name, [nginx_exe, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                      ports, cpus[0], logdir, port_args=False)

    # (figure, server) -> (process, port kind)
    procs = {}
    endpoints = {}
    runs = []  # (round, figure, server, result)
    notes = {}
    rc = 0
    try:
        if "nginx" in servers:
            procs["nginx"] = start_nginx("nginx")
        if "cogent" in servers:
            if standin:
                procs["cogent"] = start_nginx("cogent_standin")
            else:
                procs["cogent"] = Server("cogent", [https_exe, "--cert", cert, "--key", key],
                                         {"tls": free_port()}, cpus[0], logdir)
                if "keepalive_http" in figures:
                    if os.path.exists(http_exe):
                        procs["cogent_http"] = Server("cogent_http", [http_exe],
                                                      {"http": free_port()}, cpus[0], logdir)
                    else:
                        log(f"{http_exe} not built: no plain-HTTP figure for cogent")
        for s in servers:
            for f in figures:
                tls = FIGURES[f][1]
                p = procs["cogent_http"] if (s == "cogent" and not tls and not standin
                                             and "cogent_http" in procs) else procs[s]
                if ("tls" if tls else "http") in p.ports:
                    endpoints[f, s] = (p, "tls" if tls else "http")
        for p in procs.values():
            wait_ready(p, list(p.ports))
        for (f, s), (p, kind) in endpoints.items():
            size, version, cipher = check_protocol(p, kind, exact=(s == "cogent" and not standin))
            notes[s, kind] = (size, version, cipher)
        for (f, s), (p, kind) in endpoints.items():  # warm-up
            if FIGURES[f][0] == "wrk":
                run_wrk(p, kind, 1, args, cpus[1])
            else:
                run_handshakes(p, f, 1, args, cpus[1], hs_exe)
        for r in range(1, rounds + 1):
            order = servers if r % 2 else servers[::-1]
            for f in figures:
                for s in order:
                    if (f, s) not in endpoints:
                        continue
                    p, kind = endpoints[f, s]
                    if FIGURES[f][0] == "wrk":
                        res = run_wrk(p, kind, duration, args, cpus[1])
                        desc = f"{res['value']:7.3f} us/req {res['rate']:9.0f} req/s"
                    else:
                        res = run_handshakes(p, f, duration, args, cpus[1], hs_exe)
                        notes[s, "negotiated"] = res["negotiated"]
                        notes[s, f"tickets_{f}"] = res["tickets"]
                        desc = (f"{res['value']:7.0f} conn/CPU-s {res['rate']:7.0f} conn/s "
                                f"({res['resumed']} resumed)")
                    runs.append((r, f, s, res))
                    log(f"round {r}/{rounds} {f:15} {s:6}: {desc}  server busy "
                        f"{res['busy'] * 100:3.0f}%"
                        + (f"  ERRORS {res['errors']}" if res['errors'] else ""))
    except RuntimeError as e:
        log(f"FAILED: {e}")
        rc = 2
    finally:
        for p in procs.values():
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if rc:
        return rc

    tsv = os.path.join(logdir, "https_runs.tsv")
    with open(tsv, "w") as fh:
        fh.write("round\tfigure\tserver\tcount\tseconds\tcpu_s\tvalue\tunit\tper_s\tbusy\t"
                 "errors\tresumed\ttickets_per_conn\n")
        for r, f, s, res in runs:
            fh.write(f"{r}\t{f}\t{s}\t{res['count']}\t{res['seconds']:.3f}\t{res['cpu_s']:.3f}\t"
                     f"{res['value']:.4f}\t{FIGURES[f][2]}\t{res['rate']:.0f}\t"
                     f"{res['busy']:.3f}\t{res['errors']}\t{res['resumed']}\t"
                     f"{res['tickets']:.2f}\n")
    chart = args.chart or os.path.join(logdir, "https_chart.png")
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "https_chart.py"), tsv, chart],
                       capture_output=True, text=True)
    if r.returncode == 0:
        log(f"runs in {tsv}, chart in {chart}")
    else:
        log(f"runs in {tsv}; no chart ({r.stderr.strip().splitlines()[-1:]})")

    # The one table.
    med = {}
    for f in figures:
        for s in servers:
            v = [res for _, ff, ss, res in runs if ff == f and ss == s]
            if v:
                med[f, s] = (statistics.median(x["value"] for x in v),
                             statistics.median(x["rate"] for x in v),
                             sum(x["errors"] for x in v))
    label = {"keepalive_https": "keep-alive HTTPS, CPU us/request",
             "keepalive_http": "keep-alive plain HTTP, CPU us/request",
             "full": "full handshakes / server CPU-s",
             "resumed": "resumed handshakes / server CPU-s"}
    rate_label = {"keepalive_https": "keep-alive HTTPS, requests/s",
                  "keepalive_http": "keep-alive plain HTTP, requests/s",
                  "full": "full handshakes, connections/s",
                  "resumed": "resumed handshakes, connections/s"}
    cname = "cogent (stand-in)" if standin else "cogent"
    rows = [("figure", cname, "nginx", "cogent/nginx", "target", "status")]
    miss = 0

    def fmt(f, v):
        return f"{v:.3f}" if FIGURES[f][2] == "us/req" else f"{v:,.0f}"

    for f in figures:
        c, n = med.get((f, "cogent")), med.get((f, "nginx"))
        ratio = f"{c[0] / n[0]:.3f}x" if c and n and n[0] else "-"
        target, status = "—", "-"
        if f in TARGETS:
            op, lim = TARGETS[f]
            target = f"{op} {lim:.2f}x nginx"
            if standin or cogent_missing or not c:
                status = "n/a"
            else:
                ok = c[0] / n[0] <= lim if op == "<=" else c[0] / n[0] >= lim
                status = "PASS" if ok else "MISS"
        errs = (c[2] if c else 0) + (n[2] if n else 0)
        if errs:
            status = f"{errs} ERRORS"
        if status not in ("PASS", "-", "n/a"):
            miss += 1
        rows.append((label[f], fmt(f, c[0]) if c else "-", fmt(f, n[0]) if n else "-", ratio,
                     target, status))
    for f in figures:  # throughput, informative (the clients' side of the machine limits it)
        c, n = med.get((f, "cogent")), med.get((f, "nginx"))
        rows.append((rate_label[f], f"{c[1]:,.0f}" if c else "-", f"{n[1]:,.0f}" if n else "-",
                     f"{c[1] / n[1]:.3f}x" if c and n and n[1] else "-", "—", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    neg = notes.get(("nginx", "negotiated")) or " ".join(
        x for x in notes.get(("nginx", "tls"), (0, "?", "?"))[1:] if x)
    print(f"TLS hello ({buildtype(build)} build), {key_desc} self-signed certificate, {neg}; "
          f"median of {rounds} run{'s' if rounds > 1 else ''} of {duration} s per server and "
          f"figure (servers on CPU "
          f"{cpus[0]}, clients on CPU {cpus[1]}; wrk -t{args.wrk_threads} -c{args.connections}; "
          f"tls_handshakes --procs {args.procs}; CPU = server utime+stime)")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if 1 <= j <= 3 else c.ljust(w)
                        for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for s in servers:
        parts = []
        for kind in ("tls", "http"):
            if (s, kind) in notes:
                parts.append(f"{notes[s, kind][0]} bytes per response over {kind}")
        for f in ("full", "resumed"):
            if (s, f"tickets_{f}") in notes:
                parts.append(f"{notes[s, f'tickets_{f}']:.2f} session tickets per {f} handshake")
        if parts:
            print(f"{cname if s == 'cogent' else s}: {'; '.join(parts)}")
    for f in figures:  # a latency-bound server: its per-connection CPU is not comparable
        if FIGURES[f][0] != "handshakes":
            continue
        busy = {s: statistics.median(res["busy"] for _, ff, ss, res in runs if ff == f and ss == s)
                for s in servers if any(ff == f and ss == s for _, ff, ss, _ in runs)}
        if "cogent" in busy and "nginx" in busy and busy["cogent"] < 0.5 * busy["nginx"]:
            print(f"{f} handshakes: cogent's server was busy {busy['cogent'] * 100:.0f}% of the "
                  f"time, nginx's {busy['nginx'] * 100:.0f}%: cogent's connections wait on "
                  f"something other than its CPU (a delayed ACK behind Nagle: TCP_NODELAY?), and "
                  f"an idle server pays more CPU per connection (wake-ups, cold caches)")
    if "nginx" in servers:
        print("nginx's response carries Server, Date and Connection headers on top of cogent's "
              "(Content-Length, Content-Type).")
    if standin:
        print("cogent column: a STAND-IN (a second nginx), not cogent; no target was checked.")
    if cogent_missing:
        print(f"cogent column: {https_exe} is not built; no target was checked.")
        return 2
    return 1 if miss else 0


if __name__ == "__main__":
    sys.exit(main())
