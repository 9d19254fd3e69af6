// select / poll / Poll: cooperative waits on many fds with the select(2)/poll(2) contracts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::LeakCheck;
using cogent_test::ms_since;

namespace {

// The bound on a wait that another greenlet, thread or process ends: long, because a loaded
// machine can stall a test for seconds, and only a broken wait ever reaches it.
constexpr auto kLong = std::chrono::seconds(30);

// The raw-close tests below spawn a waiter, then a closer, which must run once the waiter has
// parked and before the hub polls (hands the waiter's new watchers to the kernel). The hub polls
// between queued callbacks only every 16 of them; a timed sleep first resumes the test from
// inside the loop, so that the two start a fresh round and nothing can come between them
// ("fresh round" below).

struct TestPipe {
    int r = -1, w = -1;
    TestPipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~TestPipe() {
        if (r >= 0) cogent::close(r);
        if (w >= 0) cogent::close(w);
    }
    void put(char c = 'x') { REQUIRE(::write(w, &c, 1) == 1); }
    char take() {
        char c = 0;
        REQUIRE(::read(r, &c, 1) == 1);
        return c;
    }
};

// A connected TCP pair on 127.0.0.1 (for urgent data, which Unix sockets lack).
struct TcpPair {
    int a = -1, b = -1;
    TcpPair() {
        int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(l >= 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(::listen(l, 1) == 0);
        socklen_t len = sizeof sa;
        REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
        a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(::connect(a, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        b = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        REQUIRE(b >= 0);
        ::close(l);
    }
    ~TcpPair() {
        cogent::close(a);
        cogent::close(b);
    }
};

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "select: zero timeout polls once; absent waits; others keep running") {
    TestPipe p;
    auto [r0, w0, x0] = cogent::select({p.r}, {}, {}, 0s);
    CHECK(r0.empty());
    CHECK(w0.empty());
    CHECK(x0.empty());

    // The data comes only after another greenlet has run five times, timers in between: the
    // select (no timeout) waited all that while without blocking the thread. (Counting ticks
    // of a ticker during a fixed 30 ms sleep flaked under load: a thread stalled past both
    // timers runs them in one loop iteration, and the ticker ticks once or twice.)
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (int i = 0; i < 5; ++i) {
            ++ticks;
            cogent::sleep(1ms);
        }
        p.put();
    });
    auto res = cogent::select({p.r}, {}, {});
    CHECK(res.readable == std::vector<int>{p.r});
    CHECK(ticks == 5);
    ticker.join();
    CHECK(p.take() == 'x');
}

TEST_CASE_FIXTURE(LeakCheck,
                  "select: timeout returns empty lists; negative timeout and fd rejected") {
    TestPipe p;
    auto t0 = std::chrono::steady_clock::now();
    auto res = cogent::select({p.r}, {}, {}, 40ms);
    double ms = ms_since(t0);
    CHECK(res.readable.empty());
    CHECK(ms >= 35);    // timers never fire early (the hub reads the clock before arming)
    CHECK(ms < 20000);  // only that it ends: a loaded machine may add seconds
    CHECK_THROWS_AS(cogent::select({p.r}, {}, {}, -1ms), std::invalid_argument);
    CHECK_THROWS_AS(cogent::select({-3}, {}, {}, 0s), std::invalid_argument);
    try {
        (void)cogent::select({}, {}, {-2}, 0s);
        FAIL("no throw");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("xlist") != std::string::npos);
    }
}

TEST_CASE_FIXTURE(LeakCheck, "select: all fds ready at that moment are reported, in list order") {
    TestPipe a, b, c;
    a.put();
    c.put();
    auto res = cogent::select({c.r, b.r, a.r, c.r}, {a.w, b.w}, {}, 1s);
    CHECK(res.readable == std::vector<int>{c.r, a.r, c.r});  // duplicates reported twice
    CHECK(res.writable == std::vector<int>{a.w, b.w});
    // The same fd in rlist and wlist (a socket pair end): one pollfd, both reported.
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    REQUIRE(::write(sv[1], "y", 1) == 1);
    auto both = cogent::select({sv[0]}, {sv[0]}, {}, 0s);
    CHECK(both.readable == std::vector<int>{sv[0]});
    CHECK(both.writable == std::vector<int>{sv[0]});
    cogent::close(sv[0]);
    cogent::close(sv[1]);
}

