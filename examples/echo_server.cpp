// An echo server on cogent::StreamServer: one greenlet per connection, straight-line blocking
// code, thousands of connections on one thread (or N threads with --threads).
//
//   echo_server                          self-test: serve on an OS-chosen port, run 5 clients
//                                        at once against it, check every echo, exit 0
//   echo_server [--self-test] --threads N  the same, on N threads
//   echo_server --port P [--threads N]   serve until SIGINT/SIGTERM (port 0: the OS picks;
//                                        the chosen port is printed). Try: nc 127.0.0.1 P
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cogent/cogent.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::atomic<bool> verbose{false};

// The whole server: read what arrives, send it back, until the client closes. The socket is
// closed by the server when this returns. With --threads it runs on several threads at once;
// it touches nothing shared but an atomic flag.
void echo(cogent::Socket& sock, const cogent::Address& peer) {
    if (verbose) std::printf("  connection from %s\n", peer.to_string().c_str());
    char buf[4096];
    std::size_t total = 0;
    while (std::size_t n = sock.recv(buf, sizeof buf)) {
        sock.sendall(buf, n);
        total += n;
    }
    if (verbose) std::printf("  %s closed after %zu bytes\n", peer.to_string().c_str(), total);
}

int self_test(unsigned threads) {
    cogent::StreamServer server(cogent::Address("127.0.0.1", 0), echo,
                                cogent::ServerOptions{.threads = threads});
    server.start();
    const auto addr = server.address();
    std::printf("echo server on %s (%u thread%s, port chosen by the OS)\n",
                addr.to_string().c_str(), threads, threads == 1 ? "" : "s");

    // Five clients at once, each on its own connection, each sending three lines and reading
    // every echo back with a line reader.
    const int clients = 5, lines = 3;
    int good = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<cogent::Greenlet<void>> gs;
    for (int c = 0; c < clients; ++c)
        gs.push_back(cogent::spawn([&, c] {
            cogent::Socket s = cogent::create_connection("127.0.0.1", addr.port(), 5s);
            cogent::SocketReader reader(s);
            for (int i = 0; i < lines; ++i) {
                std::string line =
                    "client " + std::to_string(c) + " line " + std::to_string(i) + "\n";
                s.sendall(line);
                std::string back = reader.readline();
                if (back == line)
                    ++good;
                else
                    std::printf("  client %d: sent %s  got %s\n", c, line.c_str(), back.c_str());
            }
            s.shutdown(SHUT_WR);
            if (reader.read_some().empty())
                std::printf("  client %d: echoes ok, server closed\n", c);
        }));
    cogent::joinall(gs);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    server.stop();
    std::printf("%d of %d lines echoed by %d concurrent clients in %.1f ms; server stopped: %s\n",
                good, clients * lines, clients, ms, server.closed() ? "yes" : "no");
    return good == clients * lines ? 0 : 1;
}

int usage() {
    std::fprintf(stderr,
                 "usage: echo_server [--self-test] [--threads N]\n"
                 "       echo_server --port PORT [--threads N]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    long port = -1, threads = 1;
    bool test = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        char* end = nullptr;
        if (a == "--self-test") {
            test = true;
        } else if (a == "--port" && i + 1 < argc) {
            port = std::strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) return usage();
        } else if (a == "--threads" && i + 1 < argc) {
            threads = std::strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > 1024) return usage();
        } else {
            return usage();
        }
    }
    if (test || port < 0) return self_test(static_cast<unsigned>(threads));

    // Long-lived mode. SIGINT/SIGTERM are taken by one thread, which stops the server:
    // stop() may be called from any thread.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    // A shell starts background jobs with SIGINT ignored, and an ignored signal never reaches
    // sigwait: take both back.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    verbose = true;
    try {
        cogent::StreamServer server(
            cogent::Address("127.0.0.1", static_cast<std::uint16_t>(port)), echo,
            cogent::ServerOptions{.threads = static_cast<unsigned>(threads)});
        server.start();
        std::printf("echo server listening on %s (%ld thread%s); Ctrl-C stops it\n",
                    server.address().to_string().c_str(), threads, threads == 1 ? "" : "s");
        std::fflush(stdout);
        std::thread stopper([&] {
            int sig = 0;
            sigwait(&sigs, &sig);
            std::printf("signal %d: stopping\n", sig);
            server.stop(1s);
        });
        try {
            server.serve_forever();
        } catch (...) {
            pthread_kill(stopper.native_handle(), SIGTERM);
            stopper.join();
            throw;
        }
        stopper.join();
        std::printf("stopped\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
