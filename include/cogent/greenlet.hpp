// gevent-style greenlets: spawn, join, get, kill, link. Greenlet<T> carries a typed result;
// AnyGreenlet is the type-erased handle that joinall and friends take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/raw_greenlet.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"

namespace cogent {

class AnyGreenlet;

// Options for spawn(): a name (default "Greenlet-N") and a stack size (0: the default, see
// COGENT_STACK_SIZE).
struct COGENT_API SpawnOptions {
    std::string name{};
    std::size_t stack_size = 0;
};

// LinkId (cogent/detail/core.hpp) identifies a link for unlink(). Ids are never reused (not even
// across greenlets or threads), so an id whose link has already run, or that belongs to another
// greenlet, names nothing: unlink() ignores it. Never 0.

namespace detail {

// What a link waits for and how it runs (Greenlet::link and friends): link, link_value and
// link_exception run the callback in a new greenlet, on any end, on success, on failure; rawlink
// runs it on the hub.
enum class LinkKind : unsigned char { link, link_value, link_exception, rawlink };

// The state behind every Greenlet<T>: a greenlet whose parent is the hub, plus its outcome.
class COGENT_INTERNAL_API GreenletState : public GreenletImpl, public Linkable {
public:
    explicit GreenletState(const SpawnOptions& opts);
    ~GreenletState() override;

    bool ready() const noexcept override { return dead(); }
    void body() final;
    void describe(char* buf, std::size_t len) const noexcept override;
    const GreenletImpl* as_greenlet() const noexcept override { return this; }
    std::uint64_t number() const noexcept override { return id_; }

    // For join/get: GreenletError from another thread, or when called by the greenlet itself
    // (it would wait for its own end forever). `what` names the call ("join").
    void check_join(const char* what) const {
        check_thread(what);
        if (tls_core && tls_core->current == static_cast<const GreenletImpl*>(this)) [[unlikely]]
            throw_self_join(what);
    }
    [[noreturn]] void throw_self_join(const char* what) const;
    void start_failed(std::exception_ptr& e) noexcept override;

    void start();
    void start_later(Duration d);
    void kill(std::exception_ptr e, bool block, TimeoutArg timeout);
    // Wait until dead; throws Timeout::expired on timeout. Rethrows the failure.
    void get_outcome(TimeoutArg timeout);
    LinkId add_link(std::function<void(AnyGreenlet)> fn, LinkKind kind);
    void remove_link(LinkId id);
    // Run fn inside the greenlet itself when its function has ended (returned, thrown or been
    // killed), before anyone joining it is woken; hooks run last-added first, like thread_local
    // destructors. Used by local<T>. Must be added from the greenlet's own thread.
    LinkId add_exit_hook(std::function<void()> fn);
    void remove_exit_hook(LinkId id) noexcept;
    std::string name() const;
    void set_name(std::string n);

    std::exception_ptr error;  // set if it failed
    bool exited = false;       // ended by GreenletExit (killed), possibly before it ran
    bool scheduled = false;    // start() or start_later() was called

protected:
    std::string name_for_errors() const override { return name(); }
    virtual void invoke() = 0;   // run the function, store the result
    virtual void drop_fn() = 0;  // release the function and its arguments
    void keepalive(bool on) noexcept override {
        if (on)
            add_ref();
        else
            release();
    }

private:
    void finish();
    // Dead without having run, with outcome `e` (killed before it started, or no stack).
    void end_unstarted(std::exception_ptr e) noexcept;
    void destroy_links() noexcept;
    WakeCallback start_cb_;
    struct ExitHook;
    ExitHook* exit_hooks_ = nullptr;
    void run_exit_hooks() noexcept;
    void* later_ = nullptr;  // start_later timer
    std::uint64_t id_;
    std::unique_ptr<std::string> name_;  // only when given: most greenlets are "Greenlet-N"
    friend struct GreenletAccess;
};

template <class T>
class ResultState : public GreenletState {
public:
    using GreenletState::GreenletState;
    std::optional<T> value;
};
template <>
class ResultState<void> : public GreenletState {
public:
    using GreenletState::GreenletState;
};

template <class T, class F, class... A>
class SpawnState final : public ResultState<T> {
public:
    template <class FF, class... AA>
    SpawnState(const SpawnOptions& o, FF&& f, AA&&... a)
        : ResultState<T>(o), fn_(std::in_place, std::forward<FF>(f), std::forward<AA>(a)...) {}

private:
    void invoke() override {
        if constexpr (std::is_void_v<T>)
            std::apply([](auto&& f, auto&&... a) { std::invoke(std::move(f), std::move(a)...); },
                       std::move(*fn_));
        else
            this->value.emplace(std::apply(
                [](auto&& f, auto&&... a) -> T {
                    return std::invoke(std::move(f), std::move(a)...);
                },
                std::move(*fn_)));
    }
    void drop_fn() override { fn_.reset(); }
    std::optional<std::tuple<F, A...>> fn_;
};

}  // namespace detail

// A handle to a greenlet of any result type (copyable, shared). The greenlet belongs to the
// thread that created it: start, start_later, kill, join, get, value, link*, rawlink, unlink,
// set_name and raw from any other thread throw GreenletError (naming the greenlet and the call)
// and change nothing. The greenlet runs even if every handle is dropped.
class COGENT_API AnyGreenlet {
public:
    AnyGreenlet() noexcept = default;

