// Internal: waiting for a child process cooperatively (Process and Popen share it). Not
// installed.
#pragma once

#include <sys/types.h>

#include <optional>

#include "cogent/time.hpp"

namespace cogent::detail {

// One child of this process that we will reap. Waiting parks on a pidfd (pidfd_open, Linux
// 5.3+) with the hub's fd waiting, so it works on any thread's hub and is interrupted by kill
// and Timeout with no watcher left behind; without pidfd it polls waitid(WNOHANG) with sleeps
// (1 ms doubling to 50 ms, as CPython's subprocess does). A ChildWatch is used from one thread
// at a time; several greenlets of that thread may wait on it at once.
class ChildWatch {
public:
    ChildWatch() noexcept = default;
    // Take charge of child `pid` (a fresh child: nobody else reaps it). Opens its pidfd.
    explicit ChildWatch(pid_t pid) noexcept;
    ChildWatch(ChildWatch&& o) noexcept;
    ChildWatch& operator=(ChildWatch&& o) noexcept;
    ChildWatch(const ChildWatch&) = delete;
    // Closes the pidfd. A child not reaped yet is reaped now if it has exited, else handed to
    // the orphan reaper (reap_later): it keeps running and becomes no zombie we forget.
    ~ChildWatch();

    pid_t pid() const noexcept { return pid_; }
    // The exit status once reaped: the exit code, or -N for a child killed by signal N.
    std::optional<int> returncode() const noexcept { return code_; }
    // Reap it if it has exited (never blocks); its returncode, or nullopt while it runs.
    std::optional<int> poll() noexcept;
    // Park the current greenlet until the child exits (then reap it): true, or false when
    // `timeout` passed first. `what` names the wait in errors. Throws what fd waits throw
    // (BlockingSwitchOutError on the hub, Timeout, GreenletExit).
    bool wait(TimeoutArg timeout, const char* what);
    // Send sig unless the child was already reaped (then its pid may belong to another
    // process): true if sent or the child is a zombie, false if reaped. Uses pidfd_send_signal
    // when there is a pidfd. Throws std::system_error for an invalid signal.
    bool send_signal(int sig);

private:
    void reset() noexcept;
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int waiters_ = 0;  // greenlets parked on pidfd_ (a second one waits on a dup)
    std::optional<int> code_;
};

// A child we no longer watch (its Popen/Process was destroyed while it ran): reaped by a later
// reap_orphans() once it exits, so it never stays a zombie for long (CPython's _active list).
void reap_later(pid_t pid) noexcept;
// Reap every orphan that has exited. Called whenever a Popen or Process starts a child.
void reap_orphans() noexcept;
// (orphan_count and set_pidfd_enabled, the testing hooks, are declared in process.hpp.)

}  // namespace cogent::detail
