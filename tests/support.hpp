// Shared test support: a fixture that fails a test which leaves a greenlet, a queued hub
// callback, a file descriptor or an active fd watcher behind; COGENT_SKIP; child processes.
#pragma once

#include <dirent.h>
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cogent/cogent.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cogent_test {

// Records that the running test case skipped (tests/main.cpp counts it). Use COGENT_SKIP.
void note_skip(const std::string& reason);

// Whether a skip must be a failure instead: COGENT_TEST_NO_SKIP=1, which ./dev.sh sets when
// CI=true (CI is root and installs every package, so whatever a case needs is there).
inline bool skips_forbidden() {
    const char* v = std::getenv("COGENT_TEST_NO_SKIP");
    return v && std::strcmp(v, "1") == 0;
}

// COGENT_SKIP(reason): the running test case cannot run here (the machine lacks what it needs:
// IPv6 on the loopback, root, ...). It says so with `reason` (a stream expression, as MESSAGE
// takes) and returns from the test case, which then counts as skipped, never as passed: a test
// executable whose every case skipped exits 77, meson's code for a skipped test, so each case
// that may skip is registered as its own meson test (skip_cases in tests/meson.build); run
// beside other cases under meson, a skip fails the run. With COGENT_TEST_NO_SKIP=1 (CI) it
// fails the case instead. Call it only from the test case's own body (it returns from it).
#define COGENT_SKIP(reason) COGENT_SKIP_IMPL(reason, true)

// COGENT_SKIP_UNSUPPORTED(reason): as COGENT_SKIP, for a case that this build cannot run on any
// machine (a known incompatibility, which `reason` names: e.g. an uninstrumented program that
// hangs with the ASan runtime preloaded); it skips even with COGENT_TEST_NO_SKIP=1.
#define COGENT_SKIP_UNSUPPORTED(reason) COGENT_SKIP_IMPL(reason, false)

#define COGENT_SKIP_IMPL(reason, forbidden_in_ci)                     \
    do {                                                              \
        std::ostringstream cogent_skip_reason_;                       \
        cogent_skip_reason_ << reason;                                \
        if ((forbidden_in_ci) && ::cogent_test::skips_forbidden())    \
            FAIL("cannot skip with COGENT_TEST_NO_SKIP=1 (CI=true): " \
                 << cogent_skip_reason_.str());                       \
        ::cogent_test::note_skip(cogent_skip_reason_.str());          \
        MESSAGE("SKIPPED: " << cogent_skip_reason_.str());            \
        return;                                                       \
    } while (0)

inline std::size_t open_fds() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

// Use as TEST_CASE_FIXTURE(cogent_test::LeakCheck, "...").
struct LeakCheck {
    // The hub's own fds (epoll, eventfd) are created once per thread, not leaked by a test.
    std::size_t fds_before = (cogent::get_hub(), open_fds());
    std::size_t watchers_before = cogent::debug::fd_watchers();
    ~LeakCheck() {
        // Let greenlets that are finishing (links, notifications) run to the end.
        for (int i = 0; i < 100 && (cogent::debug::live_greenlets() > 0 ||
                                    cogent::debug::pending_callbacks() > 0);
             ++i)
            cogent::sleep(0);
        CHECK_MESSAGE(cogent::debug::live_greenlets() == 0, "a greenlet was left running");
        CHECK_MESSAGE(cogent::debug::pending_callbacks() == 0, "a hub callback was left queued");
        CHECK_MESSAGE(open_fds() == fds_before, "a file descriptor was leaked");
        CHECK_MESSAGE(cogent::debug::fd_watchers() == watchers_before,
                      "an fd watcher was left active");
    }
};

// Milliseconds since t0 (steady clock).
inline double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Yields (sleeping 10 ms at a time) until the child `pid` has exited, for at most `limit`,
// without reaping it (waitid WNOWAIT). Returns early if it is not (or no longer) our child.
inline void wait_exited_unreaped(pid_t pid, std::chrono::seconds limit = std::chrono::seconds(30)) {
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < limit) {
        siginfo_t info{};
        if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
            info.si_pid == pid)
            return;
        cogent::sleep(std::chrono::milliseconds(10));
    }
}

// Sets *flag when destroyed: proves that a greenlet's stack was unwound.
template <class Flag>
struct SetOnDestroy {
    Flag* flag;
    ~SetOnDestroy() { *flag = true; }
};

// Redirects fd 2 into a temporary file for its lifetime; text() returns what was written.
class StderrCapture {
public:
    StderrCapture() {
        std::fflush(stderr);
        file_ = std::tmpfile();
        saved_ = dup(2);
        dup2(fileno(file_), 2);
    }
    ~StderrCapture() { stop(); }
    std::string text() {
        stop();
        return text_;
    }

private:
    void stop() {
        if (!file_) return;
        std::fflush(stderr);
        dup2(saved_, 2);
        close(saved_);
        std::rewind(file_);
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) text_.append(buf, n);
        std::fclose(file_);
        file_ = nullptr;
    }
    std::FILE* file_ = nullptr;
    int saved_ = -1;
    std::string text_;
};

struct ChildResult {
    int status = -1;     // as from waitpid
    std::string output;  // stdout and stderr together
};

// Runs `cmd` through /bin/sh (exec'd, so the status is the program's own) and collects its
// output.
inline ChildResult run_child(const std::string& cmd) {
    ChildResult r;
    std::string full = "exec " + cmd + " 2>&1";
    FILE* p = popen(full.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    r.status = pclose(p);
    return r;
}

// The path of a child program that meson passes in the environment, quoted for the shell.
inline std::string child_path(const char* var) {
    const char* p = std::getenv(var);
    REQUIRE_MESSAGE(p != nullptr, std::string(var)
                                      << " is not set (run the test through meson test)");
    return std::string("'") + p + "'";
}

// gevent's test__pool TestErrorInHandler over any pool with imap/imap_unordered (Pool,
// ThreadPool): a failed item raises from its own next(), and the following next() carries on.
template <class PoolT>
void check_imap_carries_on(PoolT& pool) {
    auto divide_by = [](int x) -> double {
        if (x == 0) throw std::domain_error("division by zero");
        return 1.0 / x;
    };
    for (bool ordered : {true, false}) {
        CAPTURE(ordered);
        auto check = [](auto it) {
            CHECK(it.next() == 1.0);
            CHECK_THROWS_AS(it.next(), std::domain_error);
            CHECK(it.next() == 0.5);
            CHECK_FALSE(it.next());
            CHECK_FALSE(it.next());
        };
        if (ordered)
            check(pool.imap(divide_by, std::vector<int>{1, 0, 2}));
        else
            check(pool.imap_unordered(divide_by, std::vector<int>{1, 0, 2}));
    }
}

// A range of 0..4 whose iterator throws E("half") when stepping onto 2: a range that fails
// half-way through a map/imap.
template <class E>
struct HalfRange {
    struct iterator {
        int i = 0;
        using value_type = int;
        using difference_type = std::ptrdiff_t;
        int operator*() const { return i; }
        iterator& operator++() {
            if (++i == 2) throw E("half");
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(const iterator& o) const { return i == o.i; }
    };
    iterator begin() const { return {}; }
    iterator end() const { return {5}; }
};

}  // namespace cogent_test
