// StreamServer and DatagramServer: a greenlet per connection, the socket closed after the
// handler, handler failures reported, stop(timeout) semantics, limits and pools, address
// families, SO_REUSEPORT, multi-threaded serving and cross-thread stop, accept back-off on
// EMFILE, bad input; and the examples/http_hello binary's protocol (split and pipelined
// requests).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;
using namespace std::chrono_literals;
using cogent::Address;
using cogent::DatagramServer;
using cogent::ServerOptions;
using cogent::Socket;
using cogent::StreamServer;
using Clock = std::chrono::steady_clock;

extern char** environ;

namespace {

// A client connected to `a`, every call bounded by 5 s.
Socket connect_to(const Address& a) {
    Socket s(a.family(), SOCK_STREAM);
    s.set_timeout(5s);
    s.connect(a);
    return s;
}

// Everything the peer sends until it closes.
std::string read_all(Socket& s) {
    std::string out;
    char buf[4096];
    while (std::size_t n = s.recv(buf, sizeof buf)) out.append(buf, n);
    return out;
}

// Read until `n` bytes arrived (or the peer closed).
std::string read_n(Socket& s, std::size_t n) {
    std::string out;
    char buf[4096];
    while (out.size() < n) {
        std::size_t k = s.recv(buf, std::min(sizeof buf, n - out.size()));
        if (k == 0) break;
        out.append(buf, k);
    }
    return out;
}

// Echo until the client closes.
void echo(Socket& s, const Address&) {
    char buf[4096];
    while (std::size_t n = s.recv(buf, sizeof buf)) s.sendall(buf, n);
}

// One echo round trip and the close: true if the echo was exact and EOF followed.
bool echo_once(const Address& a, const std::string& msg) {
    Socket c = connect_to(a);
    c.sendall(msg);
    std::string back = read_n(c, msg.size());
    c.shutdown(SHUT_WR);
    return back == msg && read_all(c).empty();
}

std::size_t count(const std::string& s, const std::string& part) {
    std::size_t n = 0;
    for (std::size_t p = 0; (p = s.find(part, p)) != std::string::npos; p += part.size()) ++n;
    return n;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

template <class F>
int errno_of(F&& f) {
    try {
        f();
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

bool ipv6_loopback_available() {
    try {
        Socket s(AF_INET6, SOCK_STREAM);
        s.bind(Address("::1", 0));
        return true;
    } catch (const std::system_error&) {
        return false;
    }
}

std::string temp_path(const char* tag) {
    return "/tmp/cogent-test-server-" + std::to_string(getpid()) + "-" + tag + ".sock";
}

// Yield until pred() holds, for at most 5 s (generous: machines are slow under load).
template <class P>
bool eventually(P pred) {
    auto t0 = Clock::now();
    while (!pred()) {
        if (ms_since(t0) > 5000) return false;
        cogent::sleep(1ms);
    }
    return true;
}

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int highest_fd() {
    int hi = 2;
    for (int fd = 0; fd < 4096; ++fd)
        if (fcntl(fd, F_GETFD) >= 0) hi = fd;
    return hi;
}

}  // namespace

TEST_SUITE_BEGIN("server");

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: 100 connections are handled at once") {
    const int n = 100;
    int active = 0, peak = 0, served = 0;
    cogent::Event all_in;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address& peer) {
        CHECK(peer.host() == "127.0.0.1");
        ++active;
        peak = std::max(peak, active);
        if (active == n) all_in.set();
        all_in.wait(10s);  // every handler is running before any answers
        char buf[64];
        std::size_t k = s.recv(buf, sizeof buf);
        s.sendall(buf, k);
        --active;
        ++served;
    });
    CHECK(server.closed());
    CHECK_FALSE(server.started());
    server.start();
    CHECK(server.started());
    CHECK_FALSE(server.closed());
    std::vector<cogent::Greenlet<bool>> clients;
    for (int i = 0; i < n; ++i)
        clients.push_back(cogent::spawn([&, i] {
            Socket c = connect_to(server.address());
            std::string msg = "client " + std::to_string(i);
            c.sendall(msg);
            // The server closes the socket when the handler returns: the echo, then EOF.
            return read_all(c) == msg;
        }));
    int ok = 0;
    for (auto& c : clients) ok += c.get() ? 1 : 0;
    CHECK(ok == n);
    CHECK(peak == n);
    CHECK(served == n);
    server.stop();
    CHECK(server.closed());
    CHECK_FALSE(server.started());
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: the socket is closed when the handler returns or throws") {
    int calls = 0;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address&) {
        ++calls;
        s.sendall("bye");
        if (calls == 2) throw std::runtime_error("boom in the handler");
    });
    server.start();
    StderrCapture cap;
    for (int i = 0; i < 3; ++i) {
        Socket c = connect_to(server.address());
        CHECK(read_all(c) == "bye");  // then EOF: closed by the server
    }
    server.stop();
    std::string err = cap.text();
    CHECK(calls == 3);
    // Reported like gevent: which server, which peer, the exception; and the server went on.
    CHECK(count(err, "boom in the handler") == 1);
    CHECK(contains(err, "StreamServer(" + server.address().to_string() + ")"));
    CHECK(contains(err, "the handler for 127.0.0.1:"));
    CHECK(contains(err, "std::runtime_error"));
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: a handler may move the socket out, or close it") {
    std::vector<Socket> kept;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address&) {
        if (kept.empty())
            kept.push_back(std::move(s));  // this connection outlives its handler
        else
            s.close();
    });
    server.start();
    Socket a = connect_to(server.address());
    Socket b = connect_to(server.address());
    CHECK(read_all(b).empty());  // closed by its handler
    REQUIRE(eventually([&] { return kept.size() == 1; }));
    kept[0].sendall("still open");
    CHECK(read_n(a, 10) == "still open");
    server.stop();
    kept.clear();
    CHECK(read_all(a).empty());
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: stop(timeout) refuses new connects, waits, then kills") {
    bool fast_done = false, slow_unwound = false;
    int started = 0;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address&) {
        ++started;
        char c;
        s.recv(&c, 1);
        if (c == 'f') {
            cogent::sleep(100ms);  // finishes within the stop timeout
            s.sendall("fast");
            fast_done = true;
        } else {
            SetOnDestroy<bool> guard{&slow_unwound};
            cogent::sleep(60s);  // killed by stop
        }
    });
    server.start();
    const Address addr = server.address();
    Socket fast = connect_to(addr), slow = connect_to(addr);
    fast.sendall("f");
    slow.sendall("s");
    REQUIRE(eventually([&] { return started == 2; }));

    double stop_ms = -1;
    auto stopper = cogent::spawn([&] {
        auto t0 = Clock::now();
        server.stop(1s);  // the fast handler's 100 ms fit in it even on a loaded machine
        stop_ms = ms_since(t0);
    });
    // The stop is under way: the listener is closed at once.
    CHECK(eventually([&] { return server.closed(); }));
    CHECK_FALSE(server.started());
    {
        Socket late(AF_INET, SOCK_STREAM);
        CHECK(late.connect_ex(addr) == ECONNREFUSED);
    }
    stopper.join();
    CHECK(fast_done);
    CHECK(slow_unwound);
    CHECK(stop_ms >= 950);  // it waited for the timeout (the slow handler never returns)...
    CHECK(stop_ms < 5000);  // ...and not much longer
    CHECK(read_all(fast) == "fast");
    CHECK(read_all(slow).empty());  // killed handler: socket closed
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: stop() returns as soon as the handlers are done") {
    bool entered = false;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address&) {
        entered = true;
        cogent::sleep(50ms);
        s.sendall("x");
    });
    server.start();
    Socket c = connect_to(server.address());
    REQUIRE(eventually([&] { return entered; }));
    auto t0 = Clock::now();
    server.stop(30s);
    CHECK(ms_since(t0) < 10000);  // the handler needs 50 ms, not the 30 s allowed
    CHECK(read_all(c) == "x");
    server.stop();  // again: a no-op
    auto t1 = Clock::now();
    StreamServer idle(Address("127.0.0.1", 0), echo);
    idle.stop(30s);  // never started: a no-op
    CHECK(ms_since(t1) < 10000);
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: max_connections bounds the handlers running at once") {
    int active = 0, peak = 0, served = 0;
    cogent::Event release;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            ++active;
            peak = std::max(peak, active);
            release.wait();
            s.sendall("ok");
            --active;
            ++served;
        },
        2);
    server.start();
    std::vector<cogent::Greenlet<std::string>> clients;
    for (int i = 0; i < 5; ++i)
        clients.push_back(cogent::spawn([&] {
            Socket c = connect_to(server.address());  // the kernel completes it (listen queue)
            return read_all(c);
        }));
    CHECK(eventually([&] { return active == 2; }));
    cogent::sleep(100ms);
    CHECK(active == 2);  // the other three wait in the listen queue
    CHECK(served == 0);
    release.set();
    for (auto& c : clients) CHECK(c.get() == "ok");
    CHECK(peak == 2);
    CHECK(served == 5);
    server.stop();
}

