// Subprocesses (gevent.subprocess / Python's subprocess): Popen, run, check_output, call,
// with cooperative pipes, wait and communicate.
//
// Spawning is vfork-style (clone with CLONE_VM | CLONE_VFORK, as posix_spawn): no copy of the
// parent's page tables, so its cost does not grow with the parent's size, and no atfork
// handler runs. The clone runs on one of a few process-wide spawner threads (on the calling
// thread only if none can be started): the calling greenlet parks until the child has exec'd
// or failed, while its hub and every other greenlet keep running. An exec that fails ("no
// such program", a bad cwd) is reported by the child before it exits, as a std::system_error
// in the parent naming the program, never as a silent exit status 127. That spawn wait (a
// millisecond or so) is NOT interruptible: a kill or Timeout arriving during it takes effect
// when it returns (the new child is then killed and reaped, and the exception thrown).
// Waiting for the child to exit parks on a pidfd with the hub's fd waiting, so it works on
// any thread's hub and is interrupted by kill and Timeout; every fd the parent opens is
// close-on-exec.
//
// The child: fds 0-2 as chosen; every other fd closed unless listed in pass_fds (close_fds);
// signal mask emptied and SIGPIPE/SIGXFSZ back to their default action (as CPython's
// restore_signals), since a parent that ignores SIGPIPE would otherwise pass that on.
//
// A Popen destroyed while its child runs leaves the child running, like Python's; cogent reaps
// it once it has exited (when a later Popen or Process starts or ends): it is not left a zombie.
// A Popen belongs to the thread that uses it; use it from one thread at a time.
//
// glibc defines the stdio macros as themselves, so members named stdin/stdout/stderr are fine.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

namespace detail {
class ChildWatch;
struct CommState;
}  // namespace detail

namespace subprocess {

// What a child's standard stream is connected to (Python's None / PIPE / DEVNULL / STDOUT /
// an fd). Converts implicitly from an fd, which the child gets a copy of (the caller keeps it).
class COGENT_API Redirect {
public:
    // inherit: the parent's stream; pipe: a new pipe; devnull: /dev/null; fd: a copy of fd();
    // stdout_merge: (stderr only) wherever stdout goes.
    enum class Kind { inherit, pipe, devnull, fd, stdout_merge };
    // The parent's own stream (the default).
    constexpr Redirect() noexcept = default;
    // A copy of this open fd (it stays the caller's). A negative fd is rejected at spawn.
    constexpr Redirect(int fd) noexcept : kind_(Kind::fd), fd_(fd) {}
    // One of the kinds (prefer the constants PIPE, DEVNULL, STDOUT, INHERIT).
    constexpr explicit Redirect(Kind kind) noexcept : kind_(kind) {}
    // Which kind it is.
    constexpr Kind kind() const noexcept { return kind_; }
    // The fd, for Kind::fd (-1 otherwise).
    constexpr int fd() const noexcept { return fd_; }

private:
    Kind kind_ = Kind::inherit;
    int fd_ = -1;
};

// A new pipe; the parent's end is Popen::stdin()/stdout()/stderr().
inline constexpr Redirect PIPE{Redirect::Kind::pipe};
// /dev/null.
inline constexpr Redirect DEVNULL{Redirect::Kind::devnull};
// For stderr only: wherever the child's stdout goes (2>&1).
inline constexpr Redirect STDOUT{Redirect::Kind::stdout_merge};
// The parent's stream (same as a default-constructed Redirect).
inline constexpr Redirect INHERIT{};

// A child's environment: a map of variables, or "KEY=VALUE" entries. An entry without '=', an
// empty key, a key containing '=' or any NUL byte is rejected with std::invalid_argument.
class COGENT_API Env {
public:
    // No variables at all.
    Env() = default;
    // From variables.
    Env(std::map<std::string, std::string> vars) : vars_(std::move(vars)) {}
    // From variables, e.g. Env{{"LANG", "C"}, {"TZ", "UTC"}}.
    Env(std::initializer_list<std::pair<const std::string, std::string>> vars) : vars_(vars) {}
    // From "KEY=VALUE" entries (as environ); a later duplicate key wins.
    Env(const std::vector<std::string>& entries);
    // This process's environment now (Python's os.environ copy), to change and pass on.
    static Env current();
    // Set (or replace) one variable; returns *this.
    Env& set(std::string key, std::string value);
    // Remove one variable if present; returns *this.
    Env& unset(const std::string& key);
    // The variables.
    const std::map<std::string, std::string>& vars() const noexcept { return vars_; }

private:
    std::map<std::string, std::string> vars_;
};

// How to start a child. argv[0] is looked up in PATH (the child's env PATH when env is given,
// else this process's; "/bin:/usr/bin" when unset) unless it contains a '/'.
struct COGENT_API Options {
    std::optional<Env> env;          // absent: inherit this process's environment
    std::optional<std::string> cwd;  // absent: this process's working directory
    Redirect stdin;                  // INHERIT, PIPE, DEVNULL or an fd
    Redirect stdout;                 // INHERIT, PIPE, DEVNULL or an fd
    Redirect stderr;                 // INHERIT, PIPE, DEVNULL, STDOUT or an fd
    bool close_fds = true;           // close the child's fds above 2 but pass_fds
    std::vector<int> pass_fds;       // fds kept open (same numbers) in the child
    bool start_new_session = false;  // setsid() in the child
};

// Base of the errors below (Python's SubprocessError).
class COGENT_API SubprocessError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// wait() or communicate() ran out of time. The child is still running (run() kills it).
class COGENT_API TimeoutExpired : public SubprocessError {
public:
    // The message names the command and the timeout in seconds.
    TimeoutExpired(std::vector<std::string> cmd, Duration timeout, std::string output = {},
                   std::string stderr_output = {});
    std::vector<std::string> cmd;  // the argv
    Duration timeout;              // the timeout that passed
    std::string output;            // stdout read so far, when captured (run, check_output)
    std::string stderr;            // stderr read so far, when captured
};

// A checked command (run with check, check_output, check_call) exited with a non-zero status.
class COGENT_API CalledProcessError : public SubprocessError {
public:
    // The message names the command and its exit status (or the signal that killed it).
    CalledProcessError(int returncode, std::vector<std::string> cmd, std::string output = {},
                       std::string stderr_output = {});
    int returncode;                // the exit code, or -N for signal N
    std::vector<std::string> cmd;  // the argv
    std::string output;            // its stdout, when captured
    std::string stderr;            // its stderr, when captured
};

// The parent's end of a pipe to a child (Popen::stdin/stdout/stderr). Reads and writes are
// cooperative (the fd is non-blocking; a greenlet parks on it) and interrupted by kill and
// Timeout. Closing wakes other greenlets waiting on it with EBADF. Writing to a pipe whose
// reader has gone throws std::system_error(EPIPE) and never raises SIGPIPE. Move-only.
class COGENT_API PipeEnd {
public:
    PipeEnd() noexcept = default;
    // Take ownership of fd (made non-blocking and close-on-exec). -1 for a closed end.
    explicit PipeEnd(int fd);
    PipeEnd(PipeEnd&& o) noexcept;
    PipeEnd& operator=(PipeEnd&& o) noexcept;
    // Closes it.
    ~PipeEnd();

