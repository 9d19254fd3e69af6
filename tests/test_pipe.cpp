// Pipes: cooperative read/write on pipe fds, Fd, and the Pipe message channel (also across
// fork()).
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

int err_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = char((i * 131 + seed * 7) & 0xff);
    return s;
}

// Ignore SIGPIPE for a scope (a write(2) to a pipe nobody reads raises it).
struct NoSigpipe {
    struct sigaction old {};
    NoSigpipe() {
        struct sigaction sa {};
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, &old);
    }
    ~NoSigpipe() { sigaction(SIGPIPE, &old, nullptr); }
};

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "pipe(): non-blocking, close-on-exec, owning ends") {
    int rfd, wfd;
    {
        auto [r, w] = cogent::pipe();
        rfd = r.get();
        wfd = w.fileno();
        CHECK(r.valid());
        CHECK((::fcntl(rfd, F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(wfd, F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(rfd, F_GETFD) & FD_CLOEXEC) != 0);
        cogent::Fd moved = std::move(r);
        CHECK_FALSE(r.valid());
        CHECK(moved.get() == rfd);
    }
    CHECK(::fcntl(rfd, F_GETFD) == -1);  // both closed by the destructors
    CHECK(::fcntl(wfd, F_GETFD) == -1);

    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    CHECK(cogent::set_nonblocking(fds[0]));
    CHECK_FALSE(cogent::set_nonblocking(fds[0]));
    cogent::Fd a(fds[0]), b(fds[1]);
    int raw = b.release();
    CHECK_FALSE(b.valid());
    ::close(raw);
    CHECK(err_of([] { cogent::set_nonblocking(-1); }) == EBADF);
}

TEST_CASE_FIXTURE(LeakCheck, "read/write: cooperative, timeouts, EOF, EPIPE") {
    auto [r, w] = cogent::pipe();
    char buf[16];
    CHECK(err_of([&] { cogent::read(r.get(), buf, sizeof buf, 0s); }) == EAGAIN);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(err_of([&] { cogent::read(r.get(), buf, sizeof buf, 30ms); }) == ETIMEDOUT);
    CHECK(ms_since(t0) >= 25);

    // The writer writes only once the ticker has run ten times (timers in between): the read,
    // which has no timeout, waited all that while without blocking the thread. (Counting ticks
    // during a fixed 20 ms sleep flaked under load: a stalled thread runs both timers in one
    // loop iteration.)
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (int i = 0; i < 10; ++i) {
            ++ticks;
            cogent::sleep(1ms);
        }
    });
    auto writer = cogent::spawn([&] {
        ticker.join();
        CHECK(cogent::write(w.get(), "hello", 5) == 5);
    });
    std::size_t n = cogent::read(r.get(), buf, sizeof buf);
    CHECK(std::string(buf, n) == "hello");
    CHECK(ticks == 10);
    writer.join();

    // A second reader while one waits: ConcurrentObjectUseError.
    auto first = cogent::spawn([&] { (void)cogent::read(r.get(), buf, 1, kLong); });
    cogent::sleep(2ms);
    CHECK_THROWS_AS(cogent::read(r.get(), buf, 1, 1s), cogent::ConcurrentObjectUseError);
    cogent::write_all(w.get(), "z");
    first.join();

    w.close();
    CHECK(cogent::read(r.get(), buf, sizeof buf) == 0);  // end of file

    auto [r2, w2] = cogent::pipe();
    r2.close();
    NoSigpipe guard;
    CHECK(err_of([&] { cogent::write(w2.get(), "x", 1); }) == EPIPE);
    CHECK(err_of([&] { cogent::read(-1, buf, 1); }) == EBADF);
}

TEST_CASE_FIXTURE(LeakCheck, "write_all: more than the pipe buffer while a reader drains it") {
    auto [r, w] = cogent::pipe();
    const std::string data = pattern(1 << 20, 3);
    std::string got;
    auto reader = cogent::spawn([&] {
        char buf[8192];
        for (;;) {
            std::size_t n = cogent::read(r.get(), buf, sizeof buf, kLong);
            if (n == 0) break;
            got.append(buf, n);
        }
    });
    cogent::write_all(w.get(), data, kLong);
    w.close();
    reader.join();
    CHECK(got == data);

    // A timeout while the pipe is full: some prefix went out, then ETIMEDOUT.
    auto [r3, w3] = cogent::pipe();
    CHECK(err_of([&] { cogent::write_all(w3.get(), data, 20ms); }) == ETIMEDOUT);
    CHECK(err_of([&] { cogent::write_all(w3.get(), data, 0s); }) == EAGAIN);
}