// gevent's test__server _test_server_start_stop: after stop_accepting() a connect completes
// (the listener is open) but is not handled; after start_accepting() it is.
TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: stop_accepting keeps the listener; start_accepting resumes") {
    int accepted = 0;
    StreamServer server(Address("127.0.0.1", 0), [&](Socket& s, const Address& peer) {
        ++accepted;
        echo(s, peer);
    });
    server.stop_accepting();  // not started: no-ops
    server.start_accepting();
    CHECK_FALSE(server.started());
    CHECK(server.closed());
    server.start();
    const Address addr = server.address();
    CHECK(echo_once(addr, "one"));
    Socket kept = connect_to(addr);
    kept.sendall("a");
    CHECK(read_n(kept, 1) == "a");
    CHECK(accepted == 2);

    server.stop_accepting();
    CHECK(server.started());
    CHECK_FALSE(server.closed());
    Socket waiting = connect_to(addr);  // completes into the listen queue
    waiting.sendall("queued");
    cogent::sleep(100ms);
    CHECK(accepted == 2);  // nobody accepted it
    kept.sendall("b");     // a connection accepted before is still served
    CHECK(read_n(kept, 1) == "b");
    server.stop_accepting();  // again: nothing changes
    server.start_accepting();
    CHECK(read_n(waiting, 6) == "queued");  // taken from the listen queue at last
    CHECK(accepted == 3);
    server.start_accepting();  // again: nothing changes
    CHECK(echo_once(addr, "two"));
    CHECK(accepted == 4);
    {
        StderrCapture cap;  // quick cycles: one loop at a time on the listener, no error
        for (int i = 0; i < 5; ++i) {
            server.stop_accepting();
            server.start_accepting();
        }
        CHECK(echo_once(addr, "cycled"));
        CHECK(cap.text().empty());
    }
    CHECK(accepted == 5);

    // From a hub callback it does not wait, and the owner's listener is paused at once.
    cogent::get_hub().run_callback([&] { server.stop_accepting(); });
    cogent::sleep(0);
    Socket late = connect_to(addr);
    late.sendall("late");
    cogent::sleep(100ms);
    CHECK(accepted == 5);
    server.start_accepting();
    CHECK(read_n(late, 4) == "late");

    for (Socket* c : {&kept, &waiting, &late}) {
        c->shutdown(SHUT_WR);
        CHECK(read_all(*c).empty());
    }
    server.stop_accepting();
    server.stop();  // stops a paused server as usual
    CHECK(server.closed());
    CHECK(errno_of([&] { connect_to(addr); }) == ECONNREFUSED);
    server.start();  // a new start accepts again
    CHECK(echo_once(server.address(), "three"));
    server.stop();
}

