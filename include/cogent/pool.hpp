// Group and Pool (gevent.pool): a set of greenlets that leave it when they die, with the
// mapping helpers (map, imap, imap_unordered, apply, apply_async); a Pool also bounds how many
// of them run at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/detail/next_iterator.hpp"
#include "cogent/event.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"
#include "cogent/wait.hpp"

namespace cogent {

// Thrown by Pool::add/start/spawn when no slot is free and blocking is false, or when the
// timeout passed first (gevent.pool.PoolFull).
class COGENT_API PoolFull : public std::runtime_error {
public:
    PoolFull() : std::runtime_error("cogent: the pool is full") {}
};

// How Pool::spawn(options, fn, args...) waits for a slot, plus the new greenlet's options.
struct COGENT_API PoolSpawnOptions {
    bool blocking = true;  // false: throw PoolFull at once when full
    TimeoutArg timeout{};  // how long to wait for a slot (then PoolFull)
    SpawnOptions spawn{};  // name and stack size of the new greenlet
};

template <class R>
class IMap;

namespace detail::pooling {

template <class T>
inline constexpr bool is_spawn_options_v = std::is_same_v<std::decay_t<T>, SpawnOptions> ||
                                           std::is_same_v<std::decay_t<T>, PoolSpawnOptions>;

// The typed result state behind an AnyGreenlet known to be a Greenlet<R>.
template <class R>
ResultState<R>& result_of(const AnyGreenlet& g) {
    return static_cast<ResultState<R>&>(*g.state());
}

// An lvalue range is iterated in place (it must outlive the iteration); an rvalue one is owned.
template <class Range>
using stored_range_t =
    std::conditional_t<std::is_lvalue_reference_v<Range>, Range, std::remove_cvref_t<Range>>;
template <class S>
struct RangeBox {
    S r;
};

template <class R>
struct IMapState;

}  // namespace detail::pooling

// A set of greenlets (gevent.pool.Group). A greenlet leaves the group when it dies (a rawlink
// removes it on the hub). Not copyable or movable: its members' links point at it. Destroying
// a group forgets its members without killing them. It belongs to the thread that created it:
// its calls from another thread throw GreenletError; the group must outlive its imap iterators. As
// in gevent, map/imap called from a member of a full Pool wait for a slot that member holds (only
// apply runs inline).
class COGENT_API Group {
public:
    // An empty group.
    Group();
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;
    // Forgets the members (their links are removed); they keep running.
    virtual ~Group();

    // Create a greenlet running fn(args...), add it (a Pool waits for a slot first) and start
    // it. Throws what add() throws; the greenlet then never runs.
    template <class F, class... A,
              class = std::enable_if_t<!detail::pooling::is_spawn_options_v<F>>>
    auto spawn(F&& fn, A&&... args) {
        return spawn(SpawnOptions{}, std::forward<F>(fn), std::forward<A>(args)...);
    }
    // Same, with a name and stack size for the new greenlet.
    template <class F, class... A>
    auto spawn(const SpawnOptions& options, F&& fn, A&&... args) {
        auto g = make_greenlet(options, std::forward<F>(fn), std::forward<A>(args)...);
        add_member(g, true, {});
        g.start();
        return g;
    }

    // Add a greenlet (started or not; a dead one leaves again on the next hub turn). No-op for
    // a member. A Pool waits for a slot; throws what that wait throws (kill, Timeout).
    void add(const AnyGreenlet& greenlet) { add_member(greenlet, true, {}); }
    // add() then start().
    void start(const AnyGreenlet& greenlet) {
        add(greenlet);
        AnyGreenlet(greenlet).start();
    }
    // Remove a greenlet without touching it (frees its Pool slot). No-op for a non-member.
    void discard(const AnyGreenlet& greenlet);

    // Number of members.
    std::size_t size() const noexcept { return index_.size(); }
    // True when the group has no member.
    bool empty() const noexcept { return index_.empty(); }
    // True if `greenlet` is a member.
    bool contains(const AnyGreenlet& greenlet) const noexcept;
    // True if the calling greenlet is a member.
    bool contains_current() const noexcept;
    // The members, in the order they were added.
    std::vector<AnyGreenlet> greenlets() const;
    // True if a Pool has no free slot (a Group never is).
    virtual bool full() const noexcept { return false; }

