// The thread family of the monkey patch (opt-in: COGENT_PATCH=...,thread, cogent-run
// --threads): pthread_create starts a greenlet on the calling thread's hub instead of an OS
// thread, and the calls that name threads understand those green threads.
//
// A green thread is a GreenThread object; its pthread_t is the object's address, distinct from
// every real thread's and stable for its life. A registry of every GreenThread tells the two
// kinds apart (a pthread_t is never dereferenced before it is found there); joined or
// detached-and-finished ones are kept and reused only after a thousand others (as glibc reuses
// its thread structures), so that joining one gets ESRCH instead of a crash. Waits on a green
// thread (join) go through the parking lot, so a real thread can join a green one too.
//
// Threads that stay real: those created by the runtime itself (libcogent: the thread pool, the
// resolver's fallback), and those created by a library named in COGENT_REAL_THREADS
// (comma-separated sonames or paths, e.g. libgomp.so.1), found from pthread_create's caller.
//
// Keys: pthread_key_create is libc's (one numbering for both kinds of thread); a green thread
// keeps its values in its own table, and their destructors run when it ends, as for a real one.
//
// pthread_exit in a green thread unwinds its stack with an exception (GreenThreadExit, not an
// std::exception): destructors and cleanup run; code that catches everything (`catch (...)`)
// without rethrowing stops it, as it would stop glibc's forced unwinding in C++ code.
//
// pthread_cancel of a green thread: deferred cancellation. It takes effect at the thread's
// next cancellation point (a wait that is one for libc: pthread_cond_*wait, sem_*wait,
// pthread_join, sleeps, socket and poll waits; pthread_testcancel), as pthread_exit(
// PTHREAD_CANCELED) would; waits that are no cancellation point (a mutex, an rwlock, a
// barrier) finish first, so it never strikes while a lock is half taken, and
// pthread_cond_wait re-takes its mutex before unwinding (as glibc does for cleanup handlers).
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cogent/greenlet.hpp"
#include "cogent/hub.hpp"
#include "shim.hpp"

using namespace cogent::patch;
namespace lot = cogent::detail::lot;

namespace {

inline bool threads_on() noexcept { return patched_families & Family::thread; }

// What pthread_exit throws through a green thread's frames.
struct GreenThreadExit {
    void* value;
};

struct GreenThread {
    void* (*start)(void*) = nullptr;
    void* arg = nullptr;
    void* result = nullptr;
    std::uintptr_t greenlet = 0;        // lot::self_token() of its greenlet, once running
    std::atomic<bool> finished{false};  // its function returned (or it exited)
    std::atomic<bool> detached{false};
    std::atomic<bool> joining{false};  // a join is in progress (a second one gets EINVAL)
    std::atomic<bool> cancel_pending{false};
    std::string name;
    std::size_t stack_size = 0;
    std::vector<void*> specific;    // by key
    bool gone = false;              // joined, or detached and ended (under the registry lock)
    cogent::Greenlet<void> handle;  // for pthread_cancel from its own OS thread
    cogent::Hub hub{nullptr};       // the hub it runs on
    pthread_t os_thread{};          // the OS thread of that hub
    void* stack_lo = nullptr;       // its greenlet's stack, once running
    std::size_t stack_bytes = 0;

