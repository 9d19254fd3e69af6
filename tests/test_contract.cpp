// The contract every waitable shares, run over one adapter per waitable (TEST_CASE_TEMPLATE):
//   1. a timed wait reports "timed out" after about the timeout and leaves nothing behind: a
//      later release goes to the next waiter or stays available, also when the release comes
//      in the same loop turn as the (overdue) timer;
//   2. a greenlet killed while waiting gets GreenletExit at the wait, unwinds, and takes nothing
//      (kill before, after, or in the same turn as a release);
//   3. waiters are woken in the order they started waiting (FIFO), also after waiters left
//      from the middle;
//   4. a zero timeout never blocks (nor yields); an absent one waits until released;
//   5. waking never switches: the releaser runs on until it yields;
//   6. a randomized storm (fixed seed) of waits with random timeouts, Timeout scopes, kills and
//      releases: everything is accounted for at the end.
// Plus: cogent::wait/iwait report the readiness of the Linkable-based ones.
//
// An adapter W gives every waitable the same face:
//   bool wait(TimeoutArg)  block like the primitive; true: got it (woken, permit, item, slot),
//                          false: the primitive's documented "timed out" result (false, 0,
//                          Timeout, Empty, Full, PoolFull); anything else propagates.
//   void hold()            called by a waiter right after a successful wait(): keep what it got
//                          until released (only RLock blocks here: only its owner may release).
//   bool release()         one release; false when the primitive refused it (nobody to take it).
//   bool can_release()     a release() is allowed now (bounds, one-shot objects).
//   int released()         releases that took effect so far.
//   int left()             permits / items / slots released and not taken yet.
//   bool reset()           level-triggered ones: back to "not released" (false: could not).
//   void check_items()     queues: every item is accounted for exactly once (drains them).
// and traits saying where the contract reads differently:
//   wakes_all          one release wakes every waiter, and the object stays ready (level).
//   keeps_release      a release with nobody waiting is kept for the next wait (else refused
//                      or lost: Condition, Channel).
//   resettable         reset() can make a released object block again.
//   claims_at_release  release() takes from the first waiter at once (Channel::get_nowait
//                      takes a waiting putter's item): a kill landing after that cannot undo it.
//   count              exact: successful waits == released() - left(); at_most: <= released();
//                      level: wakes_all, counted per waiter instead.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent::AnyGreenlet;
using cogent::GreenletExit;
using cogent::TimeoutArg;
using Clock = std::chrono::steady_clock;
using cogent_test::ms_since;
using cogent_test::SetOnDestroy;

namespace {

// Let every chain of hub callbacks a release starts run to its end (a pool slot frees only after
// the member greenlet ran, died and its rawlink ran; each hop needs a turn of the loop).
void settle() {
    for (int i = 0; i < 30; ++i) cogent::sleep(0);
}

// Burn CPU without yielding: timers fall due but cannot run.
void spin_for(std::chrono::microseconds d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) {
    }
}

enum class Count { exact, at_most, level };

struct Traits {
    static constexpr bool wakes_all = false;
    static constexpr bool keeps_release = true;
    static constexpr bool resettable = false;
    static constexpr bool claims_at_release = false;
    static constexpr Count count = Count::exact;
    void hold() {}
    bool can_release() const { return true; }
    int left() const { return 0; }
    bool reset() { return false; }
    void check_items() {}
};

// ---- Event, AsyncResult, Greenlet join: level-triggered, wake everyone ----

struct EventW : Traits {
    static constexpr bool wakes_all = true;
    static constexpr bool resettable = true;
    static constexpr Count count = Count::level;
    cogent::Event e;
    int released_ = 0;
    bool wait(TimeoutArg t) { return e.wait(t); }
    bool release() {
        e.set();
        ++released_;
        return true;
    }
    bool can_release() const { return !e.is_set(); }
    bool reset() {
        e.clear();
        return true;
    }
    int released() const { return released_; }
    cogent::Event* waitable() { return &e; }
};

struct AsyncBaseW : Traits {
    static constexpr bool wakes_all = true;
    static constexpr Count count = Count::level;
    cogent::AsyncResult<int> r;
    bool release() {
        r.set(42);
        return true;
    }
    bool can_release() const { return !r.ready(); }
    int released() const { return r.ready() ? 1 : 0; }
    cogent::AsyncResult<int>* waitable() { return &r; }
};

// AsyncResult<int>::get: the value, or Timeout when not set in time.
struct AsyncGetW : AsyncBaseW {
    bool wait(TimeoutArg t) {
        try {
            int v = r.get(t);
            CHECK(v == 42);
            return true;
        } catch (const cogent::Timeout&) {
            return false;
        }
    }
};

// AsyncResult<int>::wait: true, or false when not set in time.
struct AsyncWaitW : AsyncBaseW {
    bool wait(TimeoutArg t) { return r.wait(t); }
};

// AnyGreenlet::join on a greenlet that ends when released.
struct JoinW : Traits {
    static constexpr bool wakes_all = true;
    static constexpr Count count = Count::level;
    cogent::Event gate;
    AnyGreenlet target = cogent::spawn([this] { gate.wait(); });
    ~JoinW() {
        gate.set();
        target.join();
    }
    bool wait(TimeoutArg t) { return target.join(t); }
    bool release() {
        gate.set();
        return true;
    }
    bool can_release() const { return !gate.is_set(); }
    int released() const { return gate.is_set() ? 1 : 0; }
    AnyGreenlet waitable() { return target; }
};

// ---- Semaphores and locks: counting ----