TEST_CASE_FIXTURE(LeakCheck, "select: an fd that is not open is EBADF naming it") {
    TestPipe p;
    int bad = ::dup(p.r);
    REQUIRE(bad >= 0);
    ::close(bad);
    for (auto timeout : {cogent::TimeoutArg(0s), cogent::TimeoutArg(100ms), cogent::TimeoutArg()}) {
        try {
            (void)cogent::select({p.r, bad}, {}, {}, timeout);
            FAIL("no throw");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EBADF);
            CHECK(std::string(e.what()).find("fd " + std::to_string(bad)) != std::string::npos);
        }
    }
}

TEST_CASE_FIXTURE(LeakCheck,
                  "select: closing a watched fd through cogent::close wakes it with EBADF") {
    TestPipe p, q;
    std::string what;
    int code = 0;
    auto g = cogent::spawn([&] {
        try {
            (void)cogent::select({q.r, p.r}, {}, {});
        } catch (const std::system_error& e) {
            code = e.code().value();
            what = e.what();
        }
    });
    cogent::sleep(5ms);
    CHECK(cogent::debug::fd_watchers() >= 2);
    cogent::close(p.r);
    int closed = p.r;
    p.r = -1;
    CHECK(g.join(kLong));
    CHECK(code == EBADF);
    CHECK(what.find("fd " + std::to_string(closed)) != std::string::npos);
    CHECK(what.find("closed in another greenlet") != std::string::npos);
}

TEST_CASE_FIXTURE(LeakCheck, "select: kill and Timeout interrupt the wait and leave no watcher") {
    TestPipe p;
    bool unwound = false;
    auto g = cogent::spawn([&] {
        cogent_test::SetOnDestroy<bool> s{&unwound};
        (void)cogent::select({p.r}, {p.r}, {p.r});  // p.r is never writable: waits
    });
    cogent::sleep(5ms);
    g.kill();
    CHECK(g.dead());
    CHECK(unwound);

    bool fired = false;
    try {
        cogent::Timeout t(20ms);
        (void)cogent::select({p.r}, {}, {});
    } catch (const cogent::Timeout&) {
        fired = true;
    }
    CHECK(fired);
    // The watchers are gone: data arriving now wakes nobody and nothing fires into a dead frame.
    p.put();
    cogent::sleep(5ms);
    CHECK(p.take() == 'x');
}

TEST_CASE_FIXTURE(LeakCheck, "select: several selectors and a wait_read on one fd all wake") {
    TestPipe p;
    int woke = 0;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&] {
            auto r = cogent::select({p.r}, {}, {}, kLong);
            if (r.readable.size() == 1) ++woke;
        }));
    gs.push_back(cogent::spawn([&] {
        if (cogent::wait_read(p.r, kLong)) ++woke;
    }));
    cogent::sleep(5ms);
    p.put();
    for (auto& g : gs) g.join();
    CHECK(woke == 4);
}

TEST_CASE_FIXTURE(LeakCheck, "select: a wake-up whose data someone else took waits again") {
    TestPipe p;
    bool a_done = false, b_done = false;
    auto a = cogent::spawn([&] {
        (void)cogent::select({p.r}, {}, {});
        p.take();  // consumes the byte before b gets to look
        a_done = true;
    });
    auto b = cogent::spawn([&] {
        auto r = cogent::select({p.r}, {}, {}, kLong);
        b_done = r.readable.size() == 1;
    });
    cogent::sleep(5ms);
    p.put();
    a.join();
    cogent::sleep(20ms);
    CHECK(a_done);
    CHECK_FALSE(b.dead());  // woken, found nothing, parked again
    p.put();
    b.join();
    CHECK(b_done);
    p.take();
}

TEST_CASE_FIXTURE(LeakCheck, "select: fds above FD_SETSIZE work") {
    TestPipe p;
    int high = ::fcntl(p.r, F_DUPFD_CLOEXEC, 1500);
    REQUIRE(high >= 1500);
    auto w = cogent::spawn([&] {
        cogent::sleep(5ms);
        p.put();
    });
    auto res = cogent::select({high}, {}, {}, kLong);
    CHECK(res.readable == std::vector<int>{high});
    w.join();
    cogent::close(high);
    p.take();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "select: xlist reports TCP urgent data, and ordinary data does not spin it") {
    TcpPair t;
    REQUIRE(::send(t.a, "n", 1, 0) == 1);  // normal data: not exceptional
    auto t0 = std::chrono::steady_clock::now();
    auto res = cogent::select({}, {}, {t.b}, 30ms);
    CHECK(res.exceptional.empty());
    CHECK(ms_since(t0) >= 25);
    auto g = cogent::spawn([&] {
        cogent::sleep(5ms);
        REQUIRE(::send(t.a, "u", 1, MSG_OOB) == 1);
    });
    auto res2 = cogent::select({}, {}, {t.b}, kLong);
    CHECK(res2.exceptional == std::vector<int>{t.b});
    g.join();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "select: BlockingSwitchOutError on the hub unless the timeout is zero") {
    TestPipe p;
    cogent::Event done;
    bool blocked_error = false, zero_ok = false;
    cogent::get_hub().run_callback([&] {
        try {
            (void)cogent::select({p.r}, {}, {}, 10ms);
        } catch (const cogent::BlockingSwitchOutError&) {
            blocked_error = true;
        }
        zero_ok = cogent::select({p.r}, {p.w}, {}, 0s).writable.size() == 1;
        done.set();
    });
    done.wait(kLong);
    CHECK(blocked_error);
    CHECK(zero_ok);
}