    // For reuse (under the registry lock, gone and no longer referenced).
    void reset() {
        start = nullptr;
        arg = result = nullptr;
        greenlet = 0;
        finished = detached = joining = cancel_pending = false;
        name.clear();
        stack_size = 0;
        specific.clear();
        stack_lo = nullptr;
        stack_bytes = 0;
        gone = false;
    }
};

// The registry. Every GreenThread ever made stays allocated and listed in `all` (so a pthread_t
// is checked before it is dereferenced); one that can no longer be named (joined, or detached
// and ended) is marked gone and queued for reuse, which waits until kReuseAfter others went
// after it: an id used again soon after its join still gets ESRCH, as an id glibc reuses much
// later names the new thread. A spin lock: short critical sections, and a pthread mutex here
// would be one of the shim's own.
constexpr std::size_t kReuseAfter = 1024;
struct Registry {
    SpinLock lock;
    std::unordered_set<GreenThread*> all;
    std::unordered_map<std::uintptr_t, GreenThread*> by_greenlet;
    std::deque<GreenThread*> gone;  // oldest first
};
Registry& registry() {
    static Registry* r = new Registry;  // never destroyed: threads may end during exit
    return *r;
}
struct RegLock {
    Registry& r = registry();
    SpinGuard guard{r.lock};
};

// The green thread `t` names, if it is one that is alive (not yet joined or reaped).
GreenThread* find_live(pthread_t t) {
    auto* g = reinterpret_cast<GreenThread*>(t);
    RegLock lk;
    return lk.r.all.count(g) && !g->gone ? g : nullptr;
}
bool was_green(pthread_t t) {
    auto* g = reinterpret_cast<GreenThread*>(t);
    RegLock lk;
    return lk.r.all.count(g) && g->gone;
}

// The green thread the caller runs in, or null (a real thread, the hub, or a greenlet that is
// no green thread).
GreenThread* current() {
    if (!lot::caller_is_green()) return nullptr;
    const std::uintptr_t me = lot::self_token();
    RegLock lk;
    auto it = lk.r.by_greenlet.find(me);
    return it == lk.r.by_greenlet.end() ? nullptr : it->second;
}

// A green thread that can no longer be named (joined, or detached and finished): gone.
void retire(GreenThread* g) {
    cogent::Greenlet<void> handle = std::move(g->handle);  // released outside the lock
    RegLock lk;
    lk.r.by_greenlet.erase(g->greenlet);
    g->gone = true;
    lk.r.gone.push_back(g);
}

// A GreenThread for a new thread: a long-gone one again, or a new one.
GreenThread* make_green_thread() {
    {
        RegLock lk;
        if (lk.r.gone.size() > kReuseAfter) {
            GreenThread* g = lk.r.gone.front();
            lk.r.gone.pop_front();
            g->reset();
            return g;
        }
    }
    auto* g = new (std::nothrow) GreenThread;
    if (!g) return nullptr;
    try {
        RegLock lk;
        lk.r.all.insert(g);
    } catch (...) {
        delete g;
        return nullptr;
    }
    return g;
}

// ---- keys ----
constexpr unsigned kKeys = PTHREAD_KEYS_MAX;
std::atomic<void (*)(void*)> g_key_dtor[kKeys];
std::atomic<bool> g_key_used[kKeys];

void run_key_destructors(GreenThread* g) {
    for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS; ++round) {
        bool any = false;
        for (unsigned k = 0; k < g->specific.size(); ++k) {
            void* v = g->specific[k];
            if (!v) continue;
            g->specific[k] = nullptr;
            auto dtor = g_key_dtor[k].load(std::memory_order_acquire);
            if (dtor && g_key_used[k].load(std::memory_order_acquire)) {
                dtor(v);
                any = true;
            }
        }
        if (!any) break;
    }
}

// The greenlet's body.
void run_green_thread(GreenThread* g) {
    {
        RegLock lk;
        g->greenlet = lot::self_token();
        lk.r.by_greenlet[g->greenlet] = g;
    }
    cogent::detail::shim_current_stack(&g->stack_lo, &g->stack_bytes);
    // Cancelled before it ran: the cancel lands at its first wait (a helper greenlet throws it
    // in once this one suspends; a kill before the start would keep it from running at all).
    if (g->cancel_pending.exchange(false, std::memory_order_acq_rel)) {
        cogent::Greenlet<void> self = g->handle;
        cogent::spawn([self]() mutable { self.kill(GreenThreadExit{PTHREAD_CANCELED}, false); });
    }
    try {
        g->result = g->start(g->arg);
    } catch (const GreenThreadExit& e) {
        g->result = e.value;
    }
    run_key_destructors(g);
    g->finished.store(true, std::memory_order_release);
    if (lot::may_have_waiters(g)) lot::unpark(g, UINT_MAX, ~0u, nullptr, nullptr);
    if (g->detached.load(std::memory_order_acquire)) retire(g);
}

// COGENT_REAL_THREADS: the libraries whose threads stay real.
const std::vector<std::string>& real_thread_libs() {
    static const std::vector<std::string> libs = [] {
        std::vector<std::string> out;
        const char* v = std::getenv("COGENT_REAL_THREADS");
        std::string s = v ? v : "";
        std::size_t pos = 0;
        while (pos <= s.size()) {
            std::size_t comma = s.find(',', pos);
            if (comma == std::string::npos) comma = s.size();
            std::string item = s.substr(pos, comma - pos);
            item.erase(0, item.find_first_not_of(" \t"));
            item.erase(item.find_last_not_of(" \t") + 1);
            if (!item.empty()) out.push_back(item);
            pos = comma + 1;
        }
        return out;
    }();
    return libs;
}

