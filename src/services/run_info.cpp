// Run info (gevent.util.print_run_info): every hub and every greenlet, with what it waits on,
// for how long, who spawned it, its stack, and its backtrace, symbolized.
//
// Backtraces. A parked greenlet's is walked without resuming it: cogent_call_on_context
// (core/switch_x86_64.S) calls the unwinder on the caller's own stack in a frame whose unwind
// information names the parked context as its caller, so the unwinder reads the greenlet's
// stack and never writes to it. A thread that is running (a busy hub: a greenlet that
// computes, or a blocking call) is asked for its own backtrace with a signal (kSampleSignal),
// whose handler walks its stack through the signal frame.
//
// Other threads. A hub's greenlets belong to its thread, so each hub formats its own part, on
// its own thread, from a callback queued with run_threadsafe; a hub that does not answer within
// kAnswerWait is busy (it runs no callbacks): it is shown as such, with the running greenlet's
// name and the thread's live backtrace.
//
// Symbols come from libbacktrace (GCC's, linked in statically: function, file and line where
// there is debug information, inlined frames included), else from dladdr.
#include <arpa/inet.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if COGENT_HAVE_LIBBACKTRACE
// GCC's libbacktrace (libgcc-12-dev's libbacktrace.a, linked in, its symbols kept local). Its
// C interface, declared here rather than from <backtrace.h>, which sits in GCC's private
// include directory (clang-based tools would not find it).
extern "C" {
struct backtrace_state;
using backtrace_error_callback = void (*)(void* data, const char* msg, int errnum);
using backtrace_full_callback = int (*)(void* data, std::uintptr_t pc, const char* filename,
                                        int lineno, const char* function);
using backtrace_syminfo_callback = void (*)(void* data, std::uintptr_t pc, const char* symname,
                                            std::uintptr_t symval, std::uintptr_t symsize);
backtrace_state* backtrace_create_state(const char* filename, int threaded,
                                        backtrace_error_callback error_callback, void* data);
int backtrace_pcinfo(backtrace_state* state, std::uintptr_t pc, backtrace_full_callback callback,
                     backtrace_error_callback error_callback, void* data);
int backtrace_syminfo(backtrace_state* state, std::uintptr_t addr,
                      backtrace_syminfo_callback callback, backtrace_error_callback error_callback,
                      void* data);
}
#endif

#include "cogent/util.hpp"
#include "hub/hub.hpp"
#include "io/fdwait.hpp"
#include "services/run_info.hpp"

#if defined(__x86_64__) && defined(__ELF__)
#define COGENT_WALK_PARKED 1
extern "C" {
__attribute__((visibility("hidden"))) void cogent_call_on_context(void* ctx, void (*fn)(void*),
                                                                  void* arg);
__attribute__((visibility("hidden"))) void cogent_context_start();
}
#endif

