// The greenlet core shared by the raw greenlet, Greenlet<T> and every waitable primitive.
// Internal: public headers need these declarations because their templates embed them; user
// code should not name anything in cogent::detail.
#pragma once

#include <any>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "cogent/detail/export.hpp"
#include "cogent/detail/lists.hpp"
#include "cogent/time.hpp"

namespace cogent {
// Identifies a link (Greenlet::link, Event::rawlink, ...) so that it can be removed again with
// unlink(). Ids are never reused, so unlinking one whose link already ran does nothing.
using LinkId = std::uint64_t;
}  // namespace cogent

namespace cogent::detail {

struct ThreadState;
class HubImpl;
class GreenletImpl;

// The C++ runtime's per-thread exception state (libstdc++'s __cxa_eh_globals on the Itanium
// ABI: the stack of exceptions being handled and the count of those in flight). It is per
// thread, but a greenlet that switches inside a catch block (or while unwinding) owns entries
// of it: each greenlet carries its own copy, swapped at every switch, or `throw;`,
// std::current_exception and std::uncaught_exceptions would see another greenlet's exceptions
// (and __cxa_end_catch would pop them).
struct COGENT_INTERNAL_API
    EhState {  // 8-aligned like libstdc++'s: no alignas (the live one is not 16-aligned)
    void* caught = nullptr;
    unsigned int uncaught = 0;
    unsigned int pad_ = 0;  // libstdc++'s padding is zero too (TLS starts zeroed, never written)
};

// The part of the per-thread state that the switch core (switch_core.hpp) reads.
// ThreadState derives from it; tls_core points at the calling thread's one (null before its
// first use of cogent).
struct COGENT_INTERNAL_API ThreadCore {
    GreenletImpl* current = nullptr;
    int* errno_loc = nullptr;  // &errno of this thread: no __errno_location call per switch
    EhState* eh = nullptr;     // this thread's __cxa_get_globals()
    bool annotate = false;     // a sanitizer build of the library, or a trace function set:
                               // take the out-of-line path
    bool tracing = false;      // settrace (cogent/util.hpp): call the trace function at switches
};
// Calls the calling thread's trace function for a switch from `from` to `to` (out of line).
COGENT_INTERNAL_API void trace_switch(GreenletImpl* from, GreenletImpl* to) noexcept;
COGENT_INTERNAL_API extern thread_local constinit ThreadCore* tls_core
    __attribute__((tls_model("initial-exec")));
// Identifies the calling OS thread: the address of a thread-local byte (one instruction, valid
// before the thread's first use of cogent). Waitables and greenlets record the token of the
// thread that constructed them (the owner rule) and compare it on entry.
COGENT_INTERNAL_API extern thread_local constinit char tls_token
    __attribute__((tls_model("initial-exec")));
inline const void* thread_token() noexcept { return &tls_token; }
// Swap the C++ exception state at a switch from `from` to `to` (see EhState). Invariant: a
// running greenlet's saved_eh is empty, so with no exception in flight on either side (the
// common case) this is four loads and no store.
COGENT_INTERNAL_API void swap_eh_slow(EhState* eh, EhState* from_saved, EhState* to_saved) noexcept;
inline void swap_eh(EhState* eh, EhState* from_saved, EhState* to_saved) noexcept {
    unsigned long long a[2], b[2];
    __builtin_memcpy(a, eh, 16);
    __builtin_memcpy(b, to_saved, 16);
    if ((a[0] | a[1] | b[0] | b[1]) != 0) [[unlikely]]
        swap_eh_slow(eh, from_saved, to_saved);
}

// Intrusive reference-counted pointer (the count lives in the object).
template <class T>
class Ref {
public:
    Ref() noexcept = default;
    explicit Ref(T* p) noexcept : p_(p) {}  // adopts one reference
    static Ref share(T* p) noexcept {
        if (p) p->add_ref();
        return Ref(p);
    }
    Ref(const Ref& o) noexcept : p_(o.p_) {
        if (p_) p_->add_ref();
    }
    Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    template <class U>
    Ref(const Ref<U>& o) noexcept : p_(o.get()) {
        if (p_) p_->add_ref();
    }
    template <class U>
    Ref(Ref<U>&& o) noexcept : p_(o.detach()) {}  // takes o's reference
    Ref& operator=(Ref o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    ~Ref() {
        if (p_) p_->release();
    }
    T* get() const noexcept { return p_; }
    T* operator->() const noexcept { return p_; }
    T& operator*() const noexcept { return *p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    T* detach() noexcept { return std::exchange(p_, nullptr); }
    friend bool operator==(const Ref& a, const Ref& b) noexcept { return a.p_ == b.p_; }

private:
    T* p_ = nullptr;
};

// A greenlet: a stack, a suspended machine context and a parent. Subclasses supply body().
class COGENT_INTERNAL_API GreenletImpl
    : public ListNode /* link in its thread's list of live greenlets */ {
public:
    enum class State : std::uint8_t { unstarted, active, dead };

    // parent == nullptr means the current greenlet. stack_size == 0 means the default.
    GreenletImpl(GreenletImpl* parent, std::size_t stack_size);
    GreenletImpl(const GreenletImpl&) = delete;
    GreenletImpl& operator=(const GreenletImpl&) = delete;
    virtual ~GreenletImpl();

    // Greenlet states come from a per-thread cache of recently freed blocks (spawn-heavy code
    // would otherwise spend a third of its time in malloc/free).
    static void* operator new(std::size_t size);
    static void operator delete(void* p, std::size_t size) noexcept;

    // Plain counts: a greenlet and its handles belong to one thread (cross-thread use of a
    // greenlet is rejected where it can be detected). Atomic counts cost ~4 ns each on a cold
    // line, a dozen times per spawn.
    void add_ref() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ == 0) delete this;
    }

