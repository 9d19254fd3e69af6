// AsyncResult<T>: a one-shot value or exception that greenlets wait for, settable from any
// thread (gevent.event.AsyncResult).
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"

namespace cogent {

namespace detail {

// The part of AsyncResult<T> that does not depend on T: state, waking, cross-thread entry.
class COGENT_INTERNAL_API AsyncResultBase : public Linkable {
public:
    // A value or an exception has been set.
    bool ready() const noexcept override {
        return state_.load(std::memory_order_acquire) >= kValue;
    }
    // Another thread may set it: iwait/wait on it hold the loop (no LoopExit meanwhile).
    bool readied_from_other_threads() const noexcept override { return true; }
    // Store an exception for get() to rethrow. Any thread. Throws std::logic_error if already
    // set, std::invalid_argument if e is null.
    void set_exception(std::exception_ptr e) { set_error(std::move(e)); }
    // Same with an exception object (any type).
    template <class E,
              class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, std::exception_ptr>>>
    void set_exception(E&& e) {
        set_error(std::make_exception_ptr(std::forward<E>(e)));
    }
    // Set with a value.
    bool successful() const noexcept { return state_.load(std::memory_order_acquire) == kValue; }
    // The exception it was set with, or null (not set, or set with a value).
    std::exception_ptr exception() const noexcept {
        return state_.load(std::memory_order_acquire) == kError ? error_ : nullptr;
    }

protected:
    AsyncResultBase();
    ~AsyncResultBase() override;
    // Claim the one set; throws std::logic_error if it was already set (or is being set).
    void begin_set();
    // Storing the value threw: back to unset.
    void abort_set() noexcept;
    // Publish the outcome and wake the waiters (directly, or through the owner hub's async
    // watcher when called from another thread).
    void finish_set(bool ok);
    // begin_set, store e (std::invalid_argument if null), finish_set.
    void set_error(std::exception_ptr e);
    // Block until ready (true) or timeout (false), holding a loop reference meanwhile.
    // take_turn (wait(), not get(), as in gevent): if it is ready but its waiters are still being
    // woken, wait for them to be woken first (Linkable::wait_turn).
    bool wait_done(TimeoutArg timeout, const char* what, bool take_turn);
    // rawlink() with the owner-thread check.
    template <class Self>
    LinkId rawlink_owned(std::function<void(Self&)> cb) {
        check_owner("AsyncResult::rawlink");
        return rawlink_as<Self>(std::move(cb));
    }
    // GreenletError unless called on the owner thread.
    void check_owner(const char* what) const;
    // Rethrow the stored exception, if any.
    void rethrow_if_error() const {
        if (state_.load(std::memory_order_acquire) == kError) std::rethrow_exception(error_);
    }

private:
    struct Remote;
    enum : unsigned char { kEmpty, kSetting, kValue, kError };
    std::atomic<unsigned char> state_{kEmpty};
    std::exception_ptr error_;
    ThreadState* owner_;  // the constructing thread
    HubImpl* hub_;        // its hub
    std::mutex mu_;       // a set() from another thread and the destructor exclude each other
    std::shared_ptr<Remote> remote_;  // what a pending cross-thread wake-up points at
};

}  // namespace detail

// A one-shot result: set(value) or set_exception(e) once; greenlets get() it (blocking until
// it is set, FIFO). Waking never switches.
//
// Threads: the AsyncResult belongs to the thread that constructs it (its hub is created then
// if needed); only that thread's greenlets may wait on it (get/wait/iwait; GreenletError
// otherwise, except that get() and wait() of an already-set result work anywhere). set() and
// set_exception() may be called from ANY thread: the outcome is published atomically and the
// owner hub is woken through its async watcher. The owner may destroy the object as soon as it
// has seen it set (the destructor waits for a setting thread to finish its set() call); a
// set() must not start after the destruction or after the owner thread has exited.
//
// While a greenlet blocks in get()/wait(), the owner hub's loop is held alive, so another thread
// can still set it: waiting on an AsyncResult that nobody will ever set hangs instead of raising
// LoopExit (use a timeout). (iwait/wait on an AsyncResult* do not hold the loop.)
//
// Setting twice: unlike gevent (where a later set replaces the value), the first set wins and
// any later set()/set_exception() throws std::logic_error; so a value, once read, never changes
// under a reader, from whichever thread. Not movable.
template <class T>
class AsyncResult : public detail::AsyncResultBase {
public:
    // An unset result owned by the calling thread.
    AsyncResult() = default;