namespace cogent::detail {

namespace {

constexpr auto kAnswerWait = std::chrono::milliseconds(500);

// ---- backtraces ----

struct Collect {
    Frames* out;
    bool from_signal = false;  // keep frames only from the interrupted one on
    bool started = true;
};

_Unwind_Reason_Code collect_frame(_Unwind_Context* uc, void* arg) {
    auto* c = static_cast<Collect*>(arg);
    int before = 0;
    const std::uintptr_t ip = _Unwind_GetIPInfo(uc, &before);
    if (!ip) return _URC_END_OF_STACK;
    if (!c->started) {
        if (!before) return _URC_NO_REASON;  // the handler's own frames, the trampoline
        c->started = true;
    }
    Frames& f = *c->out;
    if (f.n >= Frames::kMax) return _URC_END_OF_STACK;
    // A return address points after the call: look up the call itself. The interrupted frame
    // of a signal points at the instruction that was about to run.
    f.pc[f.n++] = ip - (before ? 0 : 1);
    return _URC_NO_REASON;
}

#ifdef COGENT_WALK_PARKED
struct ParkedWalk {
    Frames* out;
    std::uintptr_t resume_pc;  // the parked context's return address, minus 1
};
void walk_parked(void* arg) {
    auto* w = static_cast<ParkedWalk*>(arg);
    Frames all;
    Collect c{&all};
    _Unwind_Backtrace(collect_frame, &c);
    // Drop this function's and cogent_call_on_context's frames: start at the parked context.
    int i = 0;
    while (i < all.n && all.pc[i] != w->resume_pc) ++i;
    for (; i < all.n && w->out->n < Frames::kMax; ++i) w->out->pc[w->out->n++] = all.pc[i];
}
#endif

// ---- the live backtrace of another thread: a signal it handles itself ----

constexpr int kSampleSignalOffset = 4;  // SIGRTMAX - 4
std::mutex g_sample_mu;                 // one sample at a time
Frames g_sample;
char g_sample_greenlet[160];  // the greenlet the sampled thread was running
std::atomic<pid_t> g_sample_tid{0};
sem_t g_sample_done;
std::once_flag g_sample_once;

void on_sample_signal(int, siginfo_t*, void*) {
    const int saved = errno;
    if (g_sample_tid.load(std::memory_order_acquire) == pid_t(syscall(SYS_gettid))) {
        g_sample.n = 0;
        g_sample_greenlet[0] = 0;
        if (ThreadCore* tc = tls_core; tc && tc->current)
            tc->current->describe(g_sample_greenlet, sizeof g_sample_greenlet);
        Collect c{&g_sample, true, false};
        _Unwind_Backtrace(collect_frame, &c);
        g_sample_tid.store(0, std::memory_order_release);
        sem_post(&g_sample_done);
    }
    errno = saved;
}

void install_sample_handler() {
    sem_init(&g_sample_done, 0, 0);
    struct sigaction sa {};
    sa.sa_sigaction = &on_sample_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMAX - kSampleSignalOffset, &sa, nullptr);
    // The unwinder's first use may load and allocate: not in a signal handler.
    Frames warm;
    Collect c{&warm};
    _Unwind_Backtrace(collect_frame, &c);
}

// ---- symbols ----

#if COGENT_HAVE_LIBBACKTRACE
backtrace_state* bt_state() {
    static backtrace_state* s = backtrace_create_state(
        nullptr, /*threaded=*/1, [](void*, const char*, int) {}, nullptr);
    return s;
}
#endif

std::string demangle(const char* name) {
    if (!name) return {};
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string s = status == 0 && d ? d : name;
    std::free(d);
    return s;
}

std::string base_name(const char* path) {
    if (!path || !*path) return {};
    const char* slash = std::strrchr(path, '/');
    return slash ? slash + 1 : path;
}

}  // namespace

Frames backtrace_here(int skip) {
    Frames all, out;
    Collect c{&all};
    _Unwind_Backtrace(collect_frame, &c);
    for (int i = skip + 1; i < all.n; ++i) out.pc[out.n++] = all.pc[i];
    return out;
}

Frames backtrace_parked(const GreenletImpl* g) {
    Frames out;
#ifdef COGENT_WALK_PARKED
    if (!g->ctx || g->state != GreenletImpl::State::active) return out;
    const auto ret =
        *reinterpret_cast<const std::uintptr_t*>(static_cast<const char*>(g->ctx) + 0x30);
    if (ret == reinterpret_cast<std::uintptr_t>(&cogent_context_start)) return out;  // not run
    ParkedWalk w{&out, ret - 1};
    cogent_call_on_context(g->ctx, &walk_parked, &w);
#else
    (void)g;
#endif
    return out;
}

bool backtrace_thread(pid_t tid, Frames* out, std::string* greenlet) {
    std::call_once(g_sample_once, install_sample_handler);
    std::lock_guard<std::mutex> lk(g_sample_mu);
    g_sample_tid.store(tid, std::memory_order_release);
    if (syscall(SYS_tgkill, getpid(), tid, SIGRTMAX - kSampleSignalOffset) != 0) {
        g_sample_tid.store(0);
        return false;
    }
    timespec until{};
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 500 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (sem_timedwait(&g_sample_done, &until) != 0)
        if (errno != EINTR) {
            // No answer (signal blocked in that thread?): withdraw; a late handler finds
            // the tid cleared and does nothing.
            pid_t expected = tid;
            if (g_sample_tid.compare_exchange_strong(expected, 0)) return false;
            sem_wait(&g_sample_done);  // it is answering right now
            break;
        }
    *out = g_sample;
    if (greenlet) *greenlet = g_sample_greenlet;
    return true;
}

