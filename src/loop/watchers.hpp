// Watchers on a loop::Loop: RAII wrappers over libev's timers, fd, signal, prepare and idle
// watchers, so that <ev.h> reaches src/loop/*.cpp only. Internal. Usage:
//   struct Waiter { loop::Timer timer{&Waiter::on_timer, this}; ... };
//   static void on_timer(loop::Timer& t) { auto* self = static_cast<Waiter*>(t.data()); ... }
//   w.timer.start(hub->loop(), 5ms);  // one-shot, counted from now; start(..., false): the
//                                     // timer does not keep Loop::run() going
//   w.timer.stop();                   // also done by the destructor
// Every watcher remembers the loop it was started on, so stop() and the destructor need no
// loop, and stop() is a no-op (no call into libev) on a watcher never started or already done.
// stop() also clears an event that fired but whose callback has not run yet, so a watcher in a
// frame that is going away can never be called back. A watcher's callback gets the watcher;
// `data()` is the pointer given at construction (or set_callback). unref() makes an active
// watcher stop counting as a reason for Loop::run() to go on; stop(), a restart and libev's
// own stops (a one-shot timer firing, an fd error) give the reference back, so ref/unref stay
// balanced without the caller's help. A watcher must not move while started (it is not
// copyable). All calls are from the loop's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>

struct ev_loop;
struct ev_timer;
struct ev_io;
struct ev_signal;
struct ev_prepare;
struct ev_idle;

namespace cogent::loop {

class Loop;

// Io events (libev's EV_READ, EV_WRITE and EV_ERROR; checked in watchers.cpp).
inline constexpr int kRead = 0x01;
inline constexpr int kWrite = 0x02;
inline constexpr int kError = int(0x80000000u);  // libev could not watch the fd

namespace impl {
// What every watcher has: libev's watcher at offset 0 (the callbacks find the wrapper from it)
// and, while started, the loop it is on.
class Watcher {
public:
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    // Started and not stopped since (a one-shot timer that fired is stopped).
    bool active() const noexcept { return bits_ && word(kActiveOffset) != 0; }
    void* data() const noexcept {
        void* d;
        std::memcpy(&d, w_ + kDataOffset, sizeof d);
        return d;
    }
    void set_data(void* d) noexcept { std::memcpy(w_ + kDataOffset, &d, sizeof d); }
    // While active: unref() makes this watcher no longer keep Loop::run() going, ref() undoes
    // it. Both are no-ops when there is nothing to do (inactive, already so), decided inline:
    // an fd's read watcher kept armed between waits goes through both on every wait.
    void unref() noexcept {
        if (bits_ && !(bits_ & kUnref) && word(kActiveOffset) != 0) unref_slow();
    }
    void ref() noexcept {
        if (bits_ & kUnref) ref_slow();
    }
    bool referenced() const noexcept { return !(bits_ & kUnref); }

    // Layout facts used inline here, checked against <ev.h> in watchers.cpp.
    static constexpr std::size_t kSize = 48;
    static constexpr std::size_t kActiveOffset = 0;
    static constexpr std::size_t kDataOffset = 16;
    static constexpr std::size_t kIoFdOffset = 40;
    static constexpr std::size_t kIoEventsOffset = 44;
    static constexpr std::size_t kSignumOffset = 40;

protected:
    Watcher() noexcept { std::memset(w_, 0, kDataOffset); }  // inactive, not pending
    struct Uninitialised {};
    explicit Watcher(Uninitialised) noexcept {}  // for a kind that (re)initialises on start
    ~Watcher() = default;
    int word(std::size_t off) const noexcept {
        int v;
        std::memcpy(&v, w_ + off, sizeof v);
        return v;
    }
    Loop* loop() const noexcept { return reinterpret_cast<Loop*>(bits_ & ~kUnref); }
    struct ::ev_loop* raw_loop() const noexcept;
    static struct ::ev_loop* raw(Loop& loop) noexcept;  // Loop::raw() is for watchers only
    void bind(Loop& loop) noexcept { bits_ = reinterpret_cast<std::uintptr_t>(&loop); }
    // After libev called the watcher back: if it stopped it (a one-shot timer, an fd error),
    // give back an unref()'s reference and forget the loop.
    void after_fire() noexcept {
        if (word(kActiveOffset) == 0) [[unlikely]]
            release();
    }
    void release() noexcept;  // the reference back if unref()'d; forget the loop
    void unref_slow() noexcept;
    void ref_slow() noexcept;

