// Subprocesses (subprocess.hpp): spawning with a vfork-style clone on a spawner thread,
// cooperative pipes, communicate() with helper greenlets, run/check_output.
#include "cogent/subprocess.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "cogent/debug.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/io.hpp"
#include "cogent/threadpool.hpp"
#include "core/raw_syscall.hpp"
#include "hub/hub.hpp"
#include "io/fdwait.hpp"
#include "services/child.hpp"

extern char** environ;

namespace cogent::detail {

// communicate()'s state. The helper greenlets hold it by shared_ptr, so neither a moved nor a
// destroyed Popen leaves them pointing at freed memory.
struct CommState {
    subprocess::PipeEnd in, out, err;
    std::string input;
    std::size_t input_off = 0;
    std::string out_data, err_data;
    Greenlet<void> writer, err_reader;
};

}  // namespace cogent::detail

namespace cogent::subprocess {

using detail::ChildWatch;
using detail::CommState;

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument("cogent: " + msg); }

[[noreturn]] void sys_fail(int err, const std::string& msg) {
    throw std::system_error(err, std::generic_category(), "cogent: " + msg);
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Python's repr of the argv list: ['sh', '-c', 'exit 3'].
std::string format_cmd(const std::vector<std::string>& argv) {
    std::string s = "[";
    for (std::size_t i = 0; i < argv.size(); ++i) {
        if (i) s += ", ";
        s += '\'';
        for (char c : argv[i]) {
            if (c == '\'' || c == '\\') s += '\\';
            s += c;
        }
        s += '\'';
    }
    return s + "]";
}

std::string format_seconds(Duration d) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", std::chrono::duration<double>(d).count());
    return buf;
}

// write(2) that never raises SIGPIPE: the signal a write to a widowed pipe generates is
// directed at the writing thread, so blocking it here and consuming it afterwards keeps it
// from the rest of the process without touching the process-wide disposition.
ssize_t write_nosigpipe(int fd, const char* data, std::size_t len) {
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    const bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = ::write(fd, data, len);
    int e = errno;
    if (n < 0 && e == EPIPE && !was_pending) {
        timespec zero{};
        while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = e;
    return n;
}

void set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl >= 0 && !(fdfl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC);
}

// Read fd into `out` until end of file (then close `pipe`). Data goes straight into `out`, so
// an interrupted drain (Timeout, kill) loses nothing. False if `timeout` passed first.
bool drain(PipeEnd& pipe, std::string& out, const detail::Deadline* deadline) {
    constexpr std::size_t kChunk = 64 * 1024;
    while (pipe) {
        const std::size_t old = out.size();
        out.resize(old + kChunk);
        ssize_t n = ::read(pipe.fd(), out.data() + old, kChunk);
        int e = errno;
        out.resize(old + std::size_t(std::max<ssize_t>(n, 0)));
        if (n > 0) continue;
        if (n == 0) {
            pipe.close();
            break;
        }
        if (e == EINTR) continue;
        if (e != EAGAIN)
            sys_fail(e, "read from a child's pipe (fd " + std::to_string(pipe.fd()) + ")");
        if (!cogent::wait_read(pipe.fd(), deadline ? deadline->left() : TimeoutArg{})) return false;
    }
    return true;
}

// communicate()'s stdin writer: the rest of the input, then close (EOF for the child).
void write_input(const std::shared_ptr<CommState>& st) {
    PipeEnd& in = st->in;
    while (in && st->input_off < st->input.size()) {
        ssize_t n = write_nosigpipe(in.fd(), st->input.data() + st->input_off,
                                    st->input.size() - st->input_off);
        if (n > 0) {
            st->input_off += std::size_t(n);
        } else if (errno == EAGAIN) {
            cogent::wait_write(in.fd());
        } else if (errno == EPIPE) {
            break;  // the child closed its stdin: not an error (as Python)
        } else if (errno != EINTR) {
            sys_fail(errno, "write to a child's stdin (fd " + std::to_string(in.fd()) + ")");
        }
    }
    in.close();
    std::string().swap(st->input);
}

// ---- spawning ----

// debug::spawn_stats(): process-wide, lock-free.
struct SpawnCounters {
    std::atomic<std::uint64_t> count{0}, inline_count{0};
    std::atomic<std::int64_t> hub_total_ns{0}, hub_max_ns{0};
};
SpawnCounters g_spawn_counters;

