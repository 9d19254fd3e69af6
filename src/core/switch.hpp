// The switch itself, inline so that callers on hot paths (the hub's callback loop, sleep)
// jump from their own frame. Why that matters: jump_fcontext is entered with `call` but leaves
// with `jmp`, so every `ret` that returns across a switch is mispredicted by the return stack
// buffer (about 8 ns each on this machine). Code that jumps from its own frame and then keeps
// looping pays none of them.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <cerrno>

#include "hub/hub.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define COGENT_ASAN 1
#include <sanitizer/common_interface_defs.h>
#endif

namespace cogent::detail {

namespace fctx = boost::context::detail;

// Give `g` a stack and a fresh context (out of line: the first switch into a greenlet). Throws
// std::bad_alloc, with `g` left unstarted, when no stack can be had.
void prepare_start(ThreadState* ts, GreenletImpl* g);
// For switches that cannot let an exception out (the hub's): prepare_start, and if it fails,
// g->start_failed() (a spawned greenlet ends with the error) and false: do not jump to it.
[[gnu::cold]] bool start_or_fail(ThreadState* ts, GreenletImpl* g) noexcept;
// Whether `g` can be jumped to: started, or given its stack now.
inline bool startable(ThreadState* ts, GreenletImpl* g) noexcept {
    if (g->state != GreenletImpl::State::unstarted) [[likely]]
        return true;
    return start_or_fail(ts, g);
}

inline void asan_start([[maybe_unused]] GreenletImpl* from, [[maybe_unused]] GreenletImpl* to,
                       [[maybe_unused]] bool dying) {
#ifdef COGENT_ASAN
    __sanitizer_start_switch_fiber(dying ? nullptr : &from->asan_fake_stack, to->stack_lo,
                                   to->stack_size);
#endif
}

inline void asan_finish([[maybe_unused]] GreenletImpl* self, [[maybe_unused]] GreenletImpl* prev) {
#ifdef COGENT_ASAN
    const void* old_lo = nullptr;
    std::size_t old_size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &old_lo, &old_size);
    if (prev->is_main() && !prev->stack_lo) {
        // The thread's own stack: learn its bounds the first time we leave it.
        prev->stack_lo = const_cast<void*>(old_lo);
        prev->stack_size = old_size;
    }
#endif
}

// Runs on the resumed side right after every jump: record where the previous greenlet was
// suspended, or, if it just died, give its stack back (it could not free the stack it ran on).
void reap(ThreadState* ts, GreenletImpl* dead);  // out of line: stack back to the pool, unref
inline void after_jump(ThreadState* ts, fctx::transfer_t t) {
    auto* prev = static_cast<GreenletImpl*>(t.data);
    asan_finish(ts->current, prev);
    if (prev->state == GreenletImpl::State::dead) [[unlikely]]
        reap(ts, prev);
    else
        prev->ctx = t.fctx;
}


// Both halves of a switch, for callers that want the jump in their own frame.
inline void before_jump(ThreadState* ts, GreenletImpl* from, GreenletImpl* to) {
    if (to->state == GreenletImpl::State::unstarted) [[unlikely]]
        prepare_start(ts, to);
    normalize_fp_status();
    from->saved_errno = *ts->errno_loc;
    swap_eh(ts->eh, &from->saved_eh, &to->saved_eh);
    ts->current = to;
    asan_start(from, to, false);
}
inline void after_resume(ThreadState* ts, fctx::transfer_t t) {
    after_jump(ts, t);
    *ts->errno_loc = ts->current->saved_errno;
}
// The only place that jumps (besides a dying greenlet's last switch). `from` is ts->current.
inline void jump(ThreadState* ts, GreenletImpl* from, GreenletImpl* to) {
    before_jump(ts, from, to);
    Transfer r = jump_fn(to->ctx, from);  // through the pointer: no PLT hop
    after_resume(ts, fctx::transfer_t{r.fctx, r.data});
}

[[noreturn, gnu::cold]] void blocking_on_hub(const char* what);

// Inline so that the jump is made from the blocking function's own frame.
[[gnu::always_inline]] inline void HubImpl::switch_out(GreenletImpl* cur, const char* what) {
    if (cur == greenlet) [[unlikely]]
        blocking_on_hub(what);
    cur->waiting_on = what;
    jump(ts, cur, greenlet);
    cur->waiting_on = nullptr;
    if (cur->pending) [[unlikely]]
        rethrow_pending(cur);
    if (cur->transfer.has_value()) [[unlikely]]
        cur->transfer.reset();  // a stray raw switch with a value; the waiter reports it
}

}  // namespace cogent::detail
