// Subprocess spawns from many greenlets (issue 12): the child is cloned off the hub thread, so
// the hub keeps running; errors, concurrency, kill/Timeout during a spawn, and no fd leaks.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace sp = cogent::subprocess;

namespace {

// Runs fn and returns the std::system_error it throws (fails the test if it throws none).
template <class F>
std::system_error system_error_of(F&& fn) {
    try {
        fn();
    } catch (const std::system_error& e) {
        return e;
    }
    FAIL("no std::system_error was thrown");
    return std::system_error(0, std::generic_category());
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("spawn") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a 1 ms ticker keeps running while 20 greenlets spawn") {
        // Before: every spawn forked on the hub thread (4.5-17 ms each, the hub stalled meanwhile,
        // the ticker got 0-4% of its slots). Now the clone runs on a spawner thread: the calling
        // thread spends only the hand-off in a spawn.
        bool done = false;
        long ticks = 0;
        auto ticker = cogent::spawn([&] {
            while (!done) {
                cogent::sleep(1ms);
                ++ticks;
            }
        });
        cogent::sleep(5ms);
        ticks = 0;
        cogent::debug::reset_spawn_stats();
        const auto t0 = Clock::now();
        std::vector<cogent::Greenlet<int>> spawners;
        for (int g = 0; g < 20; ++g)
            spawners.push_back(cogent::spawn([] {
                int ok = 0;
                for (int r = 0; r < 10; ++r) ok += sp::Popen({"true"}).wait() == 0;
                return ok;
            }));
        for (auto& s : spawners) CHECK(s.get() == 10);
        const double slots = cogent_test::ms_since(t0);
        const long seen = ticks;
        done = true;
        ticker.join();
        const auto st = cogent::debug::spawn_stats();
        MESSAGE("200 spawns in " << slots << " ms; ticker " << seen << " of " << long(slots)
                                 << " slots; hub time per spawn avg "
                                 << std::chrono::duration<double, std::micro>(st.hub_avg()).count()
                                 << " us, max "
                                 << std::chrono::duration<double, std::micro>(st.hub_max).count()
                                 << " us");
        CHECK(st.count == 200);
        CHECK(st.inline_count == 0);  // all cloned on spawner threads
        CHECK(st.hub_avg() < 2ms);    // the hand-off only (the fork took 4.5+ ms)
        CHECK(double(seen) >= slots / 20);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawn errors still give the right exception") {
        auto missing = system_error_of([] { sp::Popen({"/nonexistent/cogent-no-such-program"}); });
        CHECK(missing.code().value() == ENOENT);
        CHECK(contains(missing.what(), "cogent: cannot run '/nonexistent/cogent-no-such-program'"));

        auto in_path = system_error_of([] { sp::Popen({"cogent-no-such-program-in-path"}); });
        CHECK(in_path.code().value() == ENOENT);

        sp::Options bad_cwd;
        bad_cwd.cwd = "/nonexistent/cogent-dir";
        auto cwd = system_error_of([&] { sp::Popen({"true"}, bad_cwd); });
        CHECK(cwd.code().value() == ENOENT);
        CHECK(contains(cwd.what(), "cannot change to directory '/nonexistent/cogent-dir'"));

        // A file that is not executable: EACCES.
        char path[] = "/tmp/cogent-spawn-XXXXXX";
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        ::close(fd);
        ::chmod(path, 0600);
        auto noexec = system_error_of([&] { sp::Popen({path}); });
        ::unlink(path);
        if (geteuid() != 0) CHECK(noexec.code().value() == EACCES);

        // The failed children were reaped, and spawning still works afterwards.
        CHECK(cogent::detail::orphan_count() == 0);
        CHECK(sp::check_output({"echo", "after"}) == "after\n");
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "100 concurrent spawns all succeed with their output") {
        std::vector<cogent::Greenlet<std::string>> gs;
        for (int i = 0; i < 100; ++i)
            gs.push_back(cogent::spawn([i] {
                sp::RunOptions o;
                o.env = sp::Env::current().set("N", std::to_string(i));
                o.cwd = "/";
                o.capture_output = true;
                auto cp = sp::run({"sh", "-c", "echo $N $(pwd); echo err$N >&2"}, o);
                return cp.stdout + cp.stderr;
            }));
        for (int i = 0; i < 100; ++i)
            CHECK(gs[std::size_t(i)].get() ==
                  std::to_string(i) + " /\nerr" + std::to_string(i) + "\n");
        CHECK(cogent::debug::spawn_stats().count >= 100);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "spawns and failed spawns leak no fds, children get none") {
        // LeakCheck compares this process's fds; here also what a child sees.
        int extra = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: close_fds must close it
        REQUIRE(extra >= 3);
        for (int i = 0; i < 30; ++i) {
            sp::Popen p({"true"}, [] {
                sp::Options o;
                o.stdin = sp::PIPE;
                o.stdout = sp::PIPE;
                o.stderr = sp::DEVNULL;
                return o;
            }());
            CHECK(p.wait() == 0);
            CHECK_THROWS_AS(sp::Popen({"/nonexistent/cogent-x"},
                                      [] {
                                          sp::Options o;
                                          o.stdout = sp::PIPE;
                                          return o;
                                      }()),
                            std::system_error);
        }
        // The child has 0, 1, 2 and the directory ls reads: nothing of ours.
        std::string fds = sp::check_output({"ls", "/proc/self/fd"});
        std::vector<std::string> names;
        std::size_t start = 0;
        while (start < fds.size()) {
            auto nl = fds.find('\n', start);
            names.push_back(fds.substr(start, nl - start));
            start = nl + 1;
        }
        CHECK(names.size() <= 4);
        CHECK(std::find(names.begin(), names.end(), std::to_string(extra)) == names.end());
        // pass_fds keeps it.
        sp::RunOptions o;
        o.pass_fds = {extra};
        CHECK(sp::check_output(
                  {"sh", "-c", "test -e /proc/self/fd/" + std::to_string(extra) + " && echo yes"},
                  o) == "yes\n");
        ::close(extra);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "kill or Timeout during a spawn takes effect after it") {
        // The spawn itself is not interruptible; the exception comes once the child exists, and
        // the child is killed (reaped later), as a kill while waiting for the exec always did.
        // Each body kills its child itself if it gets past the spawn, so that every child ends.
        int past_spawn = 0;
        auto body = [&] {
            sp::Popen p({"sleep", "30"});
            ++past_spawn;
            p.kill();
            p.wait();
        };
        for (int i = 0; i < 5; ++i) {
            auto g = cogent::spawn(body);
            cogent::sleep(0);  // g has submitted its spawn and parks until it is done
            g.kill();
            CHECK(g.dead());
            CHECK(g.successful());  // GreenletExit
        }
        MESSAGE(past_spawn << " of 5 kills came after the spawn");
        past_spawn = 0;
        const auto t0 = Clock::now();
        CHECK_THROWS_AS(cogent::with_timeout(1us, body), cogent::Timeout);
        // Whether the 1 us timer is handled before the spawner's wake-up depends on the load: the
        // Timeout comes when the spawn returns, or in the wait right after it; either way it comes.
        MESSAGE(past_spawn << " of 1 timeouts came after the spawn");
        CHECK(cogent_test::ms_since(t0) < 10000);
        // Every child started above was killed: the orphan reaper empties.
        for (int i = 0; i < 500 && cogent::detail::orphan_count() > 0; ++i) {
            cogent::sleep(10ms);
            sp::call({"true"});  // a spawn reaps the orphans that exited
        }
        CHECK(cogent::detail::orphan_count() == 0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a child does not run the parent's signal handlers") {
        // The child runs in our memory until it execs: a handler of ours running there would
        // corrupt us. Signals arriving during spawns are handled by the parent only.
        static volatile sig_atomic_t handled = 0;
        struct sigaction sa {
        }, old{};
        sa.sa_handler = [](int) { handled = handled + 1; };
        sigemptyset(&sa.sa_mask);
        REQUIRE(sigaction(SIGUSR2, &sa, &old) == 0);
        bool stop = false;
        auto pinger = cogent::spawn([&] {
            while (!stop) {
                ::kill(getpid(), SIGUSR2);
                cogent::sleep(100us);
            }
        });
        std::vector<cogent::Greenlet<int>> gs;
        for (int g = 0; g < 5; ++g)
            gs.push_back(cogent::spawn([] {
                int ok = 0;
                for (int r = 0; r < 10; ++r) ok += sp::call({"true"}) == 0;
                return ok;
            }));
        for (auto& g : gs) CHECK(g.get() == 10);
        stop = true;
        pinger.join();
        sigaction(SIGUSR2, &old, nullptr);
        CHECK(handled > 0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "without spawner threads, spawns clone on the caller") {
        // The fallback when no spawner thread can start: the same features and errors.
        cogent::detail::set_spawner_threads_enabled(false);
        struct Restore {
            ~Restore() { cogent::detail::set_spawner_threads_enabled(true); }
        } restore;
        cogent::debug::reset_spawn_stats();
        sp::RunOptions o;
        o.cwd = "/";
        o.input = "in";
        o.capture_output = true;
        o.start_new_session = true;
        auto cp = sp::run({"sh", "-c", "cat; pwd; echo e >&2; exit 4"}, o);
        CHECK(cp.returncode == 4);
        CHECK(cp.stdout == "in/\n");
        CHECK(cp.stderr == "e\n");
        auto missing = system_error_of([] { sp::Popen({"/nonexistent/cogent-no-such-program"}); });
        CHECK(missing.code().value() == ENOENT);
        sp::Options bad_cwd;
        bad_cwd.cwd = "/nonexistent/cogent-dir";
        CHECK(system_error_of([&] { sp::Popen({"true"}, bad_cwd); }).code().value() == ENOENT);
        const auto st = cogent::debug::spawn_stats();
        CHECK(st.count == 3);
        CHECK(st.inline_count == 3);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawning works in a forked child and after it") {
        // The spawner threads do not exist in a child of fork(): its spawns start its own.
        CHECK(sp::check_output({"echo", "parent"}) == "parent\n");
        pid_t pid = cogent::fork();
        if (pid == 0) {
            bool ok = false;
            try {
                auto g = cogent::spawn([] { return sp::check_output({"echo", "child"}); });
                ok = g.get() == "child\n" && sp::call({"true"}) == 0;
            } catch (...) {
            }
            ::_exit(ok ? 0 : 3);
        }
        REQUIRE(pid > 0);
        int status = 0;
        for (int i = 0; i < 3000 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) cogent::sleep(10ms);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(sp::check_output({"echo", "parent"}) == "parent\n");
    }

}  // TEST_SUITE