TEST_CASE_FIXTURE(LeakCheck, "poll: the poll(2) result contract") {
    TestPipe p;
    int bad = ::dup(p.r);
    ::close(bad);
    pollfd fds[4] = {{p.r, POLLIN, 77}, {-1, POLLIN, 77}, {bad, POLLIN, 0}, {p.w, POLLOUT, 0}};
    int n = cogent::poll(fds, 4, 0s);
    CHECK(n == 2);
    CHECK(fds[0].revents == 0);
    CHECK(fds[1].revents == 0);  // negative fd: ignored, revents cleared
    CHECK(fds[2].revents == POLLNVAL);
    CHECK(fds[3].revents == POLLOUT);

    pollfd one{p.r, POLLIN, 0};
    auto t0 = std::chrono::steady_clock::now();
    CHECK(cogent::poll(&one, 1, 30ms) == 0);
    CHECK(ms_since(t0) >= 25);

    auto w = cogent::spawn([&] {
        cogent::sleep(5ms);
        cogent::close(p.w);  // hang-up
        p.w = -1;
    });
    CHECK(cogent::poll(&one, 1) == 1);
    CHECK((one.revents & POLLHUP) != 0);
    w.join();

    // No fds at all: a cooperative sleep.
    t0 = std::chrono::steady_clock::now();
    CHECK(cogent::poll(nullptr, 0, 20ms) == 0);
    CHECK(ms_since(t0) >= 15);
    // A bad array is EFAULT, as poll(2) says.
    errno = 0;
    CHECK(cogent::poll(reinterpret_cast<pollfd*>(8), 1, 0s) == -1);
    CHECK(errno == EFAULT);
}

TEST_CASE_FIXTURE(LeakCheck, "poll: closed in another greenlet gives POLLNVAL; exotic events") {
    TestPipe p;
    pollfd fds[2] = {{p.r, POLLIN, 0}, {p.w, 0, 0}};  // events 0: only errors and hang-ups
    auto closer = cogent::spawn([&] {
        cogent::sleep(5ms);
        cogent::close(p.r);
    });
    int n = cogent::poll(fds, 2, kLong);
    closer.join();
    int closed_r = p.r;
    p.r = -1;
    CHECK(n >= 1);
    CHECK(fds[0].fd == closed_r);
    CHECK(fds[0].revents == POLLNVAL);

    // POLLRDHUP alone: wakes when the peer shuts down its writing side, not for data.
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
    REQUIRE(::write(sv[1], "d", 1) == 1);
    pollfd rd{sv[0], POLLRDHUP, 0};
    CHECK(cogent::poll(&rd, 1, 20ms) == 0);  // data is there, but not asked for: no busy loop
    auto sh = cogent::spawn([&] {
        cogent::sleep(5ms);
        ::shutdown(sv[1], SHUT_WR);
    });
    CHECK(cogent::poll(&rd, 1, kLong) == 1);
    CHECK((rd.revents & POLLRDHUP) != 0);
    sh.join();
    cogent::close(sv[0]);
    cogent::close(sv[1]);
}

TEST_CASE_FIXTURE(LeakCheck, "Poll: register, modify, unregister, poll") {
    TestPipe a, b;
    cogent::Poll poller;
    poller.register_fd(a.r, POLLIN);
    poller.register_fd(b.r);  // default mask includes POLLPRI: exercises the epoll path
    poller.register_fd(a.w, POLLOUT);
    CHECK(poller.size() == 3);
    auto ready = poller.poll(0s);
    REQUIRE(ready.size() == 1);
    CHECK(ready[0] == std::pair<int, short>(a.w, POLLOUT));
    poller.unregister(a.w);
    CHECK_THROWS_AS(poller.unregister(a.w), std::out_of_range);
    CHECK_THROWS_AS(poller.modify(a.w, POLLIN), std::system_error);
    CHECK_THROWS_AS(poller.register_fd(-1), std::invalid_argument);

    auto g = cogent::spawn([&] {
        cogent::sleep(5ms);
        b.put();
    });
    ready = poller.poll(kLong);
    REQUIRE(ready.size() == 1);
    CHECK(ready[0].first == b.r);
    CHECK((ready[0].second & POLLIN) != 0);
    g.join();
    poller.modify(b.r, POLLPRI);  // data is not urgent: nothing to report
    CHECK(poller.poll(10ms).empty());
    poller.register_fd(a.r, POLLIN | POLLOUT);  // re-register replaces the mask
    CHECK(poller.size() == 2);
    b.take();
}

