// Queues between greenlets (gevent.queue): Queue (FIFO, with task_done/join, so it is also
// JoinableQueue), LifoQueue, PriorityQueue and Channel (a rendezvous).
//
// How waiting works: a Queue keeps its items in its own container and parks blocked getters
// and putters on two Linkables (the one wait mechanism). put() and get() never switch: when a
// greenlet waits on the other side they schedule one hub callback, which resumes waiters in
// FIFO order while the condition holds; a resumed getter takes its item itself, before anything
// else can run. So an item is never handed to a greenlet that has gone away (timed out, killed):
// it simply stays queued for the next getter; and a putter that went away never took space.
//
// Fairness: a blocking get()/put() that finds earlier greenlets of its kind waiting queues
// behind them, even if an item (or a free slot) is momentarily available, because that item is
// already promised to them. A call that does not block (block=false, zero timeout, *_nowait)
// takes what is there now, like gevent's.
//
// All queues belong to one thread (the thread whose greenlets use them). They are neither
// copyable nor movable (waiters point at them). Destroying a queue that greenlets wait on leaves
// them waiting forever: shut it down and let them leave first.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cogent/detail/core.hpp"
#include "cogent/detail/export.hpp"
#include "cogent/time.hpp"

namespace cogent {

// put() could not store the item: the queue stayed full (block=false, or the timeout passed).
class COGENT_API Full : public std::runtime_error {
public:
    Full() : std::runtime_error("cogent: the queue is full") {}
    using std::runtime_error::runtime_error;
};

// get()/peek() found no item: the queue stayed empty (block=false, or the timeout passed).
class COGENT_API Empty : public std::runtime_error {
public:
    Empty() : std::runtime_error("cogent: the queue is empty") {}
    using std::runtime_error::runtime_error;
};

// The queue was shut down: put() after shutdown(), get() once it is shut down and drained.
class COGENT_API ShutDown : public std::runtime_error {
public:
    ShutDown() : std::runtime_error("cogent: the queue is shut down") {}
    using std::runtime_error::runtime_error;
};

namespace detail {

// Input iterator over source->get() for range-for: ends when get() throws ShutDown (the source
// is shut down and drained); yields each item as an rvalue so move-only items work.
template <class Source, class T>
class GetIterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = T&&;
    GetIterator() = default;
    explicit GetIterator(Source* s) : s_(s) { ++*this; }
    T&& operator*() const { return std::move(*cur_); }
    GetIterator& operator++() {
        try {
            cur_.emplace(s_->get());
        } catch (const ShutDown&) {
            cur_.reset();
            s_ = nullptr;
        }
        return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const GetIterator& a, const GetIterator& b) noexcept {
        return a.s_ == b.s_;
    }

private:
    Source* s_ = nullptr;
    mutable std::optional<T> cur_;
};

// A growable ring buffer: FIFO storage that, once grown, allocates nothing per item.
template <class T>
class Ring {
public:
    Ring() noexcept = default;
    Ring(Ring&& o) noexcept
        : buf_(std::exchange(o.buf_, nullptr)),
          cap_(std::exchange(o.cap_, 0)),
          head_(std::exchange(o.head_, 0)),
          n_(std::exchange(o.n_, 0)) {}
    Ring& operator=(const Ring&) = delete;
    ~Ring() {
        clear();
        ::operator delete(buf_, std::align_val_t(alignof(T)));
    }

