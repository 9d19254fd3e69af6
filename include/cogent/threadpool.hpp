// ThreadPool (gevent.threadpool.ThreadPool): OS worker threads for the work a hub cannot do
// cooperatively (CPU-bound code, regular file I/O, any blocking call nothing can patch), with
// results delivered back to the calling greenlet's hub.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cogent/async_result.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/next_iterator.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"
#include "cogent/wait.hpp"

namespace cogent {

// The exception a task's AsyncResult gets when the task never ran: the pool was killed or
// destroyed while it was queued, or the process forked (the child's copy of a task that was
// queued or running in the parent is not run in the child).
class COGENT_API ThreadPoolKilled : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Options for a ThreadPool.
struct COGENT_API ThreadPoolOptions {
    // How long a worker thread waits for work before it exits. Absent: never; zero: as soon as
    // the queue is empty. Negative durations are rejected (std::invalid_argument).
    TimeoutArg idle_timeout = std::chrono::seconds(5);
};

class ThreadPool;

namespace detail::threadpool {

struct State;
struct Door;

// Throws std::invalid_argument for a maxsize that is a negative number converted.
COGENT_INTERNAL_API void check_maxsize(std::size_t n);

// One queued call: run() on a worker thread, then deliver() on the hub of the thread that
// spawned it. Built by ThreadPool::spawn; internal.
class COGENT_INTERNAL_API Task {
public:
    explicit Task(std::shared_ptr<AsyncResultBase> r) noexcept : result(std::move(r)) {}
    Task(const Task&) = delete;
    virtual ~Task() = default;
    // Worker thread: call the function, keep its value or exception. Never throws.
    virtual void run() noexcept = 0;
    // Owner thread: set the result with `error` if there is one, else with the value; a result
    // the user already set is left alone. Never throws.
    void deliver() noexcept;

    std::exception_ptr error;
    std::shared_ptr<AsyncResultBase> result;
    std::shared_ptr<Door> door;  // the spawning thread's way in (set by submit)

protected:
    virtual void set_value() = 0;
};

template <class R, class F, class... A>
class TaskImpl final : public Task {
public:
    template <class FF, class... AA>
    explicit TaskImpl(std::shared_ptr<AsyncResult<R>> r, FF&& f, AA&&... a)
        : Task(std::move(r)), fn_(std::forward<FF>(f), std::forward<AA>(a)...) {}

    void run() noexcept override {
        try {
            if constexpr (std::is_void_v<R>)
                std::apply(
                    [](auto&& f, auto&&... a) { std::invoke(std::move(f), std::move(a)...); },
                    std::move(fn_));
            else
                value_.emplace(std::apply(
                    [](auto&& f, auto&&... a) -> R {
                        return std::invoke(std::move(f), std::move(a)...);
                    },
                    std::move(fn_)));
        } catch (...) {
            error = std::current_exception();
        }
    }

private:
    void set_value() override {
        auto& r = static_cast<AsyncResult<R>&>(*result);
        if constexpr (std::is_void_v<R>)
            r.set();
        else
            r.set(std::move(*value_));
    }
    std::tuple<F, A...> fn_;
    std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value_;
};

// An lvalue range is iterated in place (it must outlive the iteration); an rvalue one is owned.
template <class Range>
using stored_range_t =
    std::conditional_t<std::is_lvalue_reference_v<Range>, Range, std::remove_cvref_t<Range>>;

// Calls its first argument with the others (std::apply over a stored call).
struct COGENT_INTERNAL_API Invoke {
    template <class F, class... A>
    decltype(auto) operator()(F&& f, A&&... a) const {
        return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
    }
};

template <class Stored>
struct RangeCursor {
    Stored range;
    std::optional<std::ranges::iterator_t<std::remove_reference_t<Stored>>> it;
};

}  // namespace detail::threadpool

// The lazy iterator ThreadPool::imap and imap_unordered return (movable, not copyable):
// results in input order (imap) or completion order (imap_unordered), with at most `window`
// tasks submitted ahead of the consumer. Use it from the thread that created it. Destroying it
// drops the outstanding results (tasks already submitted still run).
template <class R>
class ThreadPoolIMap {
public:
    using value_type = R;

