// fork() support, Process, and the child waiting that Process and Popen share (child.hpp).
#include "cogent/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "cogent/greenlet.hpp"
#include "cogent/hub.hpp"
#include "cogent/io.hpp"
#include "hub/hub.hpp"
#include "io/fdwait.hpp"
#include "services/child.hpp"

namespace cogent::detail {

namespace {

std::atomic<bool> g_pidfd_enabled{true};
std::atomic<bool> g_pidfd_missing{false};  // the kernel said ENOSYS once: stop asking

int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    if (!g_pidfd_enabled.load(std::memory_order_relaxed) ||
        g_pidfd_missing.load(std::memory_order_relaxed))
        return -1;
    // The kernel sets close-on-exec on a pidfd. A zombie still has one: no race with the exit.
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS) g_pidfd_missing.store(true, std::memory_order_relaxed);
    return fd < 0 ? -1 : int(fd);
#else
    (void)pid;
    return -1;
#endif
}

// The orphan reaper's registry. Heap-allocated and never freed: Popen destructors may run during
// static destruction.
struct Orphans {
    std::mutex mu;
    std::vector<pid_t> pids;
};
std::atomic<Orphans*> g_orphans{nullptr};

void orphans_after_fork() {
    if (Orphans* o = g_orphans.load(std::memory_order_acquire)) {
        // The parent's children are not ours, and another thread may have held the lock.
        new (&o->mu) std::mutex;
        o->pids.clear();
    }
}

Orphans& orphans() {
    static Orphans* const o = [] {
        auto* p = new Orphans;
        g_orphans.store(p, std::memory_order_release);
        add_fork_child_hook(&orphans_after_fork);
        return p;
    }();
    return *o;
}

// The child is dead and reaped: its exit code, or -N for signal N (Python's convention).
int decode(const siginfo_t& info) noexcept {
    if (info.si_code == CLD_EXITED) return info.si_status;
    return -info.si_status;  // CLD_KILLED, CLD_DUMPED
}

}  // namespace

void reap_later(pid_t pid) noexcept {
    if (pid <= 0) return;
    try {
        Orphans& o = orphans();
        std::lock_guard lk(o.mu);
        o.pids.push_back(pid);
    } catch (...) {
        // No memory to remember it: it stays a zombie until this process exits.
    }
}

void reap_orphans() noexcept {
    Orphans* o = g_orphans.load(std::memory_order_acquire);
    if (!o) return;
    std::lock_guard lk(o->mu);
    std::erase_if(o->pids, [](pid_t pid) {
        int status;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        return r == pid || (r < 0 && errno == ECHILD);
    });
}

std::size_t orphan_count() noexcept {
    Orphans* o = g_orphans.load(std::memory_order_acquire);
    if (!o) return 0;
    std::lock_guard lk(o->mu);
    return o->pids.size();
}

void set_pidfd_enabled(bool on) noexcept { g_pidfd_enabled.store(on); }

ChildWatch::ChildWatch(pid_t pid) noexcept : pid_(pid), pidfd_(open_pidfd(pid)) {}

ChildWatch::ChildWatch(ChildWatch&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::exchange(o.pidfd_, -1)),
      waiters_(std::exchange(o.waiters_, 0)),
      code_(std::exchange(o.code_, std::nullopt)) {}

ChildWatch& ChildWatch::operator=(ChildWatch&& o) noexcept {
    if (this != &o) {
        reset();
        pid_ = std::exchange(o.pid_, -1);
        pidfd_ = std::exchange(o.pidfd_, -1);
        waiters_ = std::exchange(o.waiters_, 0);
        code_ = std::exchange(o.code_, std::nullopt);
    }
    return *this;
}

ChildWatch::~ChildWatch() { reset(); }

void ChildWatch::reset() noexcept {
    if (pid_ > 0 && !poll()) reap_later(pid_);
    reap_orphans();  // cheap (a lock when there are none), and reaps earlier ones sooner
    if (pidfd_ >= 0) cogent::close(pidfd_);
    pid_ = -1;
    pidfd_ = -1;
    code_.reset();
}

std::optional<int> ChildWatch::poll() noexcept {
    if (code_ || pid_ <= 0) return code_;
    siginfo_t info{};
    int saved = errno;
    for (;;) {
        // P_PID, not P_PIDFD: we own the unreaped child, so its pid is still unique, and P_PID
        // also works on kernels older than 5.4.
        if (::waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG) == 0) break;
        if (errno == EINTR) continue;
        if (errno == ECHILD) {
            // Someone else reaped it (a SIGCHLD handler, SIGCHLD set to SIG_IGN): the status is
            // lost. CPython's subprocess reports 0 in this case; so do we.
            code_ = 0;
        }
        errno = saved;
        return code_;
    }
    errno = saved;
    if (info.si_pid == 0) return std::nullopt;  // still running
    code_ = decode(info);
    return code_;
}