TEST_CASE_FIXTURE(LeakCheck, "select: many fds and many rounds stay exact") {
    constexpr int kPipes = 40;
    std::vector<std::unique_ptr<TestPipe>> pipes;
    std::vector<int> rl;
    for (int i = 0; i < kPipes; ++i) {
        pipes.push_back(std::make_unique<TestPipe>());
        rl.push_back(pipes.back()->r);
    }
    int got = 0;
    auto writer = cogent::spawn([&] {
        for (int round = 0; round < 200; ++round) {
            pipes[std::size_t(round * 7 % kPipes)]->put();
            cogent::sleep(0);
        }
    });
    while (got < 200) {
        auto res = cogent::select(rl, {}, {}, kLong);
        REQUIRE_FALSE(res.readable.empty());
        for (int fd : res.readable) {
            char buf[64];
            ssize_t n = ::read(fd, buf, sizeof buf);
            REQUIRE(n > 0);
            got += int(n);
        }
    }
    writer.join();
    CHECK(got == 200);
}

// A raw close(2) (not cogent::close) of an fd that a select/poll has just armed, before the hub
// polls again: libev's epoll_ctl then fails with EBADF, which used to abort the process
// (ev_epoll.c, "I/O watcher with invalid fd found in epoll_ctl").
TEST_CASE_FIXTURE(LeakCheck,
                  "select, poll: a raw close(2) before the hub polls is EBADF / POLLNVAL") {
    // direct: plain ev_io watchers; epoll: the private epoll set (xlist, POLLPRI).
    for (bool exotic : {false, true}) {
        CAPTURE(exotic);
        TestPipe p, q;
        int code = 0;
        std::string what;
        bool armed = false;
        cogent::sleep(1ms);  // fresh round
        auto g = cogent::spawn([&] {
            try {
                if (exotic)
                    (void)cogent::select({q.r}, {}, {p.r});
                else
                    (void)cogent::select({q.r, p.r}, {}, {});
            } catch (const std::system_error& e) {
                code = e.code().value();
                what = e.what();
            }
        });
        // Queued right after g: runs once g has parked, before the hub's next poll.
        auto closer = cogent::spawn([&] {
            armed = cogent::debug::fd_watchers() >= 2;
            REQUIRE(::close(p.r) == 0);
        });
        CHECK(g.join(kLong));
        closer.join();
        CHECK(armed);
        CHECK(code == EBADF);
        CHECK(what.find("fd " + std::to_string(p.r)) != std::string::npos);
        p.r = -1;

        TestPipe s, t;
        short mask = exotic ? short(POLLIN | POLLPRI) : short(POLLIN);
        pollfd fds[2] = {{t.r, mask, 0}, {s.r, mask, 0}};
        int n = -2;
        cogent::sleep(1ms);  // fresh round
        auto pg = cogent::spawn([&] { n = cogent::poll(fds, 2, kLong); });
        auto pcloser = cogent::spawn([&] { REQUIRE(::close(s.r) == 0); });
        CHECK(pg.join(kLong));
        pcloser.join();
        CHECK(n == 1);
        CHECK(fds[0].revents == 0);
        CHECK(fds[1].revents == POLLNVAL);
        s.r = -1;
    }
}

// The number is closed raw and at once reused by a new file, before the hub polls: the waiter
// cannot tell (poll(2) and select(2) called after the reuse would not either); it watches the
// new file.
TEST_CASE_FIXTURE(LeakCheck, "select: an fd closed raw and reused before the hub polls") {
    TestPipe p, other;
    std::vector<int> readable;
    cogent::sleep(1ms);  // fresh round
    auto g = cogent::spawn([&] { readable = cogent::select({p.r}, {}, {}, kLong).readable; });
    auto reuser = cogent::spawn([&] {
        REQUIRE(::close(p.r) == 0);
        REQUIRE(::dup2(other.r, p.r) == p.r);  // the number now names other's read end
    });
    reuser.join();
    other.put();
    CHECK(g.join(kLong));
    CHECK(readable == std::vector<int>{p.r});
    CHECK(other.take() == 'x');
}
