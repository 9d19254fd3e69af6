// Green threads (`cogent-run --threads`, the shim's thread family) with unmodified plain C
// programs, each run with real threads and under cogent-run:
//   - tests/child_thrd.c: C11 <threads.h> (thrd_*, mtx_*, cnd_*, tss_*, call_once) gives the
//     same results, and (the documented claim) its threads become greenlets of one OS thread;
//   - tests/child_realthreads.c: COGENT_REAL_THREADS keeps the threads that a library
//     (tests/libspawner.c) starts real while the program's own are green, and the two kinds
//     share pthread mutexes and conditions (handoffs both ways, turns, a contended mutex);
//   - tests/child_curl_resolve.c: libcurl's threaded resolver under --threads: its helper
//     thread is green, so its getaddrinfo goes through cogent's resolver and finds a name that
//     only the test's DNS server (COGENT_RESOLVER_SERVERS, any port) knows, with no mount
//     namespace or resolv.conf change; with a real helper thread (glibc, resolv.conf) it is not
//     found.
// Not in the sanitizer build: ASan's own pthread_create, first in the program, sets up a real
// thread for every call and hangs when it gets a greenlet (as in test_patch_run).
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "dns_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
namespace sp = cogent::subprocess;

namespace {

constexpr bool sanitizer_build() {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

#define SKIP_IN_SANITIZER_BUILD()                                                         \
    do {                                                                                  \
        if (sanitizer_build())                                                            \
            COGENT_SKIP_UNSUPPORTED(                                                      \
                "the sanitizer build: ASan's pthread_create, first in the program, sets " \
                "up a real thread for every call and hangs when it gets a greenlet");     \
    } while (0)

std::string env_path(const char* var) {
    const char* p = std::getenv(var);
    REQUIRE_MESSAGE(p != nullptr, std::string(var)
                                      << " is not set (run the test through meson test)");
    return p;
}

// This environment without a preload, patch or thread setting of its own.
sp::Env base_env() {
    auto env = sp::Env::current();
    for (const char* v : {"LD_PRELOAD", "COGENT_PATCH", "COGENT_REAL_THREADS",
                          "COGENT_RESOLVER_SERVERS", "COGENT_RESOLVER"})
        env.unset(v);
    return env;
}

struct Ran {
    int status = 0;  // exit code, or -N for signal N
    std::string out, err;
    double ms = 0;
};

Ran run(std::vector<std::string> argv, std::optional<sp::Env> env = std::nullopt) {
    sp::RunOptions o;
    o.env = env ? *env : base_env();
    o.capture_output = true;
    o.stdin = sp::DEVNULL;
    o.timeout = 60s;  // the children bound themselves with alarm() well below this
    auto t0 = std::chrono::steady_clock::now();
    auto r = sp::run(std::move(argv), o);
    return {r.returncode, r.stdout, r.stderr, cogent_test::ms_since(t0)};
}

// argv under cogent-run with `opts` before the "--".
Ran run_patched(std::vector<std::string> argv, std::vector<std::string> opts = {},
                std::optional<sp::Env> env = std::nullopt) {
    std::vector<std::string> full{env_path("COGENT_RUN")};
    full.insert(full.end(), opts.begin(), opts.end());
    full.push_back("--");
    full.insert(full.end(), argv.begin(), argv.end());
    return run(full, std::move(env));
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

// The lines of `out` that start with `prefix`, and the others.
std::string lines_with(const std::string& out, const std::string& prefix, bool with) {
    std::string kept;
    std::size_t pos = 0;
    while (pos < out.size()) {
        std::size_t nl = out.find('\n', pos);
        nl = nl == std::string::npos ? out.size() : nl + 1;
        std::string line = out.substr(pos, nl - pos);
        if ((line.rfind(prefix, 0) == 0) == with) kept += line;
        pos = nl;
    }
    return kept;
}

// child_thrd's last line: "os_threads peak P, threads on main's OS thread M of N".
struct OsThreads {
    int peak = -1, on_main = -1, of = -1;
};
OsThreads os_threads(const std::string& out) {
    OsThreads o;
    const std::string line = lines_with(out, "os_threads ", true);
    std::sscanf(line.c_str(), "os_threads peak %d, threads on main's OS thread %d of %d", &o.peak,
                &o.on_main, &o.of);
    return o;
}

}  // namespace

// ---- C11 threads ----

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "C11 threads: thrd/mtx/cnd/tss/call_once give the same results under "
                  "cogent-run --threads") {
    SKIP_IN_SANITIZER_BUILD();
    const std::string child = env_path("COGENT_CHILD_THRD");
    Ran plain = run({child});
    Ran green = run_patched({child}, {"--threads"});
    INFO("plain output:\n" << plain.out << plain.err);
    INFO("--threads output:\n" << green.out << green.err);
    REQUIRE(plain.status == 0);
    CHECK(green.status == 0);
    CHECK(contains(plain.out, "join 3: success -> 31\n"));
    CHECK(contains(plain.out, "thrd_exit from depth: success -> 42\n"));
    CHECK(contains(plain.out, "mtx_timedlock while held: timed out after >= 90 ms: 1\n"));
    CHECK(contains(plain.out, "cnd_timedwait unsignalled: timedout, after >= 90 ms: 1\n"));
    CHECK(contains(plain.out, "tss destructors: 4 calls, sum 10\n"));
    CHECK(contains(plain.out, "call_once: init ran 1 time(s), every caller saw it done: 1\n"));
    CHECK(contains(plain.out, "\ndone, 0 failure(s)\n"));
    // Every line but the OS-thread count is the same.
    CHECK(lines_with(green.out, "os_threads ", false) ==
          lines_with(plain.out, "os_threads ", false));
    // And under the shim without --threads: real C11 threads on the shim's mutexes and
    // conditions (its sync family), every line the same, the OS-thread count included.
    Ran shim = run_patched({child});
    INFO("cogent-run output:\n" << shim.out << shim.err);
    CHECK(shim.status == 0);
    CHECK(lines_with(shim.out, "os_threads ", false) ==
          lines_with(plain.out, "os_threads ", false));
    OsThreads s = os_threads(shim.out);
    CHECK(s.peak >= 6);
    CHECK(s.on_main == 0);
    // With real threads, five alive threads are five more OS threads, none of them main's (at
    // least: a thread joined just before may not have left /proc/self/task yet).
    OsThreads p = os_threads(plain.out);
    CHECK(p.peak >= 6);
    CHECK(p.on_main == 0);
    CHECK(p.of == 5);
}

// glibc (2.34 and later) makes every C11 thread function call libc's own pthread functions
// directly, where no LD_PRELOAD interposer sees them (thrd_create calls pthread_create inside
// libc, mtx_lock __pthread_mutex_lock, thrd_current reads %fs...): the shim hooks the C11
// functions themselves (patch/hooks_c11.cpp). Without that, C11 threads stayed real.
TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "C11 threads: under cogent-run --threads thrd_create makes green threads (one "
                  "OS thread)") {
    SKIP_IN_SANITIZER_BUILD();
    const std::string child = env_path("COGENT_CHILD_THRD");
    Ran green = run_patched({child}, {"--threads"});
    INFO("--threads output:\n" << green.out << green.err);
    REQUIRE(green.status == 0);
    OsThreads g = os_threads(green.out);
    REQUIRE(g.of == 5);
    CHECK(g.peak == 1);     // five alive threads, still one OS thread
    CHECK(g.on_main == 5);  // each ran on main's (syscall(SYS_gettid))
}