    static constexpr std::uintptr_t kUnref = 1;
    alignas(8) unsigned char w_[kSize];  // the libev watcher
    std::uintptr_t bits_ = 0;  // while started (or fired, not called back): Loop* | kUnref
};
}  // namespace impl

// A timer: one-shot (start) or periodic (again).
class Timer : public impl::Watcher {
public:
    using Fn = void (*)(Timer&);
    Timer() noexcept : Watcher(Uninitialised{}) {}
    Timer(Fn fn, void* data) noexcept : Watcher(Uninitialised{}), fn_(fn) { set_data(data); }
    ~Timer() { stop(); }
    void set_callback(Fn fn, void* data) noexcept {
        fn_ = fn;
        set_data(data);
    }
    // Fire once, `after` from now (the loop's clock is brought up to date first); restarts a
    // started timer. ref = false: as unref() right after.
    void start(Loop& loop, std::chrono::nanoseconds after, bool ref = true);
    // Fire every `repeat`, the first time `repeat` from now; again() on a running periodic
    // timer pushes its next firing back to `repeat` from now (libev's ev_timer_again).
    void again(Loop& loop, std::chrono::nanoseconds repeat);
    void stop() noexcept {
        if (bits_) stop_slow();
    }

private:
    void stop_slow() noexcept;
    static void on_fire(struct ::ev_loop*, struct ev_timer*, int);
    Fn fn_ = nullptr;
};

// A watcher of one fd for reading and/or writing (level-triggered).
class Io : public impl::Watcher {
public:
    // revents: kRead and/or kWrite; with kError, libev could not watch the fd (not open, or
    // of a kind epoll refuses) and has stopped every watcher on it.
    using Fn = void (*)(Io&, int revents);
    Io() noexcept { set(-1, 0); }
    Io(Fn fn, void* data) noexcept : fn_(fn) {
        set_data(data);
        set(-1, 0);
    }
    ~Io() { stop(); }
    void set_callback(Fn fn, void* data) noexcept {
        fn_ = fn;
        set_data(data);
    }
    // What to watch: fd for events (kRead | kWrite). Only while stopped. As libev's ev_io_set,
    // this marks the fd as (possibly) new, so that the next start registers it with the kernel
    // again: an fd number closed and reused since the last start is otherwise never watched
    // (libev sees the same events on the same number and skips epoll_ctl).
    void set(int fd, int events) noexcept {
        events |= kFdSet;
        std::memcpy(w_ + kIoFdOffset, &fd, sizeof fd);
        std::memcpy(w_ + kIoEventsOffset, &events, sizeof events);
    }
    int fd() const noexcept { return word(kIoFdOffset); }
    int events() const noexcept { return word(kIoEventsOffset) & ~kFdSet; }
    static constexpr int kFdSet = 0x80;  // libev's EV__IOFDSET (checked in watchers.cpp)
    // Start watching (no-op if active).
    void start(Loop& loop) {
        if (!active()) start_slow(loop);
    }
    void stop() noexcept {
        if (bits_) stop_slow();
    }

private:
    void start_slow(Loop& loop);
    void stop_slow() noexcept;
    static void on_fire(struct ::ev_loop*, struct ev_io*, int);
    Fn fn_ = nullptr;
};

// A signal watcher (libev's default loop only: Loop::is_default()).
class Signal : public impl::Watcher {
public:
    using Fn = void (*)(Signal&);
    Signal() noexcept = default;
    Signal(Fn fn, void* data) noexcept : fn_(fn) { set_data(data); }
    ~Signal() { stop(); }
    void set_callback(Fn fn, void* data) noexcept {
        fn_ = fn;
        set_data(data);
    }
    // Watch signal `signum` (restarts a started watcher).
    void start(Loop& loop, int signum);
    void stop() noexcept {
        if (bits_) stop_slow();
    }
    int signum() const noexcept { return word(kSignumOffset); }

private:
    void stop_slow() noexcept;
    static void on_fire(struct ::ev_loop*, struct ev_signal*, int);
    Fn fn_ = nullptr;
};

namespace impl {
// The watchers without parameters that call back once per loop iteration at one point: libev's
// prepare and idle watchers, one class for both (the .cpp instantiates the two).
enum class HookKind { prepare, idle };
template <HookKind K>
struct HookEv;
template <>
struct HookEv<HookKind::prepare> {
    using type = struct ::ev_prepare;
};
template <>
struct HookEv<HookKind::idle> {
    using type = struct ::ev_idle;
};

template <HookKind K>
class Hook : public Watcher {
public:
    using Fn = void (*)(Hook&);
    Hook() noexcept = default;
    Hook(Fn fn, void* data) noexcept : fn_(fn) { set_data(data); }
    ~Hook() { stop(); }
    void set_callback(Fn fn, void* data) noexcept {
        fn_ = fn;
        set_data(data);
    }
    void start(Loop& loop) {  // no-op if active
        if (!active()) start_slow(loop);
    }
    void stop() noexcept {
        if (bits_) stop_slow();
    }

private:
    void start_slow(Loop& loop);
    void stop_slow() noexcept;
    static void on_fire(struct ::ev_loop*, typename HookEv<K>::type*, int);
    Fn fn_ = nullptr;
};
}  // namespace impl

// Called in every loop iteration just before the loop blocks for I/O.
using Prepare = impl::Hook<impl::HookKind::prepare>;
// Called in loop iterations that have nothing else to call back (and then the loop polls
// without blocking).
using Idle = impl::Hook<impl::HookKind::idle>;

}  // namespace cogent::loop