    // Movable (the pending results move along); not copyable.
    ThreadPoolIMap(ThreadPoolIMap&&) noexcept = default;
    ThreadPoolIMap& operator=(ThreadPoolIMap&&) noexcept = default;

    // The next result, or nullopt at the end. As in gevent, a task's exception is rethrown by
    // the next() that reaches its item, and the following next() carries on with the rest. A
    // failure of iterating the range (or of submitting) ends the input; it is rethrown after
    // the items submitted before it (imap_unordered: at once). Throws Timeout if no result is
    // ready within `timeout` (it can be asked for again). Blocks only the calling greenlet;
    // BlockingSwitchOutError on the hub.
    std::optional<R> next(TimeoutArg timeout = {}) {
        if (done_) return std::nullopt;
        while (feed_ && inflight_.size() < window_) {
            std::shared_ptr<AsyncResult<R>> r;
            try {
                r = feed_();
            } catch (...) {
                feed_ = nullptr;
                if (!ordered_) throw;
                feed_error_ = std::current_exception();
                break;
            }
            if (!r) {
                feed_ = nullptr;
                break;
            }
            inflight_.push_back(std::move(r));
        }
        if (inflight_.empty()) {
            finish();
            if (feed_error_) std::rethrow_exception(std::exchange(feed_error_, nullptr));
            return std::nullopt;
        }
        auto pos = inflight_.begin();
        if (ordered_) {
            if (!inflight_.front()->wait(timeout)) throw Timeout::expired(timeout);
        } else {
            pos = first_ready(timeout);
        }
        auto r = std::move(*pos);
        inflight_.erase(pos);
        return std::optional<R>(std::move(r->get()));
    }

    // Range-for support: an input iterator over next().
    using iterator = detail::NextIterator<ThreadPoolIMap, R>;
    // Starts pulling results (may block, may throw like next()).
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

private:
    friend class ThreadPool;
    using Feed = std::function<std::shared_ptr<AsyncResult<R>>()>;
    using Inflight = std::deque<std::shared_ptr<AsyncResult<R>>>;
    ThreadPoolIMap(Feed feed, std::size_t window, bool ordered)
        : feed_(std::move(feed)), window_(window), ordered_(ordered) {}
    void finish() noexcept {
        done_ = true;
        feed_ = nullptr;
        inflight_.clear();
    }
    // The first result to be ready (in completion order); Timeout if none within `timeout`.
    typename Inflight::iterator first_ready(TimeoutArg timeout) {
        auto ready = [this] {
            return std::find_if(inflight_.begin(), inflight_.end(),
                                [](const auto& r) { return r->ready(); });
        };
        auto it = ready();
        if (it != inflight_.end()) return it;
        std::vector<AsyncResult<R>*> all;
        all.reserve(inflight_.size());
        for (auto& r : inflight_) all.push_back(r.get());
        if (cogent::wait(all, timeout, 1).empty()) throw Timeout::expired(timeout);
        return ready();
    }
    Feed feed_;  // submits the next item's task; null result at the end of the range
    Inflight inflight_;
    std::size_t window_;
    bool ordered_;
    bool done_ = false;
    std::exception_ptr feed_error_;  // imap: the range's failure, given after the items before it
};

// A pool of at most `maxsize` OS worker threads (gevent.threadpool.ThreadPool). Workers start
// on demand when tasks queue up and exit after `idle_timeout` without work. Tasks run in FIFO
// order. A task's outcome is delivered to the hub of the thread that spawned it (through that
// hub's thread-safe entry), so greenlets of any number of threads may share one pool, each
// getting its results on its own hub; only the waiting greenlet blocks, never the hub.
//
// Differences from gevent: spawn never blocks (tasks beyond maxsize wait in an unbounded queue,
// not the spawning greenlet; apply_async submits at once); spawn returns a shared AsyncResult
// handle; a task runs outside any greenlet, so it must not use the spawning thread's greenlets
// or waitables (it may use plain blocking calls, or cogent on its own worker thread, which then
// gets its own hub).
//
// While a spawned task is unfinished, the spawning thread's hub loop is held alive (no LoopExit
// while a result is on its way). A greenlet killed or timed out while waiting for a result
// simply stops waiting: the task keeps running and its outcome is stored in the AsyncResult
// when it ends (or dropped, if nobody holds the result any more). If the spawning thread exits
// first, the outcome is dropped on the worker thread.
//
// All members may be called from any thread, concurrently.
class COGENT_API ThreadPool {
public:
    // A pool of up to maxsize worker threads (none started yet). As in gevent, maxsize 0 runs
    // nothing: tasks queue until set_maxsize() raises it (apply/map/join wait meanwhile).
    // Throws std::invalid_argument for a negative maxsize (converted to std::size_t: above
    // PTRDIFF_MAX).
    explicit ThreadPool(std::size_t maxsize, ThreadPoolOptions options = {});
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    // kill(), then wait for the tasks already running to end and join every worker thread
    // (this blocks the calling OS thread: call join() first to wait cooperatively). Queued
    // tasks are cancelled (their results get ThreadPoolKilled), never run. Hangs only if a
    // running task never returns.
    ~ThreadPool();