struct SemW : Traits {
    cogent::Semaphore s{0};
    int released_ = 0;
    bool wait(TimeoutArg t) { return s.acquire(t); }
    bool release() {
        s.release();
        ++released_;
        return true;
    }
    int released() const { return released_; }
    int left() const { return s.counter(); }
    cogent::Semaphore* waitable() { return &s; }
};

// Bounded at 3, all three taken at the start: releases are refused above the bound.
struct BSemW : Traits {
    static constexpr int kBound = 3;
    cogent::BoundedSemaphore s{kBound};
    int released_ = 0;
    BSemW() {
        for (int i = 0; i < kBound; ++i) REQUIRE(s.acquire(false));
    }
    bool wait(TimeoutArg t) { return s.acquire(t); }
    bool release() {
        s.release();
        ++released_;
        return true;
    }
    bool can_release() const { return s.counter() < kBound; }
    int released() const { return released_; }
    int left() const { return s.counter(); }
    cogent::BoundedSemaphore* waitable() { return &s; }
};

// Held from the start; any greenlet may release a Lock.
struct LockW : Traits {
    cogent::Lock l;
    int released_ = 0;
    LockW() { REQUIRE(l.acquire(false)); }
    bool wait(TimeoutArg t) { return l.acquire(t); }
    bool release() {
        l.release();
        ++released_;
        return true;
    }
    bool can_release() const { return l.counter() == 0; }
    int released() const { return released_; }
    int left() const { return l.counter(); }
    cogent::Lock* waitable() { return &l; }
};

// RLock::acquire from different greenlets. Only the owner may release, so the owner (a keeper
// greenlet at first, then each waiter that got it, in hold()) waits for a release request and
// releases it itself.
struct RLockW : Traits {
    cogent::RLock rl;
    cogent::Semaphore requests{0};
    int released_ = 0;
    bool continued_ = true;  // false from an owner's rl.release() until it returns
    AnyGreenlet keeper;
    RLockW() {
        keeper = cogent::spawn([this] {
            rl.acquire();
            hold();
        });
        cogent::sleep(0);
        REQUIRE(rl.locked());
    }
    ~RLockW() {
        while (rl.is_owned()) rl.release();
        if (!keeper.dead()) keeper.kill();
    }
    bool wait(TimeoutArg t) {
        bool ok = rl.acquire(t);
        if (ok) CHECK_MESSAGE(continued_, "RLock::release switched to the next owner");
        return ok;
    }
    // Runs in the owner: wait for a request, then release. Killed meanwhile: release anyway
    // (the pending request, if any, was meant for us).
    void hold() {
        try {
            requests.acquire();
        } catch (...) {
            if (requests.counter() > 0) requests.acquire(false);
            give_back();
            throw;
        }
        give_back();
    }
    void give_back() {
        continued_ = false;
        rl.release();
        ++released_;
        continued_ = true;
    }
    bool release() {
        if (rl.is_owned())
            give_back();
        else
            requests.release();
        return true;
    }
    bool can_release() const { return rl.locked() && requests.counter() == 0; }
    int released() const { return released_; }
    int left() const { return rl.locked() ? 0 : 1; }
};

// Condition::wait with its lock (a Lock, or an RLock taken twice): take the lock, wait, check
// it was taken back (on every path), give it back. A notification with nobody waiting is lost,
// as with any condition variable.
template <class L>
struct CondW : Traits {
    static constexpr bool keeps_release = false;
    static constexpr Count count = Count::at_most;
    static constexpr int kLevels = std::is_same_v<L, cogent::RLock> ? 2 : 1;
    L lock;
    cogent::Condition cond{lock};
    int released_ = 0;
    bool wait(TimeoutArg t) {
        for (int i = 0; i < kLevels; ++i)
            CHECK(lock.acquire(false));  // never held across a yield: free
        bool ok = false;
        try {
            ok = cond.wait(t);
        } catch (...) {
            give_back();
            throw;
        }
        give_back();
        return ok;
    }
    void give_back() {
        if constexpr (kLevels > 1) {
            CHECK_MESSAGE(lock.is_owned(), "Condition::wait returned without the lock");
            CHECK(lock.count() == kLevels);
        } else {
            CHECK_MESSAGE(lock.locked(), "Condition::wait returned without the lock");
        }
        for (int i = 0; i < kLevels; ++i) lock.release();
    }
    bool release() {
        CHECK(lock.acquire(false));
        const bool someone = cond.waiting() > 0;
        cond.notify();
        lock.release();
        if (someone) ++released_;
        return someone;
    }
    int released() const { return released_; }
};
using CondLockW = CondW<cogent::Lock>;
using CondRLockW = CondW<cogent::RLock>;

// ---- Queues and channels ----

// Sorted ids 0..n-1.
std::vector<int> iota_ids(int n) {
    std::vector<int> v(n);
    std::iota(v.begin(), v.end(), 0);
    return v;
}

// get() on an (unbounded) queue; a release puts the next id.
template <class Q>
struct QueueGetW : Traits {
    Q q;
    int next_ = 0;
    std::vector<int> got;
    bool wait(TimeoutArg t) {
        try {
            got.push_back(q.get(t));
            return true;
        } catch (const cogent::Empty&) {
            return false;
        }
    }
    bool release() {
        q.put(next_++);
        return true;
    }
    bool can_release() const { return true; }
    int released() const { return next_; }
    int left() const { return static_cast<int>(q.qsize()); }
    // Every id put was received exactly once or is still queued.
    void check_items() {
        std::vector<int> all = got;
        while (!q.empty()) all.push_back(q.get_nowait());
        std::sort(all.begin(), all.end());
        CHECK(all == iota_ids(next_));
    }
};
using QueueGetFifoW = QueueGetW<cogent::Queue<int>>;
using QueueGetLifoW = QueueGetW<cogent::LifoQueue<int>>;
using QueueGetPrioW = QueueGetW<cogent::PriorityQueue<int>>;