    // Runs on the greenlet's own stack. Its return value (in `transfer`) goes to the parent;
    // an exception escaping it is raised in the parent (GreenletExit counts as a normal end).
    virtual void body() = 0;
    // A short name for messages (stack overflow, LoopExit, uncaught exceptions).
    virtual void describe(char* buf, std::size_t len) const noexcept;
    // "Greenlet-N"'s N for a spawned greenlet (unique per thread), 0 for the others.
    virtual std::uint64_t number() const noexcept { return 0; }
    // No stack could be had for its first switch, made by the hub (`e`: the std::bad_alloc).
    // A spawned greenlet ends with the error; a raw one stays unstarted (the default: report).
    virtual void start_failed(std::exception_ptr& e) noexcept;

    bool dead() const noexcept { return state == State::dead; }
    bool started() const noexcept { return state != State::unstarted; }
    bool is_main() const noexcept { return main_; }

    // The page-rounded stack size for a request (0: the default); throws std::invalid_argument.
    static std::size_t checked_stack_size(ThreadState* ts, std::size_t size);

    // --- fields (used by the switch code in src/) ---
    void* ctx = nullptr;               // suspended machine context (see switch_core.hpp)
    void* stack_lo = nullptr;          // lowest usable byte of the stack (guard pages below)
    std::size_t stack_size = 0;        // usable bytes (requested size, page-rounded)
    GreenletImpl* parent = nullptr;    // strong reference
    ThreadState* thread = nullptr;     // owning thread
    std::any transfer;                 // value carried by the last switch into this greenlet
    std::exception_ptr pending;        // raised at the greenlet's suspension point on resume
    const char* waiting_on = nullptr;  // what it is parked in (LoopExit messages, run info)
    void* asan_fake_stack = nullptr;
    int saved_errno = 0;
    EhState saved_eh{};  // its exception state while suspended (empty while it runs)
    State state = State::unstarted;
    bool main_ = false;
    bool owns_stack_ = false;
    // Cold, for run info; after the fields a switch reads, so as not to move those.
    std::uint64_t wait_since_ns = 0;  // since when it waits (its hub's last poll before it parked)
    std::uint64_t spawned_by = 0;     // number() of the greenlet that spawned it (0: none)

private:
    std::int32_t refs_ = 1;
};

// A queued "resume this greenlet" (sleep(0), start). The hub recognises it by `fn` and jumps
// from its own loop instead of calling fn (see switch_core.hpp for why).
struct COGENT_INTERNAL_API WakeCallback : Callback {
    GreenletImpl* g = nullptr;
    bool woken = false;
    bool owns_ref = false;  // holds a reference on g, dropped once g has run (a queued start)
    WakeCallback() noexcept {
        fn = &WakeCallback::fire;
        discard = &WakeCallback::drop;
    }
    ~WakeCallback() { unlink(); }
    static void fire(Callback* cb);
    static void drop(Callback* cb);
};
// Current greenlet of the calling thread (creating the thread's main greenlet on first use).
COGENT_INTERNAL_API GreenletImpl* current() noexcept;
// Raw switch with a value: greenlet-module semantics (dead targets go to the nearest live
// ancestor; a different thread's greenlet throws GreenletError).
COGENT_INTERNAL_API std::any switch_to(GreenletImpl* target, std::any value);
// Cold parts of the switch core (switch_core.hpp).
COGENT_INTERNAL_API void reap_dead(GreenletImpl* g);
[[noreturn]] COGENT_INTERNAL_API void rethrow_pending(GreenletImpl* g);
// Raw throw: switch into target raising `e` at its suspension point.
COGENT_INTERNAL_API std::any throw_to(GreenletImpl* target, std::exception_ptr e);
// Hub-side fast path: resume a parked greenlet (no value), or raise `e` in it.
COGENT_INTERNAL_API void resume(GreenletImpl* target);
COGENT_INTERNAL_API void resume_throw(GreenletImpl* target, std::exception_ptr e);
// Re-parent a greenlet (same thread, no cycles).
COGENT_INTERNAL_API void set_parent(GreenletImpl* g, GreenletImpl* parent);

// Queue `cb` on the calling thread's hub (creating the hub if needed). FIFO. Never switches.
COGENT_INTERNAL_API void schedule(Callback* cb);
// The calling thread's hub greenlet.
COGENT_INTERNAL_API GreenletImpl* hub_greenlet();
// Throws BlockingSwitchOutError if the caller is the hub.
COGENT_INTERNAL_API void check_may_block(const char* what);

// Park the current greenlet on `list` until a notifier wakes it (true) or `timeout` passes
// (false). Throws what is thrown into it (kill, Timeout); the waiter is unlinked on every path.
// If the list's owner is destroyed meanwhile (abandon_all), the waiter is woken at the hub's
// next turn and park throws WaitableDestroyed ("cogent: <kind> destroyed while <greenlet>
// waited in <what>"); `*gone` (if given) is set to true at the destruction, so that code
// unwinding from park (a kill that came first included) knows not to touch the object.
COGENT_INTERNAL_API bool park(WaitList& list, TimeoutArg timeout, const char* what,
                              bool* gone = nullptr);
// Throw WaitableDestroyed for greenlet `g` waiting in `what` on a destroyed `kind` (null or
// empty: taken from `what`, up to its "::").
[[noreturn]] COGENT_INTERNAL_API void throw_destroyed(const char* kind, const char* what,
                                                      GreenletImpl* g);

// A thing greenlets wait for: gevent's AbstractLinkable. One WaitList serves blocking waiters,
// iwait registrations and rawlink callbacks ("links"); they are woken FIFO from one hub
// callback (a round) while ready() holds, or regardless for the links that notify_all_linked()
// or wait_turn() covered. With bounded rounds (gevent's AbstractLinkable: Event, AsyncResult,
// Semaphore) a round wakes only the links that were there when it began, then once those that
// arrived through wait_turn() meanwhile; links added later wait for the next round, scheduled
// at the end of this one if it is due. Otherwise (a greenlet's links, as gevent's Greenlet;
// queues, pools) a round goes on while there are links and ready() holds.
class COGENT_INTERNAL_API Linkable {
public:
    // With unbounded wake-up rounds.
    Linkable() noexcept : Linkable(false) {}
    Linkable(const Linkable&) = delete;
    Linkable& operator=(const Linkable&) = delete;
    // Wakes every greenlet still waiting on it with WaitableDestroyed (abandon_all) and frees
    // its rawlinks; none of them touches it again.
    virtual ~Linkable();