// gevent resumes accepting when a pool slot frees even after stop_accepting(); cogent stays
// paused until start_accepting().
TEST_CASE_FIXTURE(LeakCheck, "StreamServer: a freed slot does not undo stop_accepting") {
    int accepted = 0;
    cogent::Event release;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            ++accepted;
            release.wait();
            s.sendall("ok");
        },
        1);
    server.start();
    auto client = [&] {
        return cogent::spawn([&] {
            Socket c = connect_to(server.address());
            return read_all(c);
        });
    };
    auto c1 = client();
    REQUIRE(eventually([&] { return accepted == 1; }));
    server.stop_accepting();  // the accept loop waits for a slot: it leaves too
    auto c2 = client();
    release.set();
    CHECK(c1.get() == "ok");  // its slot is free now
    cogent::sleep(100ms);
    CHECK(accepted == 1);
    server.start_accepting();
    CHECK(c2.get() == "ok");
    CHECK(accepted == 2);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: stop_accepting during a hand-off keeps the connection") {
    cogent::Pool pool(1);
    int accepted = 0;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            ++accepted;
            s.sendall("served");
        },
        pool);
    server.start();
    cogent::sleep(0);  // the accept loop saw a free slot and waits in accept()
    cogent::Event release;
    auto other = pool.spawn([&] { release.wait(); });  // takes the only slot
    auto c1 = cogent::spawn([&] {
        Socket c = connect_to(server.address());
        return read_all(c);
    });
    // The loop accepts c1 and then waits for the slot to hand it over.
    REQUIRE(eventually([&] { return !pool.empty() && c1.started(); }));
    cogent::sleep(50ms);
    server.stop_accepting();  // must not drop c1's connection
    release.set();
    CHECK(c1.get() == "served");
    CHECK(accepted == 1);
    auto c2 = cogent::spawn([&] {
        Socket c = connect_to(server.address());
        return read_all(c);
    });
    cogent::sleep(100ms);
    CHECK(accepted == 1);  // paused
    server.start_accepting();
    CHECK(c2.get() == "served");
    other.join();
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: threads = 2; stop_accepting from another thread waits for all") {
    std::atomic<int> accepted{0};
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address& peer) {
            ++accepted;
            echo(s, peer);
        },
        ServerOptions{.threads = 2});
    server.start();
    const Address addr = server.address();
    // From another thread; this one's hub must run meanwhile (it serves worker 0).
    auto from_thread = [&](void (StreamServer::*call)()) {
        std::atomic<bool> done{false};
        std::thread t([&] {
            (server.*call)();
            done = true;
        });
        bool ok = eventually([&] { return done.load(); });
        t.join();
        return ok;
    };
    CHECK(from_thread(&StreamServer::stop_accepting));
    // Every listener is paused now: SO_REUSEPORT spreads these over both, none is accepted.
    std::vector<Socket> clients;
    for (int i = 0; i < 8; ++i) {
        clients.push_back(connect_to(addr));
        clients.back().sendall("x");
    }
    cogent::sleep(100ms);
    CHECK(accepted == 0);
    CHECK(from_thread(&StreamServer::start_accepting));
    for (auto& c : clients) {
        CHECK(read_n(c, 1) == "x");
        c.shutdown(SHUT_WR);
        CHECK(read_all(c).empty());
    }
    CHECK(accepted == 8);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: handlers in a caller's Pool; stop() kills only them") {
    cogent::Pool pool(3);
    cogent::Event release;
    bool other_unwound = false;
    // A greenlet of the pool that is not the server's: it takes one of the three slots.
    auto other = pool.spawn([&] {
        SetOnDestroy<bool> guard{&other_unwound};
        release.wait();
    });
    int active = 0, peak = 0;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            ++active;
            peak = std::max(peak, active);
            s.sendall("hi");
            cogent::sleep(60s);  // until stop() kills it
        },
        pool);
    server.start();
    std::vector<Socket> clients;
    for (int i = 0; i < 4; ++i) clients.push_back(connect_to(server.address()));
    CHECK(eventually([&] { return active == 2; }));
    cogent::sleep(50ms);
    CHECK(active == 2);  // two free slots: the others wait
    CHECK(pool.full());
    server.stop(50ms);
    CHECK(peak == 2);
    CHECK_FALSE(other.dead());  // not the server's: left alone
    CHECK_FALSE(other_unwound);
    CHECK(pool.size() == 1);
    CHECK(read_all(clients[0]) == "hi");
    release.set();
    other.join();
    CHECK(pool.empty());
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: port 0 -> address() gives the bound port; restart keeps it") {
    StreamServer server(Address("127.0.0.1", 0), echo);
    CHECK(server.address().port() == 0);
    server.start();
    const Address bound = server.address();
    CHECK(bound.port() != 0);
    CHECK(bound.host() == "127.0.0.1");
    CHECK(echo_once(bound, "hello"));
    server.stop();
    CHECK(errno_of([&] { connect_to(bound); }) == ECONNREFUSED);
    server.start();  // gevent: binds again, to the address it had
    CHECK(server.address() == bound);
    CHECK(echo_once(bound, "again"));
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: IPv6 ::1") {
    if (!ipv6_loopback_available()) {
        COGENT_SKIP("no IPv6 loopback here");
    }
    Address peer_seen;
    StreamServer server(Address("::1", 0), [&](Socket& s, const Address& peer) {
        peer_seen = peer;
        echo(s, peer);
    });
    server.start();
    CHECK(server.address().family() == AF_INET6);
    CHECK(server.address().host() == "::1");
    CHECK(echo_once(server.address(), "over IPv6"));
    CHECK(peer_seen.family() == AF_INET6);
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: Unix socket path (removed again by stop)") {
    const std::string path = temp_path("stream");
    ::unlink(path.c_str());
    StreamServer server(Address::unix_path(path), echo);
    server.start();
    struct stat sb {};
    CHECK(::stat(path.c_str(), &sb) == 0);
    CHECK(server.address() == Address::unix_path(path));
    CHECK(echo_once(server.address(), "over a Unix socket"));
    server.stop();
    CHECK(::stat(path.c_str(), &sb) != 0);
    ::unlink(path.c_str());
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: an already listening socket") {
    Socket l(AF_INET, SOCK_STREAM);
    l.bind(Address("127.0.0.1", 0));
    l.listen(16);
    const Address a = l.local_address();
    StreamServer server(std::move(l), echo);
    CHECK_FALSE(server.closed());  // a given listener is open from the start
    CHECK(server.address() == a);
    server.start();
    CHECK(echo_once(a, "adopted"));
    server.stop();
    CHECK(server.closed());
    // Never started: stop() still closes the listener (gevent).
    Socket l2(AF_INET, SOCK_STREAM);
    l2.bind(Address("127.0.0.1", 0));
    l2.listen(16);
    StreamServer unused(std::move(l2), echo);
    CHECK_FALSE(unused.closed());
    unused.stop();
    CHECK(unused.closed());
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: reuse_port lets two servers share one port") {
    int a_calls = 0, b_calls = 0;
    StreamServer a(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address& p) {
            ++a_calls;
            echo(s, p);
        },
        ServerOptions{.reuse_port = true});
    a.start();
    const Address addr = a.address();
    StreamServer b(
        addr,
        [&](Socket& s, const Address& p) {
            ++b_calls;
            echo(s, p);
        },
        ServerOptions{.reuse_port = true});
    b.start();
    CHECK(b.address() == addr);
    // Without SO_REUSEPORT the port is taken: a clear error, nothing left open.
    StreamServer c(addr, echo);
    std::string what;
    try {
        c.start();
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EADDRINUSE);
        what = e.what();
    }
    CHECK(contains(what, addr.to_string()));
    CHECK(c.closed());
    CHECK_FALSE(c.started());
    for (int i = 0; i < 40; ++i) CHECK(echo_once(addr, "shared " + std::to_string(i)));
    CHECK(a_calls + b_calls == 40);
    CHECK(a_calls > 0);  // the kernel spreads connections over both (2^-39 to fail)
    CHECK(b_calls > 0);
    a.stop();
    b.stop();
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: threads = 3 serves on three hubs; stop() from another thread") {
    std::mutex mu;
    std::set<std::thread::id> handler_threads;
    std::atomic<int> served{0};
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            {
                std::lock_guard<std::mutex> lk(mu);
                handler_threads.insert(std::this_thread::get_id());
            }
            char c;
            if (s.recv(&c, 1) == 1) s.sendall("ok");
            ++served;
        },
        ServerOptions{.threads = 3});
    server.start();
    const Address addr = server.address();
    CHECK(addr.port() != 0);
    std::atomic<int> answered{0};
    std::atomic<bool> stop_returned{false};
    std::string client_error;
    // Clients on their own thread (and hub), which also stops the server when done.
    std::thread clients([&] {
        try {
            for (int i = 0; i < 60; ++i) {
                Socket c = connect_to(addr);
                c.sendall("x");
                if (read_all(c) == "ok") ++answered;
            }
            server.stop();
            stop_returned = true;
        } catch (const std::exception& e) {
            client_error = e.what();
            server.stop();
        }
    });
    auto t0 = Clock::now();
    server.serve_forever();  // this thread is one of the three; returns once stopped
    clients.join();
    CHECK(client_error == "");
    CHECK(stop_returned);
    CHECK(ms_since(t0) < 10000);
    CHECK(answered == 60);
    CHECK(served == 60);
    CHECK(handler_threads.size() == 3);  // each listener got some (3 * (2/3)^60 to fail)
    CHECK(handler_threads.count(std::this_thread::get_id()) == 1);
    CHECK(server.closed());
    CHECK_FALSE(server.started());
    CHECK(errno_of([&] { connect_to(addr); }) == ECONNREFUSED);
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: threads = 2 with max_connections = 1 per thread") {
    std::atomic<int> active{0}, peak{0}, served{0};
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            int now = ++active;
            for (int p = peak; now > p && !peak.compare_exchange_weak(p, now);) {
            }
            cogent::sleep(20ms);
            s.sendall("ok");
            --active;
            ++served;
        },
        ServerOptions{.max_connections = 1, .threads = 2});
    server.start();
    std::vector<cogent::Greenlet<std::string>> clients;
    for (int i = 0; i < 8; ++i)
        clients.push_back(cogent::spawn([&] {
            Socket c = connect_to(server.address());
            return read_all(c);
        }));
    for (auto& c : clients) CHECK(c.get() == "ok");
    CHECK(served == 8);
    CHECK(peak >= 1);
    CHECK(peak <= 2);  // one per thread at most
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: a Unix path on threads = 2 (one listener, shared)") {
    const std::string path = temp_path("threads");
    ::unlink(path.c_str());
    StreamServer server(Address::unix_path(path), echo, ServerOptions{.threads = 2});
    server.start();
    std::vector<cogent::Greenlet<bool>> clients;
    for (int i = 0; i < 20; ++i)
        clients.push_back(cogent::spawn(
            [&, i] { return echo_once(server.address(), "unix " + std::to_string(i)); }));
    for (auto& c : clients) CHECK(c.get());
    std::thread t([&] { server.stop(); });
    server.serve_forever();  // the owner's hub does the stop the other thread asked for
    t.join();
    CHECK(server.closed());
    struct stat sb {};
    CHECK(::stat(path.c_str(), &sb) != 0);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "StreamServer: threads = 2, a handler on any thread may stop the server") {
    std::atomic<int> stops{0};
    StreamServer* self = nullptr;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket& s, const Address&) {
            char c;
            if (s.recv(&c, 1) == 1 && c == 'q') {
                self->stop(2s);  // cannot wait for itself: begins the stop and returns
                ++stops;
                s.sendall("stopping");
            }
        },
        ServerOptions{.threads = 2});
    self = &server;
    server.start();
    const Address addr = server.address();
    auto client = cogent::spawn([&] {
        Socket c = connect_to(addr);
        c.sendall("q");
        return read_all(c);
    });
    server.serve_forever();
    CHECK(client.get() == "stopping");
    CHECK(stops == 1);
    CHECK(server.closed());
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: serve_forever killed -> the server is stopped") {
    bool unwound = false, entered = false;
    StreamServer server(
        Address("127.0.0.1", 0),
        [&](Socket&, const Address&) {
            SetOnDestroy<bool> guard{&unwound};
            entered = true;
            cogent::sleep(60s);
        },
        ServerOptions{.stop_timeout = 50ms});
    auto runner = cogent::spawn([&] { server.serve_forever(); });
    REQUIRE(eventually([&] { return server.started(); }));
    Socket c = connect_to(server.address());
    REQUIRE(eventually([&] { return entered; }));
    runner.kill();
    CHECK(runner.dead());
    CHECK(runner.killed());
    CHECK(server.closed());
    CHECK(unwound);
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: the destructor stops a running server") {
    bool unwound = false, entered = false;
    Address addr;
    {
        StreamServer server(Address("127.0.0.1", 0), [&](Socket&, const Address&) {
            SetOnDestroy<bool> guard{&unwound};
            entered = true;
            cogent::sleep(60s);
        });
        server.start();
        addr = server.address();
        Socket c = connect_to(addr);
        REQUIRE(eventually([&] { return entered; }));
    }
    CHECK(unwound);
    CHECK(errno_of([&] { connect_to(addr); }) == ECONNREFUSED);
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: accept errors (EMFILE) back off instead of spinning") {
    StreamServer server(Address("127.0.0.1", 0), [](Socket& s, const Address&) {
        char c;
        if (s.recv(&c, 1) == 1) s.sendall("ok");
    });
    server.start();
    std::string err;
    std::vector<Socket> clients;
    for (int i = 0; i < 3; ++i) {
        clients.emplace_back(AF_INET, SOCK_STREAM);
        clients.back().set_timeout(5s);
    }
    {
        StderrCapture cap;
        // Lower the fd limit to just above what is open, then take every fd left: the server's
        // accept4 now fails with EMFILE while connections wait in its listen queue.
        rlimit old{};
        REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
        rlimit low = old;
        low.rlim_cur = rlim_t(highest_fd() + 8);
        REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
        std::vector<int> fillers;
        for (int fd; (fd = ::fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0;) fillers.push_back(fd);
        const int fill_errno = errno;
        for (auto& c : clients) c.connect(server.address());  // needs no new fd
        const double cpu0 = cpu_seconds();
        cogent::sleep(400ms);
        const double cpu = cpu_seconds() - cpu0;
        for (int fd : fillers) ::close(fd);
        setrlimit(RLIMIT_NOFILE, &old);
        CHECK(fill_errno == EMFILE);
        CHECK(cpu < 0.2);  // a spinning accept loop would burn the whole 0.4 s
        // The server accepts again after its current delay (at most 1 s).
        auto t0 = Clock::now();
        for (auto& c : clients) {
            c.sendall("x");
            CHECK(read_all(c) == "ok");
        }
        CHECK(ms_since(t0) < 2500);
        err = cap.text();
    }
    server.stop();
    // Reported once for the whole streak, and once when it recovered.
    CHECK(count(err, "accept failed") == 1);
    CHECK(contains(err, "Too many open files"));
    CHECK_FALSE(contains(err, "cogent: cogent:"));  // one prefix per line (issue 12)
    CHECK_FALSE(contains(err, "failed with cogent:"));
    CHECK(contains(err, "retrying with a growing delay"));
    CHECK(count(err, "accept works again") == 1);
}