void record_spawn(std::chrono::nanoseconds hub_time, bool on_caller) noexcept {
    auto& c = g_spawn_counters;
    c.count.fetch_add(1, std::memory_order_relaxed);
    if (on_caller) c.inline_count.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t ns = hub_time.count();
    c.hub_total_ns.fetch_add(ns, std::memory_order_relaxed);
    std::int64_t cur = c.hub_max_ns.load(std::memory_order_relaxed);
    while (ns > cur && !c.hub_max_ns.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
    }
}

enum Stage : int { kStageFds = 1, kStageSession, kStageCwd, kStageExec };

// Everything the child needs, prepared by the parent. The child is a vfork-style clone
// (CLONE_VM | CLONE_VFORK): it runs in our memory, on a stack of its own, while the thread that
// cloned it is suspended until it execs or exits. So it may only make raw system calls: no
// malloc, no libc lock (another thread may hold it), no errno (it is the suspended thread's),
// no sanitizer instrumentation. It reports a failure by writing fail_stage/fail_errno here.
struct ChildPlan {
    int src[3];  // what becomes fd 0, 1, 2 (-1: leave it)
    const char* cwd;
    char* const* argv;
    char* const* envp;
    const char* const* candidates;  // paths to try with execve, in order
    std::size_t ncandidates;
    const int* pass_fds;
    std::size_t npass;
    bool close_fds;
    bool new_session;
    int max_fd;  // for the close_fds fallback without close_range
    // Written by the child before it exits (0: it exec'd).
    int fail_stage;
    int fail_errno;
};

// The code the child runs: no sanitizer instrumentation (it runs on a stack ASan does not
// know, and must not call into the runtime), and every helper inlined.
#define COGENT_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))
#define COGENT_CHILD_INLINE COGENT_CHILD_CODE __attribute__((always_inline)) inline
using detail::raw_syscall;  // core/raw_syscall.hpp: no libc, no errno

// The kernel's struct sigaction (rt_sigaction), which differs from libc's.
struct KernelSigaction {
    unsigned long handler;
    unsigned long flags;
    unsigned long restorer;
    unsigned long mask;
};

[[noreturn]] COGENT_CHILD_INLINE void child_fail(ChildPlan& p, int stage, long neg_err) {
    p.fail_stage = stage;
    p.fail_errno = int(-neg_err);
    for (;;) raw_syscall(SYS_exit_group, 127);
}

COGENT_CHILD_CODE int child_main(void* arg) {
    ChildPlan& p = *static_cast<ChildPlan*>(arg);
    long r;
    // Handlers do not survive exec; reset them now so none runs in this half-made child (in
    // our memory!) once signals are unblocked. SIGPIPE and SIGXFSZ go back to default even
    // when ignored (as CPython's restore_signals): a parent that ignores SIGPIPE would
    // otherwise pass it on. Signals stay blocked (the cloning thread blocked them all) until
    // just before exec.
    for (int s = 1; s <= 64; ++s) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        KernelSigaction old;
        old.handler = old.flags = old.restorer = old.mask = 0;
        if (raw_syscall(SYS_rt_sigaction, s, 0, long(&old), 8) != 0) continue;
        const unsigned long dfl = 0, ign = 1;
        bool reset;
        if (old.flags & SA_SIGINFO)
            reset = true;
        else if (s == SIGPIPE || s == SIGXFSZ)
            reset = old.handler != dfl;
        else
            reset = old.handler != dfl && old.handler != ign;
        if (reset) {
            KernelSigaction act;
            act.handler = act.flags = act.restorer = act.mask = 0;
            raw_syscall(SYS_rt_sigaction, s, long(&act), 0, 8);
        }
    }
    if (p.new_session && (r = raw_syscall(SYS_setsid)) < 0) child_fail(p, kStageSession, r);
    // Sources among 0-2 that go elsewhere are first moved above 2, so no dup below overwrites
    // a source another slot still needs (e.g. stdout=2, stderr=1).
    int src[3];
    src[0] = p.src[0];
    src[1] = p.src[1];
    src[2] = p.src[2];
    for (int i = 0; i < 3; ++i) {
        if (src[i] < 0 || src[i] > 2 || src[i] == i) continue;
        const int old = src[i];
        const long moved = raw_syscall(SYS_fcntl, old, F_DUPFD_CLOEXEC, 3);
        if (moved < 0) child_fail(p, kStageFds, moved);
        for (int j = 0; j < 3; ++j)
            if (src[j] == old) src[j] = int(moved);
    }
    for (int i = 0; i < 3; ++i) {
        if (src[i] < 0) continue;
        if (src[i] == i) {
            if ((r = raw_syscall(SYS_fcntl, i, F_SETFD, 0)) < 0) child_fail(p, kStageFds, r);
        } else if ((r = raw_syscall(SYS_dup3, src[i], i, 0)) < 0) {
            child_fail(p, kStageFds, r);
        }
    }
    if (p.cwd && (r = raw_syscall(SYS_chdir, long(p.cwd))) < 0) child_fail(p, kStageCwd, r);
    if (p.close_fds) {
        // Closed by the exec (fds the exec needs, a script's interpreter, are opened by it).
        // NOLINTNEXTLINE(bugprone-misplaced-widening-cast): ~0u is close_range's "all fds"
        if (raw_syscall(SYS_close_range, 3, long(~0u), 1u << 2 /* CLOSE_RANGE_CLOEXEC */) < 0) {
            for (int fd = 3; fd < p.max_fd; ++fd) raw_syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
        }
    }
    for (std::size_t i = 0; i < p.npass; ++i) raw_syscall(SYS_fcntl, p.pass_fds[i], F_SETFD, 0);
    unsigned long none = 0;
    raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, long(&none), 0, 8);
    // As execvp: go on past ENOENT-like errors, remember EACCES, stop at anything else.
    long err = -ENOENT;
    bool eacces = false;
    for (std::size_t i = 0; i < p.ncandidates; ++i) {
        const long e = raw_syscall(SYS_execve, long(p.candidates[i]), long(p.argv), long(p.envp));
        if (e == -EACCES) {
            eacces = true;
        } else if (e != -ENOENT && e != -ENOTDIR && e != -ESTALE && e != -ENODEV &&
                   e != -ETIMEDOUT) {
            err = e;
            eacces = false;
            break;
        }
    }
    child_fail(p, kStageExec, eacces ? -EACCES : err);
}

