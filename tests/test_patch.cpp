// The monkey patch's socket, select and time families, linked in (patch_dep): plain libc calls
// made from greenlets park only their greenlet, with libc's exact contract (return values,
// errno, O_NONBLOCK/FIONBIO, SO_RCVTIMEO/SO_SNDTIMEO, bad input); the same calls outside a
// greenlet are libc's own.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;

namespace {

using clock_type = std::chrono::steady_clock;

// Runs fn on a fresh OS thread that never touches cogent: every call there is libc's own.
template <class F>
auto plain_thread(F fn) {
    decltype(fn()) out{};
    std::thread([&] { out = fn(); }).join();
    return out;
}

struct Result {
    long rc;
    int err;
    bool operator==(const Result&) const = default;
};

template <class F>
Result call(F fn) {
    errno = 0;
    long rc = long(fn());
    return {rc, rc < 0 ? errno : 0};
}

// A greenlet that counts while others are parked: proves the thread was not blocked.
struct Ticker {
    std::atomic<int> ticks{0};
    cogent::Greenlet<void> g;
    Ticker() {
        g = cogent::spawn([this] {
            for (;;) {
                cogent::sleep(5ms);
                ++ticks;
            }
        });
    }
    ~Ticker() { g.kill(); }
};

std::pair<int, int> pair_of(int type = SOCK_STREAM) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, type, 0, sv) == 0);
    return {sv[0], sv[1]};
}

// Counts the poll(2) and ppoll(2) system calls fn makes: fn runs on a thread of its own under a
// seccomp filter that hands each such call to a supervisor thread (user notification), which
// counts it while `counting` is set and lets it go on. Returns fn's result and the count, or
// nullopt (with why) where seccomp user notification is not available.
struct PollCount {
    int result = -1;
    int syscalls = 0;
};
std::optional<PollCount> count_poll_syscalls(std::function<int(std::atomic<bool>&)> fn,
                                             std::string& why) {
#if defined(__x86_64__)
    std::atomic<bool> counting{false};
    std::atomic<int> count{0};
    std::promise<int> listener;  // the filter's notification fd, or -errno
    auto listener_fd = listener.get_future();
    std::thread supervisor([&] {
        const int fd = listener_fd.get();
        if (fd < 0) return;
        seccomp_notif req{};
        seccomp_notif_resp resp{};
        for (;;) {
            pollfd p{fd, POLLIN, 0};  // POLLHUP once the filtered thread is gone
            if (::poll(&p, 1, -1) < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (!(p.revents & POLLIN)) break;
            std::memset(&req, 0, sizeof req);
            if (::ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) continue;
            if (counting.load()) ++count;
            resp = {};
            resp.id = req.id;
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            ::ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
        }
        ::close(fd);
    });
    int result = -1;
    int err = 0;
    std::thread filtered([&] {
        sock_filter code[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_poll, 2, 0),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ppoll, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        };
        sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
        // Both apply to this thread only (and threads it would create).
        long fd = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                      ? ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog)
                      : -1;
        if (fd < 0) {
            err = errno;
            listener.set_value(-1);
            return;
        }
        listener.set_value(int(fd));
        result = fn(counting);
    });
    filtered.join();
    supervisor.join();
    if (err) {
        why = std::string("seccomp user notification is not available: ") + std::strerror(err);
        return std::nullopt;
    }
    return PollCount{result, count.load()};
#else
    (void)fn;
    why = "the seccomp filter is written for x86-64 only";
    return std::nullopt;
#endif
}

}  // namespace