    // Queue fn(args...) (arguments copied or moved in, like std::thread) and return the
    // AsyncResult that will hold its value or exception; wait for it with get()/wait() from a
    // greenlet of this thread. Never blocks; starts a worker if none is idle and fewer than
    // maxsize run. Throws std::system_error if no worker exists and none can be started.
    template <class F, class... A>
    auto spawn(F&& fn, A&&... args)
        -> std::shared_ptr<AsyncResult<detail::spawn_result_t<F, A...>>> {
        using R = detail::spawn_result_t<F, A...>;
        static_assert(!std::is_reference_v<R>,
                      "a thread-pool function must return a value, not a reference");
        auto result = std::make_shared<AsyncResult<R>>();
        submit(
            std::make_unique<detail::threadpool::TaskImpl<R, std::decay_t<F>, std::decay_t<A>...>>(
                result, std::forward<F>(fn), std::forward<A>(args)...));
        return result;
    }

    // Run fn(args...) on a worker and return its value, or rethrow its exception (the same
    // exception object, so the same type). Blocks only the calling greenlet; throws
    // BlockingSwitchOutError on the hub (before submitting anything). Kill and Timeout
    // interrupt the wait, not the task, which still runs and whose outcome is dropped. Called
    // from one of this pool's own workers, fn runs inline (as in gevent: waiting for a worker
    // from a worker could deadlock).
    template <class F, class... A>
    auto apply(F&& fn, A&&... args) -> detail::spawn_result_t<F, A...> {
        if (in_worker_thread()) return std::invoke(std::forward<F>(fn), std::forward<A>(args)...);
        detail::check_may_block("ThreadPool::apply");
        auto r = spawn(std::forward<F>(fn), std::forward<A>(args)...);
        if constexpr (std::is_void_v<detail::spawn_result_t<F, A...>>)
            r->get();
        else
            return std::move(r->get());
    }

    // Call fn on every item of range on the workers (all submitted at once) and return the
    // results in input order. Items are copied into the tasks; fn is shared by them and called
    // as const, concurrently from several threads. Rethrows the first failure in input order
    // (the other tasks still run; their outcomes are dropped). Same callers as apply(); from a
    // worker of this pool it runs inline.
    template <class F, class Range>
    auto map(F&& fn, Range&& range) {
        using Item = std::remove_cvref_t<std::ranges::range_reference_t<Range>>;
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<const Fn&, Item&&>,
                      "map: fn must be callable (as const) with a range item");
        using R = std::decay_t<std::invoke_result_t<const Fn&, Item&&>>;
        static_assert(!std::is_void_v<R>, "map needs a function that returns a value");
        std::vector<R> out;
        if (in_worker_thread()) {
            const Fn f(std::forward<F>(fn));
            for (auto&& item : range) out.push_back(std::invoke(f, Item(item)));
            return out;
        }
        detail::check_may_block("ThreadPool::map");
        auto shared = std::make_shared<const Fn>(std::forward<F>(fn));
        std::vector<std::shared_ptr<AsyncResult<R>>> results;
        for (auto&& item : range)
            results.push_back(
                spawn([shared](Item it) -> R { return std::invoke(*shared, std::move(it)); },
                      Item(std::forward<decltype(item)>(item))));
        out.reserve(results.size());
        for (auto& r : results) out.push_back(std::move(r->get()));
        return out;
    }

