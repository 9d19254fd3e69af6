// The library's side of the switch core (cogent/detail/switch_core.hpp): the machine-level
// jump (core/switch_x86_64.S), sanitizer annotations, starting a greenlet, and jump(), the
// switch every library caller makes (inline, so that it is made from the caller's own frame).
// Internal.
#pragma once

#include "cogent/detail/switch_core.hpp"
#include "core/thread_state.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define COGENT_ASAN 1
#include <sanitizer/common_interface_defs.h>
#endif

// The machine-level switch and a new context's first frame: core/switch_x86_64.S on x86-64
// ELF, wrappers of Boost.Context's jump_fcontext and make_fcontext elsewhere (context.cpp).
// make: a context that, when first jumped to, calls fn({the context left, data}) with the
// stack ending at `top`; fn must never return.
extern "C" {
__attribute__((visibility("hidden"))) cogent::detail::Transfer cogent_switch_context(
    void* to, void* data) noexcept;
__attribute__((visibility("hidden"))) void* cogent_make_context(
    void* top, std::size_t size, void (*fn)(cogent::detail::Transfer)) noexcept;
}

namespace cogent::detail {

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

// The switch core's parts for the library: a direct call to the jump routine, and the
// AddressSanitizer fiber annotations in a sanitizer build.
struct LibSwitch {
    static constexpr bool kTraced = true;
    static Transfer jump(void* to, void* data) noexcept { return cogent_switch_context(to, data); }
    static void leaving([[maybe_unused]] GreenletImpl* from, [[maybe_unused]] GreenletImpl* to,
                        [[maybe_unused]] bool dying) noexcept {
#ifdef COGENT_ASAN
        __sanitizer_start_switch_fiber(dying ? nullptr : &from->asan_fake_stack, to->stack_lo,
                                       to->stack_size);
#endif
    }
    static void landed([[maybe_unused]] GreenletImpl* self,
                       [[maybe_unused]] GreenletImpl* prev) noexcept {
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
};

// The switch from `from` (ts->current) to `to`, starting `to` if it is unstarted (which may
// throw std::bad_alloc before anything changed).
[[gnu::always_inline]] inline void jump(ThreadState* ts, GreenletImpl* from, GreenletImpl* to) {
    if (to->state == GreenletImpl::State::unstarted) [[unlikely]]
        prepare_start(ts, to);
    switch_core<LibSwitch>(ts, from, to);
}

// After the hub is resumed: report what a raw greenlet parented to it handed it.
void after_hub_resume(GreenletImpl* hub);

}  // namespace cogent::detail
