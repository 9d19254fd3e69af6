// The one switch core: everything a greenlet switch does around the machine-level jump, used
// by the inline RawGreenlet::switch_to, by the library's switches (the hub's loop, parking,
// raw switches, throws) and by a dying greenlet's last switch. Internal.
//
// Always inline, so that the jump is made from the caller's own frame: the jump is entered
// with `call` but leaves with `jmp`, so every `ret` that returns across a switch is
// mispredicted by the return stack buffer (about 8 ns each). A caller that jumps from its own
// frame and keeps looping pays none of them.
//
// Floating-point environment: a switch carries neither MXCSR nor the x87 control word. The FP
// control state (rounding mode, exception masks, flush-to-zero) belongs to the thread and is
// shared by all its greenlets, like the rest of the thread's FP environment: a greenlet that
// changes it must restore it before it switches (or blocks, which switches). The FP exception
// status flags (fetestexcept) are not carried by a switch either: after one, they are whatever
// the code that ran meanwhile left.
#pragma once

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"

namespace cogent::detail {

// The two words a jump hands over: the context just suspended and the data passed along
// (Boost.Context's transfer_t has the same layout).
struct COGENT_INTERNAL_API Transfer {
    void* fctx;
    void* data;
};
// Suspend the calling context and resume `to`; returns on the side resumed. The library's
// own routine (src/core/), reached through this pointer from inline code: no PLT hops.
using JumpFn = Transfer (*)(void* to, void* data) noexcept;
COGENT_INTERNAL_API extern JumpFn
    jump_fn;  // not const: a const one breaks PIE links (text relocation)

// The per-caller parts of a switch: how to jump, and what to tell a sanitizer on both sides
// (the library's build supplies annotations; inline code in user binaries has none and runs
// only where the library needs none: ThreadCore::annotate).
struct COGENT_INTERNAL_API InlineSwitch {
    static constexpr bool kTraced = false;  // never taken while tracing: annotate is set then
    static Transfer jump(void* to, void* data) noexcept { return jump_fn(to, data); }
    static void leaving(GreenletImpl*, GreenletImpl*, bool /*dying*/) noexcept {}
    static void landed(GreenletImpl*, GreenletImpl*) noexcept {}
};

// First half: leave `from` (the current greenlet) for `to` (started). `dying`: `from` will
// never be resumed.
template <class S>
[[gnu::always_inline]] inline void switch_leave(ThreadCore* tc, GreenletImpl* from,
                                                GreenletImpl* to, bool dying) noexcept {
    if constexpr (S::kTraced) {
        if (tc->tracing) [[unlikely]]
            trace_switch(from, to);
    }
    from->saved_errno = *tc->errno_loc;
    swap_eh(tc->eh, &from->saved_eh, &to->saved_eh);
    tc->current = to;
    S::leaving(from, to, dying);
}

// Second half, on the resumed side right after every jump (and first thing in a new
// greenlet): record where the previous greenlet was suspended, or, if it just died, give its
// stack back (it could not free the stack it ran on).
template <class S>
[[gnu::always_inline]] inline void switch_land(ThreadCore* tc, Transfer t) {
    auto* prev = static_cast<GreenletImpl*>(t.data);
    S::landed(tc->current, prev);
    if (prev->state == GreenletImpl::State::dead) [[unlikely]]
        reap_dead(prev);
    else
        prev->ctx = t.fctx;
}

// The switch: from `from` (the current greenlet) to `to` (started, live, another one of the
// same thread); returns when `from` is resumed. What was handed over (transfer, pending) is
// the caller's to take.
template <class S>
[[gnu::always_inline]] inline void switch_core(ThreadCore* tc, GreenletImpl* from,
                                               GreenletImpl* to) {
    switch_leave<S>(tc, from, to, false);
    switch_land<S>(tc, S::jump(to->ctx, from));
    *tc->errno_loc = from->saved_errno;
}

// The exception hand-over, on the resumed side: raise what was thrown into `g` (the current
// greenlet) while it was suspended, if anything.
[[gnu::always_inline]] inline void raise_pending(GreenletImpl* g) {
    if (g->pending) [[unlikely]]
        rethrow_pending(g);
}

// Whether a switch to `t` can take the inline path: a started, live greenlet of the calling
// thread other than the current one, and a library without sanitizer annotations.
[[gnu::always_inline]] inline bool inline_switchable(const ThreadCore* tc,
                                                     const GreenletImpl* t) noexcept {
    return t && tc && !tc->annotate && static_cast<const void*>(t->thread) == tc &&
           t->state == GreenletImpl::State::active && t != tc->current;
}

}  // namespace cogent::detail
