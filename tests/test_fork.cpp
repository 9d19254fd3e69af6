// fork() support (the child's hub is reinitialised and keeps working; the parent is unaffected)
// and Process (a function run in a forked child, joined cooperatively). Children report through
// pipes and exit codes, and always end with _exit.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int fds[2];
        REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~Pipe() {
        close_r();
        close_w();
    }
    void close_r() {
        if (r >= 0) cogent::close(r);
        r = -1;
    }
    void close_w() {
        if (w >= 0) cogent::close(w);
        w = -1;
    }
};

// Everything until EOF, reading cooperatively.
std::string read_all(int fd) {
    std::string s;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            s.append(buf, std::size_t(n));
        } else if (n == 0) {
            return s;
        } else if (errno == EAGAIN) {
            REQUIRE(cogent::wait_read(fd, 10s));
        } else if (errno != EINTR) {
            FAIL("read: " << std::strerror(errno));
        }
    }
}

void write_str(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n > 0) {
            off += std::size_t(n);
        } else if (n < 0 && errno == EAGAIN) {
            cogent::wait_write(fd);
        } else if (n < 0 && errno != EINTR) {
            return;
        }
    }
}

// In the child: run `check`, which returns "" when all is well or what went wrong; report it
// through the pipe and _exit (0 when well). Never returns in the child.
[[noreturn]] void child_report(Pipe& p, const std::function<std::string()>& check) {
    std::string problem;
    try {
        problem = check();
    } catch (const std::exception& e) {
        problem = std::string("exception: ") + e.what();
    } catch (const cogent::BaseException& e) {
        problem = std::string("cogent exception: ") + e.what();
    } catch (...) {
        problem = "unknown exception";
    }
    write_str(p.w, problem.empty() ? "ok" : problem);
    _exit(problem.empty() ? 0 : 1);
}

// In the parent: the child's report and its exit status (waitpid's).
std::pair<std::string, int> collect(Pipe& p, pid_t pid) {
    p.close_w();
    std::string report = read_all(p.r);
    int status = -1;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return {report, status};
}

// The checks a forked child runs on its reinitialised hub.
std::string hub_works_in_child() {
    // Timers.
    auto t0 = Clock::now();
    cogent::sleep(20ms);
    if (ms_since(t0) < 19) return "sleep(20ms) returned early";
    // Spawn and join.
    auto g = cogent::spawn([] {
        cogent::sleep(5ms);
        return 42;
    });
    if (g.get(5s) != 42) return "spawned greenlet returned the wrong value";
    // fd waits: a pipe written by another greenlet after a delay.
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return "pipe2 failed";
    auto writer = cogent::spawn([&] {
        cogent::sleep(10ms);
        (void)!::write(fds[1], "x", 1);
    });
    bool readable = cogent::wait_read(fds[0], 5s);
    char c = 0;
    bool got = readable && ::read(fds[0], &c, 1) == 1 && c == 'x';
    writer.join();
    // Timeout on an fd nobody writes.
    bool timed_out = false;
    try {
        cogent::Timeout t(30ms);
        cogent::wait_read(fds[0]);
    } catch (const cogent::Timeout&) {
        timed_out = true;
    }
    cogent::close(fds[0]);
    cogent::close(fds[1]);
    if (!got) return "wait_read on a pipe did not see the byte";
    if (!timed_out) return "Timeout did not interrupt wait_read";
    // Events across greenlets.
    cogent::Event ev;
    auto setter = cogent::spawn([&] { ev.set(); });
    if (!ev.wait(5s)) return "Event::wait timed out";
    setter.join();
    return "";
}

}  // namespace