// The child's stack: one per cloning thread, reused (the thread is suspended while its child
// runs on it), with a guard page below. Unmapped when the thread exits.
class ChildStack {
public:
    static constexpr std::size_t kSize = 64 * 1024, kGuard = 4096;
    ~ChildStack() {
        if (base_) ::munmap(base_, kGuard + kSize);
    }
    // The top of the stack, or nullptr (errno set) if it could not be mapped.
    void* top() noexcept {
        if (!base_) {
            void* m = ::mmap(nullptr, kGuard + kSize, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (m == MAP_FAILED) return nullptr;
            if (::mprotect(m, kGuard, PROT_NONE) != 0) {
                int e = errno;
                ::munmap(m, kGuard + kSize);
                errno = e;
                return nullptr;
            }
            base_ = static_cast<char*>(m);
        }
        return base_ + kGuard + kSize;
    }

private:
    char* base_ = nullptr;
};

// One spawn, shared between the Popen that asked for it and the thread that clones.
struct SpawnJob {
    ChildPlan plan{};
    pid_t pid = -1;  // the child, or -1
    int err = 0;     // why there is none (errno of mmap or clone)
    std::atomic<bool> done{false};
};

// Clone the child and return once it has exec'd or failed (on the calling thread).
void run_spawn(SpawnJob& job) noexcept {
    thread_local ChildStack stack;
    void* top = stack.top();
    if (!top) {
        job.err = errno;
    } else {
        // All signals blocked across the clone: the child must not run one of our handlers
        // before it has reset them.
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        const pid_t pid = ::clone(child_main, top, CLONE_VM | CLONE_VFORK | SIGCHLD, &job.plan);
        job.err = pid < 0 ? errno : 0;
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        job.pid = pid;
    }
    job.done.store(true, std::memory_order_release);
}

std::atomic<bool> g_spawner_threads{true};  // detail::set_spawner_threads_enabled

// The process-wide spawner threads (never destroyed: spawns may run until exit).
ThreadPool& spawner_pool() {
    static ThreadPool* pool = new ThreadPool(4);
    return *pool;
}

// Run job on a spawner thread, parking the calling greenlet meanwhile (its hub runs on); on
// this thread if no spawner thread can be had. Not interruptible: the job points into the
// caller's frame, so a kill or Timeout meanwhile is returned, to be thrown once it is done.
std::exception_ptr spawn_off_hub(const std::shared_ptr<SpawnJob>& job) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    Clock::duration hub_time{};
    bool on_caller = false;
    // Clone from this thread (the hub stalls meanwhile).
    auto here = [&] {
        const auto t = Clock::now();
        run_spawn(*job);
        hub_time += Clock::now() - t;
        on_caller = true;
    };
    std::shared_ptr<AsyncResult<void>> r;
    try {
        if (g_spawner_threads.load(std::memory_order_relaxed))
            r = spawner_pool().spawn([job] { run_spawn(*job); });
    } catch (...) {
        // No worker thread could start (EAGAIN, or bad_alloc).
    }
    hub_time += Clock::now() - t0;
    std::exception_ptr interrupted;
    int interruptions = 0;
    if (!r) here();
    while (!job->done.load(std::memory_order_acquire)) {
        if (interruptions < 3) {
            try {
                r->wait();
                // Set, but not by the task: it never ran (the process forked while it was
                // queued).
                if (!job->done.load(std::memory_order_acquire)) here();
                break;
            } catch (...) {
                if (!interrupted) interrupted = std::current_exception();
                ++interruptions;
                continue;
            }
        }
        // A wait that keeps throwing (a hub being torn down) must not spin here: wait without
        // the hub (a spawn takes milliseconds).
        const auto t = Clock::now();
        while (!job->done.load(std::memory_order_acquire) && !r->ready()) ::usleep(200);
        hub_time += Clock::now() - t;
        if (!job->done.load(std::memory_order_acquire)) here();
    }
    record_spawn(std::chrono::duration_cast<std::chrono::nanoseconds>(hub_time), on_caller);
    return interrupted;
}

