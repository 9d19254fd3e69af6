// Subprocesses: Popen with pipes, communicate (large data both ways), wait/poll/timeouts,
// signals, run/check_output/call, env/cwd, spawn errors, concurrency, other threads.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;
using Clock = std::chrono::steady_clock;
namespace sp = cogent::subprocess;

namespace {

sp::Options pipes(bool in, bool out, bool err) {
    sp::Options o;
    if (in) o.stdin = sp::PIPE;
    if (out) o.stdout = sp::PIPE;
    if (err) o.stderr = sp::PIPE;
    return o;
}

sp::RunOptions captured() {
    sp::RunOptions o;
    o.capture_output = true;
    return o;
}

// A deterministic, non-repeating-looking payload of n bytes.
std::string payload(std::size_t n) {
    std::string s(n, '\0');
    std::uint32_t x = 12345;
    for (auto& c : s) {
        x = x * 1103515245u + 12345u;
        c = char('a' + (x >> 16) % 26);
    }
    return s;
}

}  // namespace

TEST_SUITE_BEGIN("subprocess");

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "echo through a stdout pipe") {
    sp::Popen p({"echo", "hello", "world"}, pipes(false, true, false));
    CHECK(p.pid() > 0);
    CHECK(p.stdout().read_all() == "hello world\n");
    CHECK(p.wait(5s) == 0);
    CHECK(p.returncode() == 0);
    CHECK(p.poll() == 0);
    CHECK_FALSE(p.stdin());  // not a PIPE: closed
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "cat: write to stdin, readline from stdout") {
    sp::Popen p({"cat"}, pipes(true, true, false));
    p.stdin().write("line one\nline two\nlast");
    CHECK(p.stdout().readline() == "line one\n");
    p.stdin().close();
    CHECK(p.stdout().readline() == "line two\n");
    CHECK(p.stdout().readline() == "last");
    CHECK(p.stdout().readline() == "");
    CHECK(p.wait(5s) == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "sh -c with stderr, and stderr merged into stdout") {
    {
        sp::Popen p({"sh", "-c", "echo out; echo err >&2; exit 4"}, pipes(false, true, true));
        auto [out, err] = p.communicate();
        CHECK(out == "out\n");
        CHECK(err == "err\n");
        CHECK(p.returncode() == 4);
    }
    {
        sp::Options o = pipes(false, true, false);
        o.stderr = sp::STDOUT;
        sp::Popen p({"sh", "-c", "echo out; echo err >&2"}, o);
        auto r = p.communicate();
        CHECK(r.stdout == "out\nerr\n");
        CHECK(r.stderr == "");
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "communicate moves several MB both ways without deadlock") {
    // tee writes everything to stdout and to stderr: unless stdin is written while both are
    // read, every pipe fills up and everything stops.
    const std::string input = payload(6 << 20);
    sp::Popen p({"sh", "-c", "tee /dev/stderr"}, pipes(true, true, true));
    auto t0 = Clock::now();
    auto [out, err] = p.communicate(input, 30s);
    CHECK(out.size() == input.size());
    CHECK(err.size() == input.size());
    CHECK(out == input);
    CHECK(err == input);
    CHECK(p.returncode() == 0);
    MESSAGE("6 MiB in, 12 MiB out: " << ms_since(t0) << " ms");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "large output with no input, and other greenlets keep running") {
    sp::Popen p({"head", "-c", "5000000", "/dev/zero"}, pipes(true, true, false));
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (;;) {
            cogent::sleep(1ms);
            ++ticks;
        }
    });
    auto r = p.communicate();
    ticker.kill();
    CHECK(r.stdout.size() == 5000000);
    CHECK(r.stdout.find_first_not_of('\0') == std::string::npos);
    CHECK(p.returncode() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "wait with a timeout throws TimeoutExpired, then kill") {
    sp::Popen p({"sleep", "10"});
    auto t0 = Clock::now();
    try {
        p.wait(200ms);
        FAIL("wait did not time out");
    } catch (const sp::TimeoutExpired& e) {
        CHECK(std::string(e.what()).find("'sleep', '10'") != std::string::npos);
        CHECK(std::string(e.what()).find("0.2 seconds") != std::string::npos);
        CHECK(e.timeout == std::chrono::nanoseconds(200ms));
        CHECK(e.cmd == std::vector<std::string>{"sleep", "10"});
    }
    double ms = ms_since(t0);
    CHECK(ms >= 190);
    CHECK(ms < 2000);
    CHECK_FALSE(p.poll().has_value());
    CHECK_FALSE(p.returncode().has_value());
    CHECK_THROWS_AS(p.wait(0s), sp::TimeoutExpired);
    p.kill();
    CHECK(p.wait(5s) == -SIGKILL);
    p.kill();  // reaped: a no-op
    CHECK(p.returncode() == -SIGKILL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "communicate timeout keeps the output for the retry") {
    sp::Popen p({"sh", "-c", "echo partial; exec sleep 10"}, pipes(false, true, false));
    auto t0 = Clock::now();
    try {
        p.communicate({}, 300ms);
        FAIL("communicate did not time out");
    } catch (const sp::TimeoutExpired& e) {
        CHECK(e.output == "partial\n");
    }
    CHECK(ms_since(t0) < 2000);
    CHECK_THROWS_AS(p.communicate("late input"), std::logic_error);
    p.kill();
    auto r = p.communicate({}, 5s);
    CHECK(r.stdout == "partial\n");
    CHECK(p.returncode() == -SIGKILL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "signals: returncode is minus the signal") {
    sp::Popen self_kill({"sh", "-c", "kill -TERM $$; sleep 5"});
    CHECK(self_kill.wait(5s) == -SIGTERM);
    sp::Popen p({"sleep", "10"});
    CHECK_FALSE(p.poll().has_value());
    p.terminate();
    CHECK(p.wait(5s) == -SIGTERM);
    sp::Popen q({"sleep", "10"});
    q.send_signal(SIGINT);
    CHECK(q.wait(5s) == -SIGINT);
    sp::Popen r({"sleep", "10"});
    CHECK_THROWS_AS(r.send_signal(12345), std::system_error);
    r.kill();
    CHECK(r.wait(5s) == -SIGKILL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "several subprocesses waited on concurrently overlap") {
    constexpr int kN = 5;
    auto t0 = Clock::now();
    std::vector<cogent::Greenlet<int>> gs;
    // How many children had been started when the first wait() returned: all of them, unless a
    // wait blocked the thread (then the next greenlet would start its child only after it).
    int started = 0, started_at_first_return = -1;
    for (int i = 0; i < kN; ++i)
        gs.push_back(cogent::spawn([i, &started, &started_at_first_return] {
            sp::Popen p({"sh", "-c", "sleep 0.3; exit " + std::to_string(i)});
            ++started;
            int rc = p.wait();
            if (started_at_first_return < 0) started_at_first_return = started;
            return rc;
        }));
    for (int i = 0; i < kN; ++i) CHECK(gs[std::size_t(i)].get(30s) == i);
    double ms = ms_since(t0);
    MESSAGE(kN << " x sleep 0.3 concurrently: " << ms << " ms");
    CHECK(started_at_first_return == kN);
    CHECK(ms >= 290);
    CHECK(ms < 10000);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "two greenlets wait for the same child") {
    sp::Popen p({"sleep", "0.1"});
    auto other = cogent::spawn([&] { return p.wait(5s); });
    CHECK(p.wait(5s) == 0);
    CHECK(other.get(5s) == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "env and cwd") {
    {
        sp::RunOptions o = captured();
        o.env = sp::Env{{"FOO", "bar baz"}, {"PATH", "/usr/bin:/bin"}};
        o.cwd = "/tmp";
        auto r = sp::run({"sh", "-c", "echo \"$FOO\"; pwd; echo \"[$HOME]\""}, o);
        CHECK(r.stdout == "bar baz\n/tmp\n[]\n");
    }
    {
        sp::RunOptions o = captured();
        o.env = sp::Env(std::vector<std::string>{"A=1", "B=x=y", "A=2", "PATH=/usr/bin:/bin"});
        CHECK(sp::run({"sh", "-c", "echo $A $B"}, o).stdout == "2 x=y\n");
    }
    {
        // Absent env: inherited. Env::current() is a copy to extend.
        setenv("COGENT_SUBPROCESS_TEST", "inherited", 1);
        CHECK(sp::check_output({"sh", "-c", "echo $COGENT_SUBPROCESS_TEST"}) == "inherited\n");
        sp::RunOptions o;
        o.env = sp::Env::current().set("COGENT_SUBPROCESS_EXTRA", "extra");
        CHECK(sp::check_output(
                  {"sh", "-c", "echo $COGENT_SUBPROCESS_TEST $COGENT_SUBPROCESS_EXTRA"}, o) ==
              "inherited extra\n");
        unsetenv("COGENT_SUBPROCESS_TEST");
    }
    {
        // The program is looked up in the child's PATH.
        sp::RunOptions o;
        o.env = sp::Env{{"PATH", "/nonexistent-dir"}};
        CHECK_THROWS_AS(sp::run({"sh", "-c", "true"}, o), std::system_error);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a program that does not exist is a clear error") {
    try {
        sp::Popen p({"cogent-no-such-program-xyz", "arg"});
        FAIL("Popen did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what()).find("cogent-no-such-program-xyz") != std::string::npos);
    }
    try {
        sp::run({"/nonexistent/path/prog"});
        FAIL("run did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what()).find("/nonexistent/path/prog") != std::string::npos);
    }
    try {
        sp::run({"/tmp"});  // a directory
        FAIL("run did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EACCES);
    }
    try {
        sp::RunOptions o;
        o.cwd = "/nonexistent-cwd-for-cogent";
        sp::run({"true"}, o);
        FAIL("run did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what()).find("/nonexistent-cwd-for-cogent") != std::string::npos);
    }
    // Nothing was left behind: no zombie of ours.
    errno = 0;
    CHECK(::waitpid(-1, nullptr, WNOHANG) <= 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "run, check, check_output, call") {
    auto ok = sp::run({"sh", "-c", "printf out; printf err >&2"}, captured());
    CHECK(ok.returncode == 0);
    CHECK(ok.stdout == "out");
    CHECK(ok.stderr == "err");
    CHECK(ok.args == std::vector<std::string>{"sh", "-c", "printf out; printf err >&2"});
    ok.check_returncode();

    sp::RunOptions o = captured();
    o.check = true;
    try {
        sp::run({"sh", "-c", "echo out; echo err >&2; exit 3"}, o);
        FAIL("check did not throw");
    } catch (const sp::CalledProcessError& e) {
        CHECK(e.returncode == 3);
        CHECK(e.output == "out\n");
        CHECK(e.stderr == "err\n");
        CHECK(std::string(e.what()).find("exit status 3") != std::string::npos);
    }
    auto failed = sp::run({"false"});
    CHECK(failed.returncode == 1);
    CHECK_THROWS_AS(failed.check_returncode(), sp::CalledProcessError);

    CHECK(sp::check_output({"echo", "checked"}) == "checked\n");
    try {
        sp::check_output({"sh", "-c", "echo partial; kill -KILL $$"});
        FAIL("check_output did not throw");
    } catch (const sp::CalledProcessError& e) {
        CHECK(e.returncode == -SIGKILL);
        CHECK(e.output == "partial\n");
        CHECK(std::string(e.what()).find("signal 9") != std::string::npos);
    }
    CHECK(sp::call({"sh", "-c", "exit 7"}) == 7);
    CHECK_NOTHROW(sp::check_call({"true"}));
    CHECK_THROWS_AS(sp::check_call({"false"}), sp::CalledProcessError);

    sp::RunOptions in;
    in.input = "to stdin\n";
    in.capture_output = true;
    CHECK(sp::run({"cat"}, in).stdout == "to stdin\n");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "run with a timeout kills and reaps the child") {
    sp::RunOptions o = captured();
    o.timeout = 200ms;
    auto t0 = Clock::now();
    try {
        sp::run({"sh", "-c", "echo started; exec sleep 10"}, o);
        FAIL("run did not time out");
    } catch (const sp::TimeoutExpired& e) {
        CHECK(e.output == "started\n");
    }
    CHECK(ms_since(t0) < 2000);
    errno = 0;
    CHECK(::waitpid(-1, nullptr, WNOHANG) <= 0);  // reaped
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill or Timeout while waiting leaves nothing behind") {
    sp::Popen p({"sleep", "10"}, pipes(false, true, true));
    CHECK_THROWS_AS(cogent::with_timeout(50ms, [&] { p.wait(); }), cogent::Timeout);
    CHECK_THROWS_AS(cogent::with_timeout(50ms, [&] { p.communicate(); }), cogent::Timeout);
    auto waiter = cogent::spawn([&] { p.wait(); });
    cogent::sleep(10ms);
    waiter.kill();
    CHECK(waiter.dead());
    CHECK_FALSE(p.poll().has_value());
    p.kill();
    p.communicate({}, 5s);
    CHECK(p.returncode() == -SIGKILL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Popen and run on a non-main thread") {
    std::string out;
    int code = -100;
    std::string error;
    std::thread t([&] {
        try {
            sp::Popen p({"sh", "-c", "sleep 0.05; cat; exit 5"}, pipes(true, true, false));
            out = p.communicate("from a thread", 10s).stdout;
            code = *p.returncode();
            sp::Popen s({"sleep", "10"});
            try {
                s.wait(50ms);
                error = "no timeout";
            } catch (const sp::TimeoutExpired&) {
            }
            s.kill();
            if (s.wait() != -SIGKILL) error = "not killed";
        } catch (const std::exception& e) {
            error = e.what();
        }
    });
    t.join();
    CHECK(error == "");
    CHECK(out == "from a thread");
    CHECK(code == 5);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawning from several threads at once") {
    // Children forked while other threads allocate, spawn and hold locks must still exec.
    constexpr int kThreads = 4, kEach = 15;
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
            std::vector<cogent::Greenlet<void>> gs;
            for (int i = 0; i < kEach; ++i)
                gs.push_back(cogent::spawn([&, t, i] {
                    std::string want = std::to_string(t) + "-" + std::to_string(i) + "\n";
                    if (sp::check_output({"echo", want.substr(0, want.size() - 1)}) == want) ++ok;
                }));
            for (auto& g : gs) g.join();
        });
    for (auto& t : ts) t.join();
    CHECK(ok == kThreads * kEach);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "redirects: DEVNULL, an fd, INHERIT") {
    {
        sp::Options o = pipes(false, true, false);
        o.stdin = sp::DEVNULL;
        sp::Popen p({"cat"}, o);
        CHECK(p.communicate({}, 5s).stdout == "");
    }
    {
        int fds[2];
        REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        sp::Options o;
        o.stdout = fds[1];
        o.stderr = sp::STDOUT;
        sp::Popen p({"sh", "-c", "echo to-fd; echo err-to-fd >&2"}, o);
        CHECK(p.wait(5s) == 0);
        cogent::close(fds[1]);
        std::string got;
        char buf[256];
        for (;;) {
            ssize_t n = ::read(fds[0], buf, sizeof buf);
            if (n > 0)
                got.append(buf, std::size_t(n));
            else if (n == 0)
                break;
            else if (errno == EAGAIN)
                cogent::wait_read(fds[0], 5s);
            else
                break;
        }
        cogent::close(fds[0]);
        CHECK(got == "to-fd\nerr-to-fd\n");
    }
    {
        // Swapped: stdout to our fd 2 and stderr to our fd 1 (both moved out of the way first).
        sp::Options o;
        o.stdout = 2;
        o.stderr = 1;
        o.stdin = sp::DEVNULL;
        CHECK(sp::Popen({"true"}, o).wait(5s) == 0);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "close_fds, pass_fds and close-on-exec pipes") {
    int fds[2];
    REQUIRE(pipe(fds) == 0);  // not close-on-exec: close_fds must still keep it from the child
    const std::string probe =
        "for f in " + std::to_string(fds[0]) + " " + std::to_string(fds[1]) +
        "; do if [ -e /proc/$$/fd/$f ]; then printf o; else printf c; fi; done";
    CHECK(sp::check_output({"sh", "-c", probe}) == "cc");
    sp::RunOptions pass;
    pass.pass_fds = {fds[1]};
    CHECK(sp::check_output({"sh", "-c", probe}, pass) == "co");
    sp::RunOptions keep;
    keep.close_fds = false;
    CHECK(sp::check_output({"sh", "-c", probe}, keep) == "oo");
    ::close(fds[0]);
    ::close(fds[1]);
    // The parent's ends of a Popen's pipes are close-on-exec: another child never holds them.
    sp::Popen cat({"cat"}, pipes(true, true, false));
    const std::string probe2 =
        "for f in " + std::to_string(cat.stdin().fd()) + " " + std::to_string(cat.stdout().fd()) +
        "; do if [ -e /proc/$$/fd/$f ]; then printf o; else printf c; fi; done";
    CHECK(sp::check_output({"sh", "-c", probe2}, keep) == "cc");
    cat.stdin().close();
    CHECK(cat.communicate({}, 5s).stdout == "");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "writing to a child that exited: EPIPE, no SIGPIPE") {
    sp::Popen p({"true"}, pipes(true, false, false));
    CHECK(p.wait(5s) == 0);
    try {
        p.stdin().write(std::string(200000, 'x'));
        FAIL("write did not fail");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EPIPE);
    }
    // communicate ignores a stdin the child closed.
    sp::Popen q({"sh", "-c", "exec 0<&-; echo closed"}, pipes(true, true, false));
    CHECK(q.communicate(std::string(1 << 20, 'y'), 5s).stdout == "closed\n");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "the child starts with default SIGPIPE and no blocked signals") {
    struct sigaction ign {
    }, old{};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    sigset_t block, oldmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &oldmask);
    // SigIgn and SigBlk of the child itself (hex masks; bit 12 is SIGPIPE, bit 14 SIGTERM).
    std::string out = sp::check_output({"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"});
    pthread_sigmask(SIG_SETMASK, &oldmask, nullptr);
    sigaction(SIGPIPE, &old, nullptr);
    auto mask = [&](const char* name) {
        auto at = out.find(name);
        REQUIRE(at != std::string::npos);
        return std::stoull(out.substr(at + std::strlen(name)), nullptr, 16);
    };
    CHECK((mask("SigIgn:") & (1ull << (SIGPIPE - 1))) == 0);
    CHECK((mask("SigBlk:") & (1ull << (SIGTERM - 1))) == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "without pidfd, waiting polls and still works") {
    cogent::detail::set_pidfd_enabled(false);
    struct Restore {
        ~Restore() { cogent::detail::set_pidfd_enabled(true); }
    } restore;
    sp::Popen p({"sleep", "10"});
    CHECK_THROWS_AS(p.wait(50ms), sp::TimeoutExpired);
    p.kill();
    CHECK(p.wait(5s) == -SIGKILL);
    auto t0 = Clock::now();
    CHECK(sp::check_output({"sh", "-c", "sleep 0.1; echo polled"}) == "polled\n");
    CHECK(ms_since(t0) < 5000);  // polled every 50 ms at most
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Popen destroyed while running is reaped later") {
    pid_t pid;
    {
        sp::Popen p({"sleep", "0.05"});
        pid = p.pid();
    }
    CHECK(cogent::detail::orphan_count() >= 1);  // handed to the reaper
    cogent_test::wait_exited_unreaped(pid);      // however long a loaded machine takes
    sp::Popen next({"true"});                    // starting a child reaps the orphans that exited
    errno = 0;
    CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
    CHECK(errno == ECHILD);
    CHECK(next.wait(5s) == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "SIGCHLD ignored: the status is lost, returncode 0") {
    // The kernel reaps such children itself; as CPython, the unknowable status reads as 0.
    struct sigaction ign {
    }, old{};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &ign, &old);
    int code = -100;
    {
        sp::Popen p({"sh", "-c", "exit 3"});
        code = p.wait(5s);
    }
    sigaction(SIGCHLD, &old, nullptr);
    CHECK(code == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Popen on the hub is refused") {
    bool refused = false;
    cogent::get_hub().run_callback([&] {
        try {
            sp::Popen p({"true"});
        } catch (const cogent::BlockingSwitchOutError&) {
            refused = true;
        }
    });
    cogent::sleep(10ms);
    CHECK(refused);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Popen is movable") {
    sp::Popen a({"sh", "-c", "echo moved"}, pipes(false, true, false));
    sp::Popen b = std::move(a);
    CHECK(a.pid() == -1);
    CHECK_THROWS_AS(a.wait(), std::logic_error);
    CHECK(b.communicate({}, 5s).stdout == "moved\n");
    sp::Popen c({"true"});
    c = std::move(b);
    CHECK(c.returncode() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "bad input is rejected clearly") {
    CHECK_THROWS_AS(sp::Popen({}), std::invalid_argument);
    CHECK_THROWS_AS(sp::Popen({""}), std::invalid_argument);
    CHECK_THROWS_AS(sp::Popen({"echo", std::string("a\0b", 3)}), std::invalid_argument);
    sp::Options o;
    o.stdout = sp::STDOUT;
    CHECK_THROWS_AS(sp::Popen({"true"}, o), std::invalid_argument);
    sp::Options neg;
    neg.stdin = -5;
    CHECK_THROWS_AS(sp::Popen({"true"}, neg), std::invalid_argument);
    sp::Options closed;
    closed.stdout = 999;
    CHECK_THROWS_AS(sp::Popen({"true"}, closed), std::invalid_argument);
    sp::Options badenv;
    badenv.env = sp::Env{{"A=B", "1"}};
    CHECK_THROWS_AS(sp::Popen({"true"}, badenv), std::invalid_argument);
    CHECK_THROWS_AS(sp::Env(std::vector<std::string>{"NOEQUALS"}), std::invalid_argument);
    sp::RunOptions both;
    both.input = "x";
    both.stdin = sp::DEVNULL;
    CHECK_THROWS_AS(sp::run({"cat"}, both), std::invalid_argument);
    sp::RunOptions cap = captured();
    cap.stdout = sp::DEVNULL;
    CHECK_THROWS_AS(sp::run({"true"}, cap), std::invalid_argument);
    sp::Popen p({"true"});
    CHECK_THROWS_AS(p.communicate("input without a stdin pipe"), std::invalid_argument);
    CHECK_THROWS_AS(p.wait(-1s), std::invalid_argument);
    CHECK(p.wait(5s) == 0);
}

TEST_SUITE_END();