// put() on a full Queue(1) (holding item -1 at first); a release takes an item out.
struct QueuePutW : Traits {
    cogent::Queue<int> q{1};
    int next_ = 0;
    int released_ = 0;
    std::vector<int> ok, failed, interrupted, received;
    QueuePutW() { q.put_nowait(-1); }
    bool wait(TimeoutArg t) {
        const int id = next_++;
        try {
            q.put(id, t);
        } catch (const cogent::Full&) {
            failed.push_back(id);
            return false;
        } catch (...) {
            interrupted.push_back(id);
            throw;
        }
        ok.push_back(id);
        return true;
    }
    bool release() {
        received.push_back(q.get_nowait());
        ++released_;
        return true;
    }
    bool can_release() const { return q.qsize() > 0; }
    int released() const { return released_; }
    int left() const { return 1 - static_cast<int>(q.qsize()); }  // free slots
    // Every item stored (the first one, and those of puts that returned) was taken exactly once
    // or is still queued; the item of a put that threw was never stored.
    void check_items() {
        std::vector<int> all = received;
        while (!q.empty()) all.push_back(q.get_nowait());
        std::vector<int> expect = ok;
        expect.push_back(-1);
        std::sort(all.begin(), all.end());
        std::sort(expect.begin(), expect.end());
        CHECK(all == expect);
        CHECK(received.size() == static_cast<std::size_t>(released_));
    }
};

// Channel<int>::get; a release is put_nowait (refused with Full unless a getter is waiting).
struct ChanGetW : Traits {
    static constexpr bool keeps_release = false;
    cogent::Channel<int> ch;
    int next_ = 0;
    std::vector<int> got;
    bool wait(TimeoutArg t) {
        try {
            got.push_back(ch.get(t));
            return true;
        } catch (const cogent::Empty&) {
            return false;
        }
    }
    bool release() {
        try {
            ch.put_nowait(next_);
        } catch (const cogent::Full&) {
            return false;
        }
        ++next_;
        return true;
    }
    int released() const { return next_; }
    int left() const { return static_cast<int>(ch.qsize()); }  // held for the next getter
    void check_items() {
        std::vector<int> all = got;
        while (ch.qsize() > 0) all.push_back(ch.get_nowait());
        std::sort(all.begin(), all.end());
        CHECK(all == iota_ids(next_));
    }
};

// Channel<int>::put; a release is get_nowait (refused with Empty unless a putter is waiting).
struct ChanPutW : Traits {
    static constexpr bool keeps_release = false;
    static constexpr bool claims_at_release = true;
    static constexpr Count count = Count::at_most;  // a putter killed after the claim still gave
    cogent::Channel<int> ch;
    int next_ = 0;
    std::vector<int> ok, failed, interrupted, received;
    bool wait(TimeoutArg t) {
        const int id = next_++;
        try {
            ch.put(id, t);
        } catch (const cogent::Full&) {
            failed.push_back(id);
            return false;
        } catch (...) {
            interrupted.push_back(id);
            throw;
        }
        ok.push_back(id);
        return true;
    }
    bool release() {
        try {
            received.push_back(ch.get_nowait());
        } catch (const cogent::Empty&) {
            return false;
        }
        return true;
    }
    int released() const { return static_cast<int>(received.size()); }
    // Each item received once; every put that returned delivered; a put that threw Full did not;
    // one interrupted (kill) may have, only if get_nowait had already claimed it.
    void check_items() {
        std::set<int> rec(received.begin(), received.end());
        CHECK(rec.size() == received.size());
        for (int id : ok) CHECK_MESSAGE(rec.count(id) == 1, "put returned, item " << id << " lost");
        for (int id : failed)
            CHECK_MESSAGE(rec.count(id) == 0, "put threw Full, item " << id << " delivered anyway");
        std::set<int> may(ok.begin(), ok.end());
        may.insert(interrupted.begin(), interrupted.end());
        for (int id : received) CHECK_MESSAGE(may.count(id) == 1, "item " << id << " from nowhere");
        CHECK(ch.qsize() == 0);
    }
};

// ---- Pool: a full Pool(1); a release ends one member ----

struct PoolBase : Traits {
    cogent::Pool pool{1};
    cogent::Semaphore stop{0};
    std::vector<AnyGreenlet> members;
    int holding_ = 0;  // members holding a slot and not yet told to end
    int released_ = 0;
    PoolBase() { add_member(true); }
    ~PoolBase() {
        for (; holding_ > 0; --holding_) stop.release();
        cogent::joinall(members);
    }
    bool add_member(bool blocking, TimeoutArg t = {}) {
        try {
            members.push_back(
                pool.spawn(cogent::PoolSpawnOptions{blocking, t, {}}, [this] { stop.acquire(); }));
        } catch (const cogent::PoolFull&) {
            return false;
        }
        ++holding_;
        return true;
    }
    bool release() {
        --holding_;
        stop.release();
        ++released_;
        return true;
    }
    bool can_release() const { return holding_ > 0; }
    int released() const { return released_; }
};

// Pool::spawn on a full pool: waits for a slot and takes it.
struct PoolSpawnW : PoolBase {
    bool wait(TimeoutArg t) { return add_member(true, t); }
    int left() const { return static_cast<int>(pool.free_count()); }
};

// Pool::wait_available: waits for a free slot without taking it (so, level-triggered).
struct PoolWaitW : PoolBase {
    static constexpr bool wakes_all = true;
    static constexpr bool resettable = true;
    static constexpr Count count = Count::level;
    bool wait(TimeoutArg t) { return pool.wait_available(t) > 0; }
    bool reset() { return add_member(false); }
};

}  // namespace