std::vector<FrameInfo> symbolize(std::uintptr_t pc) {
    std::vector<FrameInfo> out;
#if COGENT_HAVE_LIBBACKTRACE
    if (backtrace_state* s = bt_state()) {
        backtrace_pcinfo(
            s, pc,
            [](void* data, std::uintptr_t, const char* file, int line, const char* fn) -> int {
                auto* v = static_cast<std::vector<FrameInfo>*>(data);
                if (!fn && !file) return 0;
                v->push_back({demangle(fn), file ? file : "", line, {}});
                return 0;
            },
            [](void*, const char*, int) {}, &out);
        if (out.empty() || out.back().function.empty()) {
            std::string sym;
            backtrace_syminfo(
                s, pc,
                [](void* data, std::uintptr_t, const char* name, std::uintptr_t, std::uintptr_t) {
                    if (name) *static_cast<std::string*>(data) = name;
                },
                [](void*, const char*, int) {}, &sym);
            if (!sym.empty()) {
                if (out.empty()) out.push_back({});
                out.back().function = demangle(sym.c_str());
            }
        }
    }
#endif
    Dl_info info{};
    const bool have = dladdr(reinterpret_cast<void*>(pc), &info) != 0;
    if (out.empty()) {
        FrameInfo f;
        if (have && info.dli_sname) f.function = demangle(info.dli_sname);
        out.push_back(std::move(f));
    }
    if (have) out.back().object = base_name(info.dli_fname);
    // Inlined frames come innermost first, each sharing the object.
    for (auto& f : out)
        if (f.object.empty() && have) f.object = base_name(info.dli_fname);
    return out;
}

namespace {

// ---- formatting ----

void appendf(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& s, const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) s.append(buf, std::size_t(n) < sizeof buf ? std::size_t(n) : sizeof buf - 1);
}

std::string duration_text(double s) {
    char buf[32];
    if (s < 0.001)
        std::snprintf(buf, sizeof buf, "%.0f us", s * 1e6);
    else if (s < 1)
        std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
    else
        std::snprintf(buf, sizeof buf, "%.2f s", s);
    return buf;
}

// Frames of cogent itself (the switch, parking, the hub) and of the C++ library's plumbing are
// left out of a parked greenlet's trace up to the first frame of other code.
bool runtime_frame(const FrameInfo& f) {
    if (f.object.rfind("libcogent.so", 0) == 0) return true;
    return false;
}

// A shared library a wait can be said to come from ("from libpq.so.5"): not the runtime's, not
// the C and C++ libraries', not the program's own.
bool user_library(const std::string& object) {
    if (object.find(".so") == std::string::npos) return false;
    for (const char* sys : {"libcogent", "libc.so", "libstdc++", "libgcc_s", "ld-linux", "libm.so",
                            "libasan", "libubsan", "liblsan", "libtsan", "libpthread"})
        if (object.rfind(sys, 0) == 0) return false;
    return true;
}

void format_frames(std::string& out, const Frames& fr, const char* indent, bool trim_runtime,
                   std::string* from_library) {
    std::vector<FrameInfo> frames;
    for (int i = 0; i < fr.n; ++i)
        for (auto& f : symbolize(fr.pc[i])) frames.push_back(std::move(f));
    std::size_t first = 0, last = frames.size();
    if (trim_runtime) {
        // The runtime's frames above the code that waits (the switch, the parking), and below
        // the greenlet's function (its start).
        while (first < last && runtime_frame(frames[first])) ++first;
        while (last > first && runtime_frame(frames[last - 1])) --last;
        if (first == last) first = 0, last = frames.size();  // all cogent: show them all
    }
    if (first) appendf(out, "%s... %zu frame%s of cogent\n", indent, first, first == 1 ? "" : "s");
    int shown = 0;
    for (std::size_t i = first; i < last; ++i) {
        const FrameInfo& f = frames[i];
        {
            if (from_library && from_library->empty() && user_library(f.object))
                *from_library = f.object;
            appendf(out, "%s#%-2d ", indent, shown++);
            out += f.function.empty() ? "??" : f.function;
            if (!f.file.empty())
                appendf(out, " at %s:%d", f.file.c_str(), f.line);
            else if (!f.object.empty())
                appendf(out, " (%s)", f.object.c_str());
            out += '\n';
        }
    }
    if (fr.n == 0) appendf(out, "%s(no backtrace)\n", indent);
}

