// cogent-run, the launcher of the monkey patch: its options (by running the binary), and
// unmodified programs under it (curl, redis-cli, psql, sleep, a _FORTIFY_SOURCE=2 C program, a
// multi-threaded one) behaving exactly as without it: the same stdout, the same exit status.
//
// In the sanitizer build the shim is instrumented, so cogent-run preloads the ASan runtime too.
// Some uninstrumented programs cannot run with the ASan runtime preloaded at all (curl and psql
// hang in setlocale on Debian 12, with or without cogent): each such program is first tried
// with the ASan runtime alone, and skipped (COGENT_SKIP_UNSUPPORTED) when that fails.
#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "real_servers.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
namespace sp = cogent::subprocess;

namespace {

std::string env_path(const char* var) {
    const char* p = std::getenv(var);
    REQUIRE_MESSAGE(p != nullptr, var << " is not set (run the test through meson test)");
    return p;
}

std::string cogent_run() { return env_path("COGENT_RUN"); }

// The environment every child gets: this one without a preload or patch setting of its own,
// and, in the sanitizer build, without leak reports from uninstrumented programs (their leaks
// are not ours, and a report would change their exit status) and without ASan's check that its
// runtime comes first in LD_PRELOAD (a test below gives the instrumented cogent-run a preload
// list of its own; cogent-run puts the runtime first for the command, which is checked).
sp::Env base_env() {
    auto env = sp::Env::current();
    env.unset("LD_PRELOAD");
    env.unset("COGENT_PATCH");
#if defined(__SANITIZE_ADDRESS__)
    env.set("ASAN_OPTIONS", "detect_leaks=0:verify_asan_link_order=0");
#endif
    return env;
}

struct Ran {
    int status = 0;  // exit code, or -N for signal N
    std::string out, err;
    double ms = 0;
};

Ran run(std::vector<std::string> argv, std::optional<sp::Env> env = std::nullopt,
        std::chrono::seconds limit = 30s) {
    sp::RunOptions o;
    o.env = env ? *env : base_env();
    o.capture_output = true;
    o.stdin = sp::DEVNULL;
    o.timeout = limit;
    auto t0 = std::chrono::steady_clock::now();
    auto r = sp::run(std::move(argv), o);
    return {r.returncode, r.stdout, r.stderr, cogent_test::ms_since(t0)};
}

// argv under cogent-run with `opts` before the "--".
Ran run_patched(std::vector<std::string> argv, std::vector<std::string> opts = {},
                std::optional<sp::Env> env = std::nullopt) {
    std::vector<std::string> full{cogent_run()};
    full.insert(full.end(), opts.begin(), opts.end());
    full.push_back("--");
    full.insert(full.end(), argv.begin(), argv.end());
    return run(full, std::move(env));
}

// Runs argv without, then with cogent-run; CHECKs that stdout and the exit status are the same.
// Returns both runs (plain, patched).
std::pair<Ran, Ran> same(const std::vector<std::string>& argv) {
    Ran plain = run(argv);
    Ran patched = run_patched(argv);
    std::string cmd;
    for (auto& a : argv) cmd += a + " ";
    INFO("command: " << cmd);
    INFO("stderr plain: " << plain.err);
    INFO("stderr patched: " << patched.err);
    CHECK(patched.status == plain.status);
    CHECK(patched.out == plain.out);
    return {plain, patched};
}

// "KEY=VALUE" lines -> the value of key ("" if absent).
std::string env_value(const std::string& env_output, const std::string& key) {
    std::size_t pos = 0;
    while (pos < env_output.size()) {
        std::size_t nl = env_output.find('\n', pos);
        if (nl == std::string::npos) nl = env_output.size();
        std::string line = env_output.substr(pos, nl - pos);
        if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
        pos = nl + 1;
    }
    return "";
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        std::size_t e = s.find(sep, pos);
        if (e == std::string::npos) e = s.size();
        out.push_back(s.substr(pos, e - pos));
        pos = e + 1;
    }
    return out;
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

// Why `argv` cannot run at all with the ASan runtime preloaded (see the file comment), or ""
// when it can. Always "" outside the sanitizer build.
constexpr bool sanitizer_build() {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

std::string asan_preload_problem([[maybe_unused]] const std::vector<std::string>& argv) {
#if defined(__SANITIZE_ADDRESS__)
    std::string asan;
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            if (info->dlpi_name && std::strstr(info->dlpi_name, "/libasan.so")) {
                *static_cast<std::string*>(out) = info->dlpi_name;
                return 1;
            }
            return 0;
        },
        &asan);
    REQUIRE(!asan.empty());
    auto env = base_env();
    env.set("LD_PRELOAD", asan);
    // It takes milliseconds when it works; the known failure is a hang.
    try {
        Ran r = run(argv, env, 5s);
        if (r.status == 0) return "";
    } catch (const sp::TimeoutExpired&) {
    }
    return "the sanitizer build: '" + argv[0] +
           "' does not run with the ASan runtime preloaded, even without cogent";
#else
    return "";
#endif
}

}  // namespace

