// Waiting on file descriptors: wait_read / wait_write / wait_fd, the close protocol (waiters
// woken with EBADF before the number can be reused), one waiter per direction, kill and
// Timeout leaving nothing behind.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <system_error>
#include <thread>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

// The bound on a wait that another greenlet, thread or process ends: long, because a loaded
// machine can stall a test for seconds, and only a broken wait ever reaches it.
constexpr auto kLong = std::chrono::seconds(30);

// The raw-close tests below spawn a waiter, then a closer, which must run once the waiter has
// parked and before the hub polls (hands the waiter's new watchers to the kernel). The hub polls
// between queued callbacks only every 16 of them; a timed sleep first resumes the test from
// inside the loop, so that the two start a fresh round and nothing can come between them
// ("fresh round" below).

// A non-blocking socketpair closed at scope exit (through cogent::close).
struct Pair {
    int a = -1, b = -1;
    Pair() {
        int sv[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        a = sv[0];
        b = sv[1];
    }
    ~Pair() {
        if (a >= 0) cogent::close(a);
        if (b >= 0) cogent::close(b);
    }
};

int system_error_code(const std::function<void()>& fn, std::string* msg = nullptr) {
    try {
        fn();
    } catch (const std::system_error& e) {
        if (msg) *msg = e.what();
        return e.code().value();
    }
    return 0;
}

}  // namespace