// An fd of ours, closed on scope exit unless released.
struct OwnedFd {
    int fd = -1;
    OwnedFd() = default;
    explicit OwnedFd(int f) : fd(f) {}
    OwnedFd(const OwnedFd&) = delete;
    ~OwnedFd() {
        if (fd >= 0) cogent::close(fd);
    }
    void reset() {
        if (fd >= 0) cogent::close(fd);
        fd = -1;
    }
};

}  // namespace

// ---- Env ----

Env::Env(const std::vector<std::string>& entries) {
    for (const auto& e : entries) {
        auto eq = e.find('=');
        if (eq == std::string::npos) bad("environment entry '" + e + "' has no '='");
        if (eq == 0) bad("environment entry '" + e + "' has an empty name");
        vars_[e.substr(0, eq)] = e.substr(eq + 1);
    }
}

Env Env::current() {
    Env env;
    for (char** p = environ; p && *p; ++p) {
        const char* eq = std::strchr(*p, '=');
        if (!eq || eq == *p) continue;
        env.vars_.emplace(std::string(*p, std::size_t(eq - *p)), std::string(eq + 1));
    }
    return env;
}

Env& Env::set(std::string key, std::string value) {
    vars_[std::move(key)] = std::move(value);
    return *this;
}

Env& Env::unset(const std::string& key) {
    vars_.erase(key);
    return *this;
}

// ---- exceptions ----

TimeoutExpired::TimeoutExpired(std::vector<std::string> cmd_, Duration timeout_,
                               std::string output_, std::string stderr_output)
    : SubprocessError("cogent: command " + format_cmd(cmd_) + " timed out after " +
                      format_seconds(timeout_) + " seconds"),
      cmd(std::move(cmd_)),
      timeout(timeout_),
      output(std::move(output_)),
      stderr(std::move(stderr_output)) {}

namespace {
std::string status_text(int returncode) {
    if (returncode >= 0) return "returned non-zero exit status " + std::to_string(returncode);
    const char* name = sigdescr_np(-returncode);
    return "died with signal " + std::to_string(-returncode) +
           (name ? " (" + std::string(name) + ")" : std::string());
}
}  // namespace

CalledProcessError::CalledProcessError(int returncode_, std::vector<std::string> cmd_,
                                       std::string output_, std::string stderr_output)
    : SubprocessError("cogent: command " + format_cmd(cmd_) + " " + status_text(returncode_)),
      returncode(returncode_),
      cmd(std::move(cmd_)),
      output(std::move(output_)),
      stderr(std::move(stderr_output)) {}

// ---- PipeEnd ----

PipeEnd::PipeEnd(int fd) : fd_(fd) {
    if (fd_ >= 0) set_nonblocking(fd_);
}

PipeEnd::PipeEnd(PipeEnd&& o) noexcept : fd_(std::exchange(o.fd_, -1)), buf_(std::move(o.buf_)) {}

PipeEnd& PipeEnd::operator=(PipeEnd&& o) noexcept {
    if (this != &o) {
        close();
        fd_ = std::exchange(o.fd_, -1);
        buf_ = std::move(o.buf_);
    }
    return *this;
}

PipeEnd::~PipeEnd() { close(); }

void PipeEnd::close() noexcept {
    if (fd_ >= 0) cogent::close(fd_);
    fd_ = -1;
    buf_.clear();
}