TEST_CASE_FIXTURE(LeakCheck, "StreamServer: bad input gets clear exceptions") {
    auto message_of = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const std::invalid_argument& e) {
            return e.what();
        }
        return "(no std::invalid_argument)";
    };
    const Address any("127.0.0.1", 0);
    CHECK_THROWS_AS(Address("not-an-ip", 80), std::invalid_argument);
    CHECK(contains(message_of([&] { StreamServer s(Address(), echo); }), "IPv4, IPv6 or Unix"));
    CHECK(contains(message_of([&] { StreamServer s(any, StreamServer::Handler{}); }),
                   "handler is empty"));
    CHECK(contains(message_of([&] { StreamServer s(any, echo, ServerOptions{.threads = 0}); }),
                   "threads must be at least 1"));
    CHECK(contains(message_of([&] { StreamServer s(any, echo, ServerOptions{.backlog = 0}); }),
                   "backlog"));
    cogent::Pool pool(2);
    CHECK(
        contains(message_of([&] { StreamServer s(any, echo, pool, ServerOptions{.threads = 2}); }),
                 "one thread"));
    CHECK(contains(
        message_of([&] { StreamServer s(any, echo, pool, ServerOptions{.max_connections = 3}); }),
        "max_connections"));
    {
        Socket bound(AF_INET, SOCK_STREAM);
        bound.bind(any);
        CHECK(
            contains(message_of([&] { StreamServer s(std::move(bound), echo); }), "not listening"));
    }
    CHECK(contains(message_of([&] { StreamServer s(Socket(AF_INET, SOCK_DGRAM), echo); }),
                   "SOCK_STREAM"));
    CHECK(contains(message_of([&] { StreamServer s(Socket(), echo); }), "not open"));
    CHECK_THROWS_AS(StreamServer(any, echo).stop(-1ms), std::invalid_argument);

    StreamServer twice(any, echo);
    twice.start();
    CHECK_THROWS_AS(twice.start(), std::logic_error);
    twice.stop();

    auto dh = [](std::string_view, const Address&, DatagramServer&) {};
    CHECK(contains(message_of([&] { DatagramServer d(any, dh, ServerOptions{.threads = 2}); }),
                   "one thread"));
    CHECK(contains(message_of([&] { DatagramServer d(any, DatagramServer::Handler{}); }),
                   "handler is empty"));
    CHECK(contains(message_of([&] { DatagramServer d(Socket(AF_INET, SOCK_DGRAM), dh); }),
                   "not bound"));
    DatagramServer idle(any, dh);
    CHECK_THROWS_AS(idle.sendto("x", any), std::logic_error);
}