std::string name_of(const GreenletImpl* g) {
    char buf[160];
    g->describe(buf, sizeof buf);
    return buf;
}

// Resident pages from the low end up: how deep the stack has been used (the touched part of a
// reused stack may include an earlier owner's).
std::size_t stack_touched(const GreenletImpl* g) {
    if (!g->stack_lo || !g->stack_size) return 0;
    const std::size_t page = page_size();
    const std::size_t pages = g->stack_size / page;
    std::vector<unsigned char> vec(pages);
    if (mincore(g->stack_lo, pages * page, vec.data()) != 0) return 0;
    for (std::size_t i = 0; i < pages; ++i)
        if (vec[i] & 1) return (pages - i) * page;
    return 0;
}

struct Entry {
    GreenletImpl* g;
    std::uint64_t number;
    std::uint64_t parent;  // spawned_by
    std::string name;
};

void format_greenlet(std::string& out, const Entry& e, ThreadState* ts, std::uint64_t now,
                     const std::map<const GreenletImpl*, std::string>& fd_waits, int depth,
                     const RunInfoOptions& opt) {
    GreenletImpl* g = e.g;
    std::string indent(std::size_t(2 + 2 * depth), ' ');
    const bool running = g == ts->current;
    const bool is_hub = ts->hub && g == ts->hub->greenlet;
    out += indent;
    out += e.name;
    if (g->state == GreenletImpl::State::unstarted) {
        out += ": scheduled, not started yet\n";
        return;
    }
    std::string from;
    std::string trace;
    Frames fr;
    if (running)
        fr = backtrace_here(3);
    else
        fr = backtrace_parked(g);
    if (opt.stacks) {
        const std::string fi = indent + "    ";
        format_frames(trace, fr, fi.c_str(), !running && !is_hub, &from);
    }
    if (running) {
        out += ": running (this call)";
    } else if (g->waiting_on) {
        out += ": parked in ";
        auto it = fd_waits.find(g);
        out += it != fd_waits.end() ? it->second : std::string(g->waiting_on);
        if (!from.empty()) out += " from " + from;
        if (g->wait_since_ns && now > g->wait_since_ns)
            out += " for " + duration_text(double(now - g->wait_since_ns) / 1e9);
    } else if (is_hub) {
        out += ": the hub (waiting for the running greenlet to switch back)";
    } else {
        out += ": runnable (switched out without a wait, or about to be resumed)";
    }
    if (g->stack_size)
        appendf(out, "; stack %zu KiB, %zu KiB touched", g->stack_size >> 10,
                stack_touched(g) >> 10);
    out += '\n';
    out += trace;
}

std::string peer_text(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    char host[INET6_ADDRSTRLEN] = "";
    char out[INET6_ADDRSTRLEN + 16] = "";
    if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, unsigned(ntohs(a->sin_port)));
    } else if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, unsigned(ntohs(a->sin6_port)));
    } else if (ss.ss_family == AF_UNIX) {
        std::snprintf(out, sizeof out, "unix socket");
    }
    return out;
}

}  // namespace

bool start_daemon_thread(void* (*fn)(void*), const char* name) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    const bool ok = pthread_create(&t, &a, fn, nullptr) == 0;
    if (ok) pthread_setname_np(t, name);
    pthread_attr_destroy(&a);
    return ok;
}

std::string format_backtrace(const Frames& fr, const char* indent) {
    std::string out;
    format_frames(out, fr, indent, false, nullptr);
    return out;
}