    // Wait until the group is empty (no member, no queued apply_async task): true if it is,
    // false on timeout. raise_error: then rethrow
    // the first failure (in completion order) among the greenlets that were members when join
    // was called. Throws BlockingSwitchOutError on the hub; kill/Timeout interrupt it.
    bool join(TimeoutArg timeout = {}, bool raise_error = false);

    // Kill every member with `exception` (each once; queued apply_async tasks never run), and,
    // if block, wait up to `timeout` for the group to be empty, killing greenlets added
    // meanwhile too. Unlike killall, a timeout does not throw (gevent's Group.kill). On the hub
    // it never blocks.
    template <class E = GreenletExit>
    void kill(E exception = E(), bool block = true, TimeoutArg timeout = {}) {
        kill_ptr(std::make_exception_ptr(std::move(exception)), block, timeout);
    }
    // Kill one member (no-op for a non-member or one already being killed by the group); if
    // block, wait up to `timeout` for it to die (no exception on timeout).
    template <class E = GreenletExit>
    void killone(const AnyGreenlet& greenlet, E exception = E(), bool block = true,
                 TimeoutArg timeout = {}) {
        killone_ptr(greenlet, std::make_exception_ptr(std::move(exception)), block, timeout);
    }

    // Run fn(args...) in a new member greenlet and return its result (or rethrow its failure;
    // GreenletExit if it was killed). Called from a member of this group, fn runs inline in the
    // caller instead (gevent: a full pool would otherwise deadlock). If the caller is
    // interrupted (kill, Timeout) while waiting, the task is killed and the exception rethrown:
    // bound it with a Timeout scope (arguments are fn's, so there is no timeout parameter).
    template <class F, class... A>
    auto apply(F&& fn, A&&... args) -> detail::spawn_result_t<F, A...>;

    // Run fn(args...) in a member greenlet without ever blocking the caller; return that
    // greenlet. When it succeeds (not killed), callback(result) (callback() for void) runs in a
    // new greenlet of the caller's hub, so callbacks run in completion order. If a Pool is
    // full, the task queues (FIFO with blocked spawners) and the hub adds and starts it when a
    // slot frees; until then it is unstarted and not a member, but join() waits for it and
    // kill() kills it (it then never runs). Pass nullptr as callback for none.
    template <class F, class C, class... A>
    auto apply_async(F&& fn, C&& callback, A&&... args)
        -> Greenlet<detail::spawn_result_t<F, A...>>;
    // apply_async without a callback.
    template <class F>
    auto apply_async(F&& fn) {
        return apply_async(std::forward<F>(fn), nullptr);
    }

    // Lazily map fn over range in member greenlets, yielding results in input order. A feeder
    // greenlet pulls items as the group accepts them (a Pool: at most its size at once);
    // maxsize, if given, also bounds the tasks started but not yet consumed (use it with an
    // unbounded Group over a long or infinite range). An lvalue range must outlive the
    // iterator; an rvalue one is moved in. As in gevent, a failed item's exception is rethrown
    // by the next() that reaches it, and the following next() carries on with the rest (see
    // IMap::next). Destroying or closing the iterator kills its outstanding tasks.
    template <class F, class Range>
    auto imap(F&& fn, Range&& range, std::optional<std::size_t> maxsize = {});
    // Same, yielding results in completion order.
    template <class F, class Range>
    auto imap_unordered(F&& fn, Range&& range, std::optional<std::size_t> maxsize = {});
    // All results of imap(fn, range) in input order. When an item fails, its exception is
    // rethrown once the items before it are done (the first failure in input order, as in
    // gevent); the remaining tasks are killed and waited for first.
    template <class F, class Range>
    auto map(F&& fn, Range&& range);
    // map(fn, range) in a new greenlet (not a member of this group, as in gevent), returned at
    // once: its value is the vector of results, and, when map succeeds, it calls
    // callback(results) (a const reference) before returning them. When map throws, the
    // greenlet fails with that exception and the callback is not called. An lvalue range must
    // outlive the greenlet; an rvalue one is moved in. The group must outlive the greenlet too.
    template <class F, class Range, class C = std::nullptr_t>
    auto map_async(F&& fn, Range&& range, C&& callback = nullptr);

protected:
    // Capacity hooks (Pool): take a slot before a greenlet joins, give it back when it leaves.
    // reserve returns false when not blocking or on timeout.
    virtual bool reserve(bool /*blocking*/, TimeoutArg /*timeout*/) { return true; }
    virtual void unreserve() noexcept {}
    // Queue an unstarted apply_async task until a slot frees (Pool); false: not supported.
    virtual bool queue_task(const AnyGreenlet& /*task*/) { return false; }
    // Kill and forget the queued tasks (they never run).
    virtual void drop_queued(std::exception_ptr /*e*/) noexcept {}
    // Add with the given slot wait; false if no slot was obtained.
    bool add_member(const AnyGreenlet& greenlet, bool blocking, TimeoutArg timeout);
    // Add a greenlet whose slot is already taken. On failure the slot is given back.
    void adopt(const AnyGreenlet& greenlet);
    // Set empty_ when there is neither a member nor a queued task, clear it otherwise.
    void update_empty() noexcept;