    virtual bool ready() const noexcept = 0;
    // The owner rule: the object belongs to the thread that constructed it. Throws
    // GreenletError naming `what` (the call, e.g. "Event::wait") and the object when called
    // from any other thread; does nothing on the owner thread.
    void check_thread(const char* what) const {
        if (owner_ != thread_token()) [[unlikely]]
            throw_foreign_thread(what);
    }
    bool owned_by_this_thread() const noexcept { return owner_ == thread_token(); }
    // The greenlet this object is (a Greenlet's state), or null: iwait/joinall refuse to wait
    // on the greenlet that calls them.
    virtual const GreenletImpl* as_greenlet() const noexcept { return nullptr; }
    // True for objects another OS thread may make ready (AsyncResult): whoever waits on one
    // holds a loop reference meanwhile, so the hub does not raise LoopExit under it.
    virtual bool readied_from_other_threads() const noexcept { return false; }
    // Block until ready() (true) or timeout (false). Never blocks when already ready.
    bool wait_ready(TimeoutArg timeout, const char* what);
    // Add a wake-up node (woken on the hub when ready; at once if already ready).
    void link(WaitNode* n);
    void unlink(WaitNode* n) noexcept { n->unlink(); }
    // Schedule one hub callback that wakes waiters in FIFO order while ready() holds (no-op
    // while one is scheduled or running: a running one re-checks at its end).
    // Throws GreenletError from a thread other than the owner.
    void notify();
    // How many links wait on it now: blocked greenlets, iwait registrations and rawlink
    // callbacks (gevent's linkcount(); for tests and diagnostics). O(links). Never blocks.
    std::size_t linkcount() const noexcept { return waiters_.size(); }

protected:
    // bounded_rounds: wake-up rounds end with the links that were there when they began (see
    // above).
    explicit Linkable(bool bounded_rounds) noexcept;
    // What a waiter is told was destroyed ("Event"); a static string. Unset: taken from the
    // name of the wait ("Pool::add": "Pool").
    void set_kind(const char* kind) noexcept { kind_ = kind; }
    virtual void keepalive(bool) noexcept {}
    // How the cross-thread error names the object ("Greenlet-3"); empty: by the call alone.
    virtual std::string name_for_errors() const { return {}; }
    [[noreturn]] void throw_foreign_thread(const char* what) const;
    // For a wait() that found the object ready (gevent's _wait, issue 1520): if a wake-up round
    // is scheduled or running, block until it has woken the links that came before, instead of
    // running ahead of them. The caller is then woken in that same round whether or not the
    // object is still ready (it was when it looked). Returns at once when no round is pending,
    // on the hub, or with a zero timeout; returns when the timeout passes. Throws what
    // kill/Timeout raise.
    void wait_turn(TimeoutArg timeout, const char* what) {
        if (run_ || notify_cb_.linked()) [[unlikely]]
            wait_turn_slow(timeout, what);
    }
    // notify(), and have the coming round wake every link there now even if ready() is false
    // again by then (Event::set: waiters present at a set() return true even after a clear()).
    void notify_all_linked() {
        all_until_ = waiters_.next_seq();
        notify();
    }
    // rawlink(): link `fn`, to be called on the hub with this object when it is ready (in FIFO
    // order with the other links; once: it is unlinked before it is called). Returns an id for
    // remove_rawlink that is never reused. An exception from fn is reported on stderr (the hub
    // goes on). Throws std::invalid_argument for an empty fn, GreenletError from another thread.
    LinkId add_rawlink(std::function<void(Linkable&)> fn);
    // add_rawlink() for a callback that takes the derived object.
    template <class Self>
    LinkId rawlink_as(std::function<void(Self&)> cb) {
        if (!cb) throw_empty_rawlink();
        return add_rawlink([cb = std::move(cb)](Linkable& l) { cb(static_cast<Self&>(l)); });
    }
    // unlink(): remove the rawlink with this id if it has not fired yet; otherwise (fired,
    // removed, unknown, another object's) do nothing. GreenletError from another thread.
    void remove_rawlink(LinkId id);

    WaitList waiters_;

private:
    struct NotifyRun;
    struct NotifyCb : Callback {
        Linkable* self;
    } notify_cb_;
    NotifyRun* run_ = nullptr;  // the round under way (on the hub's stack); null otherwise
    const void* owner_ = thread_token();  // the constructing thread (see check_thread)
    std::uint64_t all_until_ = 0;         // links with a smaller seq are woken even if not ready()
    const char* kind_ = nullptr;          // set_kind()
    template <bool Bounded>
    static void run_notify(Callback* cb);
    void wait_turn_slow(TimeoutArg timeout, const char* what);
    [[noreturn]] static void throw_empty_rawlink();
};

}  // namespace cogent::detail