// ---- COGENT_REAL_THREADS ----

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "COGENT_REAL_THREADS: a named library's threads stay real beside green ones, "
                  "and the two kinds share mutexes and conditions") {
    SKIP_IN_SANITIZER_BUILD();
    const std::string child = env_path("COGENT_CHILD_REALTHREADS");
    const std::string lib = env_path("COGENT_LIBSPAWNER");  // its soname: libspawner.so
    const std::string both_real =
        "os: direct thread on its own OS thread: yes\n"
        "os: library thread on its own OS thread: yes\n"
        "os: handoff threads own OS thread: direct yes, library yes\n";
    const std::string both_green =
        "os: direct thread on its own OS thread: no\n"
        "os: library thread on its own OS thread: no\n"
        "os: handoff threads own OS thread: direct no, library no\n";
    const std::string library_real =
        "os: direct thread on its own OS thread: no\n"
        "os: library thread on its own OS thread: yes\n"
        "os: handoff threads own OS thread: direct no, library yes\n";

    Ran plain = run({child});
    INFO("plain output:\n" << plain.out << plain.err);
    REQUIRE(plain.status == 0);
    CHECK(lines_with(plain.out, "os:", true) == both_real);
    const std::string results = lines_with(plain.out, "os:", false);
    CHECK(results ==
          "handoff library -> direct: 1\n"
          "handoff direct -> library: 2\n"
          "ping-pong: 400 turns\n"
          "contended mutex: counter 40000\n"
          "library threads started: 5\n"
          "done, 0 failure(s)\n");

    struct Mode {
        const char* what;
        std::vector<std::string> opts;  // cogent-run's
        std::optional<std::string> real_threads;
        const std::string& expected;
    };
    const Mode modes[] = {
        {"--threads", {"--threads"}, std::nullopt, both_green},
        {"--threads, the soname", {"--threads"}, "libspawner.so", library_real},
        {"--threads, the path", {"--threads"}, lib, library_real},
        {"--threads, in a list", {"--threads"}, " libnothing.so.1 , libspawner.so ", library_real},
        {"--threads, another library", {"--threads"}, "libnothing.so.1", both_green},
        {"without --threads", {}, "libspawner.so", both_real},
    };
    for (const Mode& m : modes) {
        auto env = base_env();
        if (m.real_threads) env.set("COGENT_REAL_THREADS", *m.real_threads);
        Ran r = run_patched({child}, m.opts, env);
        INFO(m.what << ", COGENT_REAL_THREADS='" << m.real_threads.value_or("(unset)") << "'");
        INFO("output:\n" << r.out << r.err);
        CHECK(r.status == 0);
        CHECK(lines_with(r.out, "os:", true) == m.expected);
        CHECK(lines_with(r.out, "os:", false) == results);
    }
}

