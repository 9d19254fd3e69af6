// Exceptions of the cogent runtime.
#pragma once

#include <stdexcept>
#include <string>

#include "cogent/detail/export.hpp"

namespace cogent {

// Root of the exceptions that control a greenlet's life (GreenletExit, Timeout). Like Python's
// BaseException it does not derive from std::exception, so `catch (const std::exception&)` in
// user code does not swallow a kill or a timeout; catch it by name or with `catch (...)`.
class COGENT_API BaseException {
public:
    explicit BaseException(std::string msg) : msg_(std::move(msg)) {}
    virtual ~BaseException() = default;
    // The message; never null.
    virtual const char* what() const noexcept { return msg_.c_str(); }

private:
    std::string msg_;
};

// Thrown into a greenlet by kill() (the default exception). A greenlet that ends with it counts
// as successful, as in gevent.
class COGENT_API GreenletExit : public BaseException {
public:
    GreenletExit() : BaseException("GreenletExit") {}
    explicit GreenletExit(std::string msg) : BaseException(std::move(msg)) {}
};

// Misuse of greenlets: switching to a greenlet of another thread, to a greenlet being
// destroyed, a start() of a started greenlet, and the like.
class COGENT_API GreenletError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// A waitable (Event, AsyncResult, Semaphore, Lock, RLock, Condition, Queue, Channel, Pool...)
// was destroyed while this greenlet waited on it: the destructor wakes every waiter with this
// error ("cogent: Event destroyed while Greenlet-2 waited in Event::wait"), timed and killed
// waiters included, and nothing touches the dead object afterwards.
class COGENT_API WaitableDestroyed : public GreenletError {
public:
    using GreenletError::GreenletError;
};

// A greenlet parked in a cooperative wait was switched into by something other than what it
// waits for (a stray raw switch).
class COGENT_API InvalidSwitchError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// Code running on the hub greenlet (a hub callback, a rawlink) tried to block.
class COGENT_API BlockingSwitchOutError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

// The main greenlet blocked and nothing that is still referenced can ever wake it.
// The message says "This operation would block forever" and what was being waited on.
class COGENT_API LoopExit : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace cogent