    std::size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    T& front() noexcept { return buf_[head_]; }
    const T& front() const noexcept { return buf_[head_]; }
    void push_back(T&& v) {
        if (n_ == cap_) grow();
        ::new (static_cast<void*>(buf_ + ((head_ + n_) & (cap_ - 1)))) T(std::move(v));
        ++n_;
    }
    T pop_front() {
        T& f = buf_[head_];
        T v(std::move(f));
        f.~T();
        head_ = (head_ + 1) & (cap_ - 1);
        --n_;
        return v;
    }
    void clear() noexcept {
        for (; n_ > 0; --n_) {
            buf_[head_].~T();
            head_ = (head_ + 1) & (cap_ - 1);
        }
        head_ = 0;
    }

private:
    void grow() {
        std::size_t cap = cap_ ? cap_ * 2 : 16;
        T* nb = static_cast<T*>(::operator new(cap * sizeof(T), std::align_val_t(alignof(T))));
        std::size_t i = 0;
        try {
            for (; i < n_; ++i)
                ::new (static_cast<void*>(nb + i))
                    T(std::move_if_noexcept(buf_[(head_ + i) & (cap_ - 1)]));
        } catch (...) {
            while (i > 0) nb[--i].~T();
            ::operator delete(nb, std::align_val_t(alignof(T)));
            throw;
        }
        for (i = 0; i < n_; ++i) buf_[(head_ + i) & (cap_ - 1)].~T();
        ::operator delete(buf_, std::align_val_t(alignof(T)));
        buf_ = nb;
        cap_ = cap;
        head_ = 0;
    }

    T* buf_ = nullptr;
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0;
    std::size_t n_ = 0;
};

// Storage policies of the queue kinds: push, pop (the next item out), peek (that item).
template <class T>
struct FifoStore {
    Ring<T> items;
    void push(T&& v) { items.push_back(std::move(v)); }
    T pop() { return items.pop_front(); }
    const T& peek() const noexcept { return items.front(); }
    void clear() noexcept { items.clear(); }
};

template <class T>
struct LifoStore {
    std::vector<T> items;
    void push(T&& v) { items.push_back(std::move(v)); }
    T pop() {
        T v(std::move(items.back()));
        items.pop_back();
        return v;
    }
    const T& peek() const noexcept { return items.back(); }
    void clear() noexcept { items.clear(); }
};

template <class T, class Compare>
struct HeapStore {
    // A min-heap under Compare (std::*_heap build max-heaps, so the comparison is reversed).
    struct Reversed {
        Compare less;
        bool operator()(const T& a, const T& b) const { return less(b, a); }
    };
    explicit HeapStore(Compare c = Compare()) : cmp{std::move(c)} {}
    std::vector<T> items;
    Reversed cmp;
    void push(T&& v) {
        items.push_back(std::move(v));
        std::push_heap(items.begin(), items.end(), cmp);
    }
    T pop() {
        std::pop_heap(items.begin(), items.end(), cmp);
        T v(std::move(items.back()));
        items.pop_back();
        return v;
    }
    const T& peek() const noexcept { return items.front(); }
    void clear() noexcept { items.clear(); }
};

// The type-independent half of every buffered queue: counts, the shutdown flag, and the three
// wait lists (getters, putters, joiners). The slow paths live in src/queue.cpp.
class COGENT_INTERNAL_API QueueCore {
public:
    explicit QueueCore(std::optional<std::size_t> maxsize);
    QueueCore(const QueueCore&) = delete;
    QueueCore& operator=(const QueueCore&) = delete;

protected:
    // One side of the queue that greenlets wait on; ready() is the condition they wait for.
    class Side : public Linkable {
    public:
        explicit Side(const QueueCore* q) noexcept : q_(q) { set_kind("Queue"); }
        WaitList& list() noexcept { return waiters_; }
        bool has_waiters() const noexcept { return !waiters_.empty(); }
        // GreenletError from a thread other than the one that created the queue.
        void check(const char* what = "Queue method") const { check_thread(what); }
        void bind() { check(); }
        // Schedule the hub callback that wakes waiters, but only if someone waits.
        void wake() {
            if (!waiters_.empty()) notify();
        }

    protected:
        const QueueCore* q_;
    };
    struct GetSide final : Side {
        using Side::Side;
        bool ready() const noexcept override { return q_->size_ > 0 || q_->shutdown_; }
    };
    struct PutSide final : Side {
        using Side::Side;
        bool ready() const noexcept override { return q_->size_ < q_->maxsize_ || q_->shutdown_; }
    };
    struct JoinSide final : Side {
        using Side::Side;
        bool ready() const noexcept override { return q_->unfinished_ == 0; }
    };