TEST_CASE_FIXTURE(LeakCheck, "read: Fd::close in another greenlet wakes the reader with EBADF") {
    auto [r, w] = cogent::pipe();
    int code = 0;
    auto g = cogent::spawn([&] {
        char c;
        code = err_of([&] { cogent::read(r.get(), &c, 1); });
    });
    cogent::sleep(5ms);
    r.close();
    g.join();
    CHECK(code == EBADF);
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: messages both ways, empty and large, in order") {
    auto [a, b] = cogent::Pipe::create();
    CHECK(a.is_open());
    a.send("one");
    a.send("");
    a.send(std::string(3, '\0'));
    CHECK(b.recv(1s) == "one");
    CHECK(b.recv(1s) == "");
    CHECK(b.recv(1s) == std::string(3, '\0'));
    b.send("back");
    CHECK(a.recv(1s) == "back");

    // 8 MiB each way at once, with a ticker proving the thread is not blocked.
    const std::string big = pattern(8 << 20, 1), big2 = pattern(8 << 20, 2);
    int ticks = 0;
    bool stop = false;
    auto ticker = cogent::spawn([&] {
        while (!stop) {
            ++ticks;
            cogent::sleep(0);
        }
    });
    auto sender = cogent::spawn([&] { a.send(big); });
    auto sender2 = cogent::spawn([&] { b.send(big2); });
    auto got = b.recv(kLong);
    auto got2 = a.recv(kLong);
    sender.join();
    sender2.join();
    stop = true;
    ticker.join();
    REQUIRE(got.has_value());
    CHECK(got->size() == big.size());
    CHECK(*got == big);
    CHECK(*got2 == big2);
    CHECK(ticks > 10);
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: EOF, timeouts keep partial frames, closed ends") {
    auto [a, b] = cogent::Pipe::create();
    CHECK(err_of([&] { (void)b.recv(0s); }) == EAGAIN);
    CHECK(err_of([&] { (void)b.recv(20ms); }) == ETIMEDOUT);

    // A frame trickling in byte by byte, with recv timing out in the middle: nothing is lost.
    const std::string msg = "partial frames are reassembled";
    std::string frame = "CGP1";
    frame += char(0);
    frame += char(0);
    frame += char(0);
    frame += char(msg.size());
    frame += msg;
    auto trickle = cogent::spawn([&] {
        for (char c : frame) {
            cogent::write_all(a.fileno(), &c, 1);
            cogent::sleep(1ms);
        }
    });
    int timeouts = 0;
    std::optional<std::string> got;
    while (!got) {
        try {
            got = b.recv(3ms);
        } catch (const std::system_error& e) {
            REQUIRE(e.code().value() == ETIMEDOUT);
            ++timeouts;
        }
    }
    trickle.join();
    CHECK(*got == msg);
    CHECK(timeouts > 0);

    a.send("last");
    a.close();
    CHECK_FALSE(a.is_open());
    CHECK(a.fileno() == -1);
    CHECK(err_of([&] { a.send("x"); }) == EBADF);
    CHECK(err_of([&] { (void)a.recv(); }) == EBADF);
    CHECK(b.recv() == "last");
    CHECK(b.recv() == std::nullopt);  // peer closed between messages
    CHECK(b.recv() == std::nullopt);
    CHECK(err_of([&] { b.send("to nobody"); }) == EPIPE);  // and no SIGPIPE

    cogent::Pipe empty;
    CHECK_FALSE(empty.is_open());
    CHECK(err_of([&] { empty.send("x"); }) == EBADF);
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: corrupt or truncated streams and oversized messages") {
    {
        auto [a, b] = cogent::Pipe::create();
        cogent::write_all(a.fileno(), "garbage!garbage!");
        for (int i = 0; i < 2; ++i) {  // and again: the stream stays unusable
            try {
                (void)b.recv(1s);
                FAIL("no throw");
            } catch (const std::system_error& e) {
                CHECK(e.code().value() == EPROTO);
                CHECK(std::string(e.what()).find("corrupt") != std::string::npos);
            }
        }
    }
    {
        auto [a, b] = cogent::Pipe::create();
        cogent::write_all(a.fileno(), std::string("CGP1\xff\xff\xff\xff", 8));
        try {
            (void)b.recv(1s);
            FAIL("no throw");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EPROTO);
            CHECK(std::string(e.what()).find("exceeds") != std::string::npos);
        }
    }
    {
        auto [a, b] = cogent::Pipe::create();
        std::string frame("CGP1\0\0\0\x64", 8);  // announces 100 bytes, sends 10
        frame += "0123456789";
        cogent::write_all(a.fileno(), frame);
        a.close();
        try {
            (void)b.recv(1s);
            FAIL("no throw");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EPROTO);
            CHECK(std::string(e.what()).find("ended inside a message") != std::string::npos);
        }
    }
    {
        auto [a, b] = cogent::Pipe::create();
        char c = 0;
        // Never dereferenced: the size is checked first.
        std::string_view huge(&c, cogent::Pipe::max_message + 1);
        CHECK_THROWS_AS(a.send(huge), std::length_error);
        a.send("still fine");
        CHECK(b.recv(1s) == "still fine");
    }
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: concurrent senders take turns, whole messages") {
    auto [a, b] = cogent::Pipe::create();
    constexpr int kSenders = 4, kEach = 30;
    std::vector<cogent::Greenlet<void>> gs;
    for (int s = 0; s < kSenders; ++s)
        gs.push_back(cogent::spawn([&, s] {
            for (int i = 0; i < kEach; ++i)
                a.send(std::string(1, char('A' + s)) +
                       pattern(50000 + std::size_t(i), unsigned(s)));
        }));
    int counts[kSenders] = {};
    for (int i = 0; i < kSenders * kEach; ++i) {
        auto m = b.recv(kLong);
        REQUIRE(m.has_value());
        int s = (*m)[0] - 'A';
        REQUIRE(s >= 0);
        REQUIRE(s < kSenders);
        CHECK(m->substr(1) == pattern(50000 + std::size_t(counts[s]), unsigned(s)));
        ++counts[s];
    }
    for (auto& g : gs) g.join();
    for (int c : counts) CHECK(c == kEach);
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: parent and forked child exchange messages both ways") {
    auto [parent_end, child_end] = cogent::Pipe::create();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // The child: its hub was reinitialised by the fork hook; use cogent normally.
        parent_end.close();
        int status = 0;
        try {
            // Nothing before the parent's "go", which its ticker sends while the parent's
            // main greenlet waits in recv for our greeting.
            if (child_end.recv(kLong) != "go") status = 4;
            // Echo in a greenlet while main sends its own greeting.
            auto echo = cogent::spawn([&] {
                for (;;) {
                    auto m = child_end.recv(kLong);
                    if (!m) break;
                    child_end.send("echo:" + *m);
                }
            });
            child_end.send("hello from child " + std::to_string(::getpid()));
            child_end.send(pattern(3 << 20, 9));  // 3 MiB: needs many cooperative waits
            if (!echo.join(kLong)) status = 3;
            echo.get();
        } catch (const std::exception& e) {
            fprintf(stderr, "child failed: %s\n", e.what());
            status = 2;
        }
        ::_exit(status);
    }
    child_end.close();
    // The child greets only after this ticker, which runs while main waits in recv, has ticked
    // five times (timers in between) and said "go": the parent's other greenlets ran while it
    // waited. (Counting ticks over the whole exchange flaked under load.)
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (; ticks < 5; ++ticks) cogent::sleep(1ms);
        parent_end.send("go");
    });
    auto hello = parent_end.recv(kLong);
    CHECK(ticks == 5);
    REQUIRE(hello.has_value());
    CHECK(*hello == "hello from child " + std::to_string(pid));
    ticker.join();
    auto big = parent_end.recv(kLong);
    REQUIRE(big.has_value());
    CHECK(*big == pattern(3 << 20, 9));
    for (int i = 0; i < 20; ++i) {
        parent_end.send("msg " + std::to_string(i));
        CHECK(parent_end.recv(kLong) == "echo:msg " + std::to_string(i));
    }
    parent_end.send(pattern(2 << 20, 4));
    CHECK(parent_end.recv(kLong) == "echo:" + pattern(2 << 20, 4));
    parent_end.close();  // the child's echo loop sees EOF and the child exits
    int status = -1;
    for (auto t0 = std::chrono::steady_clock::now(); ms_since(t0) < 30000;) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        cogent::sleep(10ms);
    }
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE_FIXTURE(LeakCheck, "Pipe: a child that dies gives EOF to the parent") {
    auto [parent_end, child_end] = cogent::Pipe::create();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        parent_end.close();
        child_end.send("bye");
        ::_exit(0);  // without closing: the kernel closes it
    }
    child_end.close();
    CHECK(parent_end.recv(kLong) == "bye");
    CHECK(parent_end.recv(kLong) == std::nullopt);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
}
