// The watchers of watchers.hpp over libev.
#include "loop/watchers.hpp"

#include <ev.h>

#include <cstddef>

#include "loop/loop.hpp"

namespace cogent::loop {

using impl::Watcher;

// The header's inline accessors read libev's watchers at these offsets.
static_assert(sizeof(ev_timer) <= Watcher::kSize && sizeof(ev_io) <= Watcher::kSize &&
                  sizeof(ev_signal) <= Watcher::kSize && sizeof(ev_prepare) <= Watcher::kSize &&
                  sizeof(ev_idle) <= Watcher::kSize,
              "a libev watcher does not fit Watcher::w_");
static_assert(alignof(ev_timer) <= 8 && alignof(ev_io) <= 8 && alignof(ev_signal) <= 8);
static_assert(offsetof(ev_watcher, active) == Watcher::kActiveOffset &&
                  offsetof(ev_watcher, data) == Watcher::kDataOffset &&
                  offsetof(ev_timer, active) == Watcher::kActiveOffset &&
                  offsetof(ev_timer, data) == Watcher::kDataOffset &&
                  offsetof(ev_io, active) == Watcher::kActiveOffset &&
                  offsetof(ev_io, data) == Watcher::kDataOffset &&
                  offsetof(ev_signal, data) == Watcher::kDataOffset &&
                  offsetof(ev_prepare, data) == Watcher::kDataOffset &&
                  offsetof(ev_idle, data) == Watcher::kDataOffset,
              "libev's watcher layout is not the one watchers.hpp assumes");
static_assert(offsetof(ev_io, fd) == Watcher::kIoFdOffset &&
              offsetof(ev_io, events) == Watcher::kIoEventsOffset &&
              offsetof(ev_signal, signum) == Watcher::kSignumOffset);
static_assert(kRead == EV_READ && kWrite == EV_WRITE && kError == int(EV_ERROR));
static_assert(Io::kFdSet == EV__IOFDSET);
static_assert(sizeof(Timer) <= 64, "Timeout keeps a loop::Timer in 64 bytes");

namespace {
template <class W>
W* ev(unsigned char* storage) {
    return reinterpret_cast<W*>(storage);
}
double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// What every watcher has

struct ev_loop* Watcher::raw(Loop& loop) noexcept {
    return loop.raw();
}
struct ev_loop* Watcher::raw_loop() const noexcept {
    return loop()->raw();
}

void Watcher::unref_slow() noexcept {
    ev_unref(raw_loop());
    bits_ |= kUnref;
}

void Watcher::ref_slow() noexcept {
    ev_ref(raw_loop());
    bits_ &= ~kUnref;
}

void Watcher::release() noexcept {
    // libev stopped the watcher (or is about to be told to): an unreferenced one must get its
    // reference back, or the loop's count of live watchers goes wrong for good.
    if (bits_ & kUnref) ev_ref(raw_loop());
    bits_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Timer

void Timer::start(Loop& loop, std::chrono::nanoseconds after, bool ref) {
    ev_timer* w = ev<ev_timer>(w_);
    if (bits_) stop_slow();
    ev_init(w, &Timer::on_fire);
    ev_timer_set(w, seconds(after), 0.);
    struct ev_loop* l = raw(loop);
    ev_now_update(l);
    ev_timer_start(l, w);
    bind(loop);
    if (!ref) {
        ev_unref(l);
        bits_ |= kUnref;
    }
}

void Timer::again(Loop& loop, std::chrono::nanoseconds repeat) {
    ev_timer* w = ev<ev_timer>(w_);
    if (bits_ && raw(loop) != raw_loop()) stop_slow();
    if (!bits_) {
        ev_init(w, &Timer::on_fire);
        ev_timer_set(w, 0., 0.);
    }
    w->repeat = seconds(repeat);
    struct ev_loop* l = raw(loop);
    ev_now_update(l);
    const bool unref = bits_ & kUnref;
    if (unref && repeat.count() <= 0) ev_ref(l);  // ev_timer_again stops it
    ev_timer_again(l, w);
    if (ev_is_active(w))
        bits_ = reinterpret_cast<std::uintptr_t>(&loop) | (unref ? kUnref : 0);
    else
        bits_ = 0;
}

void Timer::stop_slow() noexcept {
    struct ev_loop* l = raw_loop();
    release();                           // before stopping an unreferenced watcher
    ev_timer_stop(l, ev<ev_timer>(w_));  // also clears an expired timer not yet called back
}

void Timer::on_fire(struct ev_loop*, ev_timer* w, int) {
    auto* self = reinterpret_cast<Timer*>(w);
    self->after_fire();
    self->fn_(*self);
}

// ---------------------------------------------------------------------------------------------
// Io

void Io::start_slow(Loop& loop) {
    ev_io* w = ev<ev_io>(w_);
    if (bits_) release();        // libev stopped it (an fd error) and the callback has not run yet
    ev_set_cb(w, &Io::on_fire);  // not ev_init: a pending event (an fd error) must survive
    ev_io_start(raw(loop), w);
    bind(loop);
}

void Io::stop_slow() noexcept {
    struct ev_loop* l = raw_loop();
    release();
    ev_io_stop(l, ev<ev_io>(w_));  // also clears a pending event
}

void Io::on_fire(struct ev_loop*, ev_io* w, int revents) {
    auto* self = reinterpret_cast<Io*>(w);
    self->after_fire();
    self->fn_(*self, revents);
}

// ---------------------------------------------------------------------------------------------
// Signal

void Signal::start(Loop& loop, int signum) {
    ev_signal* w = ev<ev_signal>(w_);
    if (bits_) stop_slow();
    ev_init(w, &Signal::on_fire);
    ev_signal_set(w, signum);
    ev_signal_start(raw(loop), w);
    bind(loop);
}

void Signal::stop_slow() noexcept {
    struct ev_loop* l = raw_loop();
    release();
    ev_signal_stop(l, ev<ev_signal>(w_));
}

void Signal::on_fire(struct ev_loop*, ev_signal* w, int) {
    auto* self = reinterpret_cast<Signal*>(w);
    self->after_fire();
    self->fn_(*self);
}

// ---------------------------------------------------------------------------------------------
// Prepare and Idle

namespace impl {

template <HookKind K>
void Hook<K>::start_slow(Loop& loop) {
    using Ev = typename HookEv<K>::type;
    Ev* w = ev<Ev>(w_);
    if (bits_) release();
    ev_set_cb(w, &Hook::on_fire);
    if constexpr (K == HookKind::prepare)
        ev_prepare_start(raw(loop), w);
    else
        ev_idle_start(raw(loop), w);
    bind(loop);
}

template <HookKind K>
void Hook<K>::stop_slow() noexcept {
    using Ev = typename HookEv<K>::type;
    struct ev_loop* l = raw_loop();
    release();
    if constexpr (K == HookKind::prepare)
        ev_prepare_stop(l, ev<Ev>(w_));
    else
        ev_idle_stop(l, ev<Ev>(w_));
}

template <HookKind K>
void Hook<K>::on_fire(struct ev_loop*, typename HookEv<K>::type* w, int) {
    auto* self = reinterpret_cast<Hook*>(w);
    self->after_fire();
    self->fn_(*self);
}

template class Hook<HookKind::prepare>;
template class Hook<HookKind::idle>;

}  // namespace impl

}  // namespace cogent::loop