    // The fd, or -1 once closed (or never opened).
    int fd() const noexcept { return fd_; }
    // True while open.
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // Write all of data. Throws std::system_error (EPIPE when the child closed its end, EBADF
    // when closed). Call from a greenlet of the owning thread.
    void write(std::string_view data);
    // Up to max bytes (at least one), or "" at end of file. Throws std::system_error.
    std::string read(std::size_t max = 65536);
    // Everything until end of file.
    std::string read_all();
    // One line including its '\n' (the last one may lack it), or "" at end of file.
    std::string readline();
    // Close it (waking other greenlets waiting on it with EBADF). Safe to repeat.
    void close() noexcept;

private:
    friend class Popen;
    std::size_t fill(std::size_t max);  // read into buf_; 0 at EOF
    int fd_ = -1;
    std::string buf_;  // read ahead by readline
};

// What communicate() collected.
struct COGENT_API Output {
    std::string stdout;  // empty unless stdout was a PIPE
    std::string stderr;  // empty unless stderr was a PIPE
};

// A running child process (Python's subprocess.Popen). Move-only.
class COGENT_API Popen {
public:
    // Start argv with opts. Throws std::invalid_argument for an empty argv, a NUL byte in an
    // argument, a bad env entry or redirect; std::system_error when the program cannot be run
    // (ENOENT naming it, EACCES...), the cwd cannot be entered, or clone/pipe fail. Blocks only
    // the calling greenlet (until the child has exec'd); a kill or Timeout meanwhile is thrown
    // once the spawn has returned (see the top of this file).
    explicit Popen(std::vector<std::string> argv, Options opts = {});
    // Moving is fine, even while communicate()'s helpers run (they do not point into it).
    Popen(Popen&& o) noexcept;
    // The Popen assigned over is dropped as by its destructor.
    Popen& operator=(Popen&& o) noexcept;
    Popen(const Popen&) = delete;
    // Closes the pipes; a child still running keeps running and is reaped later.
    ~Popen();