    // Slow path of get()/peek(): returns when the caller may take (or look at) the front item;
    // throws Empty, ShutDown, or what kill/Timeout raise.
    void wait_get(bool block, TimeoutArg timeout, const char* what);
    // Slow path of put(): returns when the caller may store an item; throws Full, ShutDown, ...
    void wait_put(bool block, TimeoutArg timeout, const char* what);
    // Bookkeeping after items were discarded by shutdown(immediate=true).
    void discarded(std::size_t n);
    void begin_shutdown();
    void check_task_done();  // throws std::invalid_argument when nothing is unfinished
    void bind_all();         // bind every wait list to the calling thread (GreenletError if not)
    bool wait_join(TimeoutArg timeout);

    std::size_t size_ = 0;
    std::size_t maxsize_;  // SIZE_MAX when unbounded
    std::size_t unfinished_ = 0;
    bool bounded_;
    bool shutdown_ = false;
    GetSide getters_{this};
    PutSide putters_{this};
    JoinSide joiners_{this};
};

// A buffered queue over a storage policy; Queue, LifoQueue and PriorityQueue are its faces.
template <class T, class Store>
class BasicQueue : protected QueueCore {
public:
    using value_type = T;

    // maxsize: std::nullopt (the default) for an unbounded queue, else at least 1.
    // Throws std::invalid_argument for 0 (use Channel<T> for a rendezvous).
    explicit BasicQueue(std::optional<std::size_t> maxsize = std::nullopt, Store store = Store())
        : QueueCore(maxsize), store_(std::move(store)) {}

    // Add an item. If the queue is full: block=true waits for space (up to `timeout`; zero
    // means do not wait) and throws Full if none came; block=false throws Full at once.
    // Throws ShutDown after shutdown() (also when it happens during the wait), and whatever
    // kill/Timeout raise; on any throw the item was not stored. Waiting is an error on the hub
    // (BlockingSwitchOutError). Any greenlet of the queue's thread may call it.
    void put(T item, bool block = true, TimeoutArg timeout = {}) {
        getters_.check("Queue::put");  // before touching anything
        if (shutdown_ || size_ >= maxsize_ || putters_.has_waiters()) [[unlikely]]
            wait_put(block, timeout, "Queue::put");
        store_.push(std::move(item));
        ++size_;
        ++unfinished_;
        getters_.wake();
    }
    // put(item, true, timeout): q.put(x, 100ms).
    void put(T item, TimeoutArg timeout) { put(std::move(item), true, timeout); }
    // put(item, false): store the item now or throw Full (or ShutDown). Never blocks.
    void put_nowait(T item) { put(std::move(item), false); }

    // Remove and return the next item. If there is none: block=true waits (up to `timeout`;
    // zero means do not wait) and throws Empty if none came; block=false throws Empty at once.
    // After shutdown(), remaining items are still returned, then ShutDown is thrown (also to
    // greenlets waiting when it happens). Throws what kill/Timeout raise; an item is never lost
    // to a getter that leaves. Waiting is an error on the hub (BlockingSwitchOutError).
    T get(bool block = true, TimeoutArg timeout = {}) {
        getters_.check("Queue::get");
        if (size_ == 0 || getters_.has_waiters()) [[unlikely]]
            wait_get(block, timeout, "Queue::get");
        T v = store_.pop();
        --size_;
        putters_.wake();
        return v;
    }
    // get(true, timeout): q.get(100ms).
    T get(TimeoutArg timeout) { return get(true, timeout); }
    // get(false): an item now, or Empty (ShutDown once shut down and drained). Never blocks.
    T get_nowait() { return get(false); }

    // The item get() would return next, without removing it; waits like get() and throws the
    // same exceptions. The reference stays valid until the queue is next modified: copy it
    // before yielding.
    const T& peek(bool block = true, TimeoutArg timeout = {}) {
        getters_.check("Queue::peek");
        if (size_ == 0) [[unlikely]]
            wait_get(block, timeout, "Queue::peek");
        return store_.peek();
    }
    // peek(true, timeout).
    const T& peek(TimeoutArg timeout) { return peek(true, timeout); }
    // peek(false): never blocks; throws Empty or ShutDown.
    const T& peek_nowait() { return peek(false); }

