// cogent-patch-bench: the figures of the monkey patch (issue 6).
//
//   build/bench/cogent-patch-bench [FIGURE...]
//
// Prints one line per figure on stdout, `NAME VALUE UNIT` (as cogent-bench does, which runs this
// program for them); the measurements behind each ratio go to stderr. With no argument both
// figures run; an unknown name exits with status 2.
//
// - patch_passthrough_ratio: bench/patch_syscalls (a plain C program, no cogent: one-byte write
//   and read on a pipe, in a loop) run with libcogent_patch.so in LD_PRELOAD, against the same
//   without it. Each run reports its best batch (ns per write+read); runs alternate (plain,
//   preloaded; then preloaded, plain...) for kRounds rounds; the figure is the median preloaded
//   time over the median plain time. Target <= 1.03 x: the pass-through path is one
//   thread-local check per call.
// - patch_pingpong_ratio: a one-byte ping-pong between two greenlets over an AF_UNIX stream
//   socketpair, each side a plain ::send then ::recv, in a child of this program with the shim
//   preloaded (every recv parks its greenlet through the shim); against the same ping-pong
//   through cogent::Socket (send/recv) in a child without the shim, the cost users pay today.
//   Children alternate as above; each reports its best batch (ns per round trip); the figure is
//   the ratio of the medians. Target <= 1.10 x.
//
// Separate processes for both sides of each ratio: the shim cannot be unloaded, and a process
// that has it changes cogent::Socket's calls too (they pass through its hooks).
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#ifndef COGENT_PATCH_LIB
#error "COGENT_PATCH_LIB (the path of libcogent_patch.so) is set by bench/meson.build"
#endif

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRounds = 9;             // child runs per side, alternating
constexpr long kSyscallIters = 50000;  // write+read pairs per batch
constexpr long kSyscallBatches = 8;
constexpr long kPingIters = 20000;  // round trips per batch
constexpr long kPingBatches = 6;

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "cogent-patch-bench: %s\n", msg.c_str());
    std::exit(1);
}

double ns_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

std::string self_dir() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) die("cannot read /proc/self/exe");
    std::string p(buf, std::size_t(n));
    return p.substr(0, p.rfind('/'));
}

