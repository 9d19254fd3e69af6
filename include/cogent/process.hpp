// fork() support and Process: run a function in a forked child and join it cooperatively
// (gevent.fork, and the shape of Python's multiprocessing.Process).
//
// After fork(2) the child's hub is reinitialised on the forking thread (ev_loop_fork, a fresh
// cross-thread queue) and the runtime's fork hooks run, so the child can sleep, spawn, use
// timers and wait on fds at once. As in gevent, every greenlet that existed at the fork exists in
// both processes: one that was sleeping or waiting resumes in both. Only the forking thread
// survives in the child; hubs of the parent's other threads are gone (never post to them).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

namespace detail {
class ChildWatch;
}

// fork(2) with cogent's child-side reinitialisation (gevent.fork): 0 in the child, the child's
// pid in the parent. Throws std::system_error when fork fails. Any greenlet of any thread may
// call it; the child continues on the calling greenlet. stdio buffers are not flushed first.
COGENT_API pid_t fork();

// A function run in a forked child process, joined cooperatively. The child runs the function in
// a new greenlet on its reinitialised hub (other greenlets inherited from the parent run
// whenever it blocks, as in gevent) and ends with _exit: status 0 when it returns (or the int
// it returns, & 0xff), 1 when it throws (the exception is printed on stderr). _exit means the
// child never runs atexit handlers or static destructors, so the parent's objects copied into
// the child are not destroyed twice; stdio is flushed before the fork and at the child's end.
// A Process destroyed while its child runs leaves the child running; cogent reaps it once it
// exits (when a later Process or Popen starts or ends), so it is not left a zombie for long.
// The child holds copies of every fd the parent had (fork semantics, close-on-exec or not) and
// its signal handlers. Use a Process from one thread at a time.
class COGENT_API Process {
public:
    // Fork now and run fn() (returning void, or int: the exit status) in the child. Throws
    // std::system_error when fork fails, std::invalid_argument for an empty function,
    // BlockingSwitchOutError on the hub. Call from any greenlet.
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Process>>>
    explicit Process(F&& fn) : Process(wrap(std::forward<F>(fn)), 0) {}
    // Same as the constructor (multiprocessing's Process(target=fn).start()).
    template <class F>
    static Process start(F&& fn) {
        return Process(std::forward<F>(fn));
    }
    // Moves the handle; the moved-from Process has pid() -1 and throws std::logic_error on use.
    Process(Process&& other) noexcept;
    // Drops the handle assigned over (as the destructor), then moves.
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    // Closes the handle; a child still running keeps running (and is reaped later, see above).
    ~Process();

    // The child's process id.
    pid_t pid() const noexcept;
    // Park the current greenlet until the child exits: true, or false if `timeout` passed
    // first. Cooperative (pidfd + the hub's fd waiting; a waitpid poll loop without pidfd).
    // Throws BlockingSwitchOutError on the hub; Timeout and kill interrupt it.
    bool join(TimeoutArg timeout = {});
    // The exit status once the child ended: its exit code, or -N if signal N killed it (as
    // multiprocessing); nullopt while it runs. Never blocks.
    std::optional<int> exitcode();
    // True while the child has not exited. Never blocks.
    bool is_alive();
    // Send SIGTERM (nothing once the child has been reaped).
    void terminate();
    // Send SIGKILL (nothing once the child has been reaped).
    void kill();

private:
    Process(std::function<int()> fn, int);
    [[noreturn]] static void empty_function();
    template <class F>
    static std::function<int()> wrap(F&& fn) {
        using R = std::invoke_result_t<std::decay_t<F>&>;
        if constexpr (std::is_constructible_v<bool, const std::decay_t<F>&>) {
            if (!static_cast<bool>(fn)) empty_function();  // an empty std::function or null
        }
        if constexpr (std::is_convertible_v<R, int>) {
            return [f = std::forward<F>(fn)]() mutable -> int { return static_cast<int>(f()); };
        } else {
            return [f = std::forward<F>(fn)]() mutable -> int {
                f();
                return 0;
            };
        }
    }
    detail::ChildWatch* child_ = nullptr;  // owned; null only after a move
};

namespace detail {
// Testing hooks. With false, child waits poll waitid(WNOHANG) with sleeps, as on a kernel
// without pidfd_open. Affects children started afterwards.
COGENT_INTERNAL_API void set_pidfd_enabled(bool on) noexcept;
// Children whose handle was destroyed while they ran and that are not reaped yet.
COGENT_INTERNAL_API std::size_t orphan_count() noexcept;
}  // namespace detail

}  // namespace cogent
