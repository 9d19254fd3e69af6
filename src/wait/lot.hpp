// The parking lot: waits keyed by an address, shared by greenlets and real OS threads. The
// cooperative pthread objects of the monkey patch (mutexes, conditions, rwlocks, barriers,
// once, semaphores, private futexes) keep their state in their own bytes and block here, so
// one object serves every caller: a greenlet parks through the one Parker (its hub runs on), a
// thread without a hub (or a hub itself, which cannot park) sleeps on a futex of its own, and
// any of them wakes any other, on this thread or another. Internal. Modelled on WebKit's and
// Rust's parking_lot: a fixed table of buckets, each a lock and a FIFO queue of waiters.
//
// park(key, ...):   under the bucket's lock, validate() (false: return invalid, without
//                   waiting); queue the caller; unlock; before_sleep(); sleep until an unpark
//                   of key picks it (unparked, with the unparker's token) or the deadline passes
//                   (timed_out, after cancelled() ran under the lock). A greenlet killed
//                   meanwhile: cancelled() (if still queued) and the exception propagates; if an
//                   unpark had already picked it, *out says so and carries the token, so the
//                   caller can give back what was handed to it.
// unpark(key, n, mask, cb): dequeue up to n waiters of key whose tag & mask; cb(count,
//                   have_more) under the lock returns the token they all get; then wake them.
#pragma once

#include <time.h>

#include <cstdint>

#include "cogent/detail/export.hpp"

namespace cogent::detail::lot {

enum Result : int { unparked = 0, invalid = 1, timed_out = 2 };

// What park() runs around the sleep; every member optional.
struct Hooks {
    bool (*validate)(void* ctx) = nullptr;              // under the lock: false = do not wait
    void (*before_sleep)(void* ctx) = nullptr;          // queued, lock released, before sleeping
    void (*cancelled)(void* ctx, bool last) = nullptr;  // under the lock: the waiter left by
                                                        // itself (timeout, kill); last: no other
                                                        // waiter of the key remains
    void* ctx = nullptr;
    // A wait that libc does not let a cancellation interrupt (a mutex, an rwlock, a barrier: the
    // functions glibc declares nothrow): an exception thrown into the greenlet meanwhile (a
    // kill, a Timeout) does not end the wait; it is thrown into it again once the wait is over,
    // from the hub, at its next suspension point.
    bool defer_exceptions = false;
};

// An absolute deadline on `clock` (CLOCK_REALTIME or CLOCK_MONOTONIC), or none.
struct Deadline {
    clockid_t clock = CLOCK_MONOTONIC;
    bool forever = true;
    timespec at{};
};

// What park() reports, also when it throws (a greenlet killed after an unpark picked it).
struct Outcome {
    Result result = invalid;
    std::uintptr_t token = 0;
};

// `what` names the wait for the greenlet's stack report ("pthread_mutex_lock"). Throws only
// what is thrown into a green waiter, and only without hooks.defer_exceptions.
COGENT_INTERNAL_API Result park(const void* key, std::uint32_t tag, const Hooks& hooks,
                                const Deadline& deadline, const char* what, Outcome* out);

// Up to n waiters of key with tag & mask != 0 (in queue order). cb may be null (token 0).
using UnparkCb = std::uintptr_t (*)(void* ctx, unsigned count, bool have_more);
COGENT_INTERNAL_API unsigned unpark(const void* key, unsigned n, std::uint32_t mask, UnparkCb cb,
                                    void* ctx);

// Whether key may have waiters (a hint without the lock: a caller that changed the state the
// waiters validate, then fenced (seq_cst), and sees false, needs no unpark).
COGENT_INTERNAL_API bool may_have_waiters(const void* key) noexcept;

// The number of waiters of key (under the lock).
COGENT_INTERNAL_API unsigned count(const void* key) noexcept;

// The calling caller's identity for ownership (a mutex's owner): the running greenlet when the
// caller is a greenlet other than its hub, else the OS thread (its thread token).
COGENT_INTERNAL_API std::uintptr_t self_token() noexcept;

// True when the caller would park a greenlet (not sleep its thread).
COGENT_INTERNAL_API bool caller_is_green() noexcept;

// Give other greenlets a turn (a cooperative sched_yield); a thread without a running hub
// yields its CPU (sched_yield). Never throws: what is thrown into the greenlet meanwhile is
// thrown into it again at its next suspension point (sched_yield is nothrow in libc).
COGENT_INTERNAL_API void yield(const char* what) noexcept;

}  // namespace cogent::detail::lot