// Runs argv (with the shim preloaded or not: LD_PRELOAD and COGENT_PATCH are removed from the
// environment otherwise) and returns the number it prints.
double run_number(const std::vector<std::string>& argv, bool preload, const char* patch = nullptr) {
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e)
        if (std::strncmp(*e, "LD_PRELOAD=", 11) != 0 && std::strncmp(*e, "COGENT_PATCH=", 13) != 0)
            env_store.emplace_back(*e);
    if (preload) env_store.push_back(std::string("LD_PRELOAD=") + COGENT_PATCH_LIB);
    if (patch) env_store.push_back(std::string("COGENT_PATCH=") + patch);
    std::vector<char*> envp, args;
    for (auto& s : env_store) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);

    int fds[2];
    if (pipe(fds) != 0) die("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) die("cannot run " + argv[0] + ": " + std::strerror(rc));
    std::string out;
    char buf[256];
    for (ssize_t k; (k = read(fds[0], buf, sizeof buf)) != 0;) {
        if (k < 0) {
            if (errno == EINTR) continue;
            break;
        }
        out.append(buf, std::size_t(k));
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die(argv[0] + (preload ? " (preloaded)" : "") + " failed with status " +
            std::to_string(status));
    char* end = nullptr;
    double v = std::strtod(out.c_str(), &end);
    if (end == out.c_str() || !(v > 0)) die(argv[0] + " printed '" + out + "'");
    return v;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// kRounds runs of each side, alternating which goes first; {median a, median b}.
template <class A, class B>
std::pair<double, double> alternate(A a, B b) {
    std::vector<double> va, vb;
    for (int r = 0; r < kRounds; ++r) {
        if (r % 2 == 0) {
            va.push_back(a());
            vb.push_back(b());
        } else {
            vb.push_back(b());
            va.push_back(a());
        }
    }
    return {median(va), median(vb)};
}

void report_spread(const char* what, double plain, double patched) {
    std::fprintf(stderr, "cogent-patch-bench: %s: %.1f ns without, %.1f ns with the shim\n", what,
                 plain, patched);
}

// ---- patch_passthrough_ratio ----

std::string fig_passthrough() {
    const std::vector<std::string> argv{self_dir() + "/patch_syscalls",
                                        std::to_string(kSyscallIters),
                                        std::to_string(kSyscallBatches)};
    auto [plain, pre] =
        alternate([&] { return run_number(argv, false); }, [&] { return run_number(argv, true); });
    report_spread("passthrough (one-byte pipe write + read)", plain, pre);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f x", pre / plain);
    return buf;
}

// ---- patch_pingpong_ratio ----

// The child side: best ns per round trip over kPingBatches batches (after a warm-up batch).
template <class Round>
double best_batch(Round&& round) {
    double best = 1e300;
    for (long b = 0; b <= kPingBatches; ++b) {
        auto t0 = Clock::now();
        for (long i = 0; i < kPingIters; ++i) round(i);
        double per = ns_since(t0) / double(kPingIters);
        if (b > 0) best = std::min(best, per);
    }
    return best;
}

// Plain ::send/::recv on a blocking socketpair, made cooperative by the preloaded shim.
double child_pingpong_plain() {
    if (!cogent::patch::is_patched(cogent::patch::socket))
        die("pingpong-plain: the shim is not loaded (run through cogent-patch-bench)");
    cogent::get_hub();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair failed");
    const long total = kPingIters * (kPingBatches + 1);
    auto echo = cogent::spawn([&] {
        char c;
        for (long i = 0; i < total; ++i)
            if (::recv(sv[1], &c, 1, 0) != 1 || ::send(sv[1], &c, 1, 0) != 1)
                die("echo: recv/send failed");
    });
    double best = best_batch([&](long i) {
        char c = char(i), back = 0;
        if (::send(sv[0], &c, 1, 0) != 1 || ::recv(sv[0], &back, 1, 0) != 1 || back != c)
            die("ping: send/recv failed");
    });
    echo.join();
    ::close(sv[0]);
    ::close(sv[1]);
    return best;
}

// The same through cogent::Socket, without the shim.
double child_pingpong_socket() {
    if (cogent::patch::loaded()) die("pingpong-socket: the shim must not be loaded");
    auto [a, b] = cogent::Socket::pair();
    const long total = kPingIters * (kPingBatches + 1);
    auto echo = cogent::spawn([&, &b = b] {
        char c;
        for (long i = 0; i < total; ++i) {
            if (b.recv(&c, 1) != 1) die("echo: recv failed");
            b.sendall(&c, 1);
        }
    });
    double best = best_batch([&, &a = a](long i) {
        char c = char(i), back = 0;
        a.sendall(&c, 1);
        if (a.recv(&back, 1) != 1 || back != c) die("ping: recv failed");
    });
    echo.join();
    return best;
}

std::string fig_pingpong() {
    const std::string self = self_dir() + "/cogent-patch-bench";
    auto [socket_ns, plain_ns] = alternate(
        [&] {
            return run_number({self, "--child", "pingpong-socket"}, false);
        },
        [&] {
            return run_number({self, "--child", "pingpong-plain"}, true);
        });
    std::fprintf(stderr,
                 "cogent-patch-bench: pingpong (one-byte round trip between two greenlets): "
                 "%.1f ns through cogent::Socket, %.1f ns through patched ::send/::recv\n",
                 socket_ns, plain_ns);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f x", plain_ns / socket_ns);
    return buf;
}

// ---- the sync family: pthread mutexes and conditions ----

constexpr long kSyncIters = 20000;  // acquisitions (or one-way passes) per batch
constexpr long kSyncBatches = 6;

// Best ns per op over kSyncBatches batches of `iters` ops, after a warm-up batch; batch(n) runs n.
template <class Batch>
double best_of(long iters, Batch&& batch) {
    double best = 1e300;
    for (long b = 0; b <= kSyncBatches; ++b) {
        auto t0 = Clock::now();
        batch(iters);
        double per = ns_since(t0) / double(iters);
        if (b > 0) best = std::min(best, per);
    }
    return best;
}

// An uncontended pthread_mutex_lock + unlock on a plain thread (no hub): libc's, or the shim's,
// in a process that has another thread (as programs with mutexes do; with one thread, libc and
// the shim both leave out the atomic instructions).
double child_mutex_uncontended() {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    std::thread([] {}).join();
    static volatile long counter = 0;
    return best_of(kSyncIters * 50, [](long n) {
        for (long i = 0; i < n; ++i) {
            pthread_mutex_lock(&m);
            counter = counter + 1;
            pthread_mutex_unlock(&m);
        }
    });
}

// Two contenders, each holding the mutex across a yield (sched_yield): every acquisition is a
// hand-over from the other. Greenlets of one hub (the shim preloaded), or two real threads
// (libc), per acquisition.
double child_mutex_handoff(bool green) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    auto contend = [](long n) {
        for (long i = 0; i < n; ++i) {
            pthread_mutex_lock(&m);
            sched_yield();
            pthread_mutex_unlock(&m);
        }
    };
    return best_of(kSyncIters, [&](long n) {
        if (green) {
            if (!cogent::patch::is_patched(cogent::patch::sync)) die("mutex-green: no shim");
            auto a = cogent::spawn(contend, n / 2);
            auto b = cogent::spawn(contend, n / 2);
            a.join();
            b.join();
        } else {
            std::thread a(contend, n / 2), b(contend, n / 2);
            a.join();
            b.join();
        }
    });
}

// A ping-pong on one mutex and condition: each side waits for its turn and passes it on. Per
// one-way pass (a wait woken by a signal).
double child_cond_pingpong(bool green) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    static long turn = 0;
    auto side = [](long n, int me) {
        for (long i = 0; i < n; ++i) {
            pthread_mutex_lock(&m);
            while (turn % 2 != me) pthread_cond_wait(&c, &m);
            ++turn;
            pthread_cond_signal(&c);
            pthread_mutex_unlock(&m);
        }
    };
    return best_of(kSyncIters, [&](long n) {
        turn = 0;
        if (green) {
            if (!cogent::patch::is_patched(cogent::patch::sync)) die("cond-green: no shim");
            auto a = cogent::spawn(side, n / 2, 0);
            auto b = cogent::spawn(side, n / 2, 1);
            a.join();
            b.join();
        } else {
            std::thread a(side, n / 2, 0), b(side, n / 2, 1);
            a.join();
            b.join();
        }
    });
}