TEST_CASE("the shim is loaded and patches every family") {
    CHECK(cogent::patch::loaded());
    CHECK(cogent::patch::is_patched(cogent::patch::socket));
    CHECK(cogent::patch::is_patched(cogent::patch::select));
    CHECK(cogent::patch::describe() == "socket,dns,time,select,sync");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "recv on a blocking socket parks only the greenlet") {
    auto [a, b] = pair_of();
    Ticker t;
    const int flags_before = ::fcntl(a, F_GETFL);
    auto reader = cogent::spawn([a = a] {
        char buf[16] = {};
        errno = 1234;
        ssize_t n = ::recv(a, buf, sizeof buf, 0);
        int e = errno;
        return std::make_pair(std::string(buf, n > 0 ? size_t(n) : 0), e);
    });
    cogent::sleep(60ms);
    CHECK(::send(b, "hello", 5, 0) == 5);
    auto [got, err] = reader.get();
    CHECK(got == "hello");
    CHECK(err == 1234);                          // errno untouched by the EAGAIN attempts
    CHECK(t.ticks.load() >= 5);                  // the thread kept running other greenlets
    CHECK(::fcntl(a, F_GETFL) == flags_before);  // no O_NONBLOCK behind the user's back
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "read and write on sockets and pipes") {
    auto [a, b] = pair_of();
    int p[2];
    REQUIRE(::pipe(p) == 0);
    auto r1 = cogent::spawn([a = a] {
        char buf[8];
        return ::read(a, buf, sizeof buf);
    });
    auto r2 = cogent::spawn([&] {
        char buf[8];
        return ::read(p[0], buf, sizeof buf);
    });
    cogent::sleep(20ms);
    CHECK(!r1.ready());
    CHECK(!r2.ready());
    CHECK(::write(b, "abc", 3) == 3);
    CHECK(::write(p[1], "defg", 4) == 4);
    CHECK(r1.get() == 3);
    CHECK(r2.get() == 4);
    // A write bigger than the pipe's buffer completes while a reader drains it.
    std::string big(1 << 20, 'x');
    auto drain = cogent::spawn([&] {
        std::vector<char> buf(65536);
        size_t total = 0;
        while (total < big.size()) {
            ssize_t n = ::read(p[0], buf.data(), buf.size());
            if (n <= 0) break;
            total += size_t(n);
        }
        return total;
    });
    CHECK(::write(p[1], big.data(), big.size()) == ssize_t(big.size()));
    CHECK(drain.get() == big.size());
    // And over a socket, with send.
    auto sdrain = cogent::spawn([a = a, &big] {
        std::vector<char> buf(65536);
        size_t total = 0;
        while (total < big.size()) {
            ssize_t n = ::recv(a, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            total += size_t(n);
        }
        return total;
    });
    CHECK(::send(b, big.data(), big.size(), 0) == ssize_t(big.size()));
    CHECK(sdrain.get() == big.size());
    for (int fd : {a, b, p[0], p[1]}) ::close(fd);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "O_NONBLOCK, SOCK_NONBLOCK and FIONBIO are honoured") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    char c;
    auto t0 = clock_type::now();
    CHECK(call([&] { return ::recv(sv[0], &c, 1, 0); }) == Result{-1, EAGAIN});
    CHECK(call([&] { return ::read(sv[0], &c, 1); }) == Result{-1, EAGAIN});
    int off = 0;
    REQUIRE(::ioctl(sv[0], FIONBIO, &off) == 0);  // now blocking: recv parks
    auto g = cogent::spawn([&] { return ::recv(sv[0], &c, 1, 0); });
    cogent::sleep(20ms);
    CHECK(!g.ready());
    ::send(sv[1], "z", 1, 0);
    CHECK(g.get() == 1);
    int on = 1;
    REQUIRE(::ioctl(sv[0], FIONBIO, &on) == 0);
    CHECK(call([&] { return ::recv(sv[0], &c, 1, 0); }) == Result{-1, EAGAIN});
    REQUIRE(::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) & ~O_NONBLOCK) == 0);
    CHECK((::fcntl(sv[0], F_GETFL) & O_NONBLOCK) == 0);
    auto g2 = cogent::spawn([&] { return ::read(sv[0], &c, 1); });
    cogent::sleep(10ms);
    CHECK(!g2.ready());
    ::send(sv[1], "y", 1, 0);
    CHECK(g2.get() == 1);
    CHECK(ms_since(t0) < 2000);
    ::close(sv[0]);
    ::close(sv[1]);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "SO_RCVTIMEO and SO_SNDTIMEO are honoured exactly") {
    auto [a, b] = pair_of();
    timeval tv{0, 150'000};
    REQUIRE(::setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    Ticker t;
    char c;
    auto t0 = clock_type::now();
    Result r = call([&] { return ::recv(a, &c, 1, 0); });
    double ms = ms_since(t0);
    CHECK(r == Result{-1, EAGAIN});
    CHECK(ms >= 140);
    CHECK(ms < 1000);
    CHECK(t.ticks.load() >= 10);
    // The same call outside any greenlet: libc's (the kernel's) answer is the same.
    Result plain = plain_thread([&] { return call([&] { return ::recv(a, &c, 1, 0); }); });
    CHECK(plain == r);
    // A send timeout: fill the buffer, then a blocking send gives up after SO_SNDTIMEO.
    REQUIRE(::setsockopt(b, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
    std::string chunk(65536, 'q');
    ssize_t sent_total = 0;
    int sndbuf_full_errno = 0;
    for (int i = 0; i < 1000; ++i) {
        ssize_t k = ::send(b, chunk.data(), chunk.size(), MSG_DONTWAIT);
        if (k < 0) {
            sndbuf_full_errno = errno;
            break;
        }
        sent_total += k;
    }
    CHECK(sndbuf_full_errno == EAGAIN);
    t0 = clock_type::now();
    r = call([&] { return ::send(b, chunk.data(), chunk.size(), 0); });
    CHECK(r == Result{-1, EAGAIN});
    CHECK(ms_since(t0) >= 140);
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "connect and accept on blocking sockets") {
    int lst = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lst, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(lst, 16) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(lst, reinterpret_cast<sockaddr*>(&sa), &len);
    Ticker t;
    auto acceptor = cogent::spawn([lst] {
        sockaddr_in peer{};
        socklen_t pl = sizeof peer;
        int c = ::accept(lst, reinterpret_cast<sockaddr*>(&peer), &pl);
        if (c >= 0) {
            ::send(c, "hi", 2, 0);
            ::close(c);
        }
        return c >= 0;
    });
    cogent::sleep(30ms);
    CHECK(!acceptor.ready());  // parked in accept, not blocking the thread
    int c = ::socket(AF_INET, SOCK_STREAM, 0);
    const int fl = ::fcntl(c, F_GETFL);
    CHECK(::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    CHECK(::fcntl(c, F_GETFL) == fl);
    char buf[4];
    CHECK(::recv(c, buf, sizeof buf, MSG_WAITALL) == 2);
    CHECK(acceptor.get());
    ::close(c);
    // A refused connect: the errno libc gives.
    ::close(lst);
    int c2 = ::socket(AF_INET, SOCK_STREAM, 0);
    CHECK(call([&] { return ::connect(c2, reinterpret_cast<sockaddr*>(&sa), sizeof sa); }) ==
          Result{-1, ECONNREFUSED});
    ::close(c2);
    // accept with SO_RCVTIMEO gives EAGAIN, as the kernel does.
    int l2 = ::socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = 0;
    REQUIRE(::bind(l2, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(l2, 4) == 0);
    timeval tv{0, 50'000};
    ::setsockopt(l2, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(call([&] { return ::accept(l2, nullptr, nullptr); }) == Result{-1, EAGAIN});
    ::close(l2);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "closing an fd wakes the greenlet blocked on it") {
    auto [a, b] = pair_of();
    auto g = cogent::spawn([a = a] {
        char c;
        return call([&] { return ::recv(a, &c, 1, 0); });
    });
    cogent::sleep(10ms);
    ::close(a);
    CHECK(g.get() == Result{-1, EBADF});
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a greenlet killed in recv unwinds") {
    auto [a, b] = pair_of();
    bool unwound = false;
    auto g = cogent::spawn([&, a = a] {
        cogent_test::SetOnDestroy s{&unwound};
        char c;
        ::recv(a, &c, 1, 0);
    });
    cogent::sleep(10ms);
    g.kill();
    CHECK(unwound);
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "poll, select and epoll_wait park cooperatively") {
    auto [a, b] = pair_of();
    Ticker t;
    auto writer = cogent::spawn([b = b] {
        cogent::sleep(50ms);
        ::send(b, "x", 1, 0);
    });
    pollfd p{a, POLLIN, 0};
    CHECK(::poll(&p, 1, 2000) == 1);
    CHECK(p.revents == POLLIN);
    writer.join();
    char c;
    ::recv(a, &c, 1, 0);
    // A timeout with nothing ready.
    auto t0 = clock_type::now();
    CHECK(::poll(&p, 1, 80) == 0);
    CHECK(ms_since(t0) >= 75);
    // select: readable after a write, the timeval updated, the sets rewritten.
    writer = cogent::spawn([b = b] {
        cogent::sleep(30ms);
        ::send(b, "y", 1, 0);
    });
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    timeval tv{2, 0};
    CHECK(::select(a + 1, &rd, nullptr, nullptr, &tv) == 1);
    CHECK(FD_ISSET(a, &rd));
    CHECK(tv.tv_sec <= 1);  // Linux writes back the time left
    writer.join();
    ::recv(a, &c, 1, 0);
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    tv = {0, 60'000};
    CHECK(::select(a + 1, &rd, nullptr, nullptr, &tv) == 0);
    CHECK(!FD_ISSET(a, &rd));
    // epoll_wait parks on the epoll fd.
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = a;
    REQUIRE(::epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) == 0);
    writer = cogent::spawn([b = b] {
        cogent::sleep(30ms);
        ::send(b, "z", 1, 0);
    });
    epoll_event out[4];
    CHECK(::epoll_wait(ep, out, 4, 2000) == 1);
    CHECK(int(out[0].data.fd) == a);
    writer.join();
    ::recv(a, &c, 1, 0);
    t0 = clock_type::now();
    CHECK(::epoll_wait(ep, out, 4, 60) == 0);
    CHECK(ms_since(t0) >= 55);
    CHECK(t.ticks.load() >= 20);
    ::close(ep);
    ::close(a);
    ::close(b);
}

TEST_CASE("a parking poll asks the kernel once before it parks and once after it wakes") {
    // One zero-timeout look is enough before parking (it also validates the arguments); the
    // hook once made two (poll, then cogent::poll's ppoll). A parking poll therefore costs three
    // poll-family calls on its thread: the hook's look, the hub's one check of the fds armed in
    // that loop turn before it polls (a close(2) behind cogent's back must not reach libev, see
    // src/fdwait.hpp), and the look after waking; the old hook made four. A poll with something
    // ready at once costs one system call.
    using Poller = std::function<int(pollfd*)>;
    const std::pair<const char*, Poller> pollers[] = {
        {"poll", [](pollfd* p) { return ::poll(p, 1, 5000); }},
        {"ppoll",
         [](pollfd* p) {
             timespec ts{5, 0};
             return ::ppoll(p, 1, &ts, nullptr);
         }},
    };
    for (const auto& [name, poller] : pollers) {
        for (bool ready : {false, true}) {
            const std::string what = std::string(name) + (ready ? ", ready at once" : ", parking");
            INFO(what);
            std::string why;
            auto counted = count_poll_syscalls(
                [&, poller = poller](std::atomic<bool>& counting) {
                    int sv[2];
                    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
                    if (ready) ::send(sv[1], "x", 1, 0);
                    auto g = cogent::spawn([&] {
                        pollfd p{sv[0], POLLIN, 0};
                        counting = true;
                        int r = poller(&p);
                        counting = false;
                        return r == 1 && p.revents == POLLIN ? 1 : -1;
                    });
                    // Once the greenlet has set `counting`, it is parked in its poll.
                    while (!ready && !counting) cogent::sleep(0);
                    if (!ready) ::send(sv[1], "x", 1, 0);
                    int r = g.get();
                    ::close(sv[0]);
                    ::close(sv[1]);
                    return r;
                },
                why);
            if (!counted) COGENT_SKIP(why);
            CHECK(counted->result == 1);
            CHECK(counted->syscalls == (ready ? 1 : 3));
        }
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "bad input is rejected exactly as libc rejects it") {
    // Each call made in a greenlet (patched) and on a plain thread (libc): same result, errno.
    auto [a, b] = pair_of();
    const int ep = ::epoll_create1(0);
    int closed_fd = ::dup(a);  // last: nothing below reuses its number
    ::close(closed_fd);
    std::vector<std::pair<const char*, std::function<Result()>>> cases = {
        {"recv on -1",
         [] {
             char c;
             return call([&] { return ::recv(-1, &c, 1, 0); });
         }},
        {"recv on a closed fd",
         [&] {
             char c;
             return call([&] { return ::recv(closed_fd, &c, 1, 0); });
         }},
        {"read on a closed fd",
         [&] {
             char c;
             return call([&] { return ::read(closed_fd, &c, 1); });
         }},
        {"send on a closed fd", [&] { return call([&] { return ::send(closed_fd, "x", 1, 0); }); }},
        {"connect on a non-socket",
         [&] {
             sockaddr_in sa{};
             sa.sin_family = AF_INET;
             return call(
                 [&] { return ::connect(ep, reinterpret_cast<sockaddr*>(&sa), sizeof sa); });
         }},
        {"accept on a closed fd",
         [&] { return call([&] { return ::accept(closed_fd, nullptr, nullptr); }); }},
        {"select with nfds < 0",
         [] {
             return call([] {
                 timeval tv{1, 0};
                 return ::select(-1, nullptr, nullptr, nullptr, &tv);
             });
         }},
        {"select with a closed fd",
         [&] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(closed_fd, &rd);
             timeval tv{1, 0};
             return call([&] { return ::select(closed_fd + 1, &rd, nullptr, nullptr, &tv); });
         }},
        {"select with a negative timeout",
         [&] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(a, &rd);
             timeval tv{-1, 0};
             return call([&] { return ::select(a + 1, &rd, nullptr, nullptr, &tv); });
         }},
        {"select with tv_usec over a second (folded, as the kernel does)",
         [&] {
             fd_set wr;
             FD_ZERO(&wr);
             FD_SET(b, &wr);
             timeval tv{0, 2'000'000};
             return call([&] { return ::select(b + 1, nullptr, &wr, nullptr, &tv); });
         }},
        {"select with a negative tv_usec",
         [&] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(a, &rd);
             timeval tv{5, -1};
             return call([&] { return ::select(a + 1, &rd, nullptr, nullptr, &tv); });
         }},
        {"select with nfds beyond FD_SETSIZE",
         [&] {
             // The kernel reads nfds bits; with a bigger array that is fine, and fds above the
             // process's limit are EBADF when set, ignored when not.
             std::vector<fd_set> big(4);
             for (auto& s : big) FD_ZERO(&s);
             FD_SET(b, &big[0]);
             timeval tv{0, 100'000};
             return call(
                 [&] { return ::select(FD_SETSIZE * 4, nullptr, big.data(), nullptr, &tv); });
         }},
        {"poll with a closed fd",
         [&] {
             pollfd p{closed_fd, POLLIN, 0};
             Result r = call([&] { return ::poll(&p, 1, 1000); });
             return Result{r.rc * 100 + p.revents, r.err};  // POLLNVAL, at once
         }},
        {"poll with too many fds",
         [] {
             // More entries than RLIMIT_NOFILE allows: EINVAL (the array is real, so that a
             // sanitizer reading it first finds valid memory).
             rlimit rl{};
             ::getrlimit(RLIMIT_NOFILE, &rl);
             const nfds_t n = nfds_t(std::min<rlim_t>(rl.rlim_cur, 1u << 22)) + 1;
             std::vector<pollfd> fds(n, pollfd{-1, POLLIN, 0});
             return call([&] { return ::poll(fds.data(), n, 100); });
         }},
        {"epoll_wait on a non-epoll fd",
         [&] {
             epoll_event e;
             return call([&] { return ::epoll_wait(a, &e, 1, 100); });
         }},
        {"epoll_wait with maxevents 0",
         [&] {
             epoll_event e;
             return call([&] { return ::epoll_wait(ep, &e, 0, 100); });
         }},
        {"nanosleep with tv_nsec out of range",
         [] {
             timespec ts{0, 2'000'000'000};
             return call([&] { return ::nanosleep(&ts, nullptr); });
         }},
        {"nanosleep with a negative time",
         [] {
             timespec ts{-1, 0};
             return call([&] { return ::nanosleep(&ts, nullptr); });
         }},
        {"clock_nanosleep with a bad timespec",
         [] {
             timespec ts{0, -5};
             int rc = ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
             return Result{rc, 0};
         }},
        {"clock_nanosleep on a CPU clock",
         [] {
             timespec ts{0, 1000};
             int rc = ::clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &ts, nullptr);
             return Result{rc, 0};
         }},
        {"recvmmsg with a bad timeout",
         [&] {
             mmsghdr m{};
             timespec ts{0, -1};
             return call([&] { return ::recvmmsg(a, &m, 1, 0, &ts); });
         }},
    };
    for (auto& [what, fn] : cases) {
        Result patched = cogent::spawn(fn).get();
        Result libc = plain_thread(fn);
        INFO(std::string(what) << ": patched " << patched.rc << "/" << patched.err << ", libc "
                               << libc.rc << "/" << libc.err);
        CHECK(patched == libc);
    }
    ::close(ep);
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "sleep, usleep, nanosleep and clock_nanosleep") {
    auto t0 = clock_type::now();
    std::vector<cogent::Greenlet<int>> gs;
    for (int i = 0; i < 10; ++i)
        gs.push_back(cogent::spawn([i] {
            switch (i % 4) {
                case 0:
                    return ::usleep(100'000);
                case 1: {
                    timespec ts{0, 100'000'000};
                    return ::nanosleep(&ts, nullptr);
                }
                case 2: {
                    timespec ts{0, 100'000'000};
                    return ::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
                }
                default: {
                    timespec now{};
                    ::clock_gettime(CLOCK_MONOTONIC, &now);
                    now.tv_nsec += 100'000'000;
                    if (now.tv_nsec >= 1'000'000'000) {
                        now.tv_nsec -= 1'000'000'000;
                        ++now.tv_sec;
                    }
                    return ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &now, nullptr);
                }
            }
        }));
    for (auto& g : gs) CHECK(g.get() == 0);
    double ms = ms_since(t0);
    CHECK(ms >= 95);
    CHECK(ms < 600);  // ten 100 ms sleeps overlapped
    // std::this_thread::sleep_for goes through nanosleep.
    t0 = clock_type::now();
    auto a = cogent::spawn([] { std::this_thread::sleep_for(80ms); });
    auto b = cogent::spawn([] { std::this_thread::sleep_for(80ms); });
    a.join();
    b.join();
    CHECK(ms_since(t0) < 150);
    // sleep(1) returns 0 after a second (one greenlet; the main one meanwhile runs others).
    t0 = clock_type::now();
    auto s = cogent::spawn([] { return int(::sleep(1)); });
    CHECK(s.get() == 0);
    CHECK(ms_since(t0) >= 990);
}

TEST_CASE("outside greenlets every call is libc's own") {
    // A thread without a hub: a blocking recv really blocks that thread (and is woken by data).
    auto [a, b] = pair_of();
    std::atomic<bool> done{false};
    std::thread th([&, a = a] {
        char c;
        ::recv(a, &c, 1, 0);
        done = true;
    });
    std::this_thread::sleep_for(30ms);
    CHECK(!done.load());
    ::send(b, "k", 1, 0);
    th.join();
    CHECK(done.load());
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "recvmmsg, sendmmsg, recvmsg, readv and writev") {
    auto [a, b] = pair_of(SOCK_DGRAM);
    auto g = cogent::spawn([a = a] {
        char bufs[3][8];
        iovec iov[3];
        mmsghdr msgs[3]{};
        for (int i = 0; i < 3; ++i) {
            iov[i] = {bufs[i], sizeof bufs[i]};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        return ::recvmmsg(a, msgs, 3, MSG_WAITFORONE, nullptr);
    });
    cogent::sleep(20ms);
    CHECK(!g.ready());
    char m1[] = "one", m2[] = "two";
    iovec v[2] = {{m1, 3}, {m2, 3}};
    mmsghdr out[2]{};
    out[0].msg_hdr.msg_iov = &v[0];
    out[0].msg_hdr.msg_iovlen = 1;
    out[1].msg_hdr.msg_iov = &v[1];
    out[1].msg_hdr.msg_iovlen = 1;
    CHECK(::sendmmsg(b, out, 2, 0) == 2);
    int got = g.get();
    CHECK(got >= 1);
    ::close(a);
    ::close(b);
    auto [c, d] = pair_of();
    auto rv = cogent::spawn([c = c] {
        char x[3], y[3];
        iovec iov[2] = {{x, 3}, {y, 3}};
        ssize_t n = ::readv(c, iov, 2);
        return std::string(x, 3) + std::string(y, size_t(n - 3));
    });
    cogent::sleep(10ms);
    char p1[] = "abc", p2[] = "def";
    iovec w[2] = {{p1, 3}, {p2, 3}};
    CHECK(::writev(d, w, 2) == 6);
    CHECK(rv.get() == "abcdef");
    ::close(c);
    ::close(d);
}

TEST_CASE("fork: the child's hub works and its plain calls stay cooperative") {
    auto [a, b] = pair_of();
    auto g = cogent::spawn([a = a, b = b]() -> int {
        pid_t pid = ::fork();  // plain libc fork, from a greenlet
        if (pid == 0) {
            // The child: a reader parks in recv while a writer sleeps, then writes.
            auto reader = cogent::spawn([a] {
                char c = 0;
                return ::recv(a, &c, 1, 0) == 1 && c == 'f';
            });
            auto writer = cogent::spawn([b] {
                ::usleep(30'000);
                ::send(b, "f", 1, 0);
            });
            bool ok = reader.get();
            writer.join();
            _exit(ok ? 0 : 3);
        }
        int status = 0;
        // waitpid is not patched: poll for the child cooperatively instead of blocking.
        for (int i = 0; i < 500 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) ::usleep(10'000);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    });
    CHECK(g.get() == 0);
    ::close(a);
    ::close(b);
}

TEST_CASE("threads: each thread's greenlets use its own hub through the shim") {
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
        threads.emplace_back([&ok] {
            auto [a, b] = pair_of();
            auto ping = cogent::spawn([a = a] {
                char buf[4];
                for (int i = 0; i < 200; ++i) {
                    if (::send(a, "pi", 2, 0) != 2) return false;
                    if (::recv(a, buf, 2, MSG_WAITALL) != 2) return false;
                }
                return true;
            });
            auto pong = cogent::spawn([b = b] {
                char buf[4];
                for (int i = 0; i < 200; ++i) {
                    if (::recv(b, buf, 2, MSG_WAITALL) != 2) return false;
                    if (::send(b, "po", 2, 0) != 2) return false;
                }
                return true;
            });
            if (ping.get() && pong.get()) ++ok;
            ::close(a);
            ::close(b);
        });
    for (auto& th : threads) th.join();
    CHECK(ok.load() == 3);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "an fd number reused behind the shim's back") {
    // A socket the shim saw created, closed where no hook sees it (as glibc's fclose does), its
    // number reused by a pipe made where no hook sees it either: read/write still work.
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(s >= 0);
    ::syscall(SYS_close, s);
    int p[2];
    REQUIRE(::syscall(SYS_pipe2, p, 0) == 0);
    REQUIRE((p[0] == s || p[1] == s));  // the number was reused
    auto g = cogent::spawn([&] {
        char buf[4] = {};
        // p[0] is the read end whatever number it got.
        ssize_t n = ::read(p[0], buf, sizeof buf);
        return std::string(buf, n > 0 ? size_t(n) : 0);
    });
    cogent::sleep(10ms);
    CHECK(::write(p[1], "ok", 2) == 2);
    CHECK(g.get() == "ok");
    ::close(p[0]);
    ::close(p[1]);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "fclose of an fdopen'd socket wakes its waiter") {
    auto [a, b] = pair_of();
    FILE* f = ::fdopen(a, "r+");
    REQUIRE(f != nullptr);
    auto g = cogent::spawn([a = a] {
        char c;
        return call([&] { return ::recv(a, &c, 1, 0); });
    });
    cogent::sleep(10ms);
    CHECK(std::fclose(f) == 0);  // glibc closes the fd internally
    CHECK(g.get() == Result{-1, EBADF});
    ::close(b);
}

// A close(2) through the shim's close hook while a greenlet has just started waiting on the fd,
// before the hub polls. From the waiter's own thread the hook wakes it (EBADF) before the fd
// goes; from another thread it cannot (the hook wakes its caller's thread's waiters only), and
// libev used to abort the process when it then gave the closed fd to epoll_ctl.
TEST_CASE_FIXTURE(cogent_test::LeakCheck, "close from any thread while a wait is being armed") {
    for (bool other_thread : {false, true}) {
        for (int kind = 0; kind < 3; ++kind) {  // select, poll, recv
            CAPTURE(other_thread);
            CAPTURE(kind);
            auto [a, b] = pair_of();
            Result got{0, 0};
            // The hub polls between queued callbacks only every 16: a timed sleep first resumes
            // us from inside the loop, so that g and the closer start a fresh round of them.
            cogent::sleep(1ms);
            auto g = cogent::spawn([&, a = a] {
                if (kind == 0) {
                    fd_set rd;
                    FD_ZERO(&rd);
                    FD_SET(a, &rd);
                    timeval tv{30, 0};
                    got = call([&] { return ::select(a + 1, &rd, nullptr, nullptr, &tv); });
                } else if (kind == 1) {
                    pollfd p{a, POLLIN, 0};
                    got = call([&] { return ::poll(&p, 1, 30000); });
                    if (got.rc == 1) got.err = p.revents;  // the poll(2) answer: POLLNVAL
                } else {
                    char c;
                    got = call([&] { return ::recv(a, &c, 1, 0); });
                }
            });
            // Queued right after g: runs once g has parked, before the hub's next poll.
            auto closer = cogent::spawn([&, a = a] {
                if (other_thread)
                    std::thread([a] { ::close(a); }).join();  // blocks this thread: no poll
                else
                    ::close(a);
            });
            CHECK(g.join(30s));
            closer.join();
            CHECK(got == (kind == 1 ? Result{1, POLLNVAL} : Result{-1, EBADF}));
            ::close(b);
        }
    }
}