    // Number of items queued.
    std::size_t qsize() const noexcept { return size_; }
    // True if no item is queued.
    bool empty() const noexcept { return size_ == 0; }
    // True if the queue is bounded and holds maxsize items.
    bool full() const noexcept { return size_ >= maxsize_; }
    // The bound, or std::nullopt for an unbounded queue.
    std::optional<std::size_t> maxsize() const noexcept {
        return bounded_ ? std::optional<std::size_t>(maxsize_) : std::nullopt;
    }

    // Mark one item taken by get() as processed (JoinableQueue). Throws std::invalid_argument
    // (a std::logic_error, gevent's ValueError) if called more times than items were put.
    void task_done() {
        check_task_done();  // (checks the thread too)
        if (--unfinished_ == 0) joiners_.wake();
    }
    // Items put and not yet marked with task_done().
    std::size_t unfinished_tasks() const noexcept { return unfinished_; }
    // Wait until every item put has been marked with task_done(); false if `timeout` passed
    // first. Throws what kill/Timeout raise; waiting is an error on the hub.
    bool join(TimeoutArg timeout = {}) { return wait_join(timeout); }

    // Shut the queue down: later put()s throw ShutDown, get()s return what is left and then
    // throw ShutDown, and every greenlet waiting in put()/get()/peek() wakes up (putters with
    // ShutDown). immediate=true also discards the queued items and counts them as done for
    // join(). Never blocks; calling it again is harmless (and can still discard).
    void shutdown(bool immediate = false) {
        getters_.check("Queue::shutdown");
        if (immediate) {
            std::size_t n = size_;
            store_.clear();
            size_ = 0;
            discarded(n);
        }
        begin_shutdown();
    }
    // True once shutdown() was called.
    bool is_shutdown() const noexcept { return shutdown_; }

    // Input iterator over get(): each step blocks for the next item; the iteration ends when
    // the queue is shut down and drained. `*it` yields the item as an rvalue (move-only types
    // work with `for (auto item : q)`). Exceptions other than ShutDown propagate.
    using iterator = detail::GetIterator<BasicQueue, T>;
    // Blocks for the first item (see iterator).
    iterator begin() { return iterator(this); }
    iterator end() noexcept { return iterator(); }

protected:
    Store store_;
};

// The type-independent half of Channel: waiting getters and putters as slots, and the hub
// callback that pairs them. Defined in src/queue.cpp.
class COGENT_INTERNAL_API ChannelCore {
public:
    ChannelCore() noexcept;
    ChannelCore(const ChannelCore&) = delete;
    ChannelCore& operator=(const ChannelCore&) = delete;
    ~ChannelCore();

protected:
    enum class SlotState : std::uint8_t {
        waiting,  // linked in getters_/putters_
        offered,  // getter: peer's item is ready to be moved out
        held,     // getter: take the front held item
        taken,    // putter: a getter moved the item out
        failed,   // putter: moving the item out threw; offer it again
        shut,     // woken by shutdown()
    };
    // A greenlet waiting in put() or get(); lives in its frame, unlinks itself.
    struct Slot : ListNode {
        WaitList parked;       // the greenlet's own parker
        void* item = nullptr;  // putter: its item (a T*)
        Slot* peer = nullptr;  // getter in state offered: the putter
        SlotState state = SlotState::waiting;
        Slot() = default;
        Slot(const Slot&) = delete;
        ~Slot() { unlink(); }
    };

    // Link `s` into `list`, park until the matcher moves it on or the deadline passes;
    // false on timeout. Throws BlockingSwitchOutError on the hub and what kill/Timeout raise.
    bool park_slot(List<Slot>& list, Slot& s, const Deadline& deadline, const char* what);
    // Take the front putter's item out of its frame now (no blocking) and schedule its wake-up.
    Slot* claim_putter();
    void settle_claim(Slot* p, bool ok);
    // Schedule the matcher if it has work.
    void kick();
    void begin_shutdown();
    bool nowait_put_ok() const noexcept;
    // GreenletError if the channel was used (waited on) from another thread.
    void check_thread() const;

    List<Slot> getters_;
    List<Slot> putters_;
    List<Slot> done_;       // putters whose outcome is decided, to be woken
    std::size_t held_ = 0;  // items the Channel holds (mirrors the template's buffer)
    bool shutdown_ = false;

private:
    static void run_matcher(Callback* cb);
    static void wake(Slot* s);
    struct MatchCb : Callback {
        ChannelCore* self;
    } cb_;
    bool* running_ = nullptr;
    const ThreadState* owner_ = nullptr;  // bound by the first wait
};

}  // namespace detail