    std::size_t queued_ = 0;  // apply_async tasks waiting for a slot

private:
    struct Member {
        AnyGreenlet g;
        LinkId link = 0;
        bool dying = false;  // killed by kill()/killone(); not killed again
    };
    using Members = std::list<Member>;

    void on_death(detail::GreenletImpl* key) noexcept;
    void erase(Members::iterator it) noexcept;
    void kill_ptr(std::exception_ptr e, bool block, TimeoutArg timeout);
    void killone_ptr(const AnyGreenlet& g, std::exception_ptr e, bool block, TimeoutArg timeout);
    template <class F, class Range>
    auto imap_impl(F&& fn, Range&& range, std::optional<std::size_t> maxsize, bool ordered);

    Members members_;
    std::unordered_map<detail::GreenletImpl*, Members::iterator> index_;
    Event empty_;  // set while there is no member and no queued task
};

namespace detail::pooling {

// What an imap iterator and its feeder and tasks share.
template <class R>
struct IMapState {
    IMapState(Group* g, bool ord, std::optional<std::size_t> max)
        : group(g), ordered(ord), maxsize(max) {
        results.s = this;
        room.s = this;
    }

    // One item for the consumer: a task's value or failure, or the feeder's failure.
    struct Outcome {
        std::optional<R> value;
        std::exception_ptr error;
        bool from_task = true;  // counts in `consumed` once taken
    };

    Group* group;
    const bool ordered;
    const std::optional<std::size_t> maxsize;
    std::map<std::size_t, Outcome> by_index;         // ordered: finished, not yet consumed
    std::deque<Outcome> fifo;                        // unordered: the same, in completion order
    std::map<std::size_t, Greenlet<R>> outstanding;  // started tasks not yet dead
    std::size_t spawned = 0;
    std::size_t consumed = 0;
    bool input_done = false;
    bool closed = false;            // close(): the feeder stops, results are dropped
    bool finished = false;          // next() returns nullopt from now on
    std::exception_ptr feed_error;  // ordered: the range's (or spawn's) failure, given last
    std::exception_ptr fatal;       // an outcome could not be stored: next() ends with this
    AnyGreenlet feeder;

    bool has_next() const noexcept {
        if (finished || fatal) return true;
        if (ordered) return by_index.find(consumed) != by_index.end();
        return !fifo.empty();
    }
    // The consumer waits on `results`, the feeder (when maxsize is set) on `room`.
    struct Results final : Linkable {
        IMapState* s;
        bool ready() const noexcept override {
            return s->has_next() || (s->input_done && s->consumed == s->spawned);
        }
    } results;
    struct Room final : Linkable {
        IMapState* s;
        bool ready() const noexcept override {
            return s->closed || !s->maxsize || s->spawned - s->consumed < *s->maxsize;
        }
    } room;

    void add(std::size_t i, Outcome o) {
        if (ordered)
            by_index.emplace(i, std::move(o));
        else
            fifo.push_back(std::move(o));
    }

    // On the hub, when task `i` died.
    void on_done(std::size_t i) noexcept {
        auto it = outstanding.find(i);
        if (it == outstanding.end()) return;
        Greenlet<R> g = std::move(it->second);
        outstanding.erase(it);
        if (closed || finished) return;
        try {
            Outcome o;
            if (g.exception())
                o.error = g.exception();
            else if (g.killed())
                o.error = std::make_exception_ptr(GreenletExit());
            else
                o.value.emplace(std::move(*result_of<R>(g).value));
            add(i, std::move(o));
        } catch (...) {
            // Out of memory, or moving the value threw: the item fails with that.
            try {
                add(i, Outcome{std::nullopt, std::current_exception(), true});
            } catch (...) {
                if (!fatal) fatal = std::current_exception();  // the iteration ends with it
            }
        }
        results.notify();
    }