std::string ns_figure(double v);

// ---- green threads (the thread family): pthread_create as greenlets ----

void* nothing(void* p) { return p; }

// pthread_create + pthread_join of a thread that returns at once, per pair.
double child_create_join() {
    return best_of(2000, [](long n) {
        for (long i = 0; i < n; ++i) {
            pthread_t t;
            if (pthread_create(&t, nullptr, nothing, nullptr) != 0) die("pthread_create failed");
            pthread_join(t, nullptr);
        }
    });
}

long rss_bytes() {
    long pages = 0, rss = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f || std::fscanf(f, "%ld %ld", &pages, &rss) != 2) die("cannot read /proc/self/statm");
    std::fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

// Resident bytes per thread blocked in pthread_cond_wait: n threads (default attributes), RSS
// before and after they are all waiting.
double child_blocked_rss(long n) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    static long waiting = 0;
    static bool release = false;
    std::vector<pthread_t> ts(static_cast<std::size_t>(n));
    const long before = rss_bytes();
    for (auto& t : ts)
        if (pthread_create(
                &t, nullptr,
                [](void*) -> void* {
                    pthread_mutex_lock(&m);
                    ++waiting;
                    pthread_cond_broadcast(&c);
                    while (!release) pthread_cond_wait(&c, &m);
                    pthread_mutex_unlock(&m);
                    return nullptr;
                },
                nullptr) != 0)
            die("pthread_create failed");
    pthread_mutex_lock(&m);
    while (waiting < n) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    const long after = rss_bytes();
    pthread_mutex_lock(&m);
    release = true;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    for (auto& t : ts) pthread_join(t, nullptr);
    return double(after - before) / double(n);
}

std::string fig_create_join() {
    const std::string self = self_dir() + "/cogent-patch-bench";
    auto [green, threads] = alternate(
        [&] {
            return run_number({self, "--child", "create-join"}, true, "all,thread");
        },
        [&] {
            return run_number({self, "--child", "create-join"}, false);
        });
    std::printf("thread_create_join_ns %.1f ns\n", threads);
    std::fprintf(stderr,
                 "cogent-patch-bench: pthread_create + pthread_join: %.1f ns green (--threads), "
                 "%.1f ns real: %.0fx\n",
                 green, threads, threads / green);
    return ns_figure(green);
}

std::string fig_blocked_rss() {
    const std::string self = self_dir() + "/cogent-patch-bench";
    const double green = run_number({self, "--child", "rss-green"}, true, "all,thread");
    const double threads = run_number({self, "--child", "rss-threads"}, false);
    std::printf("thread_rss_bytes %.0f bytes\n", threads);
    std::fprintf(stderr,
                 "cogent-patch-bench: resident bytes per thread blocked in pthread_cond_wait: "
                 "%.0f green (10,000 of them), %.0f real (1,000; plus the kernel's stack)\n",
                 green, threads);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f bytes", green);
    return buf;
}