TEST_CASE_FIXTURE(LeakCheck, "DatagramServer: echo, replies with sendto, failures reported") {
    int handled = 0;
    DatagramServer server(Address("127.0.0.1", 0),
                          [&](std::string_view data, const Address& from, DatagramServer& srv) {
                              ++handled;
                              if (data == "throw") throw std::runtime_error("bad datagram");
                              std::string reply(data);
                              for (auto& ch : reply) ch = char(std::toupper(ch));
                              srv.sendto(reply, from);
                          });
    server.start();
    CHECK(server.address().port() != 0);
    CHECK_FALSE(server.closed());
    Socket c(AF_INET, SOCK_DGRAM);
    c.set_timeout(5s);
    StderrCapture cap;
    c.sendto("throw", server.address());
    for (int i = 0; i < 5; ++i) {
        std::string msg = "ping " + std::to_string(i);
        c.sendto(msg, server.address());
        char buf[64];
        auto [n, from] = c.recvfrom(buf, sizeof buf);
        CHECK(std::string(buf, n) == "PING " + std::to_string(i));
        CHECK(from == server.address());
    }
    std::string err = cap.text();
    CHECK(handled == 6);
    CHECK(contains(err, "bad datagram"));
    CHECK(contains(err, "DatagramServer("));
    server.stop();
    CHECK(server.closed());
    CHECK_FALSE(server.started());
}