bool ChildWatch::wait(TimeoutArg timeout, const char* what) {
    if (poll()) return true;
    if (pid_ <= 0) throw std::logic_error(std::string("cogent: ") + what + " on no process");
    if (timeout.zero()) return false;
    check_may_block(what);
    Deadline deadline(timeout);
    if (pidfd_ < 0) {
        // No pidfd: poll with growing sleeps (CPython's subprocess does the same in its
        // timeout loop). Costs at most 50 ms of latency and a few wakeups a second.
        Duration delay = std::chrono::milliseconds(1);
        for (;;) {
            TimeoutArg left = deadline.left();
            if (left.zero()) return false;
            Duration d = left.forever() ? delay : std::min(delay, left.value());
            cogent::sleep(d);
            if (poll()) return true;
            delay = std::min<Duration>(delay * 2, std::chrono::milliseconds(50));
        }
    }
    // One fd, one waiter per direction: a second greenlet waiting for the same child parks on
    // a duplicate of the pidfd (epoll tracks each fd number separately).
    int fd = pidfd_;
    if (waiters_ > 0) {
        fd = ::fcntl(pidfd_, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "cogent: dup(pidfd)");
    }
    struct Guard {
        ChildWatch* self;
        int fd;
        ~Guard() {
            --self->waiters_;
            if (fd != self->pidfd_) cogent::close(fd);
        }
    } guard{this, fd};
    ++waiters_;
    for (;;) {
        // The pidfd turns readable when the child exits (and stays so after it is reaped).
        const bool ready = fd_wait(fd, READ, deadline.left(), false, what) != 0;
        if (poll()) return true;
        if (!ready) return false;
        // Readable yet not waitable: cannot happen for an exited child we own; do not spin.
        cogent::sleep(std::chrono::milliseconds(1));
    }
}

bool ChildWatch::send_signal(int sig) {
    if (poll() || pid_ <= 0) return false;  // reaped: the pid may be another process's now
    int saved = errno;
    long r = -1;
#ifdef SYS_pidfd_send_signal
    if (pidfd_ >= 0)
        r = syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
    else
#endif
        r = ::kill(pid_, sig);
    if (r < 0) {
        int e = errno;
        errno = saved;
        if (e == ESRCH) return true;  // exited, a zombie not reaped yet
        throw std::system_error(e, std::generic_category(),
                                "cogent: cannot send signal " + std::to_string(sig) +
                                    " to process " + std::to_string(pid_));
    }
    return true;
}

namespace {

// The child side of a Process: run fn in a greenlet, then _exit with its status.
[[noreturn]] void run_process_child(std::function<int()>& fn) noexcept {
    int code = 1;
    try {
        auto g = cogent::spawn([&fn]() -> int {
            try {
                return fn() & 0xff;
            } catch (...) {
                char where[64];
                snprintf(where, sizeof where, "Process (pid %d)", int(getpid()));
                report_exception(where, std::current_exception());
                return 1;
            }
        });
        g.join();
        if (g.successful() && !g.killed()) code = g.value();
    } catch (...) {
        report_exception("Process child", std::current_exception());
    }
    std::fflush(nullptr);
    ::_exit(code);
}

}  // namespace

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

pid_t fork() {
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "cogent: fork() failed");
    return pid;
}

Process::Process(std::function<int()> fn, int) {
    if (!fn) throw std::invalid_argument("cogent: Process needs a callable");
    // The child waits for its greenlet: that needs a greenlet to wait from, not the hub.
    check_may_block("Process()");
    reap_orphans();
    auto* child = new ChildWatch;
    // Otherwise text the parent buffered before the fork would be printed by both processes.
    std::fflush(nullptr);
    pid_t pid;
    try {
        pid = cogent::fork();
    } catch (...) {
        delete child;
        throw;
    }
    if (pid == 0) run_process_child(fn);
    *child = ChildWatch(pid);
    child_ = child;
}

void Process::empty_function() {
    throw std::invalid_argument("cogent: Process needs a callable (got an empty function)");
}

Process::Process(Process&& other) noexcept : child_(std::exchange(other.child_, nullptr)) {}

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        delete child_;
        child_ = std::exchange(other.child_, nullptr);
    }
    return *this;
}

Process::~Process() { delete child_; }

namespace {
ChildWatch& watch(ChildWatch* c) {
    if (!c) throw std::logic_error("cogent: use of a moved-from Process");
    return *c;
}
}  // namespace

pid_t Process::pid() const noexcept { return child_ ? child_->pid() : -1; }

bool Process::join(TimeoutArg timeout) { return watch(child_).wait(timeout, "Process::join()"); }

std::optional<int> Process::exitcode() { return watch(child_).poll(); }

bool Process::is_alive() { return !watch(child_).poll().has_value(); }

void Process::terminate() { watch(child_).send_signal(SIGTERM); }

void Process::kill() { watch(child_).send_signal(SIGKILL); }

}  // namespace cogent