TEST_SUITE("io") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "wait_read returns once another greenlet writes") {
        Pair p;
        std::string order;
        auto writer = cogent::spawn([&] {
            cogent::sleep(20ms);
            order += "w";
            REQUIRE(::write(p.b, "x", 1) == 1);
        });
        auto t0 = Clock::now();
        CHECK(cogent::wait_read(p.a));
        order += "r";
        CHECK(order == "wr");
        CHECK(ms_since(t0) >= 15.0);
        char c;
        CHECK(::read(p.a, &c, 1) == 1);
        writer.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "wait_read times out with false; zero timeout polls") {
        Pair p;
        auto t0 = Clock::now();
        CHECK_FALSE(cogent::wait_read(p.a, 30ms));
        CHECK(ms_since(t0) >= 25.0);
        CHECK_FALSE(cogent::wait_read(p.a, 0ms));
        CHECK(cogent::wait_write(p.a, 0ms));  // an empty socket buffer is writable
        REQUIRE(::write(p.b, "x", 1) == 1);
        CHECK(cogent::wait_read(p.a, 0ms));
        CHECK(cogent::wait_read(p.a, 1s));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "wait_fd reports which directions are ready") {
        Pair p;
        CHECK(cogent::wait_fd(p.a, cogent::READ | cogent::WRITE) == cogent::WRITE);
        REQUIRE(::write(p.b, "x", 1) == 1);
        CHECK(cogent::wait_fd(p.a, cogent::READ) == cogent::READ);
        CHECK(cogent::wait_fd(p.a, cogent::READ | cogent::WRITE, 1s) != 0);
        CHECK_THROWS_AS(cogent::wait_fd(p.a, 0), std::invalid_argument);
        CHECK_THROWS_AS(cogent::wait_fd(p.a, 4), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "other greenlets run while one waits on an fd") {
        Pair p;
        int ticks = 0;
        auto ticker = cogent::spawn([&] {
            for (int i = 0; i < 5; ++i) {
                ++ticks;
                cogent::sleep(5ms);
            }
            REQUIRE(::write(p.b, "y", 1) == 1);
        });
        CHECK(cogent::wait_read(p.a, kLong));
        CHECK(ticks == 5);
        ticker.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "closing through cogent::close wakes the waiter with EBADF before the number "
                      "is reused") {
        int sv[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        int fd = sv[0];
        std::string msg;
        int code = -1;
        auto waiter =
            cogent::spawn([&] { code = system_error_code([&] { cogent::wait_read(fd); }, &msg); });
        cogent::sleep(0);  // the waiter is parked now
        REQUIRE(cogent::close(fd) == 0);
        // Reuse the number at once: the woken waiter must not be confused by the new fd.
        int sv2[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv2) == 0);
        waiter.join();
        CHECK(code == EBADF);
        CHECK(msg.find("closed in another greenlet") != std::string::npos);
        CHECK(cogent::debug::fd_watchers() == 0);
        CHECK(sv2[0] == fd);  // the lowest free number: the one just closed
        // The reused number works normally.
        CHECK_FALSE(cogent::wait_read(sv2[0], 10ms));
        REQUIRE(::write(sv2[1], "n", 1) == 1);
        CHECK(cogent::wait_read(sv2[0], 1s));
        cogent::close(sv2[0]);
        cogent::close(sv2[1]);
        cogent::close(sv[1]);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "close wakes a reader and a writer of one fd") {
        Pair p;
        // Fill the send buffer so that a writer has to wait.
        char buf[4096] = {};
        while (::write(p.a, buf, sizeof buf) > 0) {
        }
        REQUIRE(errno == EAGAIN);
        int rcode = 0, wcode = 0;
        auto r = cogent::spawn([&] { rcode = system_error_code([&] { cogent::wait_read(p.a); }); });
        auto w =
            cogent::spawn([&] { wcode = system_error_code([&] { cogent::wait_write(p.a); }); });
        cogent::sleep(0);
        cogent::close(p.a);
        p.a = -1;
        cogent::joinall({r, w});
        CHECK(rcode == EBADF);
        CHECK(wcode == EBADF);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "two greenlets waiting for the same direction is ConcurrentObjectUseError") {
        Pair p;
        auto first = cogent::spawn([&] { cogent::wait_read(p.a, kLong); });
        cogent::sleep(0);
        std::string msg;
        try {
            cogent::wait_read(p.a, 1s);
            FAIL("expected ConcurrentObjectUseError");
        } catch (const cogent::ConcurrentObjectUseError& e) {
            msg = e.what();
        }
        CHECK(msg.find("socket fd " + std::to_string(p.a)) != std::string::npos);
        CHECK(msg.find("reading") != std::string::npos);
        // The other direction is free.
        CHECK(cogent::wait_write(p.a, 1s));
        REQUIRE(::write(p.b, "z", 1) == 1);
        first.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill and Timeout while waiting leave no watcher") {
        Pair p;
        bool unwound = false;
        auto g = cogent::spawn([&] {
            cogent_test::SetOnDestroy<bool> guard{&unwound};
            cogent::wait_read(p.a);
        });
        cogent::sleep(0);
        CHECK(cogent::debug::fd_watchers() == 1);
        g.kill();
        CHECK(unwound);
        CHECK(cogent::debug::fd_watchers() == 0);

        bool timed_out = false;
        try {
            cogent::Timeout t(20ms);
            cogent::wait_write(p.a, 0ms);  // does not block
            cogent::wait_read(p.a);
        } catch (const cogent::Timeout&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(cogent::debug::fd_watchers() == 0);
        // The fd can be waited on again afterwards.
        REQUIRE(::write(p.b, "q", 1) == 1);
        CHECK(cogent::wait_read(p.a, 1s));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "bad fds and bad arguments are clear errors") {
        CHECK_THROWS_AS(cogent::wait_read(-1), std::invalid_argument);
        CHECK_THROWS_AS(cogent::wait_write(-3, 1s), std::invalid_argument);
        int fd = ::dup(0);
        REQUIRE(fd >= 0);
        ::close(fd);  // now a number that is not open
        std::string msg;
        CHECK(system_error_code([&] { cogent::wait_read(fd, 1s); }, &msg) == EBADF);
        CHECK(msg.find("fd " + std::to_string(fd)) != std::string::npos);
        CHECK(system_error_code([&] { cogent::wait_read(fd, 0ms); }) == EBADF);
        CHECK(cogent::debug::fd_watchers() == 0);
        Pair p;
        CHECK_THROWS_AS(cogent::wait_read(p.a, -1ms), std::invalid_argument);
        // notify_closing on numbers nobody waits on is harmless.
        cogent::notify_closing(p.a);
        cogent::notify_closing(123456);
        cogent::notify_closing(-1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "waiting on the hub is BlockingSwitchOutError") {
        Pair p;
        bool threw = false;
        cogent::get_hub().run_callback([&] {
            try {
                cogent::wait_read(p.a, 1s);
            } catch (const cogent::BlockingSwitchOutError&) {
                threw = true;
            }
        });
        cogent::sleep(0);
        CHECK(threw);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "pipes and hang-ups: EOF counts as readable") {
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        auto closer = cogent::spawn([&] {
            cogent::sleep(10ms);
            cogent::close(fds[1]);
        });
        CHECK(cogent::wait_read(fds[0], kLong));
        char c;
        CHECK(::read(fds[0], &c, 1) == 0);
        closer.join();
        cogent::close(fds[0]);
    }

    TEST_CASE("each thread waits on its own hub") {
        Pair p;
        bool ok = false;
        std::thread t([&] {
            int sv[2];
            REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
            auto g = cogent::spawn([&] {
                cogent::sleep(10ms);
                REQUIRE(::write(sv[1], "t", 1) == 1);
            });
            ok = cogent::wait_read(sv[0], kLong);
            g.join();
            cogent::close(sv[0]);
            cogent::close(sv[1]);
        });
        t.join();
        CHECK(ok);
    }

    // A raw close(2) (not cogent::close) of an fd a greenlet has just started waiting on, before
    // the hub polls: libev's epoll_ctl fails with EBADF, which used to abort the process.
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a raw close(2) before the hub polls is EBADF") {
        for (int events : {cogent::READ, cogent::WRITE, cogent::READ | cogent::WRITE}) {
            CAPTURE(events);
            int sv[2];
            REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
            if (events & cogent::WRITE) {
                // Fill the socket so that it is not writable.
                char buf[4096] = {};
                while (::write(sv[0], buf, sizeof buf) > 0) {
                }
            }
            int code = 0;
            cogent::sleep(1ms);  // fresh round
            auto g = cogent::spawn([&] {
                try {
                    (void)cogent::wait_fd(sv[0], events, kLong);
                } catch (const std::system_error& e) {
                    code = e.code().value();
                }
            });
            auto closer = cogent::spawn([&] { REQUIRE(::close(sv[0]) == 0); });
            CHECK(g.join(kLong));
            closer.join();
            CHECK(code == EBADF);
            cogent::close(sv[1]);
        }

        // A socket's own waits (which skip the open-fd check: the call just said EAGAIN).
        auto [a, b] = cogent::Socket::pair();
        int code = 0;
        cogent::sleep(1ms);  // fresh round
        auto g = cogent::spawn([&] {
            try {
                char c;
                (void)a.recv(&c, 1);
            } catch (const std::system_error& e) {
                code = e.code().value();
            }
        });
        auto closer = cogent::spawn([&] { REQUIRE(::close(a.fileno()) == 0); });
        CHECK(g.join(kLong));
        closer.join();
        CHECK(code == EBADF);
        (void)a.release();  // already closed: the socket must not close the number again
    }

    // In a forked child, libev re-adds every watched fd to a fresh epoll set before its first poll
    // (ev_loop_fork). A child that closes inherited fds with a raw close(2) while (copies of)
    // greenlets wait on them used to abort there.
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a forked child that closes watched fds raw") {
        Pair p;
        int code = 0, sel_code = 0;
        auto g = cogent::spawn(
            [&] { code = system_error_code([&] { (void)cogent::wait_read(p.a, 10s); }); });
        auto s = cogent::spawn([&] {
            sel_code = system_error_code([&] { (void)cogent::select({p.b}, {}, {}, 10s); });
        });
        cogent::sleep(0);  // both parked (queued before us)
        REQUIRE(cogent::debug::fd_watchers() >= 2);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(p.a);
            ::close(p.b);
            const bool ok = g.join(kLong) && s.join(kLong) && code == EBADF && sel_code == EBADF;
            _exit(ok ? 0 : 1);
        }
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        // The parent's fds and waiters are untouched: close them the cogent way.
        cogent::close(p.a);
        p.a = -1;
        cogent::close(p.b);
        p.b = -1;
        CHECK(g.join(kLong));
        CHECK(s.join(kLong));
        CHECK(code == EBADF);
        CHECK(sel_code == EBADF);
    }

}  // TEST_SUITE