    // map(fn, range) in a new greenlet of the calling thread, returned at once (gevent's
    // map_async): its value is the vector of results, and, when map succeeds, it calls
    // callback(results) (a const reference) first. When map throws, the greenlet fails with
    // that exception and the callback is not called. An lvalue range must outlive the greenlet
    // (an rvalue one is moved in), and so must the pool.
    template <class F, class Range, class C = std::nullptr_t>
    auto map_async(F&& fn, Range&& range, C&& callback = nullptr) {
        using Fn = std::decay_t<F>;
        using Cb = std::decay_t<C>;
        using Stored = detail::threadpool::stored_range_t<Range&&>;
        struct Box {
            Stored r;
        };
        using Out = decltype(std::declval<ThreadPool&>().map(
            std::declval<Fn>(), std::declval<decltype((std::declval<Box&>().r))>()));
        return cogent::spawn([this, f = Fn(std::forward<F>(fn)),
                              box = Box{std::forward<Range>(range)},
                              cb = Cb(std::forward<C>(callback))]() mutable -> Out {
            Out out = map(std::move(f), box.r);
            if constexpr (!std::is_null_pointer_v<Cb>) std::invoke(cb, std::as_const(out));
            return out;
        });
    }

    // Lazily map fn over range: an iterator yielding results in input order, keeping at most
    // `window` tasks submitted ahead (default: 2 x maxsize(), at least 1). The iterator must not
    // outlive the pool. An lvalue range must outlive the iterator; an rvalue one is moved in.
    // fn is shared and called as const, as in map(). Failures: see ThreadPoolIMap::next.
    // Throws std::invalid_argument if window is 0.
    template <class F, class Range>
    auto imap(F&& fn, Range&& range, std::optional<std::size_t> window = {}) {
        return imap_impl(std::forward<F>(fn), std::forward<Range>(range), window, true);
    }
    // Same, yielding results in completion order (gevent's imap_unordered).
    template <class F, class Range>
    auto imap_unordered(F&& fn, Range&& range, std::optional<std::size_t> window = {}) {
        return imap_impl(std::forward<F>(fn), std::forward<Range>(range), window, false);
    }

    // Run fn(args...) on a worker without blocking the caller (gevent's apply_async): returns
    // a new greenlet of the calling thread that waits for the result, calls callback(result)
    // (callback() for void; the result as a const reference) and then returns the result.
    // The task is submitted at once, so tasks start in call order. If fn throws, the greenlet
    // fails with that exception and the callback is not called; an exception from the
    // callback fails the greenlet too. Pass nullptr as callback for none. Called from one of
    // this pool's own workers, fn runs inline in the greenlet (as apply() does).
    template <class F, class C, class... A>
    auto apply_async(F&& fn, C&& callback, A&&... args)
        -> Greenlet<detail::spawn_result_t<F, A...>> {
        using R = detail::spawn_result_t<F, A...>;
        using Cb = std::decay_t<C>;
        auto finish = [](Cb& cb, auto&& get) -> R {
            if constexpr (std::is_void_v<R>) {
                get();
                if constexpr (!std::is_null_pointer_v<Cb>) std::invoke(cb);
            } else {
                R v = get();
                if constexpr (!std::is_null_pointer_v<Cb>) std::invoke(cb, std::as_const(v));
                return v;
            }
        };
        if (in_worker_thread())
            return cogent::spawn(
                [finish, cb = Cb(std::forward<C>(callback)),
                 call = std::tuple<std::decay_t<F>, std::decay_t<A>...>(
                     std::forward<F>(fn), std::forward<A>(args)...)]() mutable -> R {
                    return finish(cb, [&]() -> R {
                        return std::apply(detail::threadpool::Invoke{}, std::move(call));
                    });
                });
        auto r = spawn(std::forward<F>(fn), std::forward<A>(args)...);
        return cogent::spawn([finish, r, cb = Cb(std::forward<C>(callback))]() mutable -> R {
            return finish(cb, [&]() -> R {
                if constexpr (std::is_void_v<R>)
                    r->get();
                else
                    return std::move(r->get());
            });
        });
    }
    // apply_async without a callback.
    template <class F>
    auto apply_async(F&& fn) {
        return apply_async(std::forward<F>(fn), nullptr);
    }