void PipeEnd::write(std::string_view data) {
    std::size_t off = 0;
    while (off < data.size()) {
        if (fd_ < 0) sys_fail(EBADF, "write to a closed pipe");
        ssize_t n = write_nosigpipe(fd_, data.data() + off, data.size() - off);
        if (n > 0) {
            off += std::size_t(n);
        } else if (errno == EAGAIN) {
            cogent::wait_write(fd_);
        } else if (errno != EINTR) {
            sys_fail(errno, "write to a child's pipe (fd " + std::to_string(fd_) + ")");
        }
    }
}

std::size_t PipeEnd::fill(std::size_t max) {
    for (;;) {
        if (fd_ < 0) sys_fail(EBADF, "read from a closed pipe");
        const std::size_t old = buf_.size();
        buf_.resize(old + max);
        ssize_t n = ::read(fd_, buf_.data() + old, max);
        int e = errno;
        buf_.resize(old + std::size_t(std::max<ssize_t>(n, 0)));
        if (n >= 0) return std::size_t(n);
        if (e == EAGAIN)
            cogent::wait_read(fd_);
        else if (e != EINTR)
            sys_fail(e, "read from a child's pipe (fd " + std::to_string(fd_) + ")");
    }
}

std::string PipeEnd::read(std::size_t max) {
    if (max == 0) return {};
    if (buf_.empty()) fill(std::min<std::size_t>(max, 1 << 20));
    if (buf_.size() <= max) return std::exchange(buf_, {});
    std::string head = buf_.substr(0, max);
    buf_.erase(0, max);
    return head;
}

std::string PipeEnd::read_all() {
    while (fill(64 * 1024) > 0) {
    }
    return std::exchange(buf_, {});
}

std::string PipeEnd::readline() {
    std::size_t scanned = 0;
    for (;;) {
        auto nl = buf_.find('\n', scanned);
        if (nl != std::string::npos) {
            std::string line = buf_.substr(0, nl + 1);
            buf_.erase(0, nl + 1);
            return line;
        }
        scanned = buf_.size();
        if (fill(64 * 1024) == 0) return std::exchange(buf_, {});
    }
}

// ---- Popen ----

namespace {

const char* const kStreamNames[3] = {"stdin", "stdout", "stderr"};

// The argument checks (std::invalid_argument), in this order: argv, redirections, environment,
// cwd, pass_fds.
void check_argv(const std::vector<std::string>& argv) {
    if (argv.empty()) bad("Popen needs a non-empty argv (argv[0] is the program to run)");
    if (argv[0].empty()) bad("Popen: the program name (argv[0]) is empty");
    for (const auto& a : argv)
        if (has_nul(a)) bad("Popen: an argument of " + format_cmd(argv) + " contains a NUL byte");
}

void check_redirects(const Redirect (&redirects)[3]) {
    for (int i = 0; i < 3; ++i) {
        const Redirect& r = redirects[i];
        if (r.kind() == Redirect::Kind::stdout_merge && i != 2)
            bad(std::string("Popen: STDOUT is only valid for stderr, not ") + kStreamNames[i]);
        if (r.kind() == Redirect::Kind::fd) {
            if (r.fd() < 0)
                bad(std::string("Popen: ") + kStreamNames[i] + " fd " + std::to_string(r.fd()) +
                    " is negative");
            if (fcntl(r.fd(), F_GETFD) < 0)
                bad(std::string("Popen: ") + kStreamNames[i] + " fd " + std::to_string(r.fd()) +
                    " is not an open file descriptor");
        }
    }
}

// The child's environment as "K=V" entries (none unless Options::env is set), checked.
std::vector<std::string> env_entries(const Options& opts) {
    std::vector<std::string> out;
    if (!opts.env) return out;
    for (const auto& [k, v] : opts.env->vars()) {
        if (k.empty()) bad("Popen: an environment variable has an empty name");
        if (k.find('=') != std::string::npos)
            bad("Popen: environment variable name '" + k + "' contains '='");
        if (has_nul(k) || has_nul(v))
            bad("Popen: environment variable '" + k + "' contains a NUL byte");
        out.push_back(k + "=" + v);
    }
    return out;
}

void check_cwd_and_pass_fds(const Options& opts) {
    if (opts.cwd && has_nul(*opts.cwd)) bad("Popen: cwd contains a NUL byte");
    for (int fd : opts.pass_fds)
        if (fd < 0 || fcntl(fd, F_GETFD) < 0)
            bad("Popen: pass_fds entry " + std::to_string(fd) + " is not an open file descriptor");
}

// Where to look for the program: the child's PATH (as CPython), else ours.
std::vector<std::string> exec_candidates(const std::string& prog, const Options& opts) {
    if (prog.find('/') != std::string::npos) return {prog};
    std::string path;
    bool have_path = false;
    if (opts.env) {
        auto it = opts.env->vars().find("PATH");
        if (it != opts.env->vars().end()) {
            path = it->second;
            have_path = true;
        }
    } else if (const char* p = std::getenv("PATH")) {
        path = p;
        have_path = true;
    }
    if (!have_path) path = "/bin:/usr/bin";
    std::vector<std::string> candidates;
    std::size_t start = 0;
    for (;;) {
        std::size_t colon = path.find(':', start);
        std::string dir =
            path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + prog);
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    return candidates;
}

// The child's fds 0-2 and the parent's ends of its pipes.
struct ChildFds {
    // The child's ends of its pipes (and /dev/null): closed here once it has them.
    std::vector<std::unique_ptr<OwnedFd>> child_ends;
    int src[3] = {-1, -1, -1};  // what becomes the child's fd 0, 1, 2 (-1: inherit)
    PipeEnd parent[3];          // the parent's ends for Redirect::Kind::pipe