    // Schedule it to run (spawned greenlets start in FIFO order). No-op if already scheduled.
    void start() { p_->start(); }
    // Schedule it to run after d (a d longer than the clock can express: Duration::max(), in
    // effect never). std::invalid_argument for a negative d or NaN.
    template <class Rep, class Period>
    void start_later(std::chrono::duration<Rep, Period> d,
                     std::source_location where = std::source_location::current()) {
        p_->start_later(TimeoutArg(d, where).value());
    }
    // Wait until it is dead; true if it is, false on timeout. Does not rethrow its exception.
    // The greenlet itself calling it throws GreenletError (whatever the timeout).
    bool join(TimeoutArg timeout = {}) {
        p_->check_join("join");
        return p_->wait_ready(timeout, "Greenlet::join");
    }
    // Wait, then rethrow its exception if it failed (GreenletExit if it was killed).
    // Throws Timeout if it is not dead within `timeout` (0: do not block); GreenletError when
    // called by the greenlet itself.
    void get(TimeoutArg timeout = {}) { p_->get_outcome(timeout); }
    // Raise `exception` in the greenlet (default GreenletExit). Unstarted: it never runs (it is
    // dead at once). Started: a hub callback throws it in, so each kill lands on its own, in
    // order: two non-blocking kills before the first lands raise twice (as in gevent); a kill
    // that lands on a dead greenlet does nothing. block=true waits (up to timeout) for it to
    // die. Never throws the target's exception; a greenlet killing itself does raise it.
    // GreenletError from another thread (the kill is not sent).
    template <class E = GreenletExit>
    void kill(E exception = E(), bool block = true, TimeoutArg timeout = {}) {
        p_->kill(std::make_exception_ptr(std::move(exception)), block, timeout);
    }

    bool ready() const noexcept { return p_->dead(); }
    bool dead() const noexcept { return p_->dead(); }
    // Dead and did not fail (a GreenletExit end counts as success, as in gevent).
    bool successful() const noexcept { return p_->dead() && !p_->error; }
    // start() or start_later() was called (it may not have run yet) and it is not dead yet:
    // gevent's `started` (`bool(greenlet)`). False before start() and again once dead.
    bool started() const noexcept { return p_->scheduled && !p_->dead(); }
    // Running or suspended: started and not yet dead.
    bool active() const noexcept { return p_->started() && !p_->dead(); }
    // The exception it failed with, or null.
    std::exception_ptr exception() const noexcept { return p_->error; }
    // True if it ended with GreenletExit (killed).
    bool killed() const noexcept { return p_->exited; }
    std::string name() const { return p_->name(); }
    void set_name(std::string name) {
        p_->check_thread("set_name");
        p_->set_name(std::move(name));
    }

    // Links, as in gevent: once the greenlet is dead, one hub callback runs its links one at a
    // time in the order they were added (its joiners are woken in that same queue). A link()
    // callback runs cb(greenlet) in a new greenlet that is switched to at once and runs until it
    // first blocks or ends before the next link is taken, so an earlier callback can unlink a
    // later one. Links added meanwhile, or after death, run too (after those already queued).
    // An exception escaping a callback is reported on stderr. Throws std::invalid_argument for
    // an empty cb, GreenletError from another thread.
    LinkId link(std::function<void(AnyGreenlet)> cb) {
        return p_->add_link(std::move(cb), detail::LinkKind::link);
    }
    // Like link(), only if it succeeded (GreenletExit counts as success) / only if it failed.
    LinkId link_value(std::function<void(AnyGreenlet)> cb) {
        return p_->add_link(std::move(cb), detail::LinkKind::link_value);
    }
    LinkId link_exception(std::function<void(AnyGreenlet)> cb) {
        return p_->add_link(std::move(cb), detail::LinkKind::link_exception);
    }
    // Like link(), but cb(greenlet) runs directly on the hub; cb must not block.
    LinkId rawlink(std::function<void(AnyGreenlet)> cb) {
        return p_->add_link(std::move(cb), detail::LinkKind::rawlink);
    }
    // Remove a link that has not run yet. An id that names no pending link of this greenlet
    // (it has run, was removed, or is another greenlet's) is ignored.
    void unlink(LinkId id) { p_->remove_link(id); }