// This thread's hub and greenlets (the caller is on that thread).
std::string format_own_thread(const RunInfoOptions& opt, bool caller_is_here) {
    std::string out;
    ThreadState* ts = tls_state;
    if (!ts) return out;
    HubImpl* hub = ts->hub;
    const std::uint64_t now = monotonic_ns();
    appendf(out, "Hub %llu on OS thread %d%s", hub ? (unsigned long long)hub->thread_index() : 0ULL,
            int(syscall(SYS_gettid)), caller_is_here ? " (this thread)" : "");
    char tname[32] = "";
    if (pthread_getname_np(pthread_self(), tname, sizeof tname) == 0 && *tname)
        appendf(out, " \"%s\"", tname);
    std::map<const GreenletImpl*, std::string> fd_waits;
    std::size_t fds = 0;
    if (hub && hub->io) {
        for (FdState* s : hub->io->slots) {
            if (!s) continue;
            fds += std::size_t(s->io[0].active()) + std::size_t(s->io[1].active());
            for (int d = 0; d < 2; ++d) {
                if (!s->waiter[d]) continue;
                const GreenletImpl* g = waiter_greenlet(s->waiter[d]);
                std::string text = std::string(g->waiting_on ? g->waiting_on : "a wait") +
                                   (d == 0 ? " (reading" : " (writing") + " fd " +
                                   std::to_string(s->fd);
                const std::string peer = peer_text(s->fd);
                if (!peer.empty()) text += ", " + peer;
                fd_waits[g] = text + ")";
            }
        }
    }
    if (hub)
        appendf(out, ": %zu callback%s queued, %zu fd watcher%s, last poll %s ago\n",
                hub->pending(), hub->pending() == 1 ? "" : "s", fds, fds == 1 ? "" : "s",
                duration_text(double(now - hub->last_poll_ns.load()) / 1e9).c_str());
    else
        out += ": no hub yet\n";

    // Every greenlet: main, the hub, the live ones, and those scheduled to start.
    std::vector<Entry> all;
    auto add = [&](GreenletImpl* g) { all.push_back({g, g->number(), g->spawned_by, name_of(g)}); };
    if (ts->main) add(static_cast<GreenletImpl*>(ts->main));
    if (hub) add(hub->greenlet);
    ts->live.for_each([&](GreenletImpl* g) {
        if (!hub || g != hub->greenlet) add(g);
    });
    if (hub)
        hub->callbacks.for_each([&](Callback* cb) {
            if (cb->fn != &WakeCallback::fire) return;
            auto* w = static_cast<WakeCallback*>(cb);
            if (w->g && w->g->state == GreenletImpl::State::unstarted) add(w->g);
        });
    appendf(out, "  %zu greenlet%s (spawned ones under the greenlet that spawned them):\n",
            all.size(), all.size() == 1 ? "" : "s");
    // The spawn tree: roots are those whose spawner is not a live greenlet here.
    std::map<std::uint64_t, std::size_t> by_number;
    for (std::size_t i = 0; i < all.size(); ++i)
        if (all[i].number) by_number[all[i].number] = i;
    std::vector<std::vector<std::size_t>> kids(all.size());
    std::vector<std::size_t> roots;
    for (std::size_t i = 0; i < all.size(); ++i) {
        auto it = all[i].parent ? by_number.find(all[i].parent) : by_number.end();
        if (it != by_number.end() && it->second != i)
            kids[it->second].push_back(i);
        else
            roots.push_back(i);
    }
    std::vector<bool> done(all.size());
    auto visit = [&](auto&& self, std::size_t i, int depth) -> void {
        if (done[i] || depth > 64) return;
        done[i] = true;
        format_greenlet(out, all[i], ts, now, fd_waits, depth, opt);
        for (std::size_t k : kids[i]) self(self, k, depth + 1);
    };
    for (std::size_t r : roots) visit(visit, r, 0);
    return out;
}

}  // namespace cogent::detail