    int keep(int fd) {
        child_ends.push_back(std::make_unique<OwnedFd>(fd));
        return fd;
    }
};

// Pipe setup: a pipe per PIPE redirection, /dev/null once for any DEVNULL.
void open_child_fds(const Redirect (&redirects)[3], ChildFds& out) {
    int devnull = -1;
    for (int i = 0; i < 3; ++i) {
        const Redirect& r = redirects[i];
        switch (r.kind()) {
            case Redirect::Kind::inherit:
                break;
            case Redirect::Kind::pipe: {
                int fds[2];
                if (pipe2(fds, O_CLOEXEC) < 0)
                    sys_fail(errno, "pipe2 for a child's " + std::string(kStreamNames[i]));
                // The child reads its stdin from fds[0] and writes its output to fds[1].
                out.src[i] = out.keep(fds[i == 0 ? 0 : 1]);
                out.parent[i] = PipeEnd(fds[i == 0 ? 1 : 0]);
                break;
            }
            case Redirect::Kind::devnull:
                if (devnull < 0) {
                    devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
                    if (devnull < 0) sys_fail(errno, "open /dev/null");
                    out.keep(devnull);
                }
                out.src[i] = devnull;
                break;
            case Redirect::Kind::fd:
                out.src[i] = r.fd();
                break;
            case Redirect::Kind::stdout_merge:
                out.src[2] = out.src[1] >= 0 ? out.src[1] : 1;
                break;
        }
    }
}

// The child's argv, environment and program paths as the flat arrays execve takes. The arrays
// point into these strings and into the argv given: neither may change while a plan uses them.
struct ChildArgs {
    std::vector<std::string> env;         // "K=V", when Options::env is set
    std::vector<std::string> candidates;  // paths to try with execve, in order
    std::vector<char*> c_argv, c_env;
    std::vector<const char*> c_cand;