    // The raw greenlet underneath (for switch-level code).
    RawGreenlet raw() const {
        p_->check_thread("raw");
        return RawGreenlet::from_impl(p_.get());
    }
    bool valid() const noexcept { return static_cast<bool>(p_); }
    friend bool operator==(const AnyGreenlet& a, const AnyGreenlet& b) noexcept {
        return a.p_.get() == b.p_.get();
    }
    detail::GreenletState* state() const noexcept { return p_.get(); }
    static AnyGreenlet from_state(detail::GreenletState* s) {
        AnyGreenlet g;
        g.p_ = detail::Ref<detail::GreenletState>::share(s);
        return g;
    }

protected:
    explicit AnyGreenlet(detail::Ref<detail::GreenletState> p) noexcept : p_(std::move(p)) {}
    detail::Ref<detail::GreenletState> p_;
};

// A handle to a greenlet whose function returns T.
template <class T>
class Greenlet : public AnyGreenlet {
public:
    using value_type = T;
    Greenlet() noexcept = default;
    explicit Greenlet(detail::Ref<detail::ResultState<T>> p) noexcept
        : AnyGreenlet(detail::Ref<detail::GreenletState>(std::move(p))) {}

    // Wait (up to timeout), then return its result or rethrow its exception (GreenletExit if it
    // was killed: there is no T). Throws Timeout if it is not dead in time. The reference stays
    // valid while a handle to the greenlet exists.
    T& get(TimeoutArg timeout = {}) {
        p_->get_outcome(timeout);
        return *result().value;
    }
    // Its result; std::logic_error if it has not succeeded with a value.
    const T& value() const {
        p_->check_thread("value");
        auto& r = result();
        if (!r.value) throw std::logic_error("cogent: greenlet " + name() + " has no value");
        return *r.value;
    }

private:
    detail::ResultState<T>& result() const { return static_cast<detail::ResultState<T>&>(*p_); }
};

template <>
class Greenlet<void> : public AnyGreenlet {
public:
    using value_type = void;
    Greenlet() noexcept = default;
    explicit Greenlet(detail::Ref<detail::ResultState<void>> p) noexcept
        : AnyGreenlet(detail::Ref<detail::GreenletState>(std::move(p))) {}
};

namespace detail {
template <class F, class... A>
using spawn_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>;

template <class F, class... A>
Greenlet<spawn_result_t<F, A...>> make(const SpawnOptions& o, F&& f, A&&... a) {
    using T = spawn_result_t<F, A...>;
    static_assert(!std::is_reference_v<T>,
                  "a greenlet function must return a value, not a reference");
    auto* s = new SpawnState<T, std::decay_t<F>, std::decay_t<A>...>(o, std::forward<F>(f),
                                                                     std::forward<A>(a)...);
    return Greenlet<T>(Ref<ResultState<T>>(s));
}
}  // namespace detail

// Create a greenlet without starting it (gevent: Greenlet(fn, *args)). Arguments are copied or
// moved into it, like std::thread. Call start() or start_later() to run it.
template <class F, class... A,
          class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, SpawnOptions>>>
auto make_greenlet(F&& f, A&&... a) {
    return detail::make(SpawnOptions{}, std::forward<F>(f), std::forward<A>(a)...);
}
template <class F, class... A>
auto make_greenlet(const SpawnOptions& o, F&& f, A&&... a) {
    return detail::make(o, std::forward<F>(f), std::forward<A>(a)...);
}

// Create and schedule a greenlet. It runs when the caller next yields to the hub; greenlets
// spawned in a row start in that order.
template <class F, class... A,
          class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, SpawnOptions>>>
auto spawn(F&& f, A&&... a) {
    auto g = detail::make(SpawnOptions{}, std::forward<F>(f), std::forward<A>(a)...);
    g.start();
    return g;
}
template <class F, class... A>
auto spawn(const SpawnOptions& o, F&& f, A&&... a) {
    auto g = detail::make(o, std::forward<F>(f), std::forward<A>(a)...);
    g.start();
    return g;
}

// Create a greenlet and start it after `delay`.
template <class Rep, class Period, class F, class... A>
auto spawn_later(std::chrono::duration<Rep, Period> delay, F&& f, A&&... a) {
    auto g = detail::make(SpawnOptions{}, std::forward<F>(f), std::forward<A>(a)...);
    g.start_later(delay);
    return g;
}

}  // namespace cogent