    // Wait until no task is queued or running: true if so, false on timeout (zero: do not
    // block). Blocks only the calling greenlet (BlockingSwitchOutError on the hub if it must
    // wait); kill/Timeout interrupt it. Throws std::logic_error from one of this pool's workers.
    bool join(TimeoutArg timeout = {});
    // Cancel the queued tasks (their results get ThreadPoolKilled) and tell every worker to
    // exit once its current task ends. Does not wait. The pool stays usable: a later spawn
    // starts new workers.
    void kill();

    // The most worker threads that may run at once.
    std::size_t maxsize() const noexcept;
    // Change maxsize: extra workers exit when their current task ends; queued work gets new
    // workers at once. 0 stops running tasks (they queue) until raised again. Throws
    // std::invalid_argument for a negative n (above PTRDIFF_MAX).
    void set_maxsize(std::size_t n);
    // Worker threads running now (not counting those told to exit by kill()).
    std::size_t size() const noexcept;
    // Workers waiting for a task.
    std::size_t idle_count() const noexcept;
    // Tasks queued or running (gevent: len(pool)).
    std::size_t unfinished_tasks() const noexcept;
    // How many more tasks would start at once: maxsize - running - queued, at least 0.
    std::size_t free_count() const noexcept;
    // The idle timeout the pool was built with.
    TimeoutArg idle_timeout() const noexcept;
    // True when called on one of this pool's worker threads.
    bool in_worker_thread() const noexcept;

private:
    template <class F, class Range>
    auto imap_impl(F&& fn, Range&& range, std::optional<std::size_t> window, bool ordered) {
        using Stored = detail::threadpool::stored_range_t<Range&&>;
        using Item = std::remove_cvref_t<std::ranges::range_reference_t<Stored>>;
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<const Fn&, Item&&>,
                      "imap: fn must be callable (as const) with a range item");
        using R = std::decay_t<std::invoke_result_t<const Fn&, Item&&>>;
        static_assert(!std::is_void_v<R>, "imap needs a function that returns a value");
        if (window && *window == 0)
            throw std::invalid_argument("cogent: ThreadPool::imap window must be positive");
        auto shared = std::make_shared<const Fn>(std::forward<F>(fn));
        auto cursor = std::make_shared<detail::threadpool::RangeCursor<Stored>>(
            detail::threadpool::RangeCursor<Stored>{std::forward<Range>(range), std::nullopt});
        auto feed = [this, shared, cursor]() -> std::shared_ptr<AsyncResult<R>> {
            auto& c = *cursor;
            if (!c.it)
                c.it.emplace(std::ranges::begin(c.range));
            else
                ++*c.it;
            if (*c.it == std::ranges::end(c.range)) return nullptr;
            return spawn([shared](Item it) -> R { return std::invoke(*shared, std::move(it)); },
                         Item(**c.it));
        };
        const std::size_t w = window ? *window : std::max<std::size_t>(1, 2 * maxsize());
        return ThreadPoolIMap<R>(std::move(feed), w, ordered);
    }
    void submit(std::unique_ptr<detail::threadpool::Task> task);
    std::shared_ptr<detail::threadpool::State> st_;
};

// The process-wide pool (gevent's hub.threadpool), created on first use with
// COGENT_THREADPOOL_SIZE workers at most (default 10). It is never destroyed (its workers may
// still run at exit). Throws std::invalid_argument if the setting is malformed.
COGENT_API ThreadPool& get_threadpool();

}  // namespace cogent
