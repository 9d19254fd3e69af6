// Raw greenlets with the semantics of Python's greenlet module: explicit switches carrying a
// value both ways, throw, parents, death.
#pragma once

#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/switch_core.hpp"
#include "cogent/exceptions.hpp"

namespace cogent {

// A handle to a raw greenlet (copyable, shared). All calls must come from the greenlet's own
// thread; switching to a greenlet of another thread throws GreenletError.
class COGENT_API RawGreenlet {
public:
    using Function = std::function<std::any(std::any)>;

    // A null handle.
    RawGreenlet() noexcept = default;
    // A new, unstarted greenlet running `run`. The first switch_to(v) starts it with run(v);
    // what run returns goes to the parent's pending switch; an exception escaping run is raised
    // in the parent (GreenletExit is a normal end: the parent receives it as the value).
    // `parent` defaults to the current greenlet; stack_size 0 means the default size.
    explicit RawGreenlet(Function run, RawGreenlet parent = {}, std::size_t stack_size = 0);
    // Same for callables taking no argument and/or returning nothing.
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Function> &&
                                                !std::is_same_v<std::decay_t<F>, RawGreenlet> &&
                                                std::is_invocable_v<F&>>>
    explicit RawGreenlet(F&& f, RawGreenlet parent = {}, std::size_t stack_size = 0)
        : RawGreenlet(Function([fn = std::forward<F>(f)](std::any) mutable -> std::any {
                          if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
                              fn();
                              return {};
                          } else {
                              return std::any(fn());
                          }
                      }),
                      std::move(parent), stack_size) {}

    // The calling thread's current greenlet (its main greenlet outside any other).
    static RawGreenlet current();

    // Switch into this greenlet carrying `value`; returns the value carried by the next switch
    // back into the caller. A dead target means its nearest live ancestor.
    [[gnu::always_inline]] std::any switch_to(std::any value = {}) {
        detail::GreenletImpl* t = p_.get();
        detail::ThreadCore* tc = detail::tls_core;
        // Fast path, inline so that the jump is made from the caller's frame (switch_core.hpp).
        if (detail::inline_switchable(tc, t)) [[likely]] {
            detail::GreenletImpl* from = tc->current;
            t->transfer = std::move(value);
            detail::switch_core<detail::InlineSwitch>(tc, from, t);
            detail::raise_pending(from);
            return std::move(from->transfer);
        }
        if (!t) null_handle("switch_to");
        return detail::switch_to(t, std::move(value));
    }
    // Switch into this greenlet raising `e` at its suspension point (at its start, if unstarted:
    // its function then never runs). Returns like switch_to when the caller is resumed.
    std::any throw_exception(std::exception_ptr e);
    template <class E>
    std::any throw_exception(E e) {
        return throw_exception(std::make_exception_ptr(std::move(e)));
    }
    // Kill it the way greenlet's GC does: throw GreenletExit into it if it is suspended.
    void kill_now();

    bool dead() const noexcept { return p_->dead(); }
    bool started() const noexcept { return p_->started(); }
    // Started and not dead.
    bool active() const noexcept { return p_->started() && !p_->dead(); }
    bool is_main() const noexcept { return p_->is_main(); }
    // The parent (null handle for a main greenlet).
    RawGreenlet parent() const;
    // Re-parent; throws GreenletError across threads, std::invalid_argument on a cycle.
    void set_parent(const RawGreenlet& parent);
    // A printable description ("<main greenlet>", "Greenlet-3", "<Hub of thread 1>"...).
    std::string describe() const;

    explicit operator bool() const noexcept { return static_cast<bool>(p_); }
    friend bool operator==(const RawGreenlet& a, const RawGreenlet& b) noexcept {
        return a.p_.get() == b.p_.get();
    }
    detail::GreenletImpl* impl() const noexcept { return p_.get(); }
    static RawGreenlet from_impl(detail::GreenletImpl* g) {
        RawGreenlet r;
        r.p_ = detail::Ref<detail::GreenletImpl>::share(g);
        return r;
    }

private:
    [[noreturn]] static void null_handle(const char* what);
    detail::Ref<detail::GreenletImpl> p_;
};

// The current greenlet (raw handle), like greenlet.getcurrent().
inline RawGreenlet getcurrent() { return RawGreenlet::current(); }

}  // namespace cogent