    // Store `value` and wake the waiters. Any thread. Throws std::logic_error if already set.
    void set(T value) {
        begin_set();
        try {
            value_.emplace(std::move(value));
        } catch (...) {
            abort_set();
            throw;
        }
        finish_set(true);
    }

    // Block until set (up to timeout), then return the value or rethrow the exception. Throws
    // Timeout (Timeout::expired) if not set in time; a zero timeout does not block. Owner
    // thread's greenlets (any thread once set); BlockingSwitchOutError on the hub.
    T& get(TimeoutArg timeout = {}) {
        if (!wait_done(timeout, "AsyncResult::get", false)) throw Timeout::expired(timeout);
        rethrow_if_error();
        return *value_;
    }
    // get() without blocking: throws Timeout if not set yet.
    T& get_nowait() { return get(TimeoutArg(Duration::zero())); }
    // Block until set (true) or timeout (false). Does not rethrow. Same callers as get(). Unlike
    // get() (as in gevent), once set it still waits, on the owner thread, for the waiters being
    // woken to be woken first, and returns true in the same wake-up round (see Event::wait).
    bool wait(TimeoutArg timeout = {}) { return wait_done(timeout, "AsyncResult::wait", true); }
    // Call `cb(*this)` on the owner's hub once it is set, with a value or an exception
    // (gevent's rawlink): once, in FIFO order with the waiters; at the next turn of the hub if
    // it is set already. `cb` must not block (an exception from it is reported on stderr).
    // Returns an id for unlink(). Owner thread only (GreenletError otherwise); throws
    // std::invalid_argument for an empty cb.
    LinkId rawlink(std::function<void(AsyncResult&)> cb) {
        return rawlink_owned<AsyncResult>(std::move(cb));
    }
    // Remove a rawlink that has not been called yet; a fired, removed or unknown id does
    // nothing (ids are never reused). Never blocks.
    void unlink(LinkId id) { remove_rawlink(id); }
    // The value if it was set with one, else nullptr. Never blocks.
    T* value() noexcept { return successful() ? &*value_ : nullptr; }
    // The value if it was set with one, else nullptr. Never blocks.
    const T* value() const noexcept { return successful() ? &*value_ : nullptr; }

private:
    std::optional<T> value_;
};

// AsyncResult without a value: set() marks it done; get() returns or rethrows.
template <>
class AsyncResult<void> : public detail::AsyncResultBase {
public:
    // An unset result owned by the calling thread.
    AsyncResult() = default;

    // Mark it done and wake the waiters. Any thread. Throws std::logic_error if already set.
    void set() {
        begin_set();
        finish_set(true);
    }

    // Block until set (up to timeout), then return or rethrow. Throws Timeout if not set in
    // time. Same callers as AsyncResult<T>::get.
    void get(TimeoutArg timeout = {}) {
        if (!wait_done(timeout, "AsyncResult::get", false)) throw Timeout::expired(timeout);
        rethrow_if_error();
    }
    // get() without blocking: throws Timeout if not set yet.
    void get_nowait() { get(TimeoutArg(Duration::zero())); }
    // Block until set (true) or timeout (false). Does not rethrow. Like AsyncResult<T>::wait.
    bool wait(TimeoutArg timeout = {}) { return wait_done(timeout, "AsyncResult::wait", true); }
    // Like AsyncResult<T>::rawlink.
    LinkId rawlink(std::function<void(AsyncResult&)> cb) {
        return rawlink_owned<AsyncResult>(std::move(cb));
    }
    // Like AsyncResult<T>::unlink.
    void unlink(LinkId id) { remove_rawlink(id); }
};

}  // namespace cogent