bool same_object(const char* path, const std::string& want) {
    if (!path) return false;
    std::string p = path;
    if (p == want) return true;
    const std::string base = p.substr(p.rfind('/') + 1);
    return base == want || base.rfind(want + ".", 0) == 0;
}

// Whether a thread created from code at `caller` must be a real one. dladdr walks the loaded
// objects: the answer is cached per call site (a program creates its threads from few places).
bool must_stay_real_uncached(void* caller);
bool must_stay_real(void* caller) {
    struct Entry {
        void* caller;
        bool real;
    };
    thread_local Entry cache[8] = {};
    Entry& e = cache[(reinterpret_cast<std::uintptr_t>(caller) >> 4) % 8];
    if (e.caller != caller) e = Entry{caller, must_stay_real_uncached(caller)};
    return e.real;
}
bool must_stay_real_uncached(void* caller) {
    Dl_info info{};
    if (!dladdr(caller, &info)) return false;
    if (same_object(info.dli_fname, "libcogent.so")) return true;  // the runtime's own
    for (const auto& lib : real_thread_libs())
        if (same_object(info.dli_fname, lib)) return true;
    return false;
}

int join_wait(GreenThread* g, clockid_t clock, const timespec* abstime, bool try_only) {
    if (g->finished.load(std::memory_order_acquire)) return 0;
    if (try_only) return EBUSY;
    if (abstime && (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1'000'000'000)) return EINVAL;
    lot::Hooks h;
    h.ctx = g;
    h.validate = [](void* ctx) {
        return !static_cast<GreenThread*>(ctx)->finished.load(std::memory_order_acquire);
    };
    lot::Deadline d;
    if (abstime) {
        d.forever = false;
        d.clock = clock;
        d.at = *abstime;
        if (d.at.tv_sec < 0) d.at = timespec{0, 0};
    }
    while (!g->finished.load(std::memory_order_acquire))
        if (lot::park(g, 1, h, d, "pthread_join", nullptr) == lot::timed_out)
            return g->finished.load(std::memory_order_acquire) ? 0 : ETIMEDOUT;
    return 0;
}

int join_impl(pthread_t t, void** ret, clockid_t clock, const timespec* abstime, bool try_only) {
    GreenThread* g = find_live(t);
    if (!g) return was_green(t) ? ESRCH : -1;  // -1: not a green thread, libc's
    GreenThread* self = current();
    if (g == self) return EDEADLK;
    if (g->detached.load(std::memory_order_acquire)) return EINVAL;
    if (g->joining.exchange(true, std::memory_order_acq_rel)) return EINVAL;  // joined already
    const int e = join_wait(g, clock, abstime, try_only);
    if (e) {
        g->joining.store(false, std::memory_order_release);
        return e;
    }
    if (ret) *ret = g->result;
    retire(g);
    return 0;
}

// The stack size a thread attribute asks for, 0 when the program set none:
// pthread_attr_getstacksize cannot tell, as it reports libc's default (RLIMIT_STACK, 8 MiB
// by default) for an attribute without one. glibc keeps the size in the attribute's bytes
// (struct pthread_attr: 0 = unset); a value there that getstacksize does not confirm means
// another layout: then a size equal to the process default counts as unset.
std::size_t requested_stack_size(const pthread_attr_t* attr) noexcept {
    std::size_t reported = 0;
    if (pthread_attr_getstacksize(attr, &reported) != 0) return 0;
    std::size_t stored = 0;
    static_assert(sizeof(pthread_attr_t) >= 40);
    std::memcpy(&stored, reinterpret_cast<const char*>(attr) + 32, sizeof stored);
    if (stored == 0) return 0;
    if (stored == reported) return reported;
    pthread_attr_t def;
    std::size_t dflt = 0;
    if (pthread_getattr_default_np(&def) == 0) {
        pthread_attr_getstacksize(&def, &dflt);
        pthread_attr_destroy(&def);
    }
    return reported == dflt ? 0 : reported;
}

void check_cancel() {
    GreenThread* self = current();
    if (self && self->cancel_pending.exchange(false, std::memory_order_acq_rel))
        throw GreenThreadExit{PTHREAD_CANCELED};
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                               void* arg) {
    return cogent::patch::create_thread(thread, attr, start, arg, __builtin_return_address(0));
}

}  // extern "C"

int cogent::patch::create_thread(pthread_t* thread, const pthread_attr_t* attr,
                                 void* (*start)(void*), void* arg, void* caller) {
    if (!threads_on() || must_stay_real(caller)) return libc().create(thread, attr, start, arg);
    GreenThread* g = make_green_thread();
    if (!g) return EAGAIN;
    g->start = start;
    g->arg = arg;
    int detach = PTHREAD_CREATE_JOINABLE;
    if (attr) {
        g->stack_size = requested_stack_size(attr);
        pthread_attr_getdetachstate(attr, &detach);
    }
    g->detached.store(detach == PTHREAD_CREATE_DETACHED, std::memory_order_relaxed);
    try {
        cogent::SpawnOptions o;
        o.name = "thread";
        // A thread's default (8 MiB) would be an 8 MiB greenlet stack each: keep the
        // runtime's default unless the program asked for a size, rounded up to 64 KiB.
        if (g->stack_size) o.stack_size = std::max<std::size_t>(g->stack_size, 64 << 10);
        g->hub = cogent::get_hub();
        g->os_thread = libc().self();
        g->handle = cogent::spawn(o, [g] { run_green_thread(g); });
    } catch (...) {
        retire(g);
        return EAGAIN;
    }
    start_watchdog();
    *thread = reinterpret_cast<pthread_t>(g);
    return 0;
}

extern "C" {

COGENT_HOOK int pthread_join(pthread_t t, void** ret) {
    if (threads_on()) {
        check_cancel();  // a cancellation point
        const int e = join_impl(t, ret, CLOCK_REALTIME, nullptr, false);
        if (e >= 0) return e;
    }
    return libc().join(t, ret);
}

COGENT_HOOK int pthread_tryjoin_np(pthread_t t, void** ret) {
    if (threads_on()) {
        const int e = join_impl(t, ret, CLOCK_REALTIME, nullptr, true);
        if (e >= 0) return e;
    }
    return libc().tryjoin_np(t, ret);
}

COGENT_HOOK int pthread_timedjoin_np(pthread_t t, void** ret, const timespec* abstime) {
    if (threads_on()) {
        check_cancel();
        const int e = join_impl(t, ret, CLOCK_REALTIME, abstime, false);
        if (e >= 0) return e;
    }
    return libc().timedjoin_np(t, ret, abstime);
}

COGENT_HOOK int pthread_clockjoin_np(pthread_t t, void** ret, clockid_t clock,
                                     const timespec* abstime) {
    if (threads_on()) {
        if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
        check_cancel();
        const int e = join_impl(t, ret, clock, abstime, false);
        if (e >= 0) return e;
    }
    return libc().clockjoin_np(t, ret, clock, abstime);
}

COGENT_HOOK int pthread_detach(pthread_t t) {
    if (threads_on()) {
        if (GreenThread* g = find_live(t)) {
            if (g->detached.exchange(true, std::memory_order_acq_rel)) return EINVAL;
            if (g->joining.load(std::memory_order_acquire)) return EINVAL;
            if (g->finished.load(std::memory_order_acquire)) retire(g);
            return 0;
        }
        if (was_green(t)) return ESRCH;
    }
    return libc().detach(t);
}

COGENT_HOOK pthread_t pthread_self() {
    if (threads_on())
        if (GreenThread* g = current()) return reinterpret_cast<pthread_t>(g);
    return libc().self();
}

COGENT_HOOK void pthread_exit(void* value) {  // noreturn, as pthread.h declares it
    if (threads_on() && current()) throw GreenThreadExit{value};
    libc().exit_thread(value);
    __builtin_unreachable();
}

COGENT_HOOK int pthread_cancel(pthread_t t) {
    if (threads_on()) {
        if (GreenThread* g = find_live(t)) {
            g->cancel_pending.store(true, std::memory_order_release);
            // From its own OS thread, and not itself: thrown in now, so that it lands at the
            // wait it is in (or, for a wait that is no cancellation point, once that is over).
            // From elsewhere it acts at the thread's next pthread_testcancel or pthread_join.
            if (g->hub.is_current_thread() && g != current() && g->greenlet != 0 &&
                !g->finished.load()) {
                g->cancel_pending.store(false, std::memory_order_release);
                g->handle.kill(GreenThreadExit{PTHREAD_CANCELED}, false);
            }
            return 0;
        }
        if (was_green(t)) return ESRCH;
    }
    return libc().cancel(t);
}

COGENT_HOOK void pthread_testcancel() {
    if (threads_on() && current()) {
        check_cancel();
        return;
    }
    libc().testcancel();
}

COGENT_HOOK int pthread_setname_np(pthread_t t, const char* name) {
    if (threads_on())
        if (GreenThread* g = find_live(t)) {
            if (std::strlen(name) > 15) return ERANGE;  // the kernel's 16 bytes, as libc
            g->name = name;
            // The greenlet's name too (what run info and the watchdog show), from its own OS
            // thread (a greenlet is renamed only there).
            if (g->hub.is_current_thread()) try {
                    cogent::Greenlet<void>(g->handle).set_name(name);
                } catch (...) {
                }
            return 0;
        }
    return libc().setname_np(t, name);
}

COGENT_HOOK int pthread_getname_np(pthread_t t, char* buf, size_t len) {
    if (threads_on())
        if (GreenThread* g = find_live(t)) {
            if (len < 16 || g->name.size() + 1 > len) return ERANGE;
            std::memcpy(buf, g->name.c_str(), g->name.size() + 1);
            return 0;
        }
    return libc().getname_np(t, buf, len);
}

// The calls that take a pthread_t and would read libc's thread structure through it: for a
// green thread, the answer of the OS thread that runs it (signals, scheduling, affinity and
// CPU clock are the OS thread's), and its own stack for pthread_getattr_np.
COGENT_HOOK int pthread_getattr_np(pthread_t t, pthread_attr_t* attr) {
    if (threads_on())
        if (GreenThread* g = find_live(t)) {
            if (!g->stack_lo) return libc().getattr_np(g->os_thread, attr);  // not started yet
            int e = pthread_attr_init(attr);
            if (e) return e;
            pthread_attr_setstack(attr, g->stack_lo, g->stack_bytes);
            pthread_attr_setdetachstate(
                attr, g->detached.load() ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE);
            return 0;
        }
    return libc().getattr_np(t, attr);
}

// The OS thread behind t: itself, or the one running the green thread t. ESRCH for a green id
// already gone.
static int os_thread_of(pthread_t t, pthread_t* os) {
    if (threads_on()) {
        if (GreenThread* g = find_live(t)) {
            *os = g->os_thread;
            return 0;
        }
        if (was_green(t)) return ESRCH;
    }
    *os = t;
    return 0;
}

COGENT_HOOK int pthread_kill(pthread_t t, int sig) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    if (os != t && sig == 0) return 0;  // "is it alive": yes
    return libc().kill(os, sig);
}

COGENT_HOOK int pthread_getschedparam(pthread_t t, int* policy, sched_param* param) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    return libc().getschedparam(os, policy, param);
}

