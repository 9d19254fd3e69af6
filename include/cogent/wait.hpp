// Waiting on several objects at once: iwait, wait, joinall, killall.
#pragma once

#include <cstddef>
#include <deque>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/next_iterator.hpp"
#include "cogent/event.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/hub.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"

namespace cogent {

namespace detail {

template <class>
inline constexpr bool always_false = false;

// What iwait/wait accept: greenlet handles, and pointers to any waitable object (Event*,
// AsyncResult<T>*, ...: everything built on Linkable).
template <class T>
Linkable& linkable_of(const T& o) {
    if constexpr (std::is_base_of_v<AnyGreenlet, T>) {
        if (!o.valid()) throw std::invalid_argument("cogent: wait given a null greenlet handle");
        return *o.state();
    } else if constexpr (std::is_pointer_v<T> &&
                         std::is_base_of_v<Linkable, std::remove_cv_t<std::remove_pointer_t<T>>>) {
        if (!o) throw std::invalid_argument("cogent: wait given a null pointer");
        return const_cast<Linkable&>(static_cast<const Linkable&>(*o));
    } else {
        static_assert(always_false<T>,
                      "iwait/wait take greenlet handles or pointers to waitables (Event*, ...)");
    }
}

// GreenletError if any object belongs to another thread, or is the calling greenlet (a
// self-join); checked for all before anything is done. `what` names the call.
COGENT_INTERNAL_API void check_wait_args(const std::vector<Linkable*>& objects, const char* what);
// GreenletError: g (the caller) would wait for its own end in `what`.
[[noreturn]] COGENT_INTERNAL_API void throw_self_join(const GreenletImpl* g, const char* what);

// Registers one wake-up node on each object; yields indices in completion order.
class COGENT_INTERNAL_API MultiWait {
public:
    // Throws as check_wait_args, before linking anything.
    MultiWait(std::vector<Linkable*> objects, TimeoutArg timeout, const char* what = "iwait");
    ~MultiWait();
    MultiWait(const MultiWait&) = delete;
    MultiWait& operator=(const MultiWait&) = delete;
    // Next index to become ready, or nullopt when the timeout passed or all were yielded.
    std::optional<std::size_t> next();
    // Block until n indices are ready to be taken, an `urgent` object is ready, or timeout;
    // the waiter is woken once, not once per object (joinall).
    void gather(std::size_t n, bool (*urgent)(Linkable*));
    // The next index already ready, without blocking.
    std::optional<std::size_t> take();

private:
    struct Node : WaitNode {
        MultiWait* owner;
        std::size_t index;
    };
    static void on_ready(WaitNode* n);
    static void on_abandon(WaitNode* n, const char* kind) noexcept;
    bool park_until_deadline(const char* what);
    std::vector<Node> nodes_;
    std::vector<Linkable*> objects_;
    std::size_t want_ = 1;
    bool (*urgent_)(Linkable*) = nullptr;
    bool urgent_hit_ = false;
    bool holds_loop_ = false;          // waits on something another thread may set
    const char* destroyed_ = nullptr;  // kind of an object destroyed under us ("" if unknown)
    std::deque<std::size_t> ready_;
    WaitList self_;  // where the iterating greenlet parks
    std::size_t yielded_ = 0;
    TimeoutArg timeout_;
    std::uint64_t deadline_ns_ = 0;
};

}  // namespace detail

// Iterate over objects (greenlet handles, Event*) as they become ready, in completion order,
// until all were yielded, `count` were yielded, or `timeout` (overall) passed. Lazy: register
// on construction, unregister on destruction. GreenletError (before registering on any) if an
// object belongs to another thread or is the calling greenlet. An object destroyed while
// registered (never yielded) makes the iteration throw WaitableDestroyed when it would next wait.
template <class T>
class IWait {
public:
    IWait(std::vector<T> objects, TimeoutArg timeout = {}, std::optional<std::size_t> count = {})
        : objects_(std::move(objects)),
          mw_(linkables(objects_), timeout),
          limit_(count ? std::min(*count, objects_.size()) : objects_.size()) {}

