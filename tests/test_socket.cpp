// Socket, Address, create_connection and SocketReader: TCP (IPv4, IPv6), UDP and Unix sockets
// driven by greenlets; timeouts, errors and their messages, closing and killing while waiting,
// the read-readiness hint.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since...

using namespace std::chrono_literals;
using cogent::Address;
using cogent::AnyGreenlet;
using cogent::Socket;
using cogent::SocketReader;
using cogent::SocketTimeout;
using Clock = std::chrono::steady_clock;

namespace {

// A socket listening on an OS-chosen port of `host`.
Socket listener(const char* host = "127.0.0.1", int backlog = 128) {
    Address a(host, 0);
    Socket s(a.family(), SOCK_STREAM);
    s.bind(a);
    s.listen(backlog);
    return s;
}

// A connected TCP pair over loopback: {client, server side}.
std::pair<Socket, Socket> tcp_pair(const char* host = "127.0.0.1") {
    Socket l = listener(host);
    Socket c(l.family(), SOCK_STREAM);
    c.connect(l.local_address());  // the kernel completes the handshake before accept
    auto [s, peer] = l.accept();
    CHECK(peer == c.local_address());
    return {std::move(c), std::move(s)};
}

// The errno a call throws as std::system_error (0 when it does not throw), and its message.
template <class F>
std::pair<int, std::string> error_of(F&& f) {
    try {
        f();
    } catch (const std::system_error& e) {
        return {e.code().value(), e.what()};
    }
    return {0, ""};
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// An echo handler: returns what it read back until end of stream.
void echo(Socket s) {
    char buf[4096];
    while (std::size_t n = s.recv(buf, sizeof buf)) s.sendall(buf, n);
}

// A fresh path for a Unix socket (unlinked by the caller).
std::string temp_path(const char* tag) {
    return "/tmp/cogent-test-" + std::to_string(getpid()) + "-" + tag + ".sock";
}

bool ipv6_loopback_available() {
    try {
        listener("::1");
        return true;
    } catch (const std::system_error&) {
        return false;
    }
}

}  // namespace

TEST_SUITE("socket") {
    TEST_CASE_FIXTURE(LeakCheck, "Address: numeric IPv4/IPv6, any, Unix and abstract paths") {
        Address v4("127.0.0.1", 80);
        CHECK(v4.family() == AF_INET);
        CHECK(v4.host() == "127.0.0.1");
        CHECK(v4.port() == 80);
        CHECK(v4.to_string() == "127.0.0.1:80");
        CHECK(v4.length() == sizeof(sockaddr_in));

        Address v6("::1", 8080), v6b("[::1]", 8080);
        CHECK(v6.family() == AF_INET6);
        CHECK(v6.to_string() == "[::1]:8080");
        CHECK(v6 == v6b);
        CHECK_FALSE(v6 == Address("::1", 8081));

        CHECK(Address("", 5).host() == "0.0.0.0");
        CHECK(Address("::", 5).host() == "::");
        CHECK(Address().family() == AF_UNSPEC);
        CHECK(Address().to_string() == "(unspecified)");

        Address u = Address::unix_path("/run/x.sock");
        CHECK(u.family() == AF_UNIX);
        CHECK(u.to_string() == "/run/x.sock");
        CHECK(u.port() == 0);
        Address ab = Address::unix_path("@cogent-abstract");
        CHECK(ab.host() == "@cogent-abstract");
        CHECK(ab.length() == offsetof(sockaddr_un, sun_path) + 16);  // no trailing NUL counted

        // Round trip through a sockaddr.
        Address back = Address::from_sockaddr(v6.sockaddr_ptr(), v6.length());
        CHECK(back == v6);
        CHECK(Address::from_sockaddr(nullptr, 0).family() == AF_UNSPEC);
    }

    TEST_CASE_FIXTURE(LeakCheck, "Address: bad input is rejected with a clear message") {
        try {
            Address("localhost", 80);
            FAIL("a host name was accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(contains(e.what(), "'localhost'"));
            CHECK(contains(e.what(), "getaddrinfo"));  // where names are resolved
        }
        CHECK_THROWS_AS(Address("1.2.3", 80), std::invalid_argument);
        CHECK_THROWS_AS(Address("[::1", 80), std::invalid_argument);
        CHECK_THROWS_AS(Address("999.0.0.1", 80), std::invalid_argument);
        CHECK_THROWS_AS(Address::unix_path(""), std::invalid_argument);
        CHECK_THROWS_AS(Address::unix_path(std::string("a\0b", 3)), std::invalid_argument);
        try {
            Address::unix_path("/" + std::string(200, 'x'));
            FAIL("a too long path was accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(contains(e.what(), "too long"));
        }
        sockaddr_storage ss{};
        ss.ss_family = AF_INET;
        CHECK_THROWS_AS(Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), 4),
                        std::invalid_argument);  // shorter than sockaddr_in
        ss.ss_family = AF_APPLETALK;
        CHECK_THROWS_AS(Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), 16),
                        std::invalid_argument);
    }

    TEST_CASE_FIXTURE(LeakCheck, "TCP over IPv4: echo between greenlets, addresses") {
        Socket l = listener();
        Address where = l.local_address();
        CHECK(where.host() == "127.0.0.1");
        CHECK(where.port() != 0);
        auto server = cogent::spawn([&] {
            auto [s, peer] = l.accept();
            CHECK(peer.host() == "127.0.0.1");
            CHECK(s.timeout().forever());
            echo(std::move(s));
        });
        Socket c(AF_INET, SOCK_STREAM);
        c.connect(where);
        CHECK(c.peer_address() == where);
        c.sendall("hello, ");
        c.sendall(std::string_view("world"));
        std::string got;
        while (got.size() < 12) got += c.recv(64);
        CHECK(got == "hello, world");
        c.shutdown(SHUT_WR);
        CHECK(c.recv(64) == "");  // the echo ends when it sees our end of stream
        server.get();
    }

    TEST_CASE_FIXTURE(LeakCheck, "TCP over IPv6 (::1)") {
        if (!ipv6_loopback_available()) {
            COGENT_SKIP("no IPv6 loopback here");
        }
        Socket l = listener("::1");
        CHECK(l.family() == AF_INET6);
        auto server = cogent::spawn([&] { echo(l.accept().first); });
        Socket c = cogent::create_connection("::1", l.local_address().port(), 2s);
        CHECK(c.timeout().value() == 2s);
        CHECK(c.peer_address().to_string() == "[::1]:" + std::to_string(l.local_address().port()));
        c.sendall("six");
        char buf[8];
        std::size_t n = 0;
        while (n < 3) n += c.recv(buf + n, sizeof buf - n);
        CHECK(std::string(buf, n) == "six");
        c.close();
        server.get();
    }

    TEST_CASE_FIXTURE(LeakCheck, "Unix stream sockets: a path and an abstract name") {
        std::string path = temp_path("stream");
        ::unlink(path.c_str());
        for (Address a : {Address::unix_path(path),
                          Address::unix_path("@cogent-test-" + std::to_string(getpid()))}) {
            Socket l(AF_UNIX, SOCK_STREAM);
            l.bind(a);
            l.listen();
            CHECK(l.local_address() == a);
            auto server = cogent::spawn([&] {
                auto [s, peer] = l.accept();
                CHECK(peer.family() == AF_UNIX);
                CHECK(peer.to_string() == "(unnamed)");  // the client did not bind
                echo(std::move(s));
            });
            Socket c(AF_UNIX, SOCK_STREAM);
            c.connect(a);
            c.sendall("over unix");
            std::string got;
            while (got.size() < 9) got += c.recv(64);
            CHECK(got == "over unix");
            c.close();
            server.get();
        }
        ::unlink(path.c_str());
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "Unix datagram sockets: sendto/recvfrom between bound paths, pair") {
        std::string pa = temp_path("dga"), pb = temp_path("dgb");
        ::unlink(pa.c_str());
        ::unlink(pb.c_str());
        {
            Socket a(AF_UNIX, SOCK_DGRAM), b(AF_UNIX, SOCK_DGRAM);
            a.bind(Address::unix_path(pa));
            b.bind(Address::unix_path(pb));
            auto reader = cogent::spawn([&] {
                char buf[64];
                auto [n, from] = b.recvfrom(buf, sizeof buf);  // parks: nothing sent yet
                CHECK(std::string(buf, n) == "datagram");
                CHECK(from.to_string() == pa);
                b.sendto("reply", from);
            });
            cogent::sleep(0);
            a.sendto("datagram", Address::unix_path(pb));
            char buf[64];
            auto [n, from] = a.recvfrom(buf, sizeof buf);
            CHECK(std::string(buf, n) == "reply");
            CHECK(from.to_string() == pb);
            reader.get();
        }
        ::unlink(pa.c_str());
        ::unlink(pb.c_str());

        auto [x, y] = Socket::pair(SOCK_DGRAM);
        CHECK(x.type() == SOCK_DGRAM);
        x.send("one");
        x.send("two");
        CHECK(y.recv(64) == "one");  // message boundaries kept
        CHECK(y.recv(64) == "two");
    }

    TEST_CASE_FIXTURE(LeakCheck, "UDP over IPv4: sendto/recvfrom, empty datagram, recv timeout") {
        Socket a(AF_INET, SOCK_DGRAM), b(AF_INET, SOCK_DGRAM);
        a.bind(Address("127.0.0.1", 0));
        b.bind(Address("127.0.0.1", 0));
        const Address aa = a.local_address(), ba = b.local_address();
        auto reader = cogent::spawn([&] {
            std::vector<std::string> got;
            char buf[128];
            for (int i = 0; i < 3; ++i) {
                auto [n, from] = b.recvfrom(buf, sizeof buf);
                CHECK(from == aa);
                got.emplace_back(buf, n);
            }
            return got;
        });
        a.sendto("alpha", ba);
        a.sendto("", ba);
        a.sendto("omega", ba);
        auto got = reader.get();
        REQUIRE(got.size() == 3);
        CHECK(got[0] == "alpha");
        CHECK(got[1] == "");
        CHECK(got[2] == "omega");

        b.set_timeout(30ms);
        char buf[8];
        CHECK_THROWS_AS(b.recvfrom(buf, sizeof buf), SocketTimeout);
    }

    TEST_CASE_FIXTURE(LeakCheck, "200 concurrent connections, each served by its own greenlet") {
        constexpr int N = 200;
        Socket l = listener("127.0.0.1", N);
        const Address where = l.local_address();
        std::vector<AnyGreenlet> handlers;
        auto acceptor = cogent::spawn([&] {
            for (int i = 0; i < N; ++i) handlers.push_back(cogent::spawn(echo, l.accept().first));
        });
        std::vector<AnyGreenlet> clients;
        std::atomic<int> ok{0};
        for (int i = 0; i < N; ++i) {
            clients.push_back(cogent::spawn([&, i] {
                Socket c(AF_INET, SOCK_STREAM);
                c.set_timeout(10s);
                c.connect(where);
                const std::string msg = "client " + std::to_string(i) + "\n";
                for (int round = 0; round < 3; ++round) {
                    c.sendall(msg);
                    std::string got;
                    while (got.size() < msg.size()) got += c.recv(256);
                    if (got == msg) ++ok;
                    cogent::sleep(0);
                }
            }));
        }
        cogent::joinall(clients, 20s, true);
        CHECK(ok == 3 * N);
        acceptor.get();
        cogent::joinall(handlers, 5s, true);  // each echo ends as its client closes
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "recv timeout: SocketTimeout naming the call and the peer, on time") {
        auto [c, s] = tcp_pair();
        c.set_timeout(50ms);
        auto t0 = Clock::now();
        try {
            c.recv(16);
            FAIL("recv returned without data");
        } catch (const SocketTimeout& e) {
            CHECK(e.code().value() == ETIMEDOUT);
            CHECK(contains(e.what(), "timed out"));
            CHECK(contains(e.what(), "recv from " + s.local_address().to_string()));
        }
        double ms = ms_since(t0);
        CHECK(ms >= 45);
        CHECK(ms < 2000);
        // The socket still works after a timeout.
        s.sendall("late");
        CHECK(c.recv(16) == "late");

        // accept times out the same way.
        Socket l = listener();
        l.set_timeout(20ms);
        CHECK_THROWS_AS(l.accept(), SocketTimeout);
    }

    TEST_CASE_FIXTURE(LeakCheck, "zero timeout never blocks: EAGAIN, EINPROGRESS") {
        auto [c, s] = tcp_pair();
        c.set_blocking(false);
        CHECK(c.timeout().zero());
        auto [err, msg] = error_of([&] { c.recv(16); });
        CHECK(err == EAGAIN);
        CHECK(contains(msg, "recv from"));
        // MSG_DONTWAIT does the same on a blocking socket.
        CHECK(error_of([&] { s.recv(16, MSG_DONTWAIT); }).first == EAGAIN);
        s.send("x");
        CHECK(c.recv(16) == "x");

        Socket l = listener();
        l.set_timeout(0s);
        CHECK(error_of([&] { l.accept(); }).first == EAGAIN);

        // A non-blocking TCP connect reports EINPROGRESS; the connection completes in the kernel.
        Socket d(AF_INET, SOCK_STREAM);
        d.set_timeout(0s);
        CHECK(error_of([&] { d.connect(l.local_address()); }).first == EINPROGRESS);
        CHECK(cogent::wait_write(d.fileno(), 2s));
        CHECK(d.get_option(SOL_SOCKET, SO_ERROR) == 0);
        l.set_timeout({});
        auto [t, peer] = l.accept();
        CHECK(peer == d.local_address());
    }

    TEST_CASE_FIXTURE(LeakCheck, "connect refused: system_error naming the target") {
        // A bound port that does not listen answers a SYN with a reset.
        Socket bound(AF_INET, SOCK_STREAM);
        bound.bind(Address("127.0.0.1", 0));
        const Address target = bound.local_address();
        Socket c(AF_INET, SOCK_STREAM);
        auto [err, msg] = error_of([&] { c.connect(target); });
        CHECK(err == ECONNREFUSED);
        CHECK(contains(msg, "connect to " + target.to_string()));
        CHECK(contains(msg, "refused"));
        Socket c2(AF_INET, SOCK_STREAM);
        CHECK(c2.connect_ex(target) == ECONNREFUSED);
        CHECK(error_of([&] { cogent::create_connection("127.0.0.1", target.port()); }).first ==
              ECONNREFUSED);
    }

    TEST_CASE_FIXTURE(LeakCheck, "connect timeout: a listener whose accept queue is full") {
        // Linux drops SYNs for a listener whose accept queue is full, so the next connect hangs in
        // SYN_SENT (all on loopback). Fill the queue, then time out.
        Socket l = listener("127.0.0.1", 0);
        std::vector<Socket> queued;
        bool timed_out = false;
        std::string msg;
        double ms = 0;
        for (int i = 0; i < 16 && !timed_out; ++i) {
            Socket c(AF_INET, SOCK_STREAM);
            c.set_timeout(150ms);
            auto t0 = Clock::now();
            try {
                c.connect(l.local_address());
                queued.push_back(std::move(c));
            } catch (const SocketTimeout& e) {
                timed_out = true;
                msg = e.what();
                ms = ms_since(t0);
            }
        }
        REQUIRE(timed_out);
        CHECK(contains(msg, "timed out: connect to " + l.local_address().to_string()));
        CHECK(ms >= 140);
        CHECK(ms < 2000);
        CHECK(queued.size() >= 1);

        // The same with a Unix listener: its full backlog gives EAGAIN, retried until the deadline.
        Socket u(AF_UNIX, SOCK_STREAM);
        const Address ua = Address::unix_path("@cogent-test-backlog-" + std::to_string(getpid()));
        u.bind(ua);
        u.listen(0);
        std::vector<Socket> uq;
        timed_out = false;
        for (int i = 0; i < 16 && !timed_out; ++i) {
            Socket c(AF_UNIX, SOCK_STREAM);
            c.set_timeout(50ms);
            try {
                c.connect(ua);
                uq.push_back(std::move(c));
            } catch (const SocketTimeout& e) {
                timed_out = true;
            }
        }
        CHECK(timed_out);
        // Accepting one makes room: a waiting connect then gets through.
        auto late = cogent::spawn([&] {
            Socket c(AF_UNIX, SOCK_STREAM);
            c.set_timeout(2s);
            c.connect(ua);
            return true;
        });
        cogent::sleep(10ms);
        auto a1 = u.accept();
        CHECK(late.get());
    }

    TEST_CASE_FIXTURE(LeakCheck, "closing from another greenlet wakes a recv with EBADF") {
        auto [c, s] = tcp_pair();
        int err = 0;
        std::string msg;
        auto reader = cogent::spawn([&] { std::tie(err, msg) = error_of([&] { c.recv(16); }); });
        cogent::sleep(0);  // the reader parks
        c.close();
        CHECK_FALSE(c.is_open());
        reader.get();
        CHECK(err == EBADF);
        CHECK(contains(msg, "closed in another greenlet"));
        c.close();  // idempotent
    }

    TEST_CASE_FIXTURE(LeakCheck, "two greenlets reading one socket: ConcurrentObjectUseError") {
        auto [c, s] = tcp_pair();
        auto first = cogent::spawn([&] { return c.recv(16); });
        cogent::sleep(0);
        try {
            c.recv(16);
            FAIL("a second reader was let in");
        } catch (const cogent::ConcurrentObjectUseError& e) {
            CHECK(contains(e.what(), "fd " + std::to_string(c.fileno())));
            CHECK(contains(e.what(), c.local_address().to_string()));
            CHECK(contains(e.what(), "reading"));
        }
        // A writer alongside the reader is fine.
        c.sendall("ping");
        s.sendall("pong");
        CHECK(first.get() == "pong");
        CHECK(s.recv(16) == "ping");
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "kill or Timeout while in recv: unwound, the socket still usable") {
        auto [c, s] = tcp_pair();
        bool unwound = false;
        auto reader = cogent::spawn([&] {
            SetOnDestroy<bool> guard{&unwound};
            c.recv(16);
        });
        cogent::sleep(0);
        reader.kill();
        CHECK(reader.dead());
        CHECK(unwound);
        {
            cogent::Timeout t(20ms);
            CHECK_THROWS_AS(c.recv(16), cogent::Timeout);
        }
        // Nothing is left waiting: a new reader gets the data.
        s.sendall("after");
        CHECK(c.recv(16) == "after");
        const std::size_t fds = open_fds();
        c.close();
        s.close();
        CHECK(open_fds() == fds - 2);
        // LeakCheck then checks that no watcher is left on the closed fds.
    }

    TEST_CASE_FIXTURE(LeakCheck, "sendall of several MB against a slow reader; sendall timeout") {
        auto [c, s] = tcp_pair();
        std::string data(6 << 20, '\0');
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = char(i * 131 + (i >> 13));
        auto reader = cogent::spawn([&] {
            std::string got;
            got.reserve(data.size());
            char buf[64 * 1024];
            int k = 0;
            while (std::size_t n = s.recv(buf, sizeof buf)) {
                got.append(buf, n);
                if (++k % 16 == 0) cogent::sleep(1ms);  // slow reader
            }
            return got;
        });
        c.set_timeout(10s);
        c.sendall(data);
        c.shutdown(SHUT_WR);
        CHECK(reader.get() == data);  // all of it, in order

        // With nobody reading, sendall of more than the buffers hold times out as one call.
        auto [c2, s2] = tcp_pair();
        c2.set_timeout(100ms);
        auto t0 = Clock::now();
        CHECK_THROWS_AS(c2.sendall(data), SocketTimeout);
        CHECK(ms_since(t0) < 2000);
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "peer closed: recv returns 0; writing to it gives EPIPE, no SIGPIPE") {
        auto [c, s] = tcp_pair();
        s.close();
        CHECK(c.recv(16) == "");
        CHECK(c.recv(16) == "");  // and keeps doing so
        // The first write may still be accepted (the peer's reset comes back after it).
        int err = 0;
        std::string msg;
        for (int i = 0; i < 100 && err == 0; ++i) {
            std::tie(err, msg) = error_of([&] { c.sendall("data"); });
            if (!err) cogent::sleep(1ms);
        }
        CHECK((err == EPIPE || err == ECONNRESET));
        CHECK(contains(msg, "sendall to"));

        auto [u, v] = Socket::pair();
        v.close();
        CHECK(error_of([&] { u.send("x"); }).first == EPIPE);  // we are still alive: no SIGPIPE
    }

    TEST_CASE_FIXTURE(LeakCheck, "SocketReader: lines split across sends, end of stream") {
        auto [c, s] = tcp_pair();
        auto writer = cogent::spawn([&] {
            for (const char* part : {"hel", "lo\nwor", "", "ld\nsecond", " line\n\nta", "il"}) {
                if (*part) s.sendall(part);
                cogent::sleep(2ms);
            }
            s.close();
        });
        SocketReader r(c, 64);
        CHECK(r.readline() == "hello\n");
        CHECK(r.readline() == "world\n");
        CHECK(r.readline() == "second line\n");
        CHECK(r.readline() == "\n");
        CHECK(r.readline() == "tail");  // no newline before the end
        CHECK(r.readline() == "");
        CHECK(r.readline() == "");
        writer.get();
    }

    TEST_CASE_FIXTURE(LeakCheck,
                      "SocketReader: long line, read_exactly, read_some keep every byte") {
        auto [c, s] = tcp_pair();
        SocketReader r(c, 64);
        s.sendall(std::string(100, 'a') + "\nrest");
        CHECK_THROWS_AS(r.readline(50), std::length_error);
        CHECK(r.buffered() >= 50);                               // the bytes stay buffered
        CHECK(r.readline(200) == std::string(100, 'a') + "\n");  // longer than the buffer: it grows

        // read_exactly larger than the buffer.
        std::string big(10000, 'z');
        s.sendall(big);
        CHECK(r.read_exactly(4) == "rest");
        CHECK(r.read_exactly(big.size()) == big);

        s.sendall("12345");
        CHECK(r.read_some(2) == "12");
        CHECK(r.read_some() == "345");

        // The stream ends after 3 of 8 bytes: an error, and the 3 bytes can still be read.
        s.sendall("abc");
        s.close();
        try {
            r.read_exactly(8);
            FAIL("read_exactly returned short");
        } catch (const std::runtime_error& e) {
            CHECK(contains(e.what(), "after 3 of 8 bytes"));
        }
        CHECK(r.read_some() == "abc");
        CHECK(r.read_some() == "");
    }

    TEST_CASE_FIXTURE(LeakCheck, "SocketReader: a timeout mid read_exactly loses nothing") {
        auto [c, s] = tcp_pair();
        c.set_timeout(30ms);
        SocketReader r(c, 16);
        s.sendall("0123456789");
        CHECK_THROWS_AS(r.read_exactly(40), SocketTimeout);
        CHECK(r.buffered() == 10);
        s.sendall(std::string(30, '-'));
        CHECK(r.read_exactly(40) == "0123456789" + std::string(30, '-'));
    }

    TEST_CASE_FIXTURE(LeakCheck, "moves leave the source invalid; closed sockets throw EBADF") {
        auto [c, s] = tcp_pair();
        const int fd = c.fileno();
        Socket moved(std::move(c));
        CHECK(moved.fileno() == fd);
        CHECK(c.fileno() == -1);
        CHECK_FALSE(c.is_open());
        auto [err, msg] = error_of([&] { c.recv(16); });
        CHECK(err == EBADF);
        CHECK(contains(msg, "closed socket"));
        CHECK(error_of([&] { c.send("x"); }).first == EBADF);
        CHECK(error_of([&] { c.local_address(); }).first == EBADF);
        CHECK(error_of([&] { c.connect(Address("127.0.0.1", 1)); }).first == EBADF);
        Socket empty;
        CHECK(error_of([&] { empty.accept(); }).first == EBADF);
        CHECK(empty.release() == -1);

        // Move-assignment closes what the target held.
        const std::size_t fds = open_fds();
        moved = std::move(s);
        CHECK(open_fds() == fds - 1);
        CHECK(moved.is_open());
        CHECK_FALSE(s.is_open());

        // release hands the fd over.
        const int rfd = moved.release();
        CHECK_FALSE(moved.is_open());
        CHECK(fcntl(rfd, F_GETFD) >= 0);
        ::close(rfd);
    }

    TEST_CASE_FIXTURE(LeakCheck, "adopt, bad fds and bad timeouts") {
        CHECK_THROWS_AS(Socket::adopt(-1), std::invalid_argument);
        int p[2];
        REQUIRE(pipe(p) == 0);
        CHECK(error_of([&] { Socket::adopt(p[0]); }).first == ENOTSOCK);
        CHECK(fcntl(p[0], F_GETFD) >= 0);  // still the caller's
        ::close(p[0]);
        ::close(p[1]);

        int sv[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);  // blocking fds
        Socket a = Socket::adopt(sv[0]), b = Socket::adopt(sv[1]);
        CHECK(a.family() == AF_UNIX);
        CHECK(a.type() == SOCK_STREAM);
        CHECK((fcntl(a.fileno(), F_GETFL) & O_NONBLOCK));
        auto reader = cogent::spawn([&] { return b.recv(8); });  // parks, does not block the thread
        cogent::sleep(0);
        a.send("ok");
        CHECK(reader.get() == "ok");

        CHECK_THROWS_AS(a.set_timeout(-1s), std::invalid_argument);
        CHECK_THROWS_AS(Socket(12345, SOCK_STREAM), std::system_error);
    }

    TEST_CASE_FIXTURE(LeakCheck, "create_connection: numeric hosts, source address, bad hosts") {
        Socket l = listener();
        const auto port = l.local_address().port();
        Socket c = cogent::create_connection("127.0.0.1", port, 1s, Address("127.0.0.1", 0));
        CHECK(c.timeout().value() == 1s);
        auto [s, peer] = l.accept();
        CHECK(peer == c.local_address());
        // A name goes through the thread's resolver (here one whose only server, on loopback,
        // refuses: no traffic leaves the machine).
        cogent::Resolver::Options o;
        o.servers = {"127.0.0.1:1"};
        o.hosts_file = "-";
        cogent::set_resolver(std::make_shared<cogent::Resolver>(o));
        try {
            cogent::create_connection("example.invalid", 80);
            FAIL("an unresolvable name connected");
        } catch (const cogent::DnsError& e) {
            CHECK(e.host() == "example.invalid");
            CHECK(e.code() == EAI_AGAIN);
        }
        cogent::set_resolver(nullptr);
    }

    TEST_CASE_FIXTURE(LeakCheck, "new sockets are non-blocking and close-on-exec") {
        Socket t(AF_INET, SOCK_STREAM);
        CHECK((fcntl(t.fileno(), F_GETFL) & O_NONBLOCK));
        CHECK((fcntl(t.fileno(), F_GETFD) & FD_CLOEXEC));
        auto [c, s] = tcp_pair();
        for (const Socket* x : {&c, &s}) {
            CHECK((fcntl(x->fileno(), F_GETFL) & O_NONBLOCK));
            CHECK((fcntl(x->fileno(), F_GETFD) & FD_CLOEXEC));
        }
        c.set_option(IPPROTO_TCP, TCP_NODELAY, 1);
        CHECK(c.get_option(IPPROTO_TCP, TCP_NODELAY) != 0);
    }

    TEST_CASE_FIXTURE(LeakCheck, "sendmsg/recvmsg pass an fd (SCM_RIGHTS)") {
        auto [a, b] = Socket::pair();
        int p[2];
        REQUIRE(pipe(p) == 0);
        char byte = 'f';
        iovec iov{&byte, 1};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        cmsghdr* cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
        auto reader = cogent::spawn([&] {
            char got = 0;
            iovec riov{&got, 1};
            alignas(cmsghdr) char rctl[CMSG_SPACE(sizeof(int))] = {};
            msghdr rm{};
            rm.msg_iov = &riov;
            rm.msg_iovlen = 1;
            rm.msg_control = rctl;
            rm.msg_controllen = sizeof rctl;
            CHECK(b.recvmsg(&rm) == 1);
            CHECK(got == 'f');
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&rm)), sizeof fd);
            return fd;
        });
        cogent::sleep(0);
        CHECK(a.sendmsg(&m) == 1);
        int passed = reader.get();
        REQUIRE(passed >= 0);
        CHECK((fcntl(passed, F_GETFD) & FD_CLOEXEC));  // MSG_CMSG_CLOEXEC
        CHECK(write(passed, "!", 1) == 1);
        char c = 0;
        CHECK(read(p[0], &c, 1) == 1);
        CHECK(c == '!');
        ::close(passed);
        ::close(p[0]);
        ::close(p[1]);
    }

    TEST_CASE_FIXTURE(LeakCheck, "the readiness hint never loses data") {
        auto [c, s] = tcp_pair();
        c.set_timeout(10s);  // a lost wake-up would show as SocketTimeout, not a hang
        char buf[64];
        // Arm the kept read watcher and mark the socket drained (a short read).
        auto first = cogent::spawn([&] { return c.recv(buf, sizeof buf); });
        cogent::sleep(0);
        s.send("a");
        CHECK(first.get() == 1);

        // Data arrives while the reader is busy elsewhere (CPU-bound, not yielding): written by
        // another thread, so no greenlet of ours runs in between.
        for (int round = 0; round < 3; ++round) {
            std::thread t([fd = s.fileno()] { CHECK(::send(fd, "bc", 2, MSG_NOSIGNAL) == 2); });
            t.join();
            auto t0 = Clock::now();
            std::size_t n = c.recv(buf, sizeof buf);
            CHECK(std::string(buf, n) == "bc");
            CHECK(ms_since(t0) < 5000);
        }

        // Data arrives while the reader sleeps (the hub runs the watcher with nobody waiting).
        auto writer = cogent::spawn([&] { s.send("de"); });
        cogent::sleep(5ms);
        writer.get();
        auto t0 = Clock::now();
        std::size_t n = c.recv(buf, sizeof buf);
        CHECK(std::string(buf, n) == "de");
        CHECK(ms_since(t0) < 5000);

        // A full read (exactly the size asked) does not mark the socket drained: the rest follows.
        s.send("0123456789");
        cogent::sleep(1ms);
        CHECK(c.recv(buf, 4) == 4);
        CHECK(c.recv(buf, sizeof buf) == 6);
        // A peek leaves the data in place for the real read.
        s.send("peek");
        cogent::sleep(1ms);
        CHECK(c.recv(buf, sizeof buf, MSG_PEEK) == 4);
        t0 = Clock::now();
        CHECK(c.recv(buf, sizeof buf) == 4);
        CHECK(ms_since(t0) < 5000);
    }

}  // TEST_SUITE