// FIFO queue (gevent.queue.Queue, with JoinableQueue's task_done/join folded in).
// Queue<T>() / Queue<T>(std::nullopt) is unbounded; Queue<T>(n) holds at most n >= 1 items
// (n == 0 throws std::invalid_argument: gevent treats None, not 0, as unbounded, and a
// zero-capacity queue is a Channel<T>). T may be move-only.
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoStore<T>> {
public:
    using detail::BasicQueue<T, detail::FifoStore<T>>::BasicQueue;
};

// gevent's JoinableQueue: every cogent Queue counts unfinished tasks (task_done/join).
template <class T>
using JoinableQueue = Queue<T>;

// gevent's SimpleQueue is its Queue.
template <class T>
using SimpleQueue = Queue<T>;

// Last in, first out (gevent.queue.LifoQueue); same API and bounds as Queue.
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoStore<T>> {
public:
    using detail::BasicQueue<T, detail::LifoStore<T>>::BasicQueue;
};

// Smallest item first (gevent.queue.PriorityQueue, like Python's heapq): get() returns an item
// `x` such that no queued `y` has comp(y, x). Note this is the opposite of std::priority_queue:
// with the default std::less the smallest comes out first; use std::greater<T> for largest
// first. Items that compare equal come out in no particular order. Same API as Queue.
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::HeapStore<T, Compare>> {
    using Base = detail::BasicQueue<T, detail::HeapStore<T, Compare>>;

public:
    // maxsize as for Queue; `comp` orders the items (see above).
    explicit PriorityQueue(std::optional<std::size_t> maxsize = std::nullopt,
                           Compare comp = Compare())
        : Base(maxsize, detail::HeapStore<T, Compare>(std::move(comp))) {}
};

// A rendezvous (gevent.queue.Channel, a queue of size 0): put() waits until a getter has taken
// the item in hand; get() waits until a putter offers one. Waiting putters and getters are
// paired in FIFO order by one hub callback, which resumes the getter (it moves the item out of
// the putter's frame) and then, before anything else runs, the putter; so a put() that returns
// delivered its item, and a put() that throws Full (timeout) or ShutDown did not.
// Non-blocking calls: put_nowait() succeeds only if a getter is waiting and not already
// promised an item (the channel then holds the item until that getter runs; if the getter
// leaves first, the item stays held for the next getter, see qsize()); get_nowait() takes a
// held item, or the item of the first waiting putter. T may be move-only. Destroying it wakes
// waiting putters and getters with WaitableDestroyed (a putter whose item was already taken
// returns normally).
template <class T>
class Channel : protected detail::ChannelCore {
public:
    using value_type = T;

    // An empty channel.
    Channel() = default;

    // Hand `item` to a getter. block=true waits (up to `timeout`) for a getter to take it and
    // throws Full if none did (zero timeout: same as block=false, see put_nowait). Throws
    // ShutDown after shutdown() (also during the wait: the item was then not delivered), and
    // what kill/Timeout raise (the item was then not delivered, unless a get_nowait() had
    // already taken it from the waiting putter: that putter is woken by the hub later).
    // Waiting is an error on the hub (BlockingSwitchOutError).
    void put(T item, bool block = true, TimeoutArg timeout = {}) {
        check_thread();
        if (shutdown_) throw ShutDown();
        if (!block || timeout.zero()) {
            if (!nowait_put_ok()) throw Full();
            held_items_.push_back(std::move(item));
            ++held_;
            kick();
            return;
        }
        Slot s;
        s.item = &item;
        detail::Deadline dl(timeout);
        for (;;) {
            bool woke = park_slot(putters_, s, dl, "Channel::put");
            switch (s.state) {
                case SlotState::taken:
                    return;
                case SlotState::shut:
                    throw ShutDown();
                case SlotState::failed:  // the getter could not move it; offer it again
                    s.state = SlotState::waiting;
                    if (shutdown_) throw ShutDown();
                    continue;
                default:
                    if (!woke) throw Full();
                    if (shutdown_) throw ShutDown();
                    continue;
            }
        }
    }
    // put(item, true, timeout).
    void put(T item, TimeoutArg timeout) { put(std::move(item), true, timeout); }
    // Hand the item to a waiting getter without blocking, or throw Full (ShutDown).
    void put_nowait(T item) { put(std::move(item), false); }

