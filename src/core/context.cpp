// Switching (the library's uses of the switch core, a greenlet's first and last frames), per-
// thread state and greenlet construction.
#include <cxxabi.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cogent/exceptions.hpp"
#include "core/switch.hpp"

#if !(defined(__x86_64__) && defined(__ELF__))
// No routine of our own (core/switch_x86_64.S) for this platform: Boost.Context's, which also
// saves and restores the FP control state (harmless under the switch core's FP policy).
#include <boost/context/detail/fcontext.hpp>

namespace fctx = boost::context::detail;
static_assert(sizeof(cogent::detail::Transfer) == sizeof(fctx::transfer_t));

extern "C" cogent::detail::Transfer cogent_switch_context(void* to, void* data) noexcept {
    fctx::transfer_t t = fctx::jump_fcontext(to, data);
    return {t.fctx, t.data};
}
extern "C" void* cogent_make_context(void* top, std::size_t size,
                                     void (*fn)(cogent::detail::Transfer)) noexcept {
    // Same two-pointer struct passed by value: the cast only renames the argument type.
    using Fn = void (*)(fctx::transfer_t);
    return fctx::make_fcontext(top, size, reinterpret_cast<Fn>(reinterpret_cast<void (*)()>(fn)));
}
#endif

namespace cogent::detail {

thread_local ThreadState* tls_state COGENT_TLS_IE = nullptr;
constinit thread_local ThreadCore* tls_core COGENT_TLS_IE =
    nullptr;                                              // the same object, for inline code
constinit thread_local char tls_token COGENT_TLS_IE = 0;  // see thread_token()
JumpFn jump_fn = &cogent_switch_context;

namespace {
// Owns the ThreadState; its destructor runs at thread exit (and at exit() for the main thread).
struct ThreadStateOwner {
    ThreadState* ts = nullptr;
    ~ThreadStateOwner() {
        if (ts && ts->current != ts->main) {
            // exit() called from inside a greenlet: we run on a greenlet stack, so nothing that
            // owns stacks may be destroyed. Leave it all to the process teardown.
            fputs(
                "cogent: thread exiting from inside a greenlet; suspended greenlets are not "
                "unwound\n",
                stderr);
            return;
        }
        if (ts) {
            delete ts;
            tls_state = nullptr;
            tls_core = nullptr;
        }
    }
};
thread_local ThreadStateOwner t_owner;
}  // namespace

ThreadState* thread_state() {
    if (!tls_state) {
        auto* ts = new ThreadState();
        t_owner.ts = ts;
        tls_state = ts;
        tls_core = ts;
    }
    return tls_state;
}

MainGreenlet::MainGreenlet(ThreadState* ts) : GreenletImpl(this, 0) {
    thread = ts;
    state = State::active;
    main_ = true;
    parent = nullptr;  // the constructor stored `this`; main has no parent
}

void MainGreenlet::describe(char* buf, std::size_t len) const noexcept {
    snprintf(buf, len, "<main greenlet>");
}

ThreadState::ThreadState() {
    errno_loc = &errno;
    eh = reinterpret_cast<EhState*>(abi::__cxa_get_globals());
#ifdef COGENT_ASAN
    annotate = true;
#endif
    main = new MainGreenlet(this);
    current = main;
    install_overflow_handler(this);
}

// ---------------------------------------------------------------------------------------------
// GreenletImpl

void* GreenletImpl::operator new(std::size_t size) {
#ifdef COGENT_ASAN
    return ::operator new(size);  // no cache: ASan must see every use after free
#endif
    const std::size_t b = (size + 63) / 64;
    if (b < ThreadState::kObjBuckets) {
        ThreadState* ts = tls_state;
        if (ts && ts->free_objs[b]) {
            ThreadState::FreeBlock* f = ts->free_objs[b];
            ts->free_objs[b] = f->next;
            --ts->free_counts[b];
            return f;
        }
        return ::operator new(b * 64);  // full class size, so the block can be cached later
    }
    return ::operator new(size);
}

void GreenletImpl::operator delete(void* p, std::size_t size) noexcept {
#ifdef COGENT_ASAN
    ::operator delete(p);
    return;
#endif
    const std::size_t b = (size + 63) / 64;
    ThreadState* ts = tls_state;
    if (b < ThreadState::kObjBuckets && ts && !ts->tearing_down &&
        ts->free_counts[b] < ThreadState::kObjCap) {
        auto* f = static_cast<ThreadState::FreeBlock*>(p);
        f->next = ts->free_objs[b];
        ts->free_objs[b] = f;
        ++ts->free_counts[b];
        return;
    }
    ::operator delete(p);
}

GreenletImpl::GreenletImpl(GreenletImpl* parent_, std::size_t size) {
    if (parent_ == this) return;  // MainGreenlet
    ThreadState* ts = thread_state_fast();
    thread = ts;
    GreenletImpl* p = parent_ ? parent_ : ts->current;
    if (p->thread != ts)
        throw GreenletError("cogent: a greenlet's parent must belong to the same thread");
    stack_size = checked_stack_size(ts, size);  // may throw: before anything is owned
    parent = p;
    parent->add_ref();
}

std::size_t GreenletImpl::checked_stack_size(ThreadState* ts, std::size_t size) {
    if (size == 0) {
        if (!ts->default_stack) {
            std::size_t ps = page_size();
            ts->default_stack = (config().stack_size + ps - 1) / ps * ps;
        }
        return ts->default_stack;
    }
    std::size_t ps = page_size();
    if (size < 16 * 1024)
        throw std::invalid_argument("cogent: stack_size must be at least 16384 bytes (got " +
                                    std::to_string(size) + ")");
    if (size > (std::size_t(1) << 30))
        throw std::invalid_argument("cogent: stack_size must be at most 1 GiB (got " +
                                    std::to_string(size) + ")");
    return (size + ps - 1) / ps * ps;
}

GreenletImpl::~GreenletImpl() {
    if (parent && parent != this) parent->release();
}

void GreenletImpl::describe(char* buf, std::size_t len) const noexcept {
    snprintf(buf, len, "<greenlet %p>", static_cast<const void*>(this));
}

// ---------------------------------------------------------------------------------------------
// Switching

namespace {

[[noreturn]] void final_switch(ThreadState* ts, GreenletImpl* self, GreenletImpl* to);
void entry(Transfer t) noexcept;

}  // namespace

void reap_dead(GreenletImpl* prev) {
    ThreadState* ts = tls_state;
    if (prev->owns_stack_) {
        ts->stacks.release(prev->stack_lo, prev->stack_size);
        prev->owns_stack_ = false;
        prev->stack_lo = nullptr;
    }
    prev->ctx = nullptr;
    prev->release();  // the reference a started greenlet holds on itself
}

void rethrow_pending(GreenletImpl* g) {
    std::exception_ptr e = std::move(g->pending);
    g->pending = nullptr;
    std::rethrow_exception(e);
}

void prepare_start(ThreadState* ts, GreenletImpl* g) {
    g->stack_lo = ts->stacks.acquire(g->stack_size);
    g->owns_stack_ = true;
    char* hi = static_cast<char*>(g->stack_lo) + g->stack_size;
    g->ctx = cogent_make_context(hi, g->stack_size, &entry);
    g->state = GreenletImpl::State::active;
    g->add_ref();  // held until death (reap_dead releases it)
    ts->live.push_back(g);
}

bool start_or_fail(ThreadState* ts, GreenletImpl* g) noexcept {
    try {
        prepare_start(ts, g);
        return true;
    } catch (...) {
        std::exception_ptr e = std::current_exception();
        g->start_failed(e);
        return false;
    }
}

void GreenletImpl::start_failed(std::exception_ptr& e) noexcept {
    // A raw greenlet started by the hub: it stays unstarted; say why it did not run.
    report_exception("starting a greenlet (no stack)", e);
}

namespace {

inline std::any take_result(GreenletImpl* cur) {
    raise_pending(cur);
    return std::move(cur->transfer);
}

inline GreenletImpl* live_target(ThreadState* ts, GreenletImpl* target) {
    if (target->thread != ts)
        throw GreenletError("cogent: cannot switch to a greenlet of a different thread");
    while (target->dead()) target = target->parent;  // the main greenlet never dies
    return target;
}

void run_body(GreenletImpl* self) noexcept {
    std::any result;
    std::exception_ptr exc;
    try {
        raise_pending(self);  // thrown into it before it started
        self->body();
        result = std::move(self->transfer);
    } catch (const GreenletExit& e) {
        result = e;  // a normal end: the parent receives the GreenletExit as the value
    } catch (...) {
        exc = std::current_exception();
    }
    self->transfer.reset();
    self->state = GreenletImpl::State::dead;
    self->unlink();  // from ts->live
    GreenletImpl* to = self->parent;
    while (to->dead()) to = to->parent;
    to->transfer = std::move(result);
    to->pending = std::move(exc);
}

// The first frame of every greenlet (cogent_make_context).
void entry(Transfer t) noexcept {
    ThreadState* ts = tls_state;
    GreenletImpl* self = ts->current;
    switch_land<LibSwitch>(ts, t);
    errno = 0;
    run_body(self);
    GreenletImpl* to = self->parent;
    while (to->dead()) to = to->parent;
    final_switch(ts, self, to);
}

void final_switch(ThreadState* ts, GreenletImpl* self, GreenletImpl* to) {
    // An unstarted parent that gets no stack is passed over, as a dead one is.
    while (!startable(ts, to)) {
        to = to->parent;
        while (to->dead()) to = to->parent;
    }
    switch_leave<LibSwitch>(ts, self, to, true);  // its exception state is empty: all ended
    LibSwitch::jump(to->ctx, self);  // `to` lands in switch_land, which frees our stack
    std::abort();                    // a dead greenlet is never resumed
}

}  // namespace

void swap_eh_slow(EhState* eh, EhState* from_saved, EhState* to_saved) noexcept {
    *from_saved = *eh;
    *eh = *to_saved;
    *to_saved = EhState{};
}

GreenletImpl* current() noexcept {
    ThreadState* ts = tls_state;
    if (!ts) {
        try {
            ts = thread_state();
        } catch (...) {
            std::abort();
        }
    }
    return ts->current;
}

std::any switch_to(GreenletImpl* target, std::any value) {
    ThreadState* ts = thread_state_fast();
    target = live_target(ts, target);
    GreenletImpl* cur = ts->current;
    if (target == cur) return value;
    target->transfer = std::move(value);
    jump(ts, cur, target);
    return take_result(cur);
}

std::any throw_to(GreenletImpl* target, std::exception_ptr e) {
    ThreadState* ts = thread_state_fast();
    target = live_target(ts, target);
    GreenletImpl* cur = ts->current;
    if (target == cur) std::rethrow_exception(e);
    if (target == ts->hub_greenlet) [[unlikely]] {
        // The hub would only report it and carry on, and the caller would never be scheduled
        // again (gevent's hub.throw() is no use either). A plain switch to the hub is fine.
        char name[64];
        target->describe(name, sizeof name);
        throw GreenletError(std::string("cogent: cannot throw an exception into (or kill) ") +
                            name +
                            ": it runs the event loop of the whole thread; throw into or kill "
                            "the greenlet meant, or switch to the hub to yield");
    }
    target->pending = std::move(e);
    jump(ts, cur, target);
    return take_result(cur);
}

void after_hub_resume(GreenletImpl* hub) {
    // Only a raw greenlet parented to the hub can hand it a value or an exception.
    if (hub->pending) [[unlikely]] {
        std::exception_ptr e = std::move(hub->pending);
        hub->pending = nullptr;
        report_exception("a greenlet whose parent is the hub", e);
    }
    if (hub->transfer.has_value()) [[unlikely]]
        hub->transfer.reset();
}

void WakeCallback::fire(Callback* cb) {
    auto* w = static_cast<WakeCallback*>(cb);
    w->woken = true;
    GreenletImpl* g = w->g;
    bool owned = w->owns_ref;
    resume(g);
    if (owned) g->release();
}

void WakeCallback::drop(Callback* cb) {
    auto* w = static_cast<WakeCallback*>(cb);
    if (w->owns_ref) w->g->release();
}

void resume(GreenletImpl* target) {
    ThreadState* ts = tls_state;
    GreenletImpl* cur = ts->current;
    if (target->dead() || target == cur || !startable(ts, target)) return;
    jump(ts, cur, target);
    after_hub_resume(cur);
}

void resume_throw(GreenletImpl* target, std::exception_ptr e) {
    ThreadState* ts = tls_state;
    GreenletImpl* cur = ts->current;
    if (target->dead() || target == cur || !startable(ts, target)) return;
    target->pending = std::move(e);
    jump(ts, cur, target);
    after_hub_resume(cur);
}

void set_parent(GreenletImpl* g, GreenletImpl* parent) {
    if (g->is_main()) throw GreenletError("cogent: the main greenlet has no parent");
    if (parent->thread != g->thread)
        throw GreenletError("cogent: a greenlet's parent must belong to the same thread");
    for (GreenletImpl* p = parent; p; p = p->parent)
        if (p == g) throw std::invalid_argument("cogent: cyclic parent chain");
    parent->add_ref();
    GreenletImpl* old = g->parent;
    g->parent = parent;
    if (old) old->release();
}

}  // namespace cogent::detail
