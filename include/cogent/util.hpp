// Seeing inside a running program (gevent.util, greenlet.settrace, Hub.handle_error): where
// errors nobody else sees are reported, and a hook on every switch.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <string_view>

#include "cogent/detail/export.hpp"

namespace cogent {

namespace detail {
class GreenletImpl;
}

// ---- run info (gevent.util.print_run_info / format_run_info) ----

struct COGENT_API RunInfoOptions {
    bool stacks = true;  // each greenlet's backtrace (symbolized: function, file:line)
};

// Every hub of the process (its OS thread, queued callbacks, fd watchers, when it last polled)
// and every greenlet of each: name, state, what it waits on (with the fd and peer of an I/O
// wait) and for how long, the library it waits from, its stack size and how much of it was
// touched, and its backtrace; spawned greenlets under the greenlet that spawned them. Parked
// greenlets are not resumed to get their backtraces. Each hub formats its own part on its own
// thread: the calling thread waits up to 0.5 s for the others; a hub that has not answered by
// then is busy (a greenlet computing, or a call that blocks the thread), and the live backtrace
// of its thread is shown instead (taken with the signal SIGRTMAX-4).
// COGENT_RUN_INFO_SIGNAL=SIGQUIT (any catchable signal) prints it to stderr on that signal, from
// a thread of its own, whatever the hubs are doing.
COGENT_API std::string format_run_info(const RunInfoOptions& options = {});
// format_run_info() to stderr.
COGENT_API void print_run_info(const RunInfoOptions& options = {});

// ---- the monitor (gevent's monitor thread: GEVENT_MONITOR_THREAD_ENABLE,
//      GEVENT_MAX_BLOCKING_TIME) ----

namespace monitor {

// A hub that did not get control back for longer than the limit: a greenlet computing without
// yielding, or a call that blocks its thread.
struct COGENT_API BlockedReport {
    std::uint64_t hub = 0;  // Hub::index()
    int os_thread = 0;      // its OS thread id (gettid)
    std::string greenlet;   // the greenlet that holds it ("spinner", "<main greenlet>"...)
    double seconds = 0;     // how long it had held it when seen
    double limit = 0;       // the limit in force
    std::string backtrace;  // the thread's live backtrace at that moment, one frame a line
    std::string message;    // the whole report as the default handler prints it
};
using BlockedHandler = std::function<void(const BlockedReport&)>;

// Start the monitor for the whole process (as COGENT_MONITOR=1 does at the first hub): one OS
// thread that samples every hub a few times per `limit_seconds` (0.001..3600; 0: the
// COGENT_MAX_BLOCKING_TIME setting, else 0.1) and reports each incident once. Calling it again
// changes the limit. std::invalid_argument for a limit out of range.
COGENT_API void start(double limit_seconds = 0);
// Whether it runs.
COGENT_API bool running() noexcept;
// Where reports go (from the monitor's thread): by default to stderr. Returns the previous
// handler; an empty one restores the default.
COGENT_API BlockedHandler on_blocked(BlockedHandler handler);

}  // namespace monitor

// ---- a hook on every switch (greenlet.settrace) ----

// A greenlet as a trace function sees it: valid only during the call.
class COGENT_API GreenletInfo {
public:
    explicit GreenletInfo(const detail::GreenletImpl* g) noexcept : g_(g) {}
    // "Greenlet-3", the name given to spawn, "<main greenlet>", "<hub>"...
    std::string name() const;
    // Greenlet-N's N for a spawned greenlet (unique per thread); 0 for the others.
    std::uint64_t number() const noexcept;
    bool is_main() const noexcept;
    bool is_hub() const noexcept;
    bool dead() const noexcept;
    // The same for every switch of the same greenlet while it lives.
    const void* identity() const noexcept { return g_; }

private:
    const detail::GreenletImpl* g_;
};

// Called on the origin's side just before every switch of this thread, with "switch" or
// "throw" (an exception is being thrown into the target: a kill, a Timeout, throw_exception),
// the greenlet being left and the one being entered. It must not switch greenlets itself (a
// switch from inside it is not traced again); what it throws is reported (set_error_handler)
// and the switch goes on.
using TraceFunction = std::function<void(std::string_view event, const GreenletInfo& origin,
                                         const GreenletInfo& target)>;
// Set the calling thread's trace function (empty: none); returns the previous one. With none
// set, a switch pays one predictable branch.
COGENT_API TraceFunction settrace(TraceFunction fn);
// The calling thread's trace function (empty if none).
COGENT_API TraceFunction gettrace();

// ---- errors nobody else sees (gevent's Hub.handle_error / print_exception) ----

// What an error report is about.
enum class ErrorKind {
    greenlet,  // a spawned greenlet's function ended with an exception (it is also its result)
    callback,  // a hub callback, a link or rawlink callback, a signal handler, a server handler
    internal,  // the runtime's own work failed (shutdown, a destructor, starting without memory)
};

// One report. The views are valid only during the handler's call.
struct COGENT_API ErrorReport {
    ErrorKind kind = ErrorKind::internal;
    // Who failed: a greenlet's name ("Greenlet-3", "fetch"), or the kind of callback ("a hub
    // callback", "a rawlink callback", "StreamServer-1: the handler for 127.0.0.1:5000").
    std::string_view where;
    // The exception (null for reports that carry only a message, such as a server's accept
    // loop retrying after a failure).
    std::exception_ptr error;
    // The line the default handler prints, without the newline ("cogent: Greenlet-3 failed
    // with std::runtime_error: boom").
    std::string_view message;
};

// The function every error report goes to, from whichever OS thread it happens on (it must be
// thread-safe). It must not switch greenlets or block (it may run on a hub); what it throws is
// caught and reported by the default handler instead.
using ErrorHandler = std::function<void(const ErrorReport&)>;

// Replace the handler for the whole process; returns the previous one (empty: the default).
// An empty handler restores the default.
COGENT_API ErrorHandler set_error_handler(ErrorHandler handler);
// The default handler: writes report.message and a newline to stderr.
COGENT_API void print_exception(const ErrorReport& report) noexcept;

}  // namespace cogent
