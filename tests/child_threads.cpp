// Not a test file: a helper process for tests/test_patch_run.cpp, which runs it with and without
// cogent-run and compares its stdout and exit status.
//
//   child_threads              several OS threads doing socket, pipe, poll, select, sleep and
//                              numeric getaddrinfo work with plain libc calls (no cogent at all)
//   child_threads greenlets    the same, and meanwhile the main thread runs greenlets that make
//                              plain libc calls (recv from sockets that OS threads write to,
//                              usleep): patched, they wait together; unpatched, one after
//                              another. Stdout is the same either way; stderr gets
//                              "greenlet_ms N", the time the greenlet phase took.
//   child_threads describe     prints cogent::patch::describe() ("not loaded" without the shim)
//
// Exit status 0, or 1 (with a message on stderr) when a call's result is not what libc promises.
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cogent/patch.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_failed{false};

void fail(const std::string& what) {
    std::fprintf(stderr, "child_threads: %s (errno %d: %s)\n", what.c_str(), errno,
                 std::strerror(errno));
    g_failed = true;
}

// Write all of buf, or fail.
bool write_all(int fd, const void* buf, std::size_t n) {
    auto p = static_cast<const char*>(buf);
    while (n) {
        ssize_t k = ::write(fd, p, n);
        if (k <= 0) return false;
        p += k;
        n -= std::size_t(k);
    }
    return true;
}

// One worker's share: everything is checked here; the summary is what stdout shows.
std::string worker(int id) {
    std::string out = "worker " + std::to_string(id) + ":";
    // Echo over a stream socketpair, the peer an OS thread of its own.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return fail("socketpair"), out;
    std::thread echo([fd = sv[1]] {
        char b[256];
        for (ssize_t k; (k = ::recv(fd, b, sizeof b, 0)) > 0;)
            if (::send(fd, b, std::size_t(k), MSG_NOSIGNAL) != k) break;
        ::close(fd);
    });
    int echoed = 0;
    for (int i = 0; i < 200; ++i) {
        char msg[48], back[48];  // room for any int id (-Wformat-truncation)
        std::snprintf(msg, sizeof msg, "w%d-m%03d-padding-padding-pad", id, i);
        if (::send(sv[0], msg, sizeof msg, 0) != ssize_t(sizeof msg)) {
            fail("send");
            break;
        }
        std::size_t got = 0;
        while (got < sizeof back) {
            ssize_t k = ::recv(sv[0], back + got, sizeof back - got, 0);
            if (k <= 0) break;
            got += std::size_t(k);
        }
        if (got == sizeof back && std::memcmp(msg, back, sizeof msg) == 0) ++echoed;
    }
    ::shutdown(sv[0], SHUT_WR);
    char eof;
    if (::recv(sv[0], &eof, 1, 0) != 0) fail("recv after shutdown is not EOF");
    echo.join();
    ::close(sv[0]);
    out += " echoed " + std::to_string(echoed);

    // 1 MiB through a pipe (more than its buffer: the writer blocks), a checksum of it.
    int p[2];
    if (::pipe(p) != 0) return fail("pipe"), out;
    std::thread writer([fd = p[1], id] {
        std::vector<unsigned char> chunk(4096);
        for (int i = 0; i < 256; ++i) {
            for (std::size_t j = 0; j < chunk.size(); ++j) chunk[j] = (unsigned char)(i + j + id);
            if (!write_all(fd, chunk.data(), chunk.size())) break;
        }
        ::close(fd);
    });
    unsigned long sum = 0, total = 0;
    unsigned char b[3000];
    for (ssize_t k; (k = ::read(p[0], b, sizeof b)) > 0;) {
        total += std::size_t(k);
        for (ssize_t j = 0; j < k; ++j) sum = sum * 31 + b[j];
    }
    writer.join();
    out += " pipe " + std::to_string(total) + " bytes sum " + std::to_string(sum % 1000003);

    // Waiting with nothing to wait for: poll and select time out, sleeps sleep.
    pollfd pfd{p[0], POLLIN, 0};
    ::close(p[0]);
    int q[2];
    if (::pipe(q) != 0) return fail("pipe"), out;
    pfd.fd = q[0];
    int pr = ::poll(&pfd, 1, 20);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(q[0], &rs);
    timeval tv{0, 20000};
    int sr = ::select(q[0] + 1, &rs, nullptr, nullptr, &tv);
    ::close(q[0]);
    ::close(q[1]);
    auto t0 = std::chrono::steady_clock::now();
    ::usleep(10000);
    timespec ts{0, 10'000'000};
    int nr = ::nanosleep(&ts, nullptr);
    double slept_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (slept_ms < 19.5) fail("usleep + nanosleep returned early: " + std::to_string(slept_ms));
    out += " poll " + std::to_string(pr) + " select " + std::to_string(sr) + " nanosleep " +
           std::to_string(nr);

    // A numeric lookup (no network): the same answer on every thread.
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int gr = ::getaddrinfo("127.0.0.1", "8080", &hints, &res);
    if (gr == 0 && res) {
        char host[64], serv[16];
        int nr2 = ::getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, serv, sizeof serv,
                                NI_NUMERICHOST | NI_NUMERICSERV);
        out += std::string(" addr ") + (nr2 == 0 ? host + std::string(":") + serv : "?");
        ::freeaddrinfo(res);
    } else {
        fail("getaddrinfo: " + std::string(gai_strerror(gr)));
    }
    return out;
}