TYPE_TO_STRING(EventW);
TYPE_TO_STRING(AsyncGetW);
TYPE_TO_STRING(AsyncWaitW);
TYPE_TO_STRING(JoinW);
TYPE_TO_STRING(SemW);
TYPE_TO_STRING(BSemW);
TYPE_TO_STRING(LockW);
TYPE_TO_STRING(RLockW);
TYPE_TO_STRING(CondLockW);
TYPE_TO_STRING(CondRLockW);
TYPE_TO_STRING(QueueGetFifoW);
TYPE_TO_STRING(QueueGetLifoW);
TYPE_TO_STRING(QueueGetPrioW);
TYPE_TO_STRING(QueuePutW);
TYPE_TO_STRING(ChanGetW);
TYPE_TO_STRING(ChanPutW);
TYPE_TO_STRING(PoolSpawnW);
TYPE_TO_STRING(PoolWaitW);

namespace {

using AllWaitables = std::tuple<EventW, AsyncGetW, AsyncWaitW, JoinW, SemW, BSemW, LockW, RLockW,
                                CondLockW, CondRLockW, QueueGetFifoW, QueueGetLifoW, QueueGetPrioW,
                                QueuePutW, ChanGetW, ChanPutW, PoolSpawnW, PoolWaitW>;
// The ones cogent::wait/iwait accept (Linkable-based, or greenlet handles).
using Linkables = std::tuple<EventW, AsyncGetW, JoinW, SemW, BSemW, LockW>;
// The ones with gevent's rawlink/unlink/linkcount (AbstractLinkable).
using RawLinkables = std::tuple<EventW, AsyncWaitW, SemW, BSemW, LockW>;

// ---- Waiter greenlets ----

enum class End { running, woken, timed_out, killed, interrupted, failed };

// What a Timeout scope around a wait throws in the storm (not a Timeout, which AsyncResult::get
// throws for its own timeout).
struct ScopeFired {};

std::string end_name(End e) {
    switch (e) {
        case End::running:
            return "running";
        case End::woken:
            return "woken";
        case End::timed_out:
            return "timed_out";
        case End::killed:
            return "killed";
        case End::interrupted:
            return "interrupted";
        case End::failed:
            return "failed";
    }
    return "?";
}

// What one waiter saw. Options are set before the greenlet first runs.
struct Rec {
    int id = 0;
    End end = End::running;
    bool in_wait = false;
    bool unwound = false;               // its destructors ran
    double ms = 0;                      // time spent in wait()
    std::vector<int>* order = nullptr;  // option: push id when woken
    const bool* observe = nullptr;      // option: copy *observe into `saw` when wait() returns
    bool saw = false;
    const long* epoch = nullptr;  // option (storm): release count at start and end of wait()
    const bool* level = nullptr;  // option (storm): "released" state when the wait started
    cogent::Duration scope{};     // option (storm): wrap the wait in a Timeout scope this long
    long epoch_start = 0, epoch_end = 0;
    bool level_start = false;
};

template <class W>
void run_waiter(W& w, Rec& r, TimeoutArg t) {
    SetOnDestroy<bool> guard{&r.unwound};
    if (r.epoch) r.epoch_start = *r.epoch;
    if (r.level) r.level_start = *r.level;
    r.in_wait = true;
    const auto t0 = Clock::now();
    bool ok = false;
    try {
        if (r.scope > cogent::Duration::zero()) {
            cogent::Timeout scope(r.scope, ScopeFired{});
            ok = w.wait(t);
        } else {
            ok = w.wait(t);
        }
    } catch (const ScopeFired&) {
        r.in_wait = false;
        r.end = End::interrupted;
        return;
    } catch (const GreenletExit&) {
        r.in_wait = false;
        r.ms = ms_since(t0);
        r.end = End::killed;
        throw;
    } catch (...) {
        r.in_wait = false;
        r.end = End::failed;
        throw;
    }
    r.in_wait = false;
    r.ms = ms_since(t0);
    if (r.observe) r.saw = *r.observe;
    if (r.epoch) r.epoch_end = *r.epoch;
    r.end = ok ? End::woken : End::timed_out;
    if (ok && r.order) r.order->push_back(r.id);
    if (ok) w.hold();
}

// The waiter greenlets of one scenario; kills the ones still alive when it goes (declare it
// after the adapter, so that nobody waits on the adapter when that is destroyed).
struct Waiters {
    std::deque<Rec> recs;  // stable addresses
    std::vector<AnyGreenlet> gs;
    Waiters() = default;
    Waiters(const Waiters&) = delete;
    Waiters& operator=(const Waiters&) = delete;
    ~Waiters() {
        for (auto& g : gs)
            if (!g.dead()) g.kill();
    }
    template <class W>
    Rec& spawn(W& w, TimeoutArg t, std::vector<int>* order = nullptr) {
        Rec& r = recs.emplace_back();
        r.id = static_cast<int>(recs.size()) - 1;
        r.order = order;
        gs.push_back(cogent::spawn([&w, &r, t] { run_waiter(w, r, t); }));
        return r;
    }
    bool any_alive() const {
        return std::any_of(gs.begin(), gs.end(), [](const AnyGreenlet& g) { return !g.dead(); });
    }
    int count(End e) const {
        return static_cast<int>(
            std::count_if(recs.begin(), recs.end(), [e](const Rec& r) { return r.end == e; }));
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// 1. Timeout

TEST_CASE_TEMPLATE_DEFINE(
    "contract: a timed wait times out after the timeout; nothing is left behind", W,
    contract_timeout) {
    cogent_test::LeakCheck leak;
    {
        // W1 times out; W2, behind it, gets the release that comes afterwards.
        W w;
        Waiters ws;
        Rec& r1 = ws.spawn(w, 30ms);
        Rec& r2 = ws.spawn(w, {});
        ws.gs[0].join();
        CHECK_MESSAGE(r1.end == End::timed_out, end_name(r1.end));
        CHECK(r1.ms >= 30.0);
        CHECK(r1.ms < 5000.0);  // not wildly late (loose: loaded machines)
        CHECK(r1.unwound);
        settle();
        CHECK(r2.end == End::running);
        CHECK(w.release());
        settle();
        CHECK_MESSAGE(r2.end == End::woken, "the release went to the waiter that timed out");
        if constexpr (W::count == Count::exact) CHECK(w.released() - w.left() == 1);
        w.check_items();
    }
    {
        // The only waiter times out; a release then is kept for the next wait (or, for the
        // primitives that keep nothing, refused/lost: a later wait times out).
        W w;
        Waiters ws;
        Rec& r = ws.spawn(w, 10ms);
        ws.gs[0].join();
        CHECK(r.end == End::timed_out);
        CHECK(r.ms >= 10.0);
        if constexpr (W::keeps_release) {
            CHECK(w.release());
            settle();
            CHECK_MESSAGE(w.wait(0s), "a release after the timeout was lost");
        } else {
            CHECK_FALSE_MESSAGE(w.release(), "accepted a release with nobody waiting");
            CHECK_FALSE(w.wait(10ms));
        }
        w.check_items();
    }
    {
        // The release comes in the same loop turn as W1's (overdue) timer: W1 may take it or
        // time out, but then W2 gets it; it is never lost nor given twice.
        W w;
        Waiters ws;
        Rec& r1 = ws.spawn(w, 1ms);
        Rec& r2 = ws.spawn(w, {});
        settle();
        REQUIRE(r1.in_wait);
        spin_for(5ms);  // no yield: the timer is due, but has not run
        CHECK(w.release());
        settle();
        CHECK_MESSAGE((r1.end == End::woken || r1.end == End::timed_out), end_name(r1.end));
        if constexpr (W::wakes_all) {
            CHECK(r2.end == End::woken);
        } else {
            CHECK_MESSAGE((r1.end == End::woken) != (r2.end == End::woken),
                          "W1 " << end_name(r1.end) << ", W2 " << end_name(r2.end));
            if (r1.end == End::woken) {
                CHECK(w.release());
                settle();
                CHECK(r2.end == End::woken);
            }
            if constexpr (W::count == Count::exact)
                CHECK(ws.count(End::woken) == w.released() - w.left());
        }
        w.check_items();
    }
}
TEST_CASE_TEMPLATE_APPLY(contract_timeout, AllWaitables);

// ---------------------------------------------------------------------------------------------
// 2. Kill while waiting

TEST_CASE_TEMPLATE_DEFINE(
    "contract: kill while waiting raises GreenletExit at the wait, takes nothing", W,
    contract_kill) {
    cogent_test::LeakCheck leak;
    {
        // Kill W1 (waiting for it to die); the release goes to W2.
        W w;
        Waiters ws;
        Rec& r1 = ws.spawn(w, {});
        Rec& r2 = ws.spawn(w, {});
        settle();
        REQUIRE(r1.in_wait);
        REQUIRE(r2.in_wait);
        ws.gs[0].kill();
        CHECK(ws.gs[0].dead());
        CHECK(ws.gs[0].killed());
        CHECK_MESSAGE(r1.end == End::killed, end_name(r1.end));
        CHECK(r1.unwound);
        settle();
        CHECK(r2.end == End::running);
        CHECK(w.release());
        settle();
        CHECK_MESSAGE(r2.end == End::woken, "the release went to the killed waiter");
        w.check_items();
    }
    {
        // The kill is scheduled before the release, in the same turn: the killed waiter leaves
        // first, and the release goes to the next one.
        W w;
        Waiters ws;
        Rec& r1 = ws.spawn(w, {});
        Rec& r2 = ws.spawn(w, {});
        settle();
        ws.gs[0].kill(GreenletExit(), false);
        CHECK(w.release());
        settle();
        CHECK_MESSAGE(r1.end == End::killed, end_name(r1.end));
        CHECK(r1.unwound);
        if constexpr (W::claims_at_release) {
            // get_nowait took W1's item before the kill landed (documented): W2 still waits.
            CHECK(r2.end == End::running);
            CHECK(w.release());
            settle();
        }
        CHECK_MESSAGE(r2.end == End::woken, end_name(r2.end));
        w.check_items();
    }
    {
        // The only waiter is killed; a later release is kept for the next wait.
        W w;
        Waiters ws;
        Rec& r = ws.spawn(w, 5s);
        settle();
        ws.gs[0].kill();
        CHECK(r.end == End::killed);
        CHECK(r.unwound);
        if constexpr (W::keeps_release) {
            CHECK(w.release());
            settle();
            CHECK_MESSAGE(w.wait(0s), "a release after the kill was lost");
        } else {
            CHECK_FALSE_MESSAGE(w.release(), "accepted a release with nobody waiting");
        }
        w.check_items();
    }
    {
        // The release is scheduled before the kill, in the same turn: W1 either took it (and
        // dies later) or left without it, and then W2 has it.
        W w;
        Waiters ws;
        Rec& r1 = ws.spawn(w, {});
        Rec& r2 = ws.spawn(w, {});
        settle();
        CHECK(w.release());
        ws.gs[0].kill(GreenletExit(), false);
        settle();
        CHECK_MESSAGE((r1.end == End::woken || r1.end == End::killed), end_name(r1.end));
        CHECK(r1.unwound);
        CHECK(ws.gs[0].dead());
        if constexpr (W::wakes_all) {
            CHECK(r2.end == End::woken);
        } else {
            CHECK_MESSAGE((r1.end == End::woken) != (r2.end == End::woken),
                          "W1 " << end_name(r1.end) << ", W2 " << end_name(r2.end));
            if (r1.end == End::woken) {
                CHECK(w.release());
                settle();
                CHECK(r2.end == End::woken);
            }
            if constexpr (W::count == Count::exact)
                CHECK(ws.count(End::woken) == w.released() - w.left());
        }
        w.check_items();
    }
}
TEST_CASE_TEMPLATE_APPLY(contract_kill, AllWaitables);

// ---------------------------------------------------------------------------------------------
// 3. FIFO

TEST_CASE_TEMPLATE_DEFINE("contract: waiters are woken in the order they started waiting", W,
                          contract_fifo) {
    cogent_test::LeakCheck leak;
    constexpr int kN = 5;
    {
        W w;
        Waiters ws;
        std::vector<int> order;
        for (int i = 0; i < kN; ++i) ws.spawn(w, {}, &order);
        settle();
        for (auto& r : ws.recs) REQUIRE(r.in_wait);
        CHECK(order.empty());
        if constexpr (W::wakes_all) {
            CHECK(w.release());
            settle();
        } else {
            // One release wakes exactly one waiter: the first still waiting.
            for (int i = 0; i < kN; ++i) {
                CHECK(w.release());
                settle();
                CHECK(order.size() == static_cast<std::size_t>(i + 1));
            }
        }
        CHECK(order == iota_ids(kN));
        if constexpr (std::is_same_v<W, ChanPutW>) CHECK(w.received == iota_ids(kN));
        if constexpr (!std::is_same_v<W, RLockW>) CHECK_FALSE(ws.any_alive());  // RLock: last holds
        w.check_items();
    }
    {
        // Waiters leaving from the middle (#1 times out, #3 is killed) do not disturb the order
        // of the others.
        W w;
        Waiters ws;
        std::vector<int> order;
        for (int i = 0; i < kN; ++i) ws.spawn(w, i == 1 ? TimeoutArg(10ms) : TimeoutArg(), &order);
        settle();
        ws.gs[3].kill();
        ws.gs[1].join();
        CHECK(ws.recs[1].end == End::timed_out);
        CHECK(ws.recs[3].end == End::killed);
        const std::vector<int> expect{0, 2, 4};
        if constexpr (W::wakes_all) {
            CHECK(w.release());
            settle();
        } else {
            for (std::size_t i = 0; i < expect.size(); ++i) {
                CHECK(w.release());
                settle();
                CHECK(order.size() == i + 1);
            }
        }
        CHECK(order == expect);
        w.check_items();
    }
}
TEST_CASE_TEMPLATE_APPLY(contract_fifo, AllWaitables);

// ---------------------------------------------------------------------------------------------
// 4. Zero and absent timeouts

TEST_CASE_TEMPLATE_DEFINE(
    "contract: a zero timeout never blocks; an absent one waits until released", W, contract_zero) {
    cogent_test::LeakCheck leak;
    W w;
    Waiters ws;
    // Nothing available: returns "timed out" at once, without even yielding.
    {
        bool other_ran = false;
        auto probe = cogent::spawn([&] { other_ran = true; });
        auto t0 = Clock::now();
        CHECK_FALSE(w.wait(0s));
        CHECK(ms_since(t0) < 5000.0);
        CHECK_FALSE_MESSAGE(other_ran, "a zero-timeout wait yielded");
        probe.join();
    }
    // Absent timeout: still waiting long after, until released.
    Rec& r = ws.spawn(w, {});
    cogent::sleep(60ms);
    CHECK(r.end == End::running);
    CHECK(r.in_wait);
    CHECK(w.release());
    settle();
    CHECK(r.end == End::woken);
    // Something available: a zero timeout takes it at once, without yielding.
    if constexpr (W::keeps_release) {
        if constexpr (!W::wakes_all) {
            CHECK(w.release());
            settle();
        }
        bool other_ran = false;
        auto probe = cogent::spawn([&] { other_ran = true; });
        CHECK(w.wait(0s));
        CHECK_FALSE_MESSAGE(other_ran, "a zero-timeout wait yielded");
        probe.join();
    }
    w.check_items();
}
TEST_CASE_TEMPLATE_APPLY(contract_zero, AllWaitables);

// ---------------------------------------------------------------------------------------------
// 5. Waking never switches

TEST_CASE_TEMPLATE_DEFINE("contract: waking never switches; the releaser runs on until it yields",
                          W, contract_no_switch) {
    cogent_test::LeakCheck leak;
    W w;
    Waiters ws;
    bool continued = false;
    constexpr int kN = 3;
    for (int i = 0; i < kN; ++i) ws.spawn(w, {}).observe = &continued;
    settle();
    CHECK(w.release());
    for (auto& r : ws.recs) CHECK_MESSAGE(r.end == End::running, "release() switched to a waiter");
    continued = true;
    settle();
    CHECK(ws.count(End::woken) == (W::wakes_all ? kN : 1));
    for (auto& r : ws.recs)
        if (r.end == End::woken) CHECK(r.saw);
    w.check_items();
}
TEST_CASE_TEMPLATE_APPLY(contract_no_switch, AllWaitables);

// ---------------------------------------------------------------------------------------------
// 6. Randomized storm

TEST_CASE_TEMPLATE_DEFINE(
    "contract: a randomized storm of waits, timeouts, kills and releases loses nothing", W,
    contract_storm) {
    cogent_test::LeakCheck leak;
    W w;
    Waiters ws;
    std::mt19937 rng(20240607u);
    constexpr int kWaiters = 200;
    long epoch = 0;      // releases so far
    bool level = false;  // wakes_all: released and not reset
    bool stop = false;
    int kills = 0, spawned = 0, resets = 0;

    auto pick_timeout = [&rng]() -> TimeoutArg {
        switch (rng() % 6) {
            case 0:
                return 0s;
            case 1:
                return {};
            default:
                return std::chrono::microseconds(50 + rng() % 4000);
        }
    };
    auto spawner = cogent::spawn([&] {
        for (; spawned < kWaiters; ++spawned) {
            Rec& r = ws.spawn(w, pick_timeout());
            r.epoch = &epoch;
            r.level = &level;
            if (rng() % 5 == 0) r.scope = std::chrono::microseconds(50 + rng() % 2000);
            if (rng() % 2 == 0)
                cogent::sleep(std::chrono::microseconds(rng() % 500));
            else
                cogent::sleep(0);
        }
    });
    auto killer = cogent::spawn([&] {
        while (!stop) {
            cogent::sleep(std::chrono::microseconds(30 + rng() % 250));
            if (ws.gs.empty()) continue;
            std::size_t i = rng() % ws.gs.size();
            for (int tries = 0; tries < 8 && !ws.recs[i].in_wait; ++tries) i = rng() % ws.gs.size();
            if (!ws.recs[i].in_wait) continue;
            AnyGreenlet victim = ws.gs[i];
            victim.kill(GreenletExit(), rng() % 2 == 0);
            ++kills;
        }
    });
    auto do_release = [&] {
        if (w.release()) {
            ++epoch;
            level = true;
        }
    };
    auto releaser = cogent::spawn([&] {
        while (!stop) {
            if (rng() % 3 == 0)
                cogent::sleep(0);
            else
                cogent::sleep(std::chrono::microseconds(20 + rng() % 400));
            if constexpr (W::wakes_all) {
                if (level) {
                    if (W::resettable && rng() % 2 == 0 && w.reset()) {
                        level = false;
                        ++resets;
                    }
                } else if (w.can_release() && rng() % 4 == 0 &&
                           (W::resettable || spawned >= kWaiters * 3 / 4)) {
                    do_release();  // one-shot objects: late, so that many waits block first
                }
            } else {
                // Now and then, a burst: some releases find a waiter, some find none.
                const int burst = rng() % 3 == 0 ? 1 + static_cast<int>(rng() % 3) : 0;
                for (int b = 0; b < burst; ++b)
                    if (w.can_release() && (!W::keeps_release || w.left() < 2)) do_release();
            }
        }
    });
    spawner.join();
    cogent::sleep(5ms);
    stop = true;
    cogent::joinall(std::vector<AnyGreenlet>{killer, releaser});

    // Wind down: release until every waiter is done (holders of an RLock included).
    for (int iter = 0; iter < 2000 && ws.any_alive(); ++iter) {
        if constexpr (W::wakes_all) {
            if (!level && w.can_release()) do_release();
        } else {
            if (w.can_release()) do_release();
        }
        settle();
        if (iter % 8 == 7) cogent::sleep(200us);  // let the short timeouts expire
    }
    CHECK_FALSE_MESSAGE(ws.any_alive(), "a waiter is still blocked");
    settle();

    const int woken = ws.count(End::woken), timed = ws.count(End::timed_out),
              killed = ws.count(End::killed), interrupted = ws.count(End::interrupted);
    MESSAGE("woken " << woken << ", timed out " << timed << ", killed " << killed << " (kill calls "
                     << kills << "), interrupted by a Timeout scope " << interrupted
                     << ", released " << w.released() << ", left " << w.left() << ", resets "
                     << resets);
    CHECK(woken + timed + killed + interrupted == kWaiters);
    for (auto& r : ws.recs) {
        CHECK_MESSAGE(r.unwound, "waiter " << r.id << " did not unwind");
        CHECK_FALSE(r.in_wait);
    }
    // Each kind of ending happened, or the storm proved little.
    CHECK(woken > 0);
    CHECK(timed > 0);
    CHECK(killed > 0);
    CHECK(interrupted > 0);
    if constexpr (W::count == Count::exact) {
        CHECK_MESSAGE(woken == w.released() - w.left(), "acquired " << woken << " != released "
                                                                    << w.released() << " - left "
                                                                    << w.left());
    } else if constexpr (W::count == Count::at_most) {
        CHECK(woken <= w.released());
    } else {
        // Level-triggered: a waiter woke only if the object was released when it started
        // waiting, or a release happened while it waited.
        for (auto& r : ws.recs)
            if (r.end == End::woken)
                CHECK_MESSAGE((r.level_start || r.epoch_end > r.epoch_start),
                              "waiter " << r.id << " woke without a release");
        CHECK(w.released() > 0);
    }
    w.check_items();
}
TEST_CASE_TEMPLATE_APPLY(contract_storm, AllWaitables);

// ---------------------------------------------------------------------------------------------
// cogent::wait / iwait over the Linkable-based ones

TEST_CASE_TEMPLATE_DEFINE("contract: cogent::wait and iwait report readiness", W, contract_iwait) {
    cogent_test::LeakCheck leak;
    {
        W w;
        auto obj = w.waitable();
        using T = decltype(obj);
        // Not ready: nothing reported, after the timeout.
        auto t0 = Clock::now();
        CHECK(cogent::wait(std::vector<T>{obj}, 20ms).empty());
        CHECK(ms_since(t0) >= 20.0);
        // Released by another greenlet meanwhile: reported; readiness is not consumed.
        bool released = false;
        auto rel = cogent::spawn([&] {
            cogent::sleep(5ms);
            w.release();
            released = true;
        });
        auto got = cogent::wait(std::vector<T>{obj}, 5s);
        CHECK(released);
        REQUIRE(got.size() == 1);
        CHECK(got[0] == obj);
        rel.join();
        settle();
        CHECK_MESSAGE(w.wait(0s), "iwait took the release");
    }
    {
        // Two objects: reported in the order they became ready; the end comes at the timeout.
        W a, b;
        using T = decltype(a.waitable());
        auto rel = cogent::spawn([&] {
            cogent::sleep(5ms);
            b.release();
            cogent::sleep(5ms);
            a.release();
        });
        std::vector<T> seen;
        for (const auto& o : cogent::iwait(std::vector<T>{a.waitable(), b.waitable()}, 5s))
            seen.push_back(o);
        REQUIRE(seen.size() == 2);
        CHECK(seen[0] == b.waitable());
        CHECK(seen[1] == a.waitable());
        rel.join();
        // Already ready: reported without waiting for the timeout.
        auto t0 = Clock::now();
        CHECK(cogent::wait(std::vector<T>{a.waitable()}, 5s).size() == 1);
        CHECK(ms_since(t0) < 1000.0);
    }
    {
        // A greenlet killed inside iwait unwinds; a later release is still kept.
        W w;
        using T = decltype(w.waitable());
        bool unwound = false, reported = false;
        auto g = cogent::spawn([&] {
            SetOnDestroy<bool> guard{&unwound};
            for (const auto& o : cogent::iwait(std::vector<T>{w.waitable()})) {
                (void)o;
                reported = true;
            }
        });
        settle();
        g.kill();
        CHECK(unwound);
        CHECK(g.killed());
        CHECK_FALSE(reported);
        CHECK(w.release());
        settle();
        CHECK(w.wait(0s));
    }
}
TEST_CASE_TEMPLATE_APPLY(contract_iwait, Linkables);

// ---------------------------------------------------------------------------------------------
// rawlink / unlink / linkcount (gevent's AbstractLinkable)

TEST_CASE_TEMPLATE_DEFINE(
    "contract: rawlink runs on the hub, once, in FIFO order with the waiters; unlink removes it", W,
    contract_rawlink) {
    cogent_test::LeakCheck leak;
    {
        // Waiter 0, a rawlink, waiter 1, and a rawlink that is unlinked again.
        W w;
        Waiters ws;
        auto obj = w.waitable();
        std::vector<int> order;
        ws.spawn(w, {}, &order);
        settle();
        int fired = 0;
        bool could_block = true;
        const cogent::LinkId id1 = obj->rawlink([&](auto& o) {
            CHECK(&o == obj);
            order.push_back(100);
            ++fired;
            cogent::Event never;
            try {
                never.wait();  // on the hub: refused
            } catch (const cogent::BlockingSwitchOutError&) {
                could_block = false;
            }
        });
        ws.spawn(w, {}, &order);
        settle();
        const cogent::LinkId id2 = obj->rawlink([&](auto&) { order.push_back(200); });
        CHECK(id1 != id2);
        CHECK(obj->linkcount() == 4);
        obj->unlink(id2);
        CHECK(obj->linkcount() == 3);
        CHECK(w.release());
        CHECK(fired == 0);  // waking never switches, nor calls a link
        settle();
        if constexpr (!W::wakes_all) {
            // One permit: waiter 0 took it; the rawlink waits for a permit at its turn.
            CHECK(order == std::vector<int>{0});
            CHECK(obj->linkcount() == 2);
            CHECK(w.release());
            settle();
        }
        CHECK(order == std::vector<int>{0, 100, 1});
        CHECK(fired == 1);
        CHECK_FALSE(could_block);
        CHECK(obj->linkcount() == 0);
        obj->unlink(id1);  // fired: nothing
        if constexpr (W::resettable) {
            CHECK(w.reset());
            CHECK(w.release());
            settle();
            CHECK(fired == 1);  // once
        }
        CHECK_FALSE(ws.any_alive());
    }
    {
        // Ids never alias: a removed id, another object's, or an unknown one does nothing.
        W a, b;
        int fired_a = 0, fired_b = 0;
        const cogent::LinkId removed = a.waitable()->rawlink([&](auto&) { fired_a += 100; });
        a.waitable()->unlink(removed);
        const cogent::LinkId ida = a.waitable()->rawlink([&](auto&) { ++fired_a; });
        const cogent::LinkId idb = b.waitable()->rawlink([&](auto&) { ++fired_b; });
        CHECK(ida != removed);
        CHECK(idb != removed);
        CHECK(idb != ida);
        a.waitable()->unlink(removed);
        a.waitable()->unlink(idb);
        a.waitable()->unlink(0);
        CHECK(a.waitable()->linkcount() == 1);
        CHECK(b.waitable()->linkcount() == 1);
        CHECK(a.release());
        CHECK(b.release());
        settle();
        CHECK(fired_a == 1);
        CHECK(fired_b == 1);
        a.waitable()->unlink(ida);  // fired: nothing
        // Ready already: a new rawlink runs at the next turn of the hub, not at once.
        a.waitable()->rawlink([&](auto&) { ++fired_a; });
        CHECK(fired_a == 1);
        settle();
        CHECK(fired_a == 2);
        // One that never runs is freed with its object.
        W c;
        c.waitable()->rawlink([](auto&) { FAIL("never released"); });
    }
}
TEST_CASE_TEMPLATE_APPLY(contract_rawlink, RawLinkables);