    // In the feeder, when iterating the range (or spawning) threw.
    void on_feed_error(std::exception_ptr e) noexcept {
        if (closed) return;
        if (ordered) {
            feed_error = std::move(e);  // given after every item started before it
            return;
        }
        try {
            fifo.push_back(Outcome{std::nullopt, e, false});  // when it happens
        } catch (...) {
            feed_error = std::move(e);
        }
    }
};

// The feeder greenlet's body: spawn one task per item, as the group and maxsize allow.
template <class R, class Item, class Fn, class Stored>
void feed(const std::shared_ptr<IMapState<R>>& st, const std::shared_ptr<Fn>& fn,
          RangeBox<Stored>& box) {
    IMapState<R>& s = *st;
    try {
        std::size_t i = 0;
        for (auto&& item : box.r) {
            if (!s.room.ready()) s.room.wait_ready({}, "Group::imap (maxsize)");
            if (s.closed) break;
            Greenlet<R> g =
                s.group->spawn([fn, it = Item(std::forward<decltype(item)>(item))]() mutable -> R {
                    return std::invoke(*fn, std::move(it));
                });
            s.outstanding.emplace(i, g);
            ++s.spawned;
            g.rawlink([st, i](AnyGreenlet) { st->on_done(i); });
            ++i;
            if (s.closed) break;
        }
    } catch (...) {
        // A kill (close() or anyone else) or a failure of the range or of spawn.
        s.on_feed_error(std::current_exception());
    }
    s.input_done = true;
    s.results.notify();
}

}  // namespace detail::pooling

// The lazy iterator returned by Group::imap and imap_unordered (movable, not copyable). Use it
// from greenlets of the group's thread.
template <class R>
class IMap {
public:
    using value_type = R;

    IMap(IMap&&) noexcept = default;
    IMap& operator=(IMap&& o) noexcept {
        if (this != &o) {
            close(false);
            st_ = std::move(o.st_);
        }
        return *this;
    }
    // Kills the outstanding tasks and the feeder without waiting for them.
    ~IMap() { close(false); }

    // The next result, or nullopt at the end. A task that failed (or was killed) has its
    // exception rethrown by the next() that reaches its item; the following next() goes on with
    // the other items, as in gevent. A failure of the range itself (or of spawning a task) is
    // rethrown after the items started before it (imap_unordered: when it happens), and ends
    // the input. Throws Timeout if nothing is available within `timeout` (it can be asked for
    // again). Blocks only the calling greenlet; BlockingSwitchOutError on the hub.
    std::optional<R> next(TimeoutArg timeout = {}) {
        if (!st_) return std::nullopt;
        auto& s = *st_;
        detail::Deadline dl(timeout);
        for (;;) {
            if (s.finished) return std::nullopt;
            if (s.fatal) {
                std::exception_ptr e = s.fatal;
                close(false);
                std::rethrow_exception(e);
            }
            if (s.ordered) {
                auto it = s.by_index.find(s.consumed);
                if (it != s.by_index.end()) {
                    auto o = std::move(it->second);
                    s.by_index.erase(it);
                    return take(std::move(o));
                }
            } else if (!s.fifo.empty()) {
                auto o = std::move(s.fifo.front());
                s.fifo.pop_front();
                return take(std::move(o));
            }
            if (s.input_done && s.consumed == s.spawned) {
                s.finished = true;
                if (s.feed_error) std::rethrow_exception(std::exchange(s.feed_error, nullptr));
                return std::nullopt;
            }
            if (!s.results.wait_ready(dl.left(), "Group::imap")) throw Timeout::expired(timeout);
        }
    }

    // Stop: no more results; kill the feeder and the outstanding tasks and, if block, wait up to
    // `timeout` for them to die (no exception on timeout). Blocking is not allowed on the hub.
    void close(bool block = true, TimeoutArg timeout = {}) {
        if (!st_) return;
        auto& s = *st_;
        s.finished = true;
        std::vector<AnyGreenlet> victims;
        if (s.feeder.valid() && !s.feeder.dead()) victims.push_back(s.feeder);
        for (auto& [i, g] : s.outstanding)
            if (!g.dead()) victims.push_back(g);
        if (!s.closed) {  // kill once; a later close(true) only waits
            s.closed = true;
            s.room.notify();
            s.by_index.clear();
            s.fifo.clear();
            for (auto& v : victims)
                v.state()->kill(std::make_exception_ptr(GreenletExit()), false, {});
        }
        if (block && !victims.empty()) joinall(victims, timeout);
    }