std::string ns_figure(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f ns", v);
    return buf;
}

std::string fig_mutex_passthrough() {
    const std::string self = self_dir() + "/cogent-patch-bench";
    auto [plain, pre] = alternate(
        [&] {
            return run_number({self, "--child", "mutex-uncontended"}, false);
        },
        [&] {
            return run_number({self, "--child", "mutex-uncontended"}, true);
        });
    report_spread("uncontended pthread_mutex_lock + unlock on a plain thread", plain, pre);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f x", pre / plain);
    return buf;
}

// The green figure, with the real-thread one beside it (its own line, then stderr).
std::string green_vs_threads(const char* child_green, const char* child_threads,
                             const char* thread_name, const char* what) {
    const std::string self = self_dir() + "/cogent-patch-bench";
    auto [green, threads] = alternate(
        [&] {
            return run_number({self, "--child", child_green}, true);
        },
        [&] {
            return run_number({self, "--child", child_threads}, false);
        });
    std::printf("%s %.1f ns\n", thread_name, threads);
    std::fprintf(stderr,
                 "cogent-patch-bench: %s: %.1f ns between greenlets, %.1f ns between "
                 "real threads (libc)\n",
                 what, green, threads);
    return ns_figure(green);
}

std::string fig_mutex_handoff() {
    return green_vs_threads("mutex-green", "mutex-threads", "thread_mutex_handoff_ns",
                            "mutex hand-over (two contenders, held across sched_yield)");
}

std::string fig_cond_pingpong() {
    return green_vs_threads("cond-green", "cond-threads", "thread_cond_pingpong_ns",
                            "condition ping-pong, per one-way pass");
}

struct Figure {
    const char* name;
    std::string (*run)();
};
const Figure kFigures[] = {
    {"patch_passthrough_ratio", fig_passthrough},
    {"patch_pingpong_ratio", fig_pingpong},
    {"patch_mutex_passthrough_ratio", fig_mutex_passthrough},
    {"green_mutex_handoff_ns", fig_mutex_handoff},
    {"green_cond_pingpong_ns", fig_cond_pingpong},
    {"green_thread_create_join_ns", fig_create_join},
    {"green_thread_rss_bytes", fig_blocked_rss},
};

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--child") {
        double v = 0;
        if (args[1] == "pingpong-plain")
            v = child_pingpong_plain();
        else if (args[1] == "pingpong-socket")
            v = child_pingpong_socket();
        else if (args[1] == "mutex-uncontended")
            v = child_mutex_uncontended();
        else if (args[1] == "mutex-green" || args[1] == "mutex-threads")
            v = child_mutex_handoff(args[1] == "mutex-green");
        else if (args[1] == "cond-green" || args[1] == "cond-threads")
            v = child_cond_pingpong(args[1] == "cond-green");
        else if (args[1] == "create-join")
            v = child_create_join();
        else if (args[1] == "rss-green")
            v = child_blocked_rss(10000);
        else if (args[1] == "rss-threads")
            v = child_blocked_rss(1000);
        else
            die("unknown child '" + args[1] + "'");
        std::printf("%.2f\n", v);
        return 0;
    }
    std::vector<const Figure*> wanted;
    for (const auto& a : args) {
        const Figure* found = nullptr;
        for (const auto& f : kFigures)
            if (a == f.name) found = &f;
        if (!found) {
            std::fprintf(stderr,
                         "cogent-patch-bench: unknown figure '%s'\nvalid figures: "
                         "patch_passthrough_ratio patch_pingpong_ratio "
                         "patch_mutex_passthrough_ratio green_mutex_handoff_ns "
                         "green_cond_pingpong_ns green_thread_create_join_ns "
                         "green_thread_rss_bytes\n",
                         a.c_str());
            return 2;
        }
        if (std::find(wanted.begin(), wanted.end(), found) == wanted.end()) wanted.push_back(found);
    }
    if (args.empty())
        for (const auto& f : kFigures) wanted.push_back(&f);
    for (const Figure* f : wanted) {
        std::string v = f->run();
        std::printf("%s %s\n", f->name, v.c_str());
        std::fflush(stdout);
    }
    return 0;
}
