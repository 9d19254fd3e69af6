// Error reporting: describe an exception by its type and message, report one nothing else sees.
#include <cxxabi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <typeinfo>

#include "cogent/exceptions.hpp"
#include "cogent/util.hpp"
#include "core/thread_state.hpp"

namespace cogent::detail {

namespace {
std::string demangle(const char* name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string s = (status == 0 && d) ? d : name;
    std::free(d);
    return s;
}
}  // namespace

std::string describe_exception(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const BaseException& ex) {
        return demangle(typeid(ex).name()) + ": " + ex.what();
    } catch (const std::exception& ex) {
        return demangle(typeid(ex).name()) + ": " + ex.what();
    } catch (...) {
        auto* t = abi::__cxa_current_exception_type();
        return t ? demangle(t->name()) : std::string("unknown exception");
    }
}

namespace {
// The user's handler (set_error_handler). Copied out under the lock, called outside it, so a
// handler may replace itself.
std::mutex g_handler_mu;
ErrorHandler g_handler;
std::atomic<bool> g_has_handler{false};
}  // namespace

void report_error(ErrorKind kind, std::string_view where, std::exception_ptr e,
                  std::string_view message) noexcept {
    ErrorReport r;
    r.kind = kind;
    r.where = where;
    r.error = e;
    r.message = message;
    if (g_has_handler.load(std::memory_order_acquire)) {
        try {
            ErrorHandler h;
            {
                std::lock_guard<std::mutex> lk(g_handler_mu);
                h = g_handler;
            }
            if (h) {
                h(r);
                return;
            }
        } catch (...) {
            // Straight to stderr: the handler would only fail again.
            print_exception(r);
            ErrorReport h;
            h.kind = ErrorKind::internal;
            h.where = "the error handler (set_error_handler)";
            h.error = std::current_exception();
            std::string line;
            try {
                line = "cogent: uncaught exception in " + std::string(h.where) + ": " +
                       describe_exception(h.error);
            } catch (...) {
            }
            h.message = line.empty() ? std::string_view("cogent: the error handler failed")
                                     : std::string_view(line);
            print_exception(h);
            return;
        }
    }
    print_exception(r);
}

void report_exception(const char* where, std::exception_ptr e) noexcept {
    try {
        std::string s =
            "cogent: uncaught exception in " + std::string(where) + ": " + describe_exception(e);
        report_error(ErrorKind::callback, where, e, s);
    } catch (...) {
        report_error(ErrorKind::callback, where, e,
                     "cogent: uncaught exception (and no memory to describe it)");
    }
}

void trace_switch(GreenletImpl* from, GreenletImpl* to) noexcept {
    auto* ts = static_cast<ThreadState*>(tls_core);
    if (!ts || !ts->tracer || ts->in_trace) return;
    ts->in_trace = true;
    try {
        (*static_cast<TraceFunction*>(ts->tracer))(to->pending ? "throw" : "switch",
                                                   GreenletInfo(from), GreenletInfo(to));
    } catch (...) {
        report_exception("the trace function (settrace)", std::current_exception());
    }
    ts->in_trace = false;
}

}  // namespace cogent::detail

namespace cogent {

std::string GreenletInfo::name() const {
    char buf[160];
    g_->describe(buf, sizeof buf);
    return buf;
}
std::uint64_t GreenletInfo::number() const noexcept { return g_->number(); }
bool GreenletInfo::is_main() const noexcept { return g_->is_main(); }
bool GreenletInfo::is_hub() const noexcept {
    return g_->thread && g_ == static_cast<const detail::ThreadState*>(g_->thread)->hub_greenlet;
}
bool GreenletInfo::dead() const noexcept { return g_->dead(); }

TraceFunction settrace(TraceFunction fn) {
    detail::ThreadState* ts = detail::thread_state();
    TraceFunction old;
    if (auto* cur = static_cast<TraceFunction*>(ts->tracer)) {
        old = std::move(*cur);
        delete cur;
        ts->tracer = nullptr;
    }
    if (fn) ts->tracer = new TraceFunction(std::move(fn));
    ts->tracing = ts->tracer != nullptr;
    // Inline switches in user code cannot call it: route them through the library meanwhile.
#if defined(__SANITIZE_ADDRESS__)
    ts->annotate = true;
#else
    ts->annotate = ts->tracing;
#endif
    return old;
}

TraceFunction gettrace() {
    detail::ThreadState* ts = detail::tls_state;
    if (!ts || !ts->tracer) return {};
    return *static_cast<TraceFunction*>(ts->tracer);
}

ErrorHandler set_error_handler(ErrorHandler handler) {
    std::lock_guard<std::mutex> lk(detail::g_handler_mu);
    ErrorHandler old = std::move(detail::g_handler);
    detail::g_handler = std::move(handler);
    detail::g_has_handler.store(static_cast<bool>(detail::g_handler), std::memory_order_release);
    return old;
}

void print_exception(const ErrorReport& report) noexcept {
    // One write per line, so that reports from several threads do not interleave.
    char buf[1024];
    const std::size_t n =
        report.message.size() < sizeof buf - 1 ? report.message.size() : sizeof buf - 1;
    report.message.copy(buf, n);
    buf[n] = '\n';
    fwrite(buf, 1, n + 1, stderr);
    if (report.message.size() > n) {
        fwrite(report.message.data() + n, 1, report.message.size() - n, stderr);
        fputc('\n', stderr);
    }
}

}  // namespace cogent