    // Range-for support: an input iterator over next().
    using iterator = detail::NextIterator<IMap, R>;
    // Starts pulling results (may block, may throw like next()).
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

private:
    friend class Group;
    explicit IMap(std::shared_ptr<detail::pooling::IMapState<R>> st) : st_(std::move(st)) {}
    using Outcome = typename detail::pooling::IMapState<R>::Outcome;
    std::optional<R> take(Outcome o) {
        if (o.from_task) {
            ++st_->consumed;
            if (st_->maxsize) st_->room.notify();
        }
        if (o.error) std::rethrow_exception(o.error);
        return std::move(o.value);
    }
    std::shared_ptr<detail::pooling::IMapState<R>> st_;
};

// ---- Group templates ----

template <class F, class... A>
auto Group::apply(F&& fn, A&&... args) -> detail::spawn_result_t<F, A...> {
    using R = detail::spawn_result_t<F, A...>;
    if (contains_current()) return std::invoke(std::forward<F>(fn), std::forward<A>(args)...);
    auto g = spawn(std::forward<F>(fn), std::forward<A>(args)...);
    try {
        if constexpr (std::is_void_v<R>)
            g.get();
        else
            return std::move(g.get());
    } catch (...) {
        if (!g.dead()) g.state()->kill(std::make_exception_ptr(GreenletExit()), false, {});
        throw;
    }
}

template <class F, class C, class... A>
auto Group::apply_async(F&& fn, C&& callback, A&&... args)
    -> Greenlet<detail::spawn_result_t<F, A...>> {
    using R = detail::spawn_result_t<F, A...>;
    auto g = make_greenlet(std::forward<F>(fn), std::forward<A>(args)...);
    if constexpr (!std::is_null_pointer_v<std::decay_t<C>>) {
        g.link_value([cb = std::decay_t<C>(std::forward<C>(callback))](AnyGreenlet done) mutable {
            if (done.killed()) return;  // "successful" for gevent, but there is no result
            if constexpr (std::is_void_v<R>)
                std::invoke(cb);
            else
                std::invoke(cb, std::as_const(*detail::pooling::result_of<R>(done).value));
        });
    }
    if (add_member(g, false, {})) {
        g.start();
        return g;
    }
    // Full: queue it behind the greenlets already waiting for a slot; never block.
    if (!queue_task(g)) add_member(g, true, {});
    return g;
}

template <class F, class Range>
auto Group::imap_impl(F&& fn, Range&& range, std::optional<std::size_t> maxsize, bool ordered) {
    using Stored = detail::pooling::stored_range_t<Range&&>;
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<Stored>>;
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&, Item&&>, "imap: fn must be callable with a range item");
    using R = std::decay_t<std::invoke_result_t<Fn&, Item&&>>;
    static_assert(!std::is_void_v<R>, "imap/map need a function that returns a value");
    if (maxsize && *maxsize == 0)
        throw std::invalid_argument("cogent: imap maxsize must be positive");
    auto st = std::make_shared<detail::pooling::IMapState<R>>(this, ordered, maxsize);
    auto fnp = std::make_shared<Fn>(std::forward<F>(fn));
    detail::pooling::RangeBox<Stored> box{std::forward<Range>(range)};
    IMap<R> result(st);
    st->feeder = cogent::spawn([st, fnp, box = std::move(box)]() mutable {
        detail::pooling::feed<R, Item>(st, fnp, box);
    });
    return result;
}

template <class F, class Range>
auto Group::imap(F&& fn, Range&& range, std::optional<std::size_t> maxsize) {
    return imap_impl(std::forward<F>(fn), std::forward<Range>(range), maxsize, true);
}

template <class F, class Range>
auto Group::imap_unordered(F&& fn, Range&& range, std::optional<std::size_t> maxsize) {
    return imap_impl(std::forward<F>(fn), std::forward<Range>(range), maxsize, false);
}

template <class F, class Range>
auto Group::map(F&& fn, Range&& range) {
    auto it = imap(std::forward<F>(fn), std::forward<Range>(range));
    std::vector<typename decltype(it)::value_type> out;
    try {
        while (auto v = it.next()) out.push_back(std::move(*v));
    } catch (...) {
        it.close(true);
        throw;
    }
    return out;
}