TEST_CASE_FIXTURE(LeakCheck, "DatagramServer: stop_accepting leaves datagrams queued") {
    std::vector<std::string> got;
    DatagramServer server(
        Address("127.0.0.1", 0),
        [&](std::string_view data, const Address&, DatagramServer&) { got.emplace_back(data); });
    server.start();
    Socket c(AF_INET, SOCK_DGRAM);
    c.sendto("one", server.address());
    REQUIRE(eventually([&] { return got.size() == 1; }));
    server.stop_accepting();
    c.sendto("two", server.address());
    cogent::sleep(100ms);
    CHECK(got.size() == 1);  // waits in the socket's receive buffer
    server.start_accepting();
    REQUIRE(eventually([&] { return got.size() == 2; }));
    CHECK(got[1] == "two");
    server.stop();
}

TEST_CASE_FIXTURE(LeakCheck, "DatagramServer: Unix datagram socket; stop from another thread") {
    const std::string path = temp_path("dgram");
    ::unlink(path.c_str());
    DatagramServer server(Address::unix_path(path),
                          [](std::string_view data, const Address& from, DatagramServer& srv) {
                              srv.sendto(data, from);
                          });
    server.start();
    const std::string cpath = temp_path("dgram-client");
    ::unlink(cpath.c_str());
    Socket c(AF_UNIX, SOCK_DGRAM);
    c.bind(Address::unix_path(cpath));  // a named client, so the server can reply
    c.set_timeout(5s);
    c.sendto("unix hello", server.address());
    char buf[64];
    auto [n, from] = c.recvfrom(buf, sizeof buf);
    CHECK(std::string(buf, n) == "unix hello");
    std::thread t([&] { server.stop(); });
    server.serve_forever();  // returns once the other thread's stop is done
    t.join();
    CHECK(server.closed());
    c.close();
    ::unlink(cpath.c_str());
    struct stat sb {};
    CHECK(::stat(path.c_str(), &sb) != 0);
}