// ---- the launcher's options ----

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cogent-run --help and --show") {
    Ran h = run({cogent_run(), "--help"});
    CHECK(h.status == 0);
    CHECK(contains(h.out, "usage: cogent-run [OPTIONS] [--] COMMAND [ARGS...]"));
    CHECK(contains(h.out, "--no-socket"));
    CHECK(run({cogent_run(), "-h"}).out == h.out);

    Ran s = run({cogent_run(), "--show"});
    CHECK(s.status == 0);
    auto lines = split(s.out, '\n');
    REQUIRE(lines.size() >= 3);
    CHECK(lines[0] == "patched: socket,dns,time,select,sync");
    REQUIRE(lines[1].rfind("library: /", 0) == 0);
    const std::string lib = lines[1].substr(9);
    CHECK(lib.size() > 19);
    CHECK(lib.substr(lib.size() - 19) == "/libcogent_patch.so");
    struct stat st {};
    CHECK(::stat(lib.c_str(), &st) == 0);
    CHECK(lines[2].rfind("LD_PRELOAD=", 0) == 0);
    CHECK(contains(lines[2], lib));
    // --show runs nothing, even with a command.
    Ran s2 = run({cogent_run(), "--show", "--", "sh", "-c", "echo ran; exit 9"});
    CHECK(s2.status == 0);
    CHECK(!contains(s2.out, "ran"));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cogent-run: family options, left to right") {
    auto shown = [](std::vector<std::string> opts, std::optional<std::string> cogent_patch = {}) {
        std::vector<std::string> argv{cogent_run()};
        argv.insert(argv.end(), opts.begin(), opts.end());
        argv.push_back("--show");
        auto env = base_env();
        if (cogent_patch) env.set("COGENT_PATCH", *cogent_patch);
        Ran r = run(argv, env);
        INFO("stderr: " << r.err);
        CHECK(r.status == 0);
        return split(r.out, '\n')[0];
    };
    CHECK(shown({"--patch=socket,time"}) == "patched: socket,time");
    CHECK(shown({"--patch", "dns"}) == "patched: dns");
    CHECK(shown({"--patch=none"}) == "patched: none");
    CHECK(shown({"--patch=ALL"}) == "patched: socket,dns,time,select,sync");
    CHECK(shown({"--patch= select , socket "}) == "patched: socket,select");
    CHECK(shown({"--patch=none,dns"}) == "patched: dns");
    CHECK(shown({"--no-dns"}) == "patched: socket,time,select,sync");
    CHECK(shown({"--no-socket", "--no-time", "--no-select", "--no-sync"}) == "patched: dns");
    CHECK(shown({"--no-socket", "--no-dns", "--no-time", "--no-select"}) == "patched: sync");
    CHECK(shown({"--no-socket", "--no-dns", "--no-time", "--no-select", "--no-sync"}) ==
          "patched: none");
    // "thread" is not part of "all", and brings "sync" with it.
    CHECK(shown({"--patch=thread"}) == "patched: sync,thread");
    CHECK(shown({"--patch=all,thread", "--no-sync"}) == "patched: socket,dns,time,select");
    CHECK(shown({"--patch=socket", "--patch=all", "--no-time"}) ==
          "patched: socket,dns,select,sync");
    CHECK(shown({"--no-time", "--patch=all"}) == "patched: socket,dns,time,select,sync");
    // The starting set is an inherited COGENT_PATCH; options change it.
    CHECK(shown({}, "dns,select") == "patched: dns,select");
    CHECK(shown({"--no-select"}, "dns,select") == "patched: dns");
    CHECK(shown({"--patch=all"}, "none") == "patched: socket,dns,time,select,sync");
    CHECK(shown({}, "") == "patched: socket,dns,time,select,sync");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cogent-run: bad usage exits 2 with a clear message") {
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::vector<Case> cases = {
        {{"--patch=sockets", "--", "true"}, "unknown family 'sockets'"},
        {{"--patch=socket,,dns", "true"}, "unknown family ''"},
        {{"--patch"}, "option '--patch' needs a value"},
        {{"--frobnicate", "true"}, "unknown option '--frobnicate'"},
        {{"--no-sockets", "true"}, "unknown option '--no-sockets'"},
        {{"-x", "true"}, "unknown option '-x'"},
        {{}, "no command given"},
        {{"--"}, "no command given"},
        {{"--no-dns", "--"}, "no command given"},
    };
    for (const auto& c : cases) {
        std::vector<std::string> argv{cogent_run()};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        Ran r = run(argv);
        INFO("args: " << (c.args.empty() ? std::string("(none)") : c.args[0]));
        CHECK(r.status == 2);
        CHECK(r.out.empty());
        CHECK(r.err.rfind("cogent-run: ", 0) == 0);
        CHECK(contains(r.err, c.message));
        CHECK(contains(r.err, "--help"));
    }
    // A malformed inherited COGENT_PATCH is reported by the launcher, before anything runs.
    auto env = base_env();
    env.set("COGENT_PATCH", "socket,sleep");
    Ran r = run({cogent_run(), "--", "sh", "-c", "echo ran"}, env);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(contains(r.err, "COGENT_PATCH='socket,sleep': unknown family 'sleep'"));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cogent-run: the command's own status, like a shell") {
    Ran nf = run_patched({"cogent-no-such-command-here"});
    CHECK(nf.status == 127);
    CHECK(contains(nf.err, "cogent-run: cogent-no-such-command-here: command not found"));
    Ran nf2 = run_patched({"/nonexistent/dir/prog"});
    CHECK(nf2.status == 127);
    // A file that is not executable: 126, as a shell says it.
    cogent_test::TempDir dir("cogent-run-test");
    const std::string file = dir.path() + "/not-executable";
    std::FILE* f = std::fopen(file.c_str(), "w");
    REQUIRE(f);
    std::fputs("#!/bin/sh\necho hi\n", f);
    std::fclose(f);
    Ran ne = run_patched({file});
    CHECK(ne.status == 126);
    CHECK(contains(ne.err, "Permission denied"));
    // The command replaces cogent-run: its exit code and its death by a signal are reported
    // exactly as without the launcher; PATH is searched; options after "--" are the command's.
    CHECK(run_patched({"sh", "-c", "exit 3"}).status == 3);
    CHECK(run_patched({"sh", "-c", "kill -TERM $$"}).status == -SIGTERM);
    Ran args = run_patched({"sh", "-c", "echo \"$0|$1|$2\"", "--help", "--patch=none", ""});
    CHECK(args.status == 0);
    CHECK(args.out == "--help|--patch=none|\n");
    // Without "--", the first argument that is not an option starts the command.
    Ran nodash = run({cogent_run(), "--no-dns", "sh", "-c", "echo \"$COGENT_PATCH\"", "--show"});
    CHECK(nodash.status == 0);
    CHECK(nodash.out == "socket,time,select,sync\n");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cogent-run: the environment the command gets") {
    Ran e = run_patched({"env"}, {"--patch=socket,dns"});
    REQUIRE(e.status == 0);
    CHECK(env_value(e.out, "COGENT_PATCH") == "socket,dns");
    auto pre = split(env_value(e.out, "LD_PRELOAD"), ':');
    // The shim, by absolute path (after the ASan runtime in the sanitizer build).
    std::string shim;
    for (auto& p : pre)
        if (contains(p, "libcogent_patch.so")) shim = p;
    REQUIRE(!shim.empty());
    CHECK(shim[0] == '/');