    // The child's process id.
    pid_t pid() const noexcept;
    // The argv it was started with.
    const std::vector<std::string>& args() const noexcept { return argv_; }
    // The exit status once known (after wait/poll): the exit code, or -N for signal N.
    std::optional<int> returncode() const noexcept;
    // Reap the child if it exited (never blocks): its returncode, or nullopt while it runs.
    std::optional<int> poll();
    // Wait cooperatively for the child to exit; its returncode. Throws TimeoutExpired when
    // `timeout` passes first (the child keeps running), BlockingSwitchOutError on the hub.
    // Kill and Timeout interrupt it. With stdout/stderr PIPEs the child may block writing to
    // a full pipe: read them, or use communicate().
    int wait(TimeoutArg timeout = {});
    // Write input to stdin (then close it), read stdout and stderr to the end, concurrently,
    // then wait for the child. Throws TimeoutExpired if `timeout` passes first: call it again
    // (without input) to go on; nothing read so far is lost. std::invalid_argument for input
    // without a stdin PIPE; std::logic_error for input after communication started. A child
    // that closes stdin early is not an error (the rest of input is dropped).
    Output communicate(std::string_view input = {}, TimeoutArg timeout = {});
    // Send signal sig, unless the child was already reaped. Throws std::system_error for an
    // invalid signal.
    void send_signal(int sig);
    // SIGTERM.
    void terminate();
    // SIGKILL.
    void kill();

    // The parent's end of the child's stdin (open only when Options::stdin was PIPE, and closed
    // once communicate() started: it takes the pipes over).
    PipeEnd& stdin() noexcept { return stdin_; }
    // The parent's end of the child's stdout (open only when Options::stdout was PIPE).
    PipeEnd& stdout() noexcept { return stdout_; }
    // The parent's end of the child's stderr (open only when Options::stderr was PIPE).
    PipeEnd& stderr() noexcept { return stderr_; }

private:
    detail::ChildWatch& child();
    void stop_helpers() noexcept;
    std::vector<std::string> argv_;
    std::unique_ptr<detail::ChildWatch> child_;  // null only after a move
    PipeEnd stdin_, stdout_, stderr_;
    // communicate(): the pipes move in here, with the helper greenlets that write stdin and
    // read stderr. It outlives a TimeoutExpired (the helpers go on; a retry loses nothing).
    std::shared_ptr<detail::CommState> comm_;
};

// The result of run().
struct COGENT_API CompletedProcess {
    std::vector<std::string> args;  // the argv
    int returncode = 0;             // the exit code, or -N for signal N
    std::string stdout;             // captured output (capture_output, or stdout = PIPE)
    std::string stderr;             // captured errors (capture_output, or stderr = PIPE)
    // Throws CalledProcessError if returncode is not 0.
    void check_returncode() const;
};

// Options of run(), check_output() and call().
struct COGENT_API RunOptions : Options {
    std::optional<std::string> input;  // written to stdin (which becomes a PIPE), then closed
    bool capture_output = false;       // stdout and stderr become PIPEs
    bool check = false;                // a non-zero status throws CalledProcessError
    TimeoutArg timeout;                // absent: no limit
};

// Run argv to completion (Python's subprocess.run): start it, communicate, wait. On timeout the
// child is killed and reaped, then TimeoutExpired (with the output so far) is thrown; on any
// other exception (kill of the calling greenlet) the child is killed. Throws what Popen throws,
// CalledProcessError with check, std::invalid_argument for input together with a stdin
// redirect, or capture_output together with a stdout/stderr redirect.
COGENT_API CompletedProcess run(std::vector<std::string> argv, RunOptions opts = {});
// run() with stdout captured and check on: the output. Throws CalledProcessError (carrying the
// status and output) on a non-zero status; std::invalid_argument if opts sets stdout.
COGENT_API std::string check_output(std::vector<std::string> argv, RunOptions opts = {});
// run() and return its returncode (Python's subprocess.call).
COGENT_API int call(std::vector<std::string> argv, RunOptions opts = {});
// call() that throws CalledProcessError on a non-zero status.
COGENT_API void check_call(std::vector<std::string> argv, RunOptions opts = {});

}  // namespace subprocess

namespace detail {
// Testing hook. With false, spawns clone on the calling thread, as when no spawner thread can
// be started. Affects spawns started afterwards.
COGENT_INTERNAL_API void set_spawner_threads_enabled(bool on) noexcept;
}  // namespace detail

}  // namespace cogent
