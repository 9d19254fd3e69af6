// Signal handlers that run in greenlets (gevent.signal_handler).
#pragma once

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cogent/detail/export.hpp"

namespace cogent {

namespace detail {
struct SignalState;
}

// A registered handler (see signal_handler). A move-only RAII handle: destroying it cancels the
// handler, as cancel() does. (gevent's object stays installed until cancel(); in C++ a handle
// that outlives its owner silently is the surprise, so keep the handle as long as the handler
// should stay installed, e.g. in main's scope.)
class [[nodiscard]] COGENT_API SignalHandler {
public:
    // An empty handle (nothing installed).
    SignalHandler() noexcept = default;
    SignalHandler(SignalHandler&&) noexcept = default;
    // Cancels the handler this handle held, then takes o's.
    SignalHandler& operator=(SignalHandler&& o) noexcept;
    SignalHandler(const SignalHandler&) = delete;
    SignalHandler& operator=(const SignalHandler&) = delete;
    // cancel().
    ~SignalHandler() { cancel(); }

    // Stop handling: no new handler greenlet starts after cancel() returns (one already started
    // runs to its end). When the last handler of the signal is cancelled, the disposition that
    // was in place before the first one was installed comes back (SIG_DFL, SIG_IGN or a plain
    // sigaction handler). Idempotent; any thread may call it. From a thread other than the main
    // one, the disposition is restored shortly after, when the main thread's hub runs.
    void cancel() noexcept;
    // True from installation until cancel().
    bool active() const noexcept;
    // The signal number (0 for an empty handle).
    int signum() const noexcept;

private:
    friend SignalHandler signal_handler(int signum, std::function<void()> fn);
    explicit SignalHandler(std::shared_ptr<detail::SignalState> s) noexcept
        : state_(std::move(s)) {}
    std::shared_ptr<detail::SignalState> state_;
};

// Run fn in a new greenlet on the main thread's hub each time signal `signum` arrives (gevent's
// signal_handler). Not on the hub itself: the handler may sleep, wait and do I/O. Several
// handlers for one signal all run, each in its own greenlet, in installation order. As with
// POSIX signals, several deliveries before the main hub gets to run may start fn only once.
// An exception escaping fn is reported on stderr (like any greenlet's), never fatal.
// Signals are watched through libev's default loop, which the main thread's hub owns: the main
// thread must be running its hub (waiting cooperatively, in a greenlet switch, ...) for
// handlers to start. Installed handlers keep that hub alive (a greenlet waiting for a signal
// does not get LoopExit; gevent's watchers do not do that).
// Throws std::invalid_argument for a signal number out of range, SIGKILL and SIGSTOP (cannot be
// caught), SIGSEGV, SIGBUS, SIGFPE, SIGILL (synchronous faults: the faulting code would run
// again before any greenlet could), SIGCHLD (libev's default loop would reap every child with
// waitpid(-1); wait for children with cogent's subprocess support instead) and the two signals
// glibc reserves for threads (32, 33); std::invalid_argument for an empty fn.
// Call from any greenlet of any thread: from a thread other than the main one, the
// registration is handed to the main hub (Hub::run_callback_threadsafe) and the caller waits
// cooperatively until it is in place, so a signal sent right after this returns is handled;
// this throws std::logic_error when the main thread has no hub (call cogent::get_hub() there
// first), and waits for as long as the main thread does not run its hub.
COGENT_API SignalHandler signal_handler(int signum, std::function<void()> fn);

// signal_handler with arguments bound to fn (copied, as gevent passes *args).
template <class F, class A1, class... A>
SignalHandler signal_handler(int signum, F&& fn, A1&& a1, A&&... args) {
    return signal_handler(
        signum, std::function<void()>(
                    [f = std::decay_t<F>(std::forward<F>(fn)),
                     t = std::make_tuple(std::decay_t<A1>(std::forward<A1>(a1)),
                                         std::decay_t<A>(std::forward<A>(args))...)]() mutable {
                        std::apply(f, t);
                    }));
}

}  // namespace cogent