#if defined(__SANITIZE_ADDRESS__)
    REQUIRE(pre.size() == 2);
    CHECK(contains(pre[0], "libasan.so"));
#else
    CHECK(pre == std::vector<std::string>{shim});
#endif

    // An existing LD_PRELOAD is kept, after the shim; another copy of the shim is dropped.
    // (The sanitizer build leaves this shim out of cogent-run's own preload: an instrumented
    // program that gets the shim preloaded ahead of the ASan runtime it links starts with a
    // null environ, since the sync and thread families hook calls that runtime makes during
    // its start-up; the README's Sanitizer section says so.)
    auto env = base_env();
    env.set("LD_PRELOAD", "libm.so.6 /elsewhere/libcogent_patch.so" +
                              std::string(sanitizer_build() ? "" : ":" + shim));
    Ran k = run({cogent_run(), "--", "env"}, env);
    REQUIRE(k.status == 0);
    CHECK(env_value(k.out, "COGENT_PATCH") == "socket,dns,time,select,sync");
    auto pre2 = split(env_value(k.out, "LD_PRELOAD"), ':');
    REQUIRE(pre2.size() >= 2);
    CHECK(pre2[pre2.size() - 2] == shim);
    CHECK(pre2.back() == "libm.so.6");

    // The shim is really loaded into the command, with libcogent; COGENT_PATCH reaches it.
    Ran maps = run_patched({"cat", "/proc/self/maps"});
    CHECK(maps.status == 0);
    CHECK(contains(maps.out, "libcogent_patch.so"));
    CHECK(contains(maps.out, "libcogent.so"));
    const std::string child = env_path("COGENT_CHILD_THREADS");
    CHECK(run({child, "describe"}).out == "not loaded\n");
    CHECK(run_patched({child, "describe"}).out == "socket,dns,time,select,sync\n");
    CHECK(run_patched({child, "describe"}, {"--no-dns"}).out == "socket,time,select,sync\n");
    CHECK(run_patched({child, "describe"}, {"--patch=none"}).out == "none\n");
}