template <class F, class Range, class C>
auto Group::map_async(F&& fn, Range&& range, C&& callback) {
    using Fn = std::decay_t<F>;
    using Cb = std::decay_t<C>;
    using Box = detail::pooling::RangeBox<detail::pooling::stored_range_t<Range&&>>;
    using Out = decltype(std::declval<Group&>().map(
        std::declval<Fn>(), std::declval<decltype((std::declval<Box&>().r))>()));
    return cogent::spawn([this, f = Fn(std::forward<F>(fn)), box = Box{std::forward<Range>(range)},
                          cb = Cb(std::forward<C>(callback))]() mutable -> Out {
        Out out = map(std::move(f), box.r);
        if constexpr (!std::is_null_pointer_v<Cb>) std::invoke(cb, std::as_const(out));
        return out;
    });
}

// A Group with at most `size` members (gevent.pool.Pool): spawn/add/start wait for a free slot,
// in FIFO order; imap/imap_unordered/map therefore run at most `size` tasks at once. Slots free
// when members die or are discarded. Same threading rules as Group.
class COGENT_API Pool : public Group {
public:
    // A pool of `size` slots. As in gevent, 0 makes a pool that is always full: spawn/add
    // wait (until their timeout, else forever), wait_available waits, and apply_async tasks
    // stay queued. Throws std::invalid_argument for a negative size (converted to std::size_t:
    // above PTRDIFF_MAX).
    explicit Pool(std::size_t size);
    // Kills the queued apply_async tasks (they never run); members keep running, forgotten.
    ~Pool() override;

    using Group::spawn;
    // Spawn waiting for a slot as `options` says; throws PoolFull when none is obtained.
    template <class F, class... A>
    auto spawn(const PoolSpawnOptions& options, F&& fn, A&&... args) {
        auto g = make_greenlet(options.spawn, std::forward<F>(fn), std::forward<A>(args)...);
        if (!add_member(g, options.blocking, options.timeout)) throw PoolFull();
        g.start();
        return g;
    }
    // Add a greenlet, waiting for a slot (FIFO) unless blocking is false; throws PoolFull when
    // none is obtained (not blocking, or timeout). No-op for a member.
    void add(const AnyGreenlet& greenlet, bool blocking = true, TimeoutArg timeout = {}) {
        if (!add_member(greenlet, blocking, timeout)) throw PoolFull();
    }
    // add() then start().
    void start(const AnyGreenlet& greenlet, bool blocking = true, TimeoutArg timeout = {}) {
        add(greenlet, blocking, timeout);
        AnyGreenlet(greenlet).start();
    }

    // The number of slots.
    std::size_t capacity() const noexcept { return capacity_; }
    // Free slots right now.
    std::size_t free_count() const noexcept { return slots_.free; }
    // True when no slot is free.
    bool full() const noexcept override { return slots_.free == 0; }
    // Wait (FIFO with spawners) until a slot is free, without taking it; return the number of
    // free slots (0 on timeout). Throws BlockingSwitchOutError on the hub.
    int wait_available(TimeoutArg timeout = {});

protected:
    bool reserve(bool blocking, TimeoutArg timeout) override;
    void unreserve() noexcept override;
    bool queue_task(const AnyGreenlet& task) override;
    void drop_queued(std::exception_ptr e) noexcept override;

private:
    // A queued apply_async task: a wake-up node in the slot list, woken on the hub (FIFO with
    // the parked spawners) while a slot is free.
    struct QueuedTask : detail::WaitNode {
        Pool* pool;
        AnyGreenlet task;
        static void wake(detail::WaitNode* n) noexcept;
    };

    // The slot counter: one FIFO wait list for spawners and wait_available callers.
    struct Slots final : detail::Linkable {
        std::size_t free = 0;
        bool ready() const noexcept override { return free > 0; }
        bool has_waiters() const noexcept { return !waiters_.empty(); }
        bool park(TimeoutArg timeout, const char* what) {
            check_thread(what);  // a pool serves one thread's greenlets
            return detail::park(waiters_, timeout, what);
        }
        template <class F>
        void for_each_waiter(F&& f) {
            waiters_.for_each(std::forward<F>(f));
        }
    };
    std::size_t capacity_;
    Slots slots_;
};

}  // namespace cogent