// ---- libcurl's threaded resolver ----

namespace {

// curl could not resolve the name: CURLE_COULDNT_RESOLVE_HOST (6), or, where the machine's
// resolv.conf names a nameserver that never answers, CURLE_OPERATION_TIMEDOUT (28) while
// resolving.
bool not_resolved(const Ran& r) {
    return (r.status == 6 && contains(r.out, "curl error 6: ")) ||
           (r.status == 28 && contains(r.out, "Resolving timed out"));
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "libcurl under cogent-run --threads: its resolver thread is green and "
                  "resolves through COGENT_RESOLVER_SERVERS") {
    SKIP_IN_SANITIZER_BUILD();
    const std::string child = env_path("COGENT_CHILD_CURL_RESOLVE");
    // A name only the test's DNS server knows (.test is reserved: no real DNS has it), on an
    // OS-chosen port of 127.0.0.1; its answers come after 200 ms, so curl's main thread waits
    // (cooperatively, under --threads) while its resolver thread's lookup is pending.
    cogent_test::DnsServer dns;
    const std::string name = "web.cogent-threads.test";
    dns.add_a(name, "127.0.0.1");
    dns.set_delay(200ms);

    // The HTTP server, a greenlet of this hub (sp::run waits cooperatively).
    int served = 0;
    std::string host_header;
    cogent::StreamServer server(
        cogent::Address("127.0.0.1", 0), [&](cogent::Socket& s, const cogent::Address&) {
            cogent::SocketReader in(s);
            std::string request = in.readline();
            for (std::string h; (h = in.readline()) != "\r\n" && !h.empty();)
                if (h.rfind("Host: ", 0) == 0) host_header = h.substr(6, h.size() - 8);
            std::string path = request.substr(4, request.find(' ', 4) - 4);
            std::string body = "hello from cogent: " + path;
            s.sendall("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body);
            ++served;
        });
    server.start();
    const std::string port = std::to_string(server.address().port());
    const std::string url = "http://" + name + ":" + port + "/threads";
    auto env = base_env();
    env.set("COGENT_RESOLVER_SERVERS", dns.server_spec());
    env.set("COGENT_RESOLVER_TIMEOUT", "2");

    // --threads: the resolver thread is a greenlet, its getaddrinfo cogent's.
    Ran green = run_patched({child, url}, {"--threads"}, env);
    {
        INFO("--threads output:\n" << green.out << green.err);
        REQUIRE_MESSAGE(contains(green.out, "resolver: threaded\n"),
                        "this libcurl does not resolve in a helper thread");
        CHECK(green.status == 0);
        CHECK(contains(green.out, "status 200, body: hello from cogent: /threads\n"));
        CHECK(dns.queries_for(name) >= 1);
        CHECK(served == 1);
        CHECK(host_header == name + ":" + port);
        // No OS thread beside main's at any progress callback, which curl also makes while the
        // (200 ms) resolve is pending.
        CHECK(contains(green.out, "os_threads peak 1 over some progress calls\n"));
    }

    // The shim without --threads: the resolver thread is a real one, where the dns family does
    // not apply (no hub): glibc's getaddrinfo asks resolv.conf's nameservers, which do not know
    // the name, and never the test's server.
    dns.reset_counters();
    Ran real = run_patched({child, url}, {}, env);
    {
        INFO("cogent-run without --threads, output:\n" << real.out << real.err);
        CHECK(not_resolved(real));
        CHECK(dns.queries_for(name) == 0);
    }
    // And without cogent at all, the same.
    Ran plain = run({child, url}, env);
    {
        INFO("without cogent-run, output:\n" << plain.out << plain.err);
        CHECK(not_resolved(plain));
        CHECK(dns.queries_for(name) == 0);
    }
    CHECK(served == 1);
    server.stop();
}

// ---- the watchdog: a green thread that holds its hub in a real system call ----

namespace {

std::size_t count_of(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "watchdog: with COGENT_MAX_BLOCKING_TIME set, a green thread blocking its hub "
                  "in sigtimedwait is named once, with the call; unset or 0 it is off; a bad "
                  "value is refused") {
    SKIP_IN_SANITIZER_BUILD();
    const std::string child = env_path("COGENT_CHILD_BLOCKER");
    // With real threads the ticker runs beside the blocked thread, and there is no report.
    Ran plain = run({child});
    INFO("plain output:\n" << plain.out << plain.err);
    REQUIRE(plain.status == 0);
    CHECK(contains(plain.out, "sigtimedwait: -1, ticks during it: "));
    CHECK_FALSE(contains(plain.out, "ticks during it: 0\n"));
    CHECK_FALSE(contains(plain.err, "cogent:"));

    CHECK(contains(plain.out, "os_threads 3\n"));

    // Off by default: no watchdog thread (the program keeps its one OS thread), no report.
    Ran quiet = run_patched({child}, {"--threads"});
    INFO("--threads, COGENT_MAX_BLOCKING_TIME unset:\n" << quiet.out << quiet.err);
    CHECK(quiet.status == 0);
    CHECK(contains(quiet.out, "sigtimedwait: -1, ticks during it: 0\n"));
    CHECK(contains(quiet.out, "os_threads 1\n"));
    CHECK_FALSE(contains(quiet.err, "cogent:"));

    auto env = base_env();
    env.set("COGENT_MAX_BLOCKING_TIME", "0.3");
    Ran green = run_patched({child}, {"--threads"}, env);
    INFO("--threads, COGENT_MAX_BLOCKING_TIME=0.3:\n" << green.out << green.err);
    CHECK(green.status == 0);
    // The block is real (the hub is held: no tick ran), and reported once.
    CHECK(contains(green.out, "sigtimedwait: -1, ticks during it: 0\n"));
    CHECK(count_of(green.err, "cogent: greenlet 'blocker' has held its hub") == 1);
    CHECK(contains(green.err, "in the system call rt_sigtimedwait()"));
    CHECK(contains(green.err, "COGENT_MAX_BLOCKING_TIME=0.3"));
    CHECK(count_of(green.err, "cogent:") == 1);
    CHECK(contains(green.out, "os_threads 2\n"));  // the program's one, and the watchdog

    env.set("COGENT_MAX_BLOCKING_TIME", "0");
    Ran off = run_patched({child}, {"--threads"}, env);
    INFO("--threads, COGENT_MAX_BLOCKING_TIME=0:\n" << off.out << off.err);
    CHECK(off.status == 0);
    CHECK(contains(off.out, "done\n"));
    CHECK_FALSE(contains(off.err, "cogent:"));

    for (const char* bad : {"abc", "-1", "1e9", "0.5s"}) {
        env.set("COGENT_MAX_BLOCKING_TIME", bad);
        Ran r = run_patched({child}, {"--threads"}, env);
        INFO("COGENT_MAX_BLOCKING_TIME='" << bad << "':\n" << r.out << r.err);
        CHECK(r.status == 2);
        CHECK(contains(r.err, std::string("COGENT_MAX_BLOCKING_TIME='") + bad +
                                  "' is not a number of seconds"));
        CHECK_FALSE(contains(r.out, "done"));
    }
}