// ---- unmodified programs under cogent-run ----

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: sleep") {
    auto [plain, patched] = same({"sleep", "0.1"});
    CHECK(plain.status == 0);
    CHECK(patched.ms >= 95);
    auto [bad, bad_patched] = same({"sleep", "not-a-number"});
    CHECK(bad.status == 1);
    CHECK(bad_patched.err == bad.err);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: a -D_FORTIFY_SOURCE=2 program") {
    const std::string child = env_path("COGENT_CHILD_FORTIFY");
    // It really calls the checked variants (else this test would prove nothing about them).
    Ran nm = run({"nm", "-D", "--undefined-only", child});
    REQUIRE(nm.status == 0);
    for (const char* sym :
         {"__read_chk", "__recv_chk", "__recvfrom_chk", "__poll_chk", "__ppoll_chk"}) {
        INFO(sym);
        CHECK(contains(nm.out, sym));
    }
    auto [plain, patched] = same({child});
    CHECK(plain.status == 0);
    CHECK(contains(plain.out, "recvfrom data: datagram\n"));
    CHECK(plain.out.substr(plain.out.size() - 3) == "ok\n");
    // The checks themselves survive the shim: a length beyond the buffer aborts the program.
    for (const char* call : {"read", "recv", "recvfrom", "poll", "ppoll"}) {
        INFO(call);
        auto [p, q] = same({child, "overflow", call});
        CHECK(p.status == -SIGABRT);
        CHECK(contains(p.err, "buffer overflow detected"));
        CHECK(contains(q.err, "buffer overflow detected"));
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: a multi-threaded program") {
    const std::string child = env_path("COGENT_CHILD_THREADS");
    auto [plain, patched] = same({child});
    CHECK(plain.status == 0);
    CHECK(contains(plain.out, "worker 3: echoed 200 pipe 1048576 bytes"));
    CHECK(contains(plain.out, "poll 0 select 0 nanosleep 0 addr 127.0.0.1:8080"));
    // With greenlets on the main thread beside the plain threads: the same output.
    auto [gplain, gpatched] = same({child, "greenlets"});
    CHECK(gplain.status == 0);
    CHECK(contains(gplain.out, "greenlet 0: item 0\ngreenlet 1: item 1\ngreenlet 2: item 2\n"));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "the multi-threaded program's greenlets wait together under cogent-run") {
    // Unpatched, the three greenlets' recv and usleep block the whole thread: at least
    // 90 + 3 x 500 ms. Patched they wait together: about 90 + 500 ms (the bound between is
    // loose: loaded machines).
    const std::string child = env_path("COGENT_CHILD_THREADS");
    auto greenlet_ms = [](const Ran& r) {
        auto pos = r.err.find("greenlet_ms ");
        REQUIRE_MESSAGE(pos != std::string::npos, "stderr: " << r.err);
        return std::stod(r.err.substr(pos + 12));
    };
    Ran plain = run({child, "greenlets"});
    REQUIRE(plain.status == 0);
    CHECK(greenlet_ms(plain) >= 1500);
    Ran patched = run_patched({child, "greenlets"});
    REQUIRE(patched.status == 0);
    CHECK(greenlet_ms(patched) < 1300);
    // Only the time family: the recvs block in turn, the sleeps overlap (about 90 + 500 ms).
    Ran time_only = run_patched({child, "greenlets"}, {"--patch=time"});
    REQUIRE(time_only.status == 0);
    CHECK(greenlet_ms(time_only) < 1300);
    // No family: as unpatched.
    Ran none = run_patched({child, "greenlets"}, {"--patch=none"});
    REQUIRE(none.status == 0);
    CHECK(greenlet_ms(none) >= 1500);
}

