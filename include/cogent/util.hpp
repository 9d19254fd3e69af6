// Seeing inside a running program (gevent.util, greenlet.settrace, Hub.handle_error): where
// errors nobody else sees are reported, and a hook on every switch.
#pragma once

#include <exception>
#include <functional>
#include <string>

#include "cogent/detail/export.hpp"

namespace cogent {

class RawGreenlet;

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
