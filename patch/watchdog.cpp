// The green-thread watchdog: reports a greenlet that holds its hub in a real system call the
// shim does not make cooperative (wait4, a blocking read of a regular file or a device, a
// futex of a process-shared mutex, msgrcv...). Meanwhile every other greenlet of that OS thread
// waits: with green threads (the thread family) that is every "thread" of the program.
//
// One real thread, started with the first green thread (and again in a fork child that makes
// one), samples every hub's OS thread from outside, through /proc/self/task/TID: the system call
// it is in (`syscall`) and its context-switch counts (`status`). A thread found in the same call
// with the same counts for longer than COGENT_MAX_BLOCKING_TIME (seconds; unset or 0: off, no
// thread: a program under --threads keeps exactly its one OS thread)
// never ran meanwhile: if a greenlet other than the hub holds it and others are waiting, one
// line on stderr names the greenlet, the call and the time, once per incident. The greenlet is
// described while its thread is seen blocked before and after (so the fields read are stable).
// A greenlet that computes without yielding is not this watchdog's to see (the monitor's).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "shim.hpp"

using namespace cogent::patch;

namespace {

// The system calls a blocked thread is most often found in (x86_64 numbers).
const char* syscall_name(long nr) noexcept {
#if defined(__x86_64__)
    switch (nr) {
        case 0:
            return "read";
        case 1:
            return "write";
        case 7:
            return "poll";
        case 17:
            return "pread64";
        case 18:
            return "pwrite64";
        case 19:
            return "readv";
        case 20:
            return "writev";
        case 23:
            return "select";
        case 34:
            return "pause";
        case 35:
            return "nanosleep";
        case 42:
            return "connect";
        case 43:
            return "accept";
        case 44:
            return "sendto";
        case 45:
            return "recvfrom";
        case 46:
            return "sendmsg";
        case 47:
            return "recvmsg";
        case 61:
            return "wait4";
        case 65:
            return "semop";
        case 69:
            return "msgsnd";
        case 70:
            return "msgrcv";
        case 72:
            return "fcntl";
        case 73:
            return "flock";
        case 74:
            return "fsync";
        case 128:
            return "rt_sigtimedwait";
        case 130:
            return "rt_sigsuspend";
        case 202:
            return "futex";
        case 208:
            return "io_getevents";
        case 220:
            return "semtimedop";
        case 230:
            return "clock_nanosleep";
        case 232:
            return "epoll_wait";
        case 242:
            return "mq_timedsend";
        case 243:
            return "mq_timedreceive";
        case 247:
            return "waitid";
        case 257:
            return "openat";
        case 270:
            return "pselect6";
        case 271:
            return "ppoll";
        case 281:
            return "epoll_pwait";
        case 288:
            return "accept4";
        case 299:
            return "recvmmsg";
        case 307:
            return "sendmmsg";
        case 426:
            return "io_uring_enter";
        case 441:
            return "epoll_pwait2";
        default:
            break;
    }
#endif
    (void)nr;
    return nullptr;
}

// The whole of a small /proc file into buf (NUL-terminated); false if it cannot be read.
bool read_proc(const char* path, char* buf, std::size_t len) noexcept {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::size_t n = 0;
    while (n + 1 < len) {
        const ssize_t r = libc().read(fd, buf + n, len - 1 - n);
        if (r <= 0) break;
        n += static_cast<std::size_t>(r);
    }
    libc().close(fd);
    buf[n] = '\0';
    return n > 0;
}

// What is seen of one OS thread at one moment.
struct Seen {
    long syscall = -1;  // the call it is blocked in; -1: running or not in a call
    unsigned long voluntary = 0, involuntary = 0;
    bool operator==(const Seen& o) const noexcept {
        return syscall == o.syscall && voluntary == o.voluntary && involuntary == o.involuntary;
    }
};

bool look(pid_t tid, Seen* out) noexcept {
    char path[64], buf[2048];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/syscall", static_cast<int>(tid));
    if (!read_proc(path, buf, sizeof buf)) return false;
    char* end = nullptr;
    const long nr = std::strtol(buf, &end, 10);
    out->syscall = end == buf ? -1 : nr;  // "running" parses as nothing
    std::snprintf(path, sizeof path, "/proc/self/task/%d/status", static_cast<int>(tid));
    if (!read_proc(path, buf, sizeof buf)) return false;
    const char* v = std::strstr(buf, "\nvoluntary_ctxt_switches:");
    const char* n = std::strstr(buf, "\nnonvoluntary_ctxt_switches:");
    if (!v || !n) return false;
    out->voluntary = std::strtoul(std::strchr(v + 1, ':') + 1, nullptr, 10);
    out->involuntary = std::strtoul(std::strchr(n + 1, ':') + 1, nullptr, 10);
    return true;
}

double now_s() noexcept {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

constexpr std::size_t kMaxHubs = 256;
struct Watch {
    pid_t tid = 0;
    Seen seen;
    double since = 0;
    bool reported = false;
};

void* watchdog_main(void* arg) {
    const double limit = *static_cast<double*>(arg);
    delete static_cast<double*>(arg);
    // Sample a few times within the limit (at most every 250 ms, at least every 10 ms).
    double period = limit / 4;
    if (period > 0.25) period = 0.25;
    if (period < 0.01) period = 0.01;
    const timespec nap{
        static_cast<time_t>(period),
        static_cast<long>((period - static_cast<double>(static_cast<time_t>(period))) * 1e9)};
    static Watch watches[kMaxHubs];
    std::size_t nwatch = 0;
    for (;;) {
        libc().nanosleep(&nap, nullptr);
        pid_t tids[kMaxHubs];
        std::size_t n = cogent::detail::shim_hub_threads(tids, kMaxHubs);
        if (n > kMaxHubs) n = kMaxHubs;
        Watch next[kMaxHubs];
        const double t = now_s();
        for (std::size_t i = 0; i < n; ++i) {
            Watch w;
            w.tid = tids[i];
            for (std::size_t j = 0; j < nwatch; ++j)
                if (watches[j].tid == tids[i]) w = watches[j];
            Seen s;
            if (!look(w.tid, &s)) continue;
            if (!(s == w.seen) || s.syscall < 0) {
                w.seen = s;
                w.since = t;
                w.reported = false;
            } else if (!w.reported && t - w.since >= limit) {
                char who[160] = "";
                std::size_t others = 0;
                Seen again;
                const bool held = cogent::detail::shim_hub_running(w.tid, who, sizeof who, &others);
                if (look(w.tid, &again) && again == s) {
                    w.reported = true;  // once per incident (an idle hub: not one)
                    if (held && others > 0) {
                        const char* name = syscall_name(s.syscall);
                        char call[48];
                        if (name)
                            std::snprintf(call, sizeof call, "%s()", name);
                        else
                            std::snprintf(call, sizeof call, "number %ld", s.syscall);
                        std::fprintf(stderr,
                                     "cogent: greenlet '%s' has held its hub (OS thread %d) for "
                                     "%.1f s in the system call %s, which the monkey patch does "
                                     "not make cooperative: the %zu other greenlet%s of that "
                                     "thread cannot run until it returns "
                                     "(COGENT_MAX_BLOCKING_TIME=%g; 0 turns this report off)\n",
                                     who, static_cast<int>(w.tid), t - w.since, call, others,
                                     others == 1 ? "" : "s", limit);
                    }
                }
            }
            next[i] = w;
        }
        std::memcpy(static_cast<void*>(watches), next, sizeof(Watch) * n);
        nwatch = n;
    }
    return nullptr;
}

std::atomic<bool> g_started{false};

void forget_in_child() { g_started.store(false, std::memory_order_relaxed); }

}  // namespace

namespace cogent::patch {

// Called when a green thread is created: starts the watchdog once per process.
void start_watchdog() noexcept {
    if (g_started.load(std::memory_order_relaxed) ||
        g_started.exchange(true, std::memory_order_acq_rel))
        return;
    double limit = 0;
    try {
        limit = detail::shim_max_blocking_time();
    } catch (...) {
        return;  // a malformed value already stopped the shim's start-up (shim.cpp)
    }
    if (limit <= 0) return;
    static bool atfork_done = false;
    if (!atfork_done) {
        atfork_done = true;
        pthread_atfork(nullptr, nullptr, forget_in_child);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    // Every signal blocked (the thread inherits the mask): a process-directed signal must go
    // to a thread of the program, never to this one.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    auto* arg = new (std::nothrow) double(limit);
    if (arg && libc().create(&t, &attr, watchdog_main, arg) != 0)
        delete arg;
    else if (arg)
        libc().setname_np(t, "cogent-watchdog");  // as top and gdb show it
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
}

}  // namespace cogent::patch