TEST_SUITE_BEGIN("fork");

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a child forked from a greenlet has a working hub") {
    Pipe p;
    auto g = cogent::spawn([&] {
        pid_t pid = cogent::fork();
        if (pid == 0) child_report(p, hub_works_in_child);
        return pid;
    });
    pid_t pid = g.get(5s);
    REQUIRE(pid > 0);
    auto [report, status] = collect(p, pid);
    CHECK(report == "ok");
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // And the parent's hub still works.
    auto t0 = Clock::now();
    cogent::sleep(10ms);
    CHECK(ms_since(t0) >= 9);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a child forked from the main greenlet has a working hub") {
    Pipe p;
    pid_t pid = cogent::fork();
    if (pid == 0) child_report(p, hub_works_in_child);
    auto [report, status] = collect(p, pid);
    CHECK(report == "ok");
    CHECK(status == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "greenlets suspended at the fork run in both processes") {
    Pipe out;     // each copy of the sleeper writes its pid here
    Pipe report;  // the child's verdict
    auto sleeper = cogent::spawn([&] {
        cogent::sleep(50ms);
        write_str(out.w, std::to_string(getpid()) + "\n");
        return 7;
    });
    cogent::sleep(0);  // the sleeper is now parked on its timer
    pid_t pid = cogent::fork();
    if (pid == 0) {
        child_report(report, [&]() -> std::string {
            if (sleeper.get(5s) != 7) return "the sleeper's copy returned the wrong value";
            return "";
        });
    }
    CHECK(sleeper.get(5s) == 7);
    out.close_w();
    auto [verdict, status] = collect(report, pid);
    CHECK(verdict == "ok");
    CHECK(status == 0);
    std::string pids = read_all(out.r);
    CHECK(pids.find(std::to_string(getpid()) + "\n") != std::string::npos);
    CHECK(pids.find(std::to_string(pid) + "\n") != std::string::npos);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "the child's watcher changes do not disturb the parent") {
    // A greenlet waits on a pipe at the fork. The child kills its copy of that greenlet (its fd
    // watcher stops), makes the pipe readable and lets its loop poll. Had the child kept the
    // parent's epoll instance, libev would now drop the fd from that shared interest list
    // (EPOLL_CTL_DEL for an event nobody wants) and the parent's waiter would never wake.
    Pipe data, report;
    bool woke = false;
    auto waiter = cogent::spawn([&] {
        if (cogent::wait_read(data.r, 60s)) woke = true;
    });
    cogent::sleep(5ms);  // parked in wait_read, and the loop has registered the fd with epoll
    pid_t pid = cogent::fork();
    if (pid == 0) {
        child_report(report, [&]() -> std::string {
            waiter.kill();
            if (!waiter.dead()) return "the waiter's copy did not die";
            write_str(data.w, "z");
            cogent::sleep(50ms);  // the loop polls while the pipe is readable
            char c;
            if (::read(data.r, &c, 1) != 1 || c != 'z') return "could not read the byte back";
            return "";
        });
    }
    // Wait without running the parent's loop, so that only the child sees the readable pipe.
    int status = -1;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(status == 0);
    report.close_w();
    CHECK(read_all(report.r) == "ok");
    write_str(data.w, "y");
    waiter.join(30s);
    CHECK(woke);
    waiter.kill();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "fork from a non-main thread: that thread's hub works") {
    std::string verdict;
    int status = -1;
    std::thread t([&] {
        Pipe p;
        auto g = cogent::spawn([&] {
            pid_t pid = cogent::fork();
            if (pid == 0) child_report(p, hub_works_in_child);
            return pid;
        });
        pid_t pid = g.get();
        auto r = collect(p, pid);
        verdict = r.first;
        status = r.second;
    });
    t.join();
    CHECK(verdict == "ok");
    CHECK(status == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "the forked child can use a thread-safe callback") {
    Pipe p;
    pid_t pid = cogent::fork();
    if (pid == 0) {
        child_report(p, []() -> std::string {
            // The cross-thread queue (its mutex and async watcher) was reset by the fork.
            cogent::AsyncResult<int> r;
            auto hub = cogent::get_hub();
            std::thread t([&] { hub.run_callback_threadsafe([&] { r.set(5); }); });
            int v = r.get(5s);
            t.join();
            return v == 5 ? "" : "wrong value";
        });
    }
    auto [report, status] = collect(p, pid);
    CHECK(report == "ok");
    CHECK(status == 0);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("Process");

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "runs the function in a child and reports exit codes") {
    cogent::Process ok([] { cogent::sleep(5ms); });
    cogent::Process seven([] { return 7; });
    CHECK(ok.pid() > 0);
    CHECK(ok.pid() != getpid());
    CHECK(ok.join(5s));
    CHECK(ok.exitcode() == 0);
    CHECK_FALSE(ok.is_alive());
    CHECK(seven.join(5s));
    CHECK(seven.exitcode() == 7);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "the child's function runs on its hub, in a greenlet") {
    Pipe p;
    cogent::Process proc([&] {
        p.close_r();
        std::string problem = hub_works_in_child();
        write_str(p.w, problem.empty() ? "ok" : problem);
        return problem.empty() ? 0 : 3;
    });
    p.close_w();
    CHECK(read_all(p.r) == "ok");
    CHECK(proc.join(5s));
    CHECK(proc.exitcode() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "an exception in the child: exit code 1, printed") {
    cogent_test::StderrCapture err;
    auto proc = cogent::Process::start([] { throw std::runtime_error("boom in the child"); });
    CHECK(proc.join(5s));
    CHECK(proc.exitcode() == 1);
    std::string text = err.text();
    CHECK(text.find("boom in the child") != std::string::npos);
    CHECK(text.find("std::runtime_error") != std::string::npos);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "join with a timeout, terminate and kill give -signal") {
    cogent::Process a([] {
        // The child inherits the parent's handlers (doctest's crash reporter among them).
        signal(SIGTERM, SIG_DFL);
        cogent::sleep(10s);
    });
    cogent::Process b([] { cogent::sleep(10s); });
    auto t0 = Clock::now();
    CHECK_FALSE(a.join(100ms));
    CHECK(ms_since(t0) >= 95);
    CHECK(a.is_alive());
    CHECK_FALSE(a.exitcode().has_value());
    CHECK_FALSE(a.join(0s));
    a.terminate();
    b.kill();
    CHECK(a.join(5s));
    CHECK(b.join(5s));
    CHECK(a.exitcode() == -SIGTERM);
    CHECK(b.exitcode() == -SIGKILL);
    a.kill();  // reaped: nothing is sent (the pid may be reused), and no error
    CHECK(a.exitcode() == -SIGTERM);
    CHECK(ms_since(t0) < 8000);  // not the children's 10 s
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "several children joined concurrently from greenlets") {
    constexpr int kN = 5;
    std::vector<cogent::Process> procs;
    auto t0 = Clock::now();
    for (int i = 0; i < kN; ++i)
        procs.emplace_back([i] {
            cogent::sleep(300ms);
            return i;
        });
    std::vector<cogent::Greenlet<int>> joiners;
    // How many joiners were waiting when the first join() returned: all of them, unless a join
    // blocked the thread (then the next joiner would start only after it).
    int joining = 0, joining_at_first_return = -1;
    for (int i = 0; i < kN; ++i)
        joiners.push_back(cogent::spawn([&procs, i, &joining, &joining_at_first_return] {
            ++joining;
            procs[std::size_t(i)].join();
            if (joining_at_first_return < 0) joining_at_first_return = joining;
            return *procs[std::size_t(i)].exitcode();
        }));
    for (int i = 0; i < kN; ++i) CHECK(joiners[std::size_t(i)].get(30s) == i);
    double ms = ms_since(t0);
    CHECK(joining_at_first_return == kN);
    CHECK(ms >= 290);
    CHECK(ms < 10000);  // the children run in parallel: about 300 ms
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "two greenlets join the same child") {
    cogent::Process proc([] { cogent::sleep(50ms); });
    auto other = cogent::spawn([&] { return proc.join(5s); });
    CHECK(proc.join(5s));
    CHECK(other.get(5s));
    CHECK(proc.exitcode() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a kill or Timeout interrupts join and leaves nothing") {
    cogent::Process proc([] { cogent::sleep(10s); });
    auto joiner = cogent::spawn([&] { proc.join(); });
    cogent::sleep(10ms);
    joiner.kill();
    CHECK(joiner.dead());
    CHECK_THROWS_AS(cogent::with_timeout(20ms, [&] { proc.join(); }), cogent::Timeout);
    CHECK(proc.is_alive());
    proc.kill();
    CHECK(proc.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "join on a non-main thread") {
    std::optional<int> code;
    std::thread t([&] {
        cogent::Process proc([] {
            cogent::sleep(20ms);
            return 4;
        });
        proc.join();
        code = proc.exitcode();
    });
    t.join();
    CHECK(code == 4);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "without pidfd, join polls and still works") {
    cogent::detail::set_pidfd_enabled(false);
    struct Restore {
        ~Restore() { cogent::detail::set_pidfd_enabled(true); }
    } restore;
    cogent::Process proc([] {
        cogent::sleep(50ms);
        return 9;
    });
    CHECK_FALSE(proc.join(10ms));
    auto t0 = Clock::now();
    CHECK(proc.join(5s));
    CHECK(ms_since(t0) < 5000);  // polled every 50 ms at most
    CHECK(proc.exitcode() == 9);
    cogent::Process killed([] { cogent::sleep(10s); });
    killed.kill();
    CHECK(killed.join(5s));
    CHECK(killed.exitcode() == -SIGKILL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Process destroyed while running is reaped later") {
    pid_t pid;
    {
        cogent::Process proc([] { cogent::sleep(50ms); });
        pid = proc.pid();
    }
    CHECK(cogent::detail::orphan_count() >= 1);  // handed to the reaper
    CHECK(::kill(pid, 0) == 0);                  // still running (or a zombie): not reaped yet
    cogent_test::wait_exited_unreaped(pid);      // however long a loaded machine takes
    cogent::Process next([] {});                 // starting a child reaps the orphans that exited
    errno = 0;
    CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
    CHECK(errno == ECHILD);  // already reaped
    CHECK(next.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Process is movable; bad input is rejected") {
    cogent::Process a([] { return 2; });
    cogent::Process b = std::move(a);
    CHECK(a.pid() == -1);
    CHECK_THROWS_AS(a.join(), std::logic_error);
    CHECK(b.join(5s));
    CHECK(b.exitcode() == 2);
    CHECK_THROWS_AS(cogent::Process(std::function<void()>()), std::invalid_argument);
    CHECK_THROWS_AS(b.join(-1s), std::invalid_argument);
}

TEST_SUITE_END();