COGENT_HOOK int pthread_setschedparam(pthread_t t, int policy, const sched_param* param) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    return libc().setschedparam(os, policy, param);
}

COGENT_HOOK int pthread_getaffinity_np(pthread_t t, size_t size, cpu_set_t* set) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    return libc().getaffinity_np(os, size, set);
}

COGENT_HOOK int pthread_setaffinity_np(pthread_t t, size_t size, const cpu_set_t* set) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    return libc().setaffinity_np(os, size, set);
}

COGENT_HOOK int pthread_getcpuclockid(pthread_t t, clockid_t* clock) {
    pthread_t os{};
    if (int e = os_thread_of(t, &os)) return e;
    return libc().getcpuclockid(os, clock);
}

COGENT_HOOK int pthread_key_create(pthread_key_t* key, void (*dtor)(void*)) {
    const int e = libc().key_create(key, dtor);
    if (e == 0 && *key < kKeys) {
        g_key_dtor[*key].store(dtor, std::memory_order_release);
        g_key_used[*key].store(true, std::memory_order_release);
    }
    return e;
}

COGENT_HOOK int pthread_key_delete(pthread_key_t key) {
    if (key < kKeys) g_key_used[key].store(false, std::memory_order_release);
    return libc().key_delete(key);
}

COGENT_HOOK void* pthread_getspecific(pthread_key_t key) {
    if (threads_on())
        if (GreenThread* g = current())
            return key < g->specific.size() ? g->specific[key] : nullptr;
    return libc().getspecific(key);
}

COGENT_HOOK int pthread_setspecific(pthread_key_t key, const void* value) {
    if (threads_on())
        if (GreenThread* g = current()) {
            if (key >= kKeys || !g_key_used[key].load(std::memory_order_acquire)) return EINVAL;
            if (g->specific.size() <= key) g->specific.resize(key + 1);
            g->specific[key] = const_cast<void*>(value);
            return 0;
        }
    return libc().setspecific(key, value);
}

}  // extern "C"