namespace cogent {

using namespace detail;

std::string format_run_info(const RunInfoOptions& opt) {
    std::string out;
    char when[64] = "";
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    std::vector<HubImpl*> hubs;
    for_each_hub([](HubImpl* h, void* v) { static_cast<std::vector<HubImpl*>*>(v)->push_back(h); },
                 &hubs);
    appendf(out, "=== cogent run info: pid %d, %zu hub%s, %s ===\n", int(getpid()), hubs.size(),
            hubs.size() == 1 ? "" : "s", when);

    // Ask the other hubs first (they format in parallel), then do our own.
    struct Answer {
        std::mutex mu;
        std::condition_variable cv;
        std::vector<std::string> texts;
        std::vector<bool> done;
    };
    auto answer = std::make_shared<Answer>();
    answer->texts.resize(hubs.size());
    answer->done.resize(hubs.size());
    ThreadState* me = tls_state;
    std::vector<pid_t> tids(hubs.size());
    std::vector<std::string> busy_names(hubs.size());
    for (std::size_t i = 0; i < hubs.size(); ++i) {
        tids[i] = hubs[i]->tid;
        if (me && hubs[i] == me->hub) continue;
        hubs[i]->run_threadsafe([answer, i, opt] {
            std::string s = format_own_thread(opt, false);
            std::lock_guard<std::mutex> lk(answer->mu);
            answer->texts[i] = std::move(s);
            answer->done[i] = true;
            answer->cv.notify_all();
        });
    }
    std::string own;
    if (me && me->hub) own = format_own_thread(opt, true);
    const auto deadline = std::chrono::steady_clock::now() + kAnswerWait;
    {
        std::unique_lock<std::mutex> lk(answer->mu);
        for (std::size_t i = 0; i < hubs.size(); ++i) {
            if (me && hubs[i] == me->hub) continue;
            answer->cv.wait_until(lk, deadline, [&] { return bool(answer->done[i]); });
        }
    }
    for (std::size_t i = 0; i < hubs.size(); ++i) {
        if (me && hubs[i] == me->hub) {
            out += own;
            continue;
        }
        std::string text;
        {
            std::lock_guard<std::mutex> lk(answer->mu);
            if (answer->done[i]) text = answer->texts[i];
        }
        if (!text.empty()) {
            out += text;
            continue;
        }
        // Busy: it ran no callback within the wait. Its live backtrace, from the thread itself.
        appendf(out,
                "Hub %llu on OS thread %d: busy: ran no callback for %s (a greenlet computing "
                "without yielding, or a call that blocks the thread)",
                (unsigned long long)hubs[i]->thread_index(), int(tids[i]),
                duration_text(std::chrono::duration<double>(kAnswerWait).count()).c_str());
        Frames fr;
        std::string running;
        if (backtrace_thread(tids[i], &fr, &running)) {
            if (!running.empty()) out += "; running " + running;
            out += "; its thread is now in:\n";
            format_frames(out, fr, "    ", false, nullptr);
        } else {
            out += ";\n    (the thread did not answer the sampling signal)\n";
        }
    }
    if (!me || !me->hub) {
        if (me && me->main)
            appendf(out, "(the calling thread, OS thread %d, has no hub)\n",
                    int(syscall(SYS_gettid)));
    }
    out += "=== end of run info ===\n";
    return out;
}

namespace {
// COGENT_RUN_INFO_SIGNAL: the handler writes a byte to a pipe; a thread of ours reads it and
// prints run info, so that it works whatever the hubs are doing (blocked ones included).
int g_trigger_pipe[2] = {-1, -1};

void on_trigger_signal(int) {
    const int saved = errno;
    const char b = 1;
    ssize_t r = write(g_trigger_pipe[1], &b, 1);
    (void)r;
    errno = saved;
}

void* trigger_thread(void*) {
    for (;;) {
        char buf[16];
        const ssize_t r = read(g_trigger_pipe[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return nullptr;
        try {
            print_run_info({});
        } catch (...) {
            report_exception("printing run info (COGENT_RUN_INFO_SIGNAL)",
                             std::current_exception());
        }
    }
}

void start_trigger_thread() { start_daemon_thread(&trigger_thread, "cogent-runinfo"); }

__attribute__((constructor)) void install_run_info_signal() {
    const char* e = std::getenv("COGENT_RUN_INFO_SIGNAL");
    if (!e || !*e) return;
    int sig = 0;
    try {
        sig = config().run_info_signal;
    } catch (const std::exception& x) {
        std::fprintf(stderr, "%s\n", x.what());
        return;
    }
    if (!sig || pipe2(g_trigger_pipe, O_CLOEXEC) != 0) return;
    fcntl(g_trigger_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa {};
    sa.sa_handler = &on_trigger_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
    start_trigger_thread();
    pthread_atfork(nullptr, nullptr, &start_trigger_thread);  // a fork child has no threads
}
}  // namespace

void print_run_info(const RunInfoOptions& opt) {
    const std::string s = format_run_info(opt);
    std::fwrite(s.data(), 1, s.size(), stderr);
    std::fflush(stderr);
}

}  // namespace cogent