// Greenlets on the main thread making plain libc calls. Each receives from its own socketpair;
// one OS thread writes to them in reverse order, 30 ms apart, so that unpatched (one greenlet
// blocks the whole thread) they finish in spawn order, patched in reverse order. Then each
// sleeps 500 ms with usleep (long enough to tell the two apart on a loaded machine). Stdout gets
// results in spawn order, so it is the same either way.
constexpr int kGreenlets = 3;

std::vector<std::string> greenlet_phase() {
    int sv[kGreenlets][2];
    for (auto& s : sv)
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0) fail("socketpair");
    std::thread feeder([&sv] {
        for (int i = kGreenlets - 1; i >= 0; --i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(30));
            std::string msg = "item " + std::to_string(i);
            if (::send(sv[i][1], msg.data(), msg.size(), 0) != ssize_t(msg.size())) fail("send");
        }
    });
    std::vector<std::string> results(kGreenlets);
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < kGreenlets; ++i)
        gs.push_back(cogent::spawn([i, &sv, &results] {
            char b[64];
            ssize_t k = ::recv(sv[i][0], b, sizeof b, 0);
            if (::usleep(500'000) != 0) fail("usleep");
            results[std::size_t(i)] = "greenlet " + std::to_string(i) + ": " +
                                      (k > 0 ? std::string(b, std::size_t(k)) : "recv failed");
        }));
    cogent::joinall(gs);
    feeder.join();
    for (auto& s : sv) {
        ::close(s[0]);
        ::close(s[1]);
    }
    return results;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (argc > 2 || (argc == 2 && mode != "greenlets" && mode != "describe")) {
        std::fprintf(stderr, "usage: child_threads [greenlets|describe]\n");
        return 2;
    }
    if (mode == "describe") {
        std::printf("%s\n", cogent::patch::describe().c_str());
        return 0;
    }
    constexpr int kWorkers = 4;
    std::vector<std::string> lines(kWorkers);
    std::vector<std::thread> ts;
    for (int i = 0; i < kWorkers; ++i)
        ts.emplace_back([i, &lines] { lines[std::size_t(i)] = worker(i); });
    std::vector<std::string> glines;
    if (mode == "greenlets") {
        auto t0 = std::chrono::steady_clock::now();
        glines = greenlet_phase();
        std::fprintf(
            stderr, "greenlet_ms %.0f\n",
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    for (auto& t : ts) t.join();
    for (auto& l : lines) std::printf("%s\n", l.c_str());
    for (auto& l : glines) std::printf("%s\n", l.c_str());
    std::printf("%s\n", g_failed ? "FAILED" : "ok");
    return g_failed ? 1 : 0;
}