    // The next ready object, or nullopt at the end (timeout or limit reached).
    std::optional<T> next() {
        if (given_ >= limit_) return std::nullopt;
        auto i = mw_.next();
        if (!i) return std::nullopt;
        ++given_;
        return objects_[*i];
    }

    using iterator = detail::NextIterator<IWait, T>;
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

private:
    static std::vector<detail::Linkable*> linkables(const std::vector<T>& v) {
        std::vector<detail::Linkable*> out;
        out.reserve(v.size());
        for (const auto& o : v) out.push_back(&detail::linkable_of(o));
        return out;
    }
    std::vector<T> objects_;
    detail::MultiWait mw_;
    std::size_t limit_;
    std::size_t given_ = 0;
};

template <class Range>
auto iwait(const Range& objects, TimeoutArg timeout = {}, std::optional<std::size_t> count = {}) {
    using T = std::decay_t<decltype(*std::begin(objects))>;
    return IWait<T>(std::vector<T>(std::begin(objects), std::end(objects)), timeout, count);
}

// The objects that became ready (completion order), stopping after `count` or at `timeout`.
template <class Range>
requires(!std::is_convertible_v<const Range&, TimeoutArg>) auto wait(
    const Range& objects, TimeoutArg timeout = {}, std::optional<std::size_t> count = {}) {
    using T = std::decay_t<decltype(*std::begin(objects))>;
    IWait<T> it(std::vector<T>(std::begin(objects), std::end(objects)), timeout, count);
    std::vector<T> out;
    while (auto o = it.next()) out.push_back(std::move(*o));
    return out;
}

// gevent.wait() with no objects: run the hub until nothing is left, see Hub::join (true), or
// until `timeout` (false). Only from the thread's main greenlet.
inline bool wait(TimeoutArg timeout = {}) { return get_hub().join(timeout); }

// Wait for greenlets to finish; returns those that did, in completion order. On timeout,
// returns the partial list (no exception). raise_error: rethrow the first failure seen.
// GreenletError (before waiting on any) if one belongs to another thread or is the caller.
COGENT_API std::vector<AnyGreenlet> joinall(const std::vector<AnyGreenlet>& greenlets,
                                            TimeoutArg timeout = {}, bool raise_error = false,
                                            std::optional<std::size_t> count = {});
template <class Range, class = std::enable_if_t<!std::is_same_v<Range, std::vector<AnyGreenlet>>>>
std::vector<AnyGreenlet> joinall(const Range& greenlets, TimeoutArg timeout = {},
                                 bool raise_error = false, std::optional<std::size_t> count = {}) {
    return joinall(std::vector<AnyGreenlet>(std::begin(greenlets), std::end(greenlets)), timeout,
                   raise_error, count);
}
inline std::vector<AnyGreenlet> joinall(std::initializer_list<AnyGreenlet> greenlets,
                                        TimeoutArg timeout = {}, bool raise_error = false,
                                        std::optional<std::size_t> count = {}) {
    return joinall(std::vector<AnyGreenlet>(greenlets), timeout, raise_error, count);
}

// Kill all of them with `exception`; block=true waits up to `timeout` for all to die and,
// unlike kill(), throws Timeout if some are still alive then. GreenletError (before killing
// any) if one belongs to another thread, or with block=true, is the caller.
COGENT_API void killall_ptr(std::vector<AnyGreenlet> greenlets, std::exception_ptr exception,
                            bool block, TimeoutArg timeout);
template <class Range, class E = GreenletExit>
void killall(const Range& greenlets, E exception = E(), bool block = true,
             TimeoutArg timeout = {}) {
    killall_ptr(std::vector<AnyGreenlet>(std::begin(greenlets), std::end(greenlets)),
                std::make_exception_ptr(std::move(exception)), block, timeout);
}

}  // namespace cogent