// ---- examples/http_hello, the benchmarked program ----

namespace {

constexpr std::string_view kHello =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

// Runs build/examples/http_hello --port 0 and reads the port it prints.
struct HttpHello {
    pid_t pid = -1;
    int out = -1;
    std::uint16_t port = 0;
    explicit HttpHello(const char* threads = "1") {
        const char* path = std::getenv("COGENT_HTTP_HELLO");
        REQUIRE_MESSAGE(path != nullptr, "COGENT_HTTP_HELLO is not set (run through meson test)");
        int p[2];
        REQUIRE(pipe2(p, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        const char* argv[] = {path, "--port", "0", "--threads", threads, nullptr};
        int rc = posix_spawn(&pid, path, &fa, nullptr, const_cast<char**>(argv), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(p[1]);
        out = p[0];
        REQUIRE(rc == 0);
        std::string line;
        char ch;
        while (line.find('\n') == std::string::npos) {
            REQUIRE(cogent::wait_read(out, 10s));
            if (::read(out, &ch, 1) != 1) break;
            line += ch;
        }
        auto colon = line.rfind(':');
        REQUIRE_MESSAGE(colon != std::string::npos, "http_hello printed: " << line);
        port = std::uint16_t(std::stoi(line.substr(colon + 1)));
    }
    // SIGTERM; the exit status.
    int stop() {
        kill(pid, SIGTERM);
        int status = -1;
        for (int i = 0; i < 500; ++i) {
            if (waitpid(pid, &status, WNOHANG) == pid) break;
            cogent::sleep(10ms);
        }
        pid = -1;
        return status;
    }
    ~HttpHello() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (out >= 0) cogent::close(out);
    }
};

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "http_hello: plain, keep-alive, split and pipelined requests") {
    HttpHello server;
    const Address addr("127.0.0.1", server.port);
    const std::string req = "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n";
    {
        Socket c = connect_to(addr);
        // Keep-alive: several requests in turn on one connection.
        for (int i = 0; i < 3; ++i) {
            c.sendall(req);
            CHECK(read_n(c, kHello.size()) == kHello);
        }
        // A request split in three, one split inside the blank line that ends it.
        c.sendall(req.substr(0, 10));
        cogent::sleep(20ms);
        c.sendall(req.substr(10, req.size() - 11));
        cogent::sleep(20ms);
        CHECK_FALSE(cogent::wait_read(c.fileno(), 50ms));  // incomplete: no answer yet
        c.sendall(req.substr(req.size() - 1));
        CHECK(read_n(c, kHello.size()) == kHello);
        // 16 pipelined requests in one send, then one and a half more.
        std::string many, expect;
        for (int i = 0; i < 16; ++i) {
            many += req;
            expect += kHello;
        }
        c.sendall(many + req + req.substr(0, 7));
        CHECK(read_n(c, 17 * kHello.size()) == expect + std::string(kHello));
        c.sendall(req.substr(7));
        CHECK(read_n(c, kHello.size()) == kHello);
        c.shutdown(SHUT_WR);
        CHECK(read_all(c).empty());  // the server closes its end when the client does
    }
    // Many connections at once.
    std::vector<cogent::Greenlet<bool>> gs;
    for (int i = 0; i < 20; ++i)
        gs.push_back(cogent::spawn([&] {
            Socket c = connect_to(addr);
            c.sendall(req + req);
            return read_n(c, 2 * kHello.size()) == std::string(kHello) + std::string(kHello);
        }));
    for (auto& g : gs) CHECK(g.get());
    int status = server.stop();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE_FIXTURE(LeakCheck, "http_hello: --threads 2 serves and exits cleanly on SIGTERM") {
    HttpHello server("2");
    const Address addr("127.0.0.1", server.port);
    for (int i = 0; i < 10; ++i) {
        Socket c = connect_to(addr);
        c.sendall("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        CHECK(read_n(c, 2 * kHello.size()) == std::string(kHello) + std::string(kHello));
    }
    int status = server.stop();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_SUITE_END();