namespace {

// examples/http_hello on 127.0.0.1, an OS-chosen port; stopped with SIGTERM. `launcher` runs it
// under cogent-run.
struct HttpHello {
    std::optional<sp::Popen> proc;
    int port = 0;
    explicit HttpHello(bool under_cogent_run = false) {
        std::vector<std::string> argv{env_path("COGENT_HTTP_HELLO"), "--port", "0", "--host",
                                      "127.0.0.1"};
        if (under_cogent_run) argv.insert(argv.begin(), {cogent_run(), "--"});
        sp::Options o;
        o.env = base_env();
        o.stdin = sp::DEVNULL;
        o.stdout = sp::PIPE;
        proc.emplace(argv, o);
        std::string line;
        {
            cogent::Timeout t(10s);
            line = proc->stdout().readline();
        }
        auto colon = line.rfind(':');
        REQUIRE_MESSAGE(colon != std::string::npos, "http_hello printed: " << line);
        port = std::stoi(line.substr(colon + 1));
    }
    ~HttpHello() {
        proc->terminate();
        proc->wait(10s);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }
};

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: curl against cogent's HTTP server") {
    if (auto why = asan_preload_problem({"curl", "--version"}); !why.empty())
        COGENT_SKIP_UNSUPPORTED(why);
    HttpHello server;
    auto [plain, patched] = same({"curl", "-sS", server.url()});
    CHECK(plain.status == 0);
    CHECK(plain.out == "Hello, World!");
    auto [h, hp] = same(
        {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", server.url()});
    CHECK(h.out == "200 13");
    // A refused connection: curl's exit code 7 either way.
    auto refused_port = cogent_test::free_loopback_port();
    auto [r, rp] = same({"curl", "-sS", "http://127.0.0.1:" + std::to_string(refused_port) + "/"});
    CHECK(r.status == 7);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a cogent program (http_hello) under cogent-run") {
    // The shim preloaded into a program that uses cogent itself: the two share one runtime,
    // and the server's own cooperative sockets are not disturbed by the patch.
    HttpHello server(true);
    Ran r = run({"curl", "-sS", server.url(), server.url(), server.url()});
    CHECK(r.status == 0);
    CHECK(r.out == "Hello, World!Hello, World!Hello, World!");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: redis-cli against a real redis-server") {
    if (auto why = asan_preload_problem({"redis-cli", "--version"}); !why.empty())
        COGENT_SKIP_UNSUPPORTED(why);
    cogent_test::RedisServer redis;
    const std::string port = std::to_string(redis.port());
    auto cli = [&](std::vector<std::string> args) {
        std::vector<std::string> argv{"redis-cli", "-h", "127.0.0.1", "-p", port};
        argv.insert(argv.end(), args.begin(), args.end());
        return same(argv);
    };
    CHECK(cli({"PING"}).first.out == "PONG\n");
    CHECK(cli({"SET", "cogent:key", "value"}).first.out == "OK\n");
    CHECK(cli({"GET", "cogent:key"}).first.out == "value\n");
    CHECK(cli({"ECHO", "with spaces"}).first.out == "with spaces\n");
    // A blocking command that times out (redis-cli waits in its own read).
    auto [b, bp] = cli({"BLPOP", "cogent:empty", "0.2"});
    CHECK(b.status == 0);
    CHECK(bp.ms >= 150);
    // An error reply and a refused connection.
    auto [e, ep] = cli({"NOSUCHCOMMAND"});
    CHECK(contains(e.out, "ERR"));
    auto closed = std::to_string(cogent_test::free_loopback_port());
    auto [c, cp] = same({"redis-cli", "-h", "127.0.0.1", "-p", closed, "PING"});
    CHECK(c.status == 1);
    CHECK(cp.err == c.err);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "unmodified: psql against a real PostgreSQL server") {
    if (auto why = asan_preload_problem({"psql", "--version"}); !why.empty())
        COGENT_SKIP_UNSUPPORTED(why);
    auto [v, vp] = same({"psql", "--version"});
    CHECK(v.status == 0);
    CHECK(contains(v.out, "PostgreSQL"));
    cogent_test::PostgresServer pg;
    const std::string port = std::to_string(pg.port());
    auto q = [&](const std::string& sql) {
        // -X: no ~/.psqlrc; -A -t: unaligned tuples only.
        std::vector<std::string> argv{"psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", port};
        argv.insert(argv.end(), {"-U", "postgres", "-d", "postgres", "-c", sql});
        return same(argv);
    };
    CHECK(q("SELECT 1 + 1, 'cogent'").first.out == "2|cogent\n");
    auto [s, sp2] = q("SELECT pg_sleep(0.1), 'slept'");
    CHECK(s.out == "|slept\n");
    CHECK(sp2.ms >= 95);
    auto [e, ep] = q("SELECT * FROM no_such_table");
    CHECK(e.status == 1);
    CHECK(contains(ep.err, "no_such_table"));
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "unmodified: xz -T4 and zstd -T4 round trips (their threads on the shim's locks)") {
    // Their worker threads are real threads (no hub), but every mutex, condition and futex
    // they share now goes through the sync family's implementation: the compressed bytes and
    // the round trip must be exactly libc's.
    if (auto why = asan_preload_problem({"xz", "--version"}); !why.empty())
        COGENT_SKIP_UNSUPPORTED(why);
    cogent_test::TempDir dir("cogent-xz-test");
    const std::string input = dir.path() + "/input.txt";
    std::string text;
    std::uint32_t x = 12345;
    while (text.size() < (6u << 20)) {  // 6 MiB of pseudo-random words: several blocks each
        x = x * 1664525u + 1013904223u;
        text += "word" + std::to_string(x >> 20) + ((x & 7) ? " " : "\n");
    }
    {
        FILE* f = std::fopen(input.c_str(), "wb");
        REQUIRE(f);
        REQUIRE(std::fwrite(text.data(), 1, text.size(), f) == text.size());
        std::fclose(f);
    }
    struct Tool {
        const char* name;
        std::vector<std::string> compress;
        std::vector<std::string> block_args;
    };
    for (const Tool& t : {Tool{"xz", {"xz", "-T4", "--block-size=1MiB", "-c", input}, {}},
                          Tool{"zstd", {"zstd", "-T4", "-q", "-c", input}, {}}}) {
        INFO(t.name);
        auto [plain, patched] = same(t.compress);
        REQUIRE(plain.status == 0);
        CHECK(plain.out.size() > 1000);
        const std::string packed = dir.path() + "/packed";
        FILE* f = std::fopen(packed.c_str(), "wb");
        REQUIRE(f);
        std::fwrite(patched.out.data(), 1, patched.out.size(), f);
        std::fclose(f);
        Ran back = run_patched({t.name, "-T4", "-d", "-c", packed});
        CHECK(back.status == 0);
        CHECK(back.out == text);
        // With green threads (cogent-run --threads): its workers are greenlets of one hub.
        // Not in the sanitizer build: ASan's own pthread_create (first in the program) sets up
        // a real thread for every call, and hangs when it gets a greenlet.
        if (sanitizer_build()) continue;
        Ran green = run_patched(t.compress, {"--threads"});
        CHECK(green.status == 0);
        CHECK(green.out == plain.out);
        Ran green_back = run_patched({t.name, "-T4", "-d", "-c", packed}, {"--threads"});
        CHECK(green_back.out == text);
    }
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "cogent-run --threads: a pthread program's output is the same with green threads") {
    // tests/child_pthreads.c: create/join values, pthread_exit from depth, self/equal, mutex
    // types and their errors, conditions on both clocks, barriers, once, keys and destructors,
    // semaphores, detach, self-join, tryjoin, cancel, names. Plain C, no cogent.
    if (sanitizer_build())
        COGENT_SKIP_UNSUPPORTED(
            "the sanitizer build: ASan's pthread_create, first in the "
            "program, sets up a real thread for every call and hangs when "
            "it gets a greenlet");
    const std::string child = env_path("COGENT_CHILD_PTHREADS");
    Ran plain = run({child});
    Ran green = run_patched({child}, {"--threads"});
    INFO("stderr plain: " << plain.err);
    INFO("stderr green: " << green.err);
    REQUIRE(plain.status == 0);
    CHECK(green.status == 0);
    CHECK(contains(plain.out, "join 3 -> 31\n"));
    CHECK(contains(plain.out, "\ndone\n"));
    CHECK(green.out == plain.out);
    // Without --threads (sync only) its threads are real and the output is the same too.
    Ran sync_only = run_patched({child});
    CHECK(sync_only.out == plain.out);
    // The C++ side: std::thread, jthread, mutex, condition_variable, shared_mutex, call_once,
    // counting_semaphore, latch, barrier.
    const std::string cpp = env_path("COGENT_CHILD_PTHREADS_CPP");
    Ran cplain = run({cpp});
    Ran cgreen = run_patched({cpp}, {"--threads"});
    INFO("stderr C++ green: " << cgreen.err);
    REQUIRE(cplain.status == 0);
    CHECK(cgreen.status == 0);
    CHECK(contains(cplain.out, "call_once: 1\n"));
    CHECK(cgreen.out == cplain.out);
    // The threads really are greenlets: 8 of them alive beside main on one OS thread.
    CHECK(run({child, "tasks"}).out == "tasks 9\n");
    CHECK(run_patched({child, "tasks"}, {"--threads"}).out == "tasks 1\n");
    CHECK(run_patched({child, "tasks"}).out == "tasks 9\n");
}
