// A keep-alive HTTP/1.1 "Hello, World!" server: the program benchmarked against a hand-written
// libev C server (bench/). Every request - anything ended by a blank line, "\r\n\r\n" - gets the
// same 200 response; the responses to pipelined requests are written together.
//
//   http_hello --port P [--threads N] [--host H]
//       Serve until SIGINT or SIGTERM, then exit 0. Port 0 lets the OS pick; the first line on
//       stdout is always "http_hello: listening on HOST:PORT (N threads)".
//   http_hello            (no arguments)
//       Self-check: serve on an OS-chosen port, send a plain, a split and 16 pipelined
//       requests from a client greenlet, check the answers, print them, exit 0 (1 on a
//       mismatch). Any other usage prints help and exits 2.
//
// The per-connection loop is the whole server: one fixed input buffer, recv into it, find each
// complete request with memmem, append the constant response per request to one output
// buffer, one sendall for all of them, keep a partial request for the next recv.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cogent/cogent.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";

constexpr std::size_t kInSize = 8192;    // largest request head accepted
constexpr std::size_t kOutSize = 16384;  // responses batched per sendall

// Serve one connection until the peer closes (or sends a request head larger than kInSize).
void serve_connection(cogent::Socket& sock) {
    char in[kInSize];
    char out[kOutSize];
    std::size_t have = 0;  // bytes in `in`
    std::size_t scan = 0;  // where to look for the next "\r\n\r\n" (before: no terminator)
    for (;;) {
        const std::size_t n = sock.recv(in + have, kInSize - have);
        if (n == 0) return;  // closed by the peer
        have += n;
        std::size_t start = 0;  // first byte of the current (incomplete) request
        std::size_t used = 0;   // bytes in `out`
        for (;;) {
            const void* end = memmem(in + scan, have - scan, "\r\n\r\n", 4);
            if (!end) break;
            start = static_cast<std::size_t>(static_cast<const char*>(end) - in) + 4;
            scan = start;
            if (used + kResponse.size() > kOutSize) {
                sock.sendall(out, used);
                used = 0;
            }
            std::memcpy(out + used, kResponse.data(), kResponse.size());
            used += kResponse.size();
        }
        if (used) sock.sendall(out, used);
        if (start) {  // keep the incomplete request at the front of the buffer
            have -= start;
            if (have) std::memmove(in, in + start, have);
        }
        // A terminator may straddle this read and the next: rescan the last 3 bytes.
        scan = have > 3 ? have - 3 : 0;
        if (have == kInSize) return;  // a request head larger than the buffer: give up on it
    }
}

// The StreamServer handler. A peer that resets the connection (or stops reading) ends it
// quietly: that is how HTTP clients often leave. Anything else is reported by the server.
void serve_http(cogent::Socket& sock, const cogent::Address&) {
    try {
        serve_connection(sock);
    } catch (const std::system_error& e) {
        const int code = e.code().value();
        if (code != ECONNRESET && code != EPIPE) throw;
    }
}

int usage() {
    std::fprintf(stderr,
                 "usage: http_hello --port PORT [--threads N] [--host HOST]\n"
                 "       http_hello            (self-check on an OS-chosen port)\n");
    return 2;
}

// Client side of the self-check: send `request`, read until `expect` responses arrived.
std::string exchange(cogent::Socket& c, std::string_view request, int expect) {
    c.sendall(request);
    std::string got;
    const std::string_view body = "Hello, World!";
    int seen = 0;
    while (seen < expect) {
        char buf[4096];
        std::size_t n = c.recv(buf, sizeof buf);
        if (n == 0) break;
        got.append(buf, n);
        seen = 0;
        for (std::size_t p = 0; (p = got.find(body, p)) != std::string::npos; p += body.size())
            ++seen;
    }
    return got;
}

int self_check() {
    using namespace std::chrono_literals;
    cogent::StreamServer server(cogent::Address("127.0.0.1", 0), serve_http);
    server.start();
    std::printf("http_hello self-check: serving on %s\n", server.address().to_string().c_str());
    bool ok = true;
    auto client = cogent::spawn([&] {
        cogent::Socket c = cogent::create_connection("127.0.0.1", server.address().port(), 5s);
        const std::string one = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        std::string r = exchange(c, one, 1);
        std::printf("  1 request          -> %zu bytes: %s\n", r.size(),
                    r == kResponse ? "one exact response" : "WRONG");
        ok = ok && r == kResponse;

        // A request split across two sends, the split inside the terminating blank line.
        c.sendall(one.substr(0, one.size() - 2));
        cogent::sleep(20ms);
        r = exchange(c, one.substr(one.size() - 2), 1);
        std::printf("  1 split request    -> %zu bytes: %s\n", r.size(),
                    r == kResponse ? "one exact response" : "WRONG");
        ok = ok && r == kResponse;

        std::string pipelined, expected;
        for (int i = 0; i < 16; ++i) {
            pipelined += one;
            expected += kResponse;
        }
        r = exchange(c, pipelined, 16);
        std::printf("  16 pipelined       -> %zu bytes: %s\n", r.size(),
                    r == expected ? "16 exact responses" : "WRONG");
        ok = ok && r == expected;
    });
    client.join();
    if (client.exception()) {
        ok = false;
        std::printf("  the client failed (see above)\n");
    }
    server.stop();
    std::printf("http_hello self-check: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 1) return self_check();
    long port = -1, threads = 1;
    std::string host = "127.0.0.1";
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (i + 1 >= argc) return usage();
        char* end = nullptr;
        if (a == "--port") {
            port = std::strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) return usage();
        } else if (a == "--threads") {
            threads = std::strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > 1024) return usage();
        } else if (a == "--host") {
            host = argv[++i];
        } else {
            return usage();
        }
    }
    if (port < 0) return usage();

    // One fd per connection: lift the soft limit (often 1024) to the hard one, so that ten
    // thousand connections fit.
    if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    // SIGINT/SIGTERM go to one thread that stops the server (stop() may come from any thread);
    // block them here, before any thread exists, so that every thread inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    // A shell starts background jobs with SIGINT ignored, and an ignored signal never reaches
    // sigwait: take both back.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    try {
        cogent::StreamServer server(
            cogent::Address(host, static_cast<std::uint16_t>(port)), serve_http,
            cogent::ServerOptions{.threads = static_cast<unsigned>(threads)});
        server.start();
        std::printf("http_hello: listening on %s (%ld thread%s)\n",
                    server.address().to_string().c_str(), threads, threads == 1 ? "" : "s");
        std::fflush(stdout);
        std::thread stopper([&] {
            int sig = 0;
            sigwait(&sigs, &sig);
            server.stop(std::chrono::milliseconds(100));
        });
        try {
            server.serve_forever();
        } catch (...) {
            pthread_kill(stopper.native_handle(), SIGTERM);  // let the stopper thread end
            stopper.join();
            throw;
        }
        stopper.join();
        std::printf("http_hello: stopped\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_hello: %s\n", e.what());
        return 1;
    }
    return 0;
}