    // Take an item from a putter. block=true waits (up to `timeout`) and throws Empty if none
    // came; block=false / zero timeout throws Empty unless an item is available at once.
    // After shutdown(), held items are still returned, then ShutDown is thrown. Throws what
    // kill/Timeout raise. Waiting is an error on the hub (BlockingSwitchOutError).
    T get(bool block = true, TimeoutArg timeout = {}) {
        check_thread();
        const bool nowait = !block || timeout.zero();
        if (held_ > 0 && (nowait || getters_.empty())) return take_held();
        if (nowait) {
            if (!putters_.empty()) {
                Slot* p = claim_putter();
                try {
                    T v(std::move(*static_cast<T*>(p->item)));
                    settle_claim(p, true);
                    return v;
                } catch (...) {
                    settle_claim(p, false);
                    throw;
                }
            }
            if (shutdown_) throw ShutDown();
            throw Empty();
        }
        if (shutdown_ && held_ == 0) throw ShutDown();
        Slot s;
        detail::Deadline dl(timeout);
        for (;;) {
            bool woke = park_slot(getters_, s, dl, "Channel::get");
            switch (s.state) {
                case SlotState::offered: {
                    Slot* p = s.peer;
                    try {
                        T v(std::move(*static_cast<T*>(p->item)));
                        p->state = SlotState::taken;
                        return v;
                    } catch (...) {
                        p->state = SlotState::failed;
                        throw;
                    }
                }
                case SlotState::held:
                    if (held_ > 0) return take_held();
                    continue;
                case SlotState::shut:
                    throw ShutDown();
                default:
                    if (!woke) throw Empty();
                    if (shutdown_ && held_ == 0) throw ShutDown();
                    continue;
            }
        }
    }
    // get(true, timeout).
    T get(TimeoutArg timeout) { return get(true, timeout); }
    // An item available now, or Empty (ShutDown once shut down and drained). Never blocks.
    T get_nowait() { return get(false); }

    // Items the channel holds (given by put_nowait() and not yet taken); usually 0.
    std::size_t qsize() const noexcept { return held_; }
    // Always true, as in gevent: a channel has no room of its own, so it is both empty and
    // full. To know whether a call would wait, see balance().
    bool empty() const noexcept { return true; }
    // Always true (see empty()).
    bool full() const noexcept { return true; }
    // Greenlets waiting in put() minus greenlets waiting in get() (gevent's balance): positive
    // when a putter offers an item (get_nowait() would take it; so would a held item, see
    // qsize()), negative when getters wait. Counts the waiters: O(waiters).
    std::ptrdiff_t balance() const noexcept {
        return static_cast<std::ptrdiff_t>(putters_.size()) -
               static_cast<std::ptrdiff_t>(getters_.size());
    }
    // Always 0: a channel stores nothing of its own.
    std::optional<std::size_t> maxsize() const noexcept { return std::size_t(0); }

    // Shut down: later put()s throw ShutDown; waiting putters wake with ShutDown (their items
    // not delivered); get()s return held items, then throw ShutDown. immediate=true also
    // discards held items. Never blocks.
    void shutdown(bool immediate = false) {
        check_thread();
        if (immediate) {
            held_items_.clear();
            held_ = 0;
        }
        begin_shutdown();
    }
    // True once shutdown() was called.
    bool is_shutdown() const noexcept { return shutdown_; }

    // Input iterator over get(), ending at shutdown (see BasicQueue::iterator).
    using iterator = detail::GetIterator<Channel, T>;
    // Blocks for the first item.
    iterator begin() { return iterator(this); }
    iterator end() noexcept { return iterator(); }

private:
    T take_held() {
        T v = held_items_.pop_front();
        --held_;
        return v;
    }
    detail::Ring<T> held_items_;
};

}  // namespace cogent