    void flatten(const std::vector<std::string>& argv) {
        for (auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
        c_argv.push_back(nullptr);
        for (auto& e : env) c_env.push_back(e.data());
        c_env.push_back(nullptr);
        for (auto& c : candidates) c_cand.push_back(c.c_str());
    }
};

// The fd plan and everything else the child needs.
ChildPlan make_plan(const ChildFds& fds, ChildArgs& args, const Options& opts) {
    rlimit rl{};
    int max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max_fd = int(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
    return ChildPlan{{fds.src[0], fds.src[1], fds.src[2]},
                     opts.cwd ? opts.cwd->c_str() : nullptr,
                     args.c_argv.data(),
                     opts.env ? args.c_env.data() : environ,
                     args.c_cand.data(),
                     args.c_cand.size(),
                     opts.pass_fds.data(),
                     opts.pass_fds.size(),
                     opts.close_fds,
                     opts.start_new_session,
                     max_fd,
                     0,
                     0};
}

// The child failed before or at exec (and has been reaped): say why.
[[noreturn]] void child_failed(const ChildPlan& plan, const std::vector<std::string>& argv,
                               const Options& opts) {
    const int err = plan.fail_errno;
    switch (plan.fail_stage) {
        case kStageCwd:
            sys_fail(err,
                     "cannot change to directory '" + *opts.cwd + "' to run " + format_cmd(argv));
        case kStageExec:
            sys_fail(err, "cannot run '" + argv[0] + "'");
        case kStageSession:
            sys_fail(err, "setsid() failed starting " + format_cmd(argv));
        default:
            sys_fail(err, "setting up the child's file descriptors for " + format_cmd(argv));
    }
}

}  // namespace

Popen::Popen(std::vector<std::string> argv, Options opts) : argv_(std::move(argv)) {
    check_argv(argv_);
    const Redirect redirects[3] = {opts.stdin, opts.stdout, opts.stderr};
    check_redirects(redirects);
    ChildArgs args;
    args.env = env_entries(opts);
    check_cwd_and_pass_fds(opts);
    // Waiting for the exec below parks this greenlet: not possible on the hub.
    detail::check_may_block("Popen()");
    detail::reap_orphans();

    args.candidates = exec_candidates(argv_[0], opts);
    ChildFds fds;
    open_child_fds(redirects, fds);
    stdin_ = std::move(fds.parent[0]);
    stdout_ = std::move(fds.parent[1]);
    stderr_ = std::move(fds.parent[2]);
    args.flatten(argv_);
    auto job = std::make_shared<SpawnJob>();
    job->plan = make_plan(fds, args, opts);

    // On a spawner thread: this one's hub keeps running while the child is set up and execs.
    // When it returns, the child has exec'd or failed (and is exiting).
    std::exception_ptr interrupted = spawn_off_hub(job);
    if (job->pid < 0) {
        if (interrupted) std::rethrow_exception(interrupted);
        sys_fail(job->err, "clone to run " + format_cmd(argv_));
    }
    child_ = std::make_unique<ChildWatch>(job->pid);
    fds.child_ends.clear();
    if (interrupted) {
        // Killed or timed out while the child was starting: nobody will own it, so stop it.
        // Its ChildWatch hands it to the reaper.
        child_->send_signal(SIGKILL);
        std::rethrow_exception(interrupted);
    }
    if (job->plan.fail_stage == 0) return;  // exec succeeded
    // The child failed before or at exec and is exiting with 127: reap it, then report.
    child_->wait({}, "Popen()");
    child_failed(job->plan, argv_, opts);
}

Popen::Popen(Popen&& o) noexcept = default;

Popen& Popen::operator=(Popen&& o) noexcept {
    if (this != &o) {
        stop_helpers();
        argv_ = std::move(o.argv_);
        child_ = std::move(o.child_);  // the old child, if running, goes to the reaper
        stdin_ = std::move(o.stdin_);
        stdout_ = std::move(o.stdout_);
        stderr_ = std::move(o.stderr_);
        comm_ = std::move(o.comm_);
    }
    return *this;
}

Popen::~Popen() { stop_helpers(); }

void Popen::stop_helpers() noexcept {
    if (!comm_) return;
    // The helpers own nothing of ours (they hold comm_): stop them without waiting.
    for (Greenlet<void>* g : {&comm_->writer, &comm_->err_reader})
        if (g->valid() && !g->dead()) g->kill(GreenletExit(), false);
}

ChildWatch& Popen::child() {
    if (!child_) throw std::logic_error("cogent: use of a moved-from Popen");
    return *child_;
}

pid_t Popen::pid() const noexcept { return child_ ? child_->pid() : -1; }

std::optional<int> Popen::returncode() const noexcept {
    return child_ ? child_->returncode() : std::nullopt;
}

std::optional<int> Popen::poll() { return child().poll(); }

int Popen::wait(TimeoutArg timeout) {
    if (!child().wait(timeout, "Popen::wait()")) throw TimeoutExpired(argv_, timeout.value());
    return *child_->returncode();
}

void Popen::send_signal(int sig) { child().send_signal(sig); }

void Popen::terminate() { send_signal(SIGTERM); }

void Popen::kill() { send_signal(SIGKILL); }

Output Popen::communicate(std::string_view input, TimeoutArg timeout) {
    detail::Deadline deadline(timeout);
    ChildWatch& ch = child();
    if (!input.empty()) {
        if (comm_)
            throw std::logic_error(
                "cogent: Popen::communicate: cannot send input after communication started");
        if (!stdin_) bad("Popen::communicate: input given, but stdin is not a PIPE");
    }
    detail::check_may_block("Popen::communicate()");
    if (!comm_) {
        auto st = std::make_shared<CommState>();
        st->in = std::move(stdin_);
        st->out = std::move(stdout_);
        st->err = std::move(stderr_);
        // What a readline() had read ahead belongs to the output.
        st->out_data = std::exchange(st->out.buf_, {});
        st->err_data = std::exchange(st->err.buf_, {});
        st->input.assign(input);
        if (st->in) {
            if (st->input.empty())
                st->in.close();
            else
                st->writer = cogent::spawn([st] { write_input(st); });
        }
        if (st->out && st->err)
            st->err_reader = cogent::spawn([st] { drain(st->err, st->err_data, nullptr); });
        comm_ = std::move(st);
    }
    CommState& st = *comm_;
    auto expired = [&] { return TimeoutExpired(argv_, timeout.value(), st.out_data, st.err_data); };
    // This greenlet reads stdout (or stderr, when it is the only pipe).
    bool done = true;
    if (st.out)
        done = drain(st.out, st.out_data, &deadline);
    else if (st.err && !st.err_reader.valid())
        done = drain(st.err, st.err_data, &deadline);
    if (!done) throw expired();
    for (Greenlet<void>* g : {&st.writer, &st.err_reader}) {
        if (!g->valid()) continue;
        if (!g->join(deadline.left())) throw expired();
        if (auto e = g->exception()) std::rethrow_exception(e);
    }
    if (!ch.wait(deadline.left(), "Popen::communicate()")) throw expired();
    Output out{std::exchange(st.out_data, {}), std::exchange(st.err_data, {})};
    return out;
}

// ---- run and friends ----

void CompletedProcess::check_returncode() const {
    if (returncode != 0) throw CalledProcessError(returncode, args, stdout, stderr);
}

CompletedProcess run(std::vector<std::string> argv, RunOptions opts) {
    if (opts.input) {
        if (opts.stdin.kind() != Redirect::Kind::inherit)
            bad("run: stdin and input may not both be used");
        opts.stdin = PIPE;
    }
    if (opts.capture_output) {
        if (opts.stdout.kind() != Redirect::Kind::inherit ||
            opts.stderr.kind() != Redirect::Kind::inherit)
            bad("run: stdout and stderr may not be used with capture_output");
        opts.stdout = PIPE;
        opts.stderr = PIPE;
    }
    Popen p(std::move(argv), static_cast<Options&&>(std::move(opts)));
    Output out;
    std::exception_ptr timed_out;
    try {
        // NOLINTNEXTLINE(bugprone-use-after-move): only the Options base of opts was moved
        out = p.communicate(opts.input ? std::string_view(*opts.input) : std::string_view(),
                            opts.timeout);
    } catch (const TimeoutExpired&) {
        timed_out = std::current_exception();
    } catch (...) {
        // Killed, or an I/O error: the child must not outlive its run() unnoticed. The Popen's
        // destructor hands it to the reaper.
        p.kill();
        throw;
    }
    if (timed_out) {
        // As CPython: kill the child and reap it, then report the timeout (with the output).
        p.kill();
        p.wait();
        std::rethrow_exception(timed_out);
    }
    CompletedProcess cp{p.args(), *p.returncode(), std::move(out.stdout), std::move(out.stderr)};
    if (opts.check) cp.check_returncode();
    return cp;
}

std::string check_output(std::vector<std::string> argv, RunOptions opts) {
    if (opts.stdout.kind() != Redirect::Kind::inherit)
        bad("check_output: stdout is captured; do not set it");
    opts.stdout = PIPE;
    opts.check = true;
    return run(std::move(argv), std::move(opts)).stdout;
}

int call(std::vector<std::string> argv, RunOptions opts) {
    return run(std::move(argv), std::move(opts)).returncode;
}

void check_call(std::vector<std::string> argv, RunOptions opts) {
    opts.check = true;
    run(std::move(argv), std::move(opts));
}

}  // namespace cogent::subprocess

namespace cogent::detail {

void set_spawner_threads_enabled(bool on) noexcept {
    subprocess::g_spawner_threads.store(on, std::memory_order_relaxed);
}

}  // namespace cogent::detail

namespace cogent::debug {

SpawnStats spawn_stats() noexcept {
    auto& c = subprocess::g_spawn_counters;
    SpawnStats s;
    s.count = c.count.load(std::memory_order_relaxed);
    s.inline_count = c.inline_count.load(std::memory_order_relaxed);
    s.hub_total = std::chrono::nanoseconds(c.hub_total_ns.load(std::memory_order_relaxed));
    s.hub_max = std::chrono::nanoseconds(c.hub_max_ns.load(std::memory_order_relaxed));
    return s;
}

void reset_spawn_stats() noexcept {
    auto& c = subprocess::g_spawn_counters;
    c.count.store(0, std::memory_order_relaxed);
    c.inline_count.store(0, std::memory_order_relaxed);
    c.hub_total_ns.store(0, std::memory_order_relaxed);
    c.hub_max_ns.store(0, std::memory_order_relaxed);
}

}  // namespace cogent::debug
