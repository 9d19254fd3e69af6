// Semaphore, BoundedSemaphore, Lock, RLock, Condition: counts, fairness, timeouts, kill while
// waiting, RAII guards, misuse errors, and a randomized stress test.
#include <algorithm>
#include <chrono>
#include <cogent/lock.hpp>
#include <cogent/semaphore.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::BoundedSemaphore;
using cogent::Condition;
using cogent::Greenlet;
using cogent::Lock;
using cogent::RLock;
using cogent::Semaphore;
using cogent::Timeout;
using Clock = std::chrono::steady_clock;

namespace {

// Every lock type, seen through one interface, for the shared contract tests: each starts
// with exactly one permit.
template <class L>
struct Make {
    static L* make() { return new L(); }
};
template <>
struct Make<Semaphore> {
    static Semaphore* make() { return new Semaphore(1); }
};
template <>
struct Make<BoundedSemaphore> {
    static BoundedSemaphore* make() { return new BoundedSemaphore(1); }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Contract shared by every lock: FIFO, timeouts, kill while waiting, guards.

TEST_CASE_TEMPLATE("lock contract: waiters are served FIFO", L, Semaphore, BoundedSemaphore, Lock,
                   RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    std::vector<int> order;
    std::vector<Greenlet<void>> gs;
    REQUIRE(lk->acquire());
    for (int i = 0; i < 5; ++i)
        gs.push_back(cogent::spawn([&, i] {
            std::lock_guard<L> g(*lk);
            order.push_back(i);
            cogent::sleep(0);  // hold it across a yield: others must keep queueing
        }));
    cogent::sleep(0);
    CHECK(order.empty());
    lk->release();
    cogent::joinall(gs);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(lk->try_lock());
    lk->unlock();
}

TEST_CASE_TEMPLATE("lock contract: acquire times out; try_lock and zero timeouts never block", L,
                   Semaphore, BoundedSemaphore, Lock, RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    auto holder = cogent::spawn([&] {
        lk->acquire();
        cogent::sleep(60ms);
        lk->release();
    });
    cogent::sleep(0);
    auto t0 = Clock::now();
    CHECK_FALSE(lk->acquire(false));
    CHECK_FALSE(lk->acquire(true, 0s));
    CHECK_FALSE(lk->try_lock());
    CHECK_FALSE(lk->try_lock_for(0ms));
    CHECK(ms_since(t0) < 15.0);
    t0 = Clock::now();
    CHECK_FALSE(lk->acquire(15ms));
    CHECK(ms_since(t0) >= 15.0);
    {
        std::unique_lock<L> ul(*lk, std::defer_lock);
        CHECK_FALSE(ul.try_lock_for(5ms));
        CHECK(ul.try_lock_for(5s));  // the holder lets go after 60 ms
        CHECK(ul.owns_lock());
    }
    holder.join();
    CHECK(lk->try_lock_until(Clock::now() + 1s));
    lk->release();
    CHECK_THROWS_AS(lk->acquire(-1s), std::invalid_argument);
}

TEST_CASE_TEMPLATE("lock contract: kill while waiting unwinds and takes nothing", L, Semaphore,
                   BoundedSemaphore, Lock, RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    lk->acquire();
    bool unwound = false, got = false;
    auto g = cogent::spawn([&] {
        SetOnDestroy d{&unwound};
        lk->acquire();
        got = true;
    });
    cogent::sleep(0);
    REQUIRE(g.active());
    g.kill();
    CHECK(g.dead());
    CHECK(unwound);
    CHECK_FALSE(got);
    lk->release();
    CHECK(cogent::debug::pending_callbacks() == 0);  // its wait node is gone
    CHECK(lk->try_lock());                           // and the lock is free, not leaked
    lk->release();
}

TEST_CASE_TEMPLATE("lock contract: a waiter killed after the release was scheduled passes it on", L,
                   Semaphore, BoundedSemaphore, Lock, RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    lk->acquire();
    std::vector<char> got;
    auto a = cogent::spawn([&] {
        std::lock_guard<L> g(*lk);
        got.push_back('a');
    });
    auto b = cogent::spawn([&] {
        std::lock_guard<L> g(*lk);
        got.push_back('b');
    });
    cogent::sleep(0);
    a.kill(cogent::GreenletExit(), false);  // delivered on the hub before...
    lk->release();                          // ...the wake-up this schedules
    cogent::joinall(std::vector<Greenlet<void>>{a, b});
    CHECK(got == std::vector<char>{'b'});
    CHECK(lk->try_lock());
    lk->release();
}

TEST_CASE_TEMPLATE("lock contract: a Timeout scope interrupts acquire", L, Semaphore,
                   BoundedSemaphore, Lock, RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    auto holder = cogent::spawn([&] {
        std::lock_guard<L> g(*lk);
        cogent::sleep(50ms);
    });
    cogent::sleep(0);
    bool fired = false;
    try {
        Timeout t(10ms);
        lk->acquire();
    } catch (const Timeout&) {
        fired = true;
    }
    CHECK(fired);
    holder.join();
    CHECK(lk->try_lock());
    lk->release();
}

TEST_CASE_TEMPLATE("lock contract: blocking on the hub throws; not blocking is fine", L, Semaphore,
                   BoundedSemaphore, Lock, RLock) {
    cogent_test::LeakCheck leak;
    std::unique_ptr<L> lk(Make<L>::make());
    bool took = false, blocked = false;
    cogent::get_hub().run_callback([&] {
        took = lk->acquire();  // free: no blocking needed
        try {
            lk->acquire(true, 1s);
        } catch (const cogent::BlockingSwitchOutError&) {
            blocked = true;
        }
    });
    cogent::sleep(0);
    CHECK(took);
    CHECK((blocked || std::is_same_v<L, RLock>));  // an RLock is re-entrant, even on the hub
    if constexpr (std::is_same_v<L, RLock>) {
        cogent::get_hub().run_callback([&] {
            lk->release();
            lk->release();
        });
        cogent::sleep(0);
    } else {
        lk->release();
    }
    CHECK(lk->try_lock());
    lk->release();
}

// ---------------------------------------------------------------------------------------------
// Semaphore

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Semaphore counts permits") {
    CHECK_THROWS_AS(Semaphore(-1), std::invalid_argument);
    Semaphore s(2);
    CHECK(s.counter() == 2);
    CHECK_FALSE(s.locked());
    CHECK(s.acquire());
    CHECK(s.acquire(false));
    CHECK(s.counter() == 0);
    CHECK(s.locked());
    CHECK_FALSE(s.acquire(false));
    CHECK(s.release() == 1);
    CHECK(s.release() == 2);
    CHECK(s.release() == 3);  // an unbounded semaphore may go above its start value
    CHECK(s.counter() == 3);
    Semaphore z(0);
    CHECK(z.locked());
    CHECK_FALSE(z.acquire(0s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Semaphore release never switches; a newcomer does not overtake the queue") {
    Semaphore s(0);
    std::vector<std::string> log;
    auto a = cogent::spawn([&] {
        s.acquire();
        log.push_back("a");
    });
    cogent::sleep(0);
    CHECK(s.waiting() == 1);
    s.release();
    CHECK(log.empty());       // release only scheduled the wake-up
    CHECK(s.counter() == 1);  // the permit is there...
    CHECK(s.locked());        // ...but promised to the queue
    CHECK_FALSE(s.acquire(false));
    bool newcomer = false;
    auto c = cogent::spawn([&] {
        s.acquire();
        newcomer = true;
        log.push_back("c");
    });
    a.join();
    CHECK(log == std::vector<std::string>{"a"});
    CHECK_FALSE(newcomer);
    s.release();
    c.join();
    CHECK(log == std::vector<std::string>{"a", "c"});
    CHECK(s.counter() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Semaphore: release(n times) wakes n waiters, the rest keep waiting") {
    Semaphore s(0);
    int got = 0;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 5; ++i)
        gs.push_back(cogent::spawn([&] {
            if (s.acquire(true, 200ms)) ++got;
        }));
    cogent::sleep(0);
    s.release();
    s.release();
    s.release();
    cogent::sleep(0);
    CHECK(got == 3);
    CHECK(s.waiting() == 2);
    cogent::joinall(gs);
    CHECK(got == 3);
    CHECK(s.counter() == 0);
    CHECK(s.waiting() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Semaphore::wait waits for a permit without taking it") {
    Semaphore s(0);
    CHECK(s.wait(0s) == 0);
    auto t0 = Clock::now();
    CHECK(s.wait(10ms) == 0);
    CHECK(ms_since(t0) >= 10.0);
    int seen = -1;
    auto g = cogent::spawn([&] { seen = s.wait(); });
    cogent::sleep(0);
    CHECK(seen == -1);
    s.release();
    g.join();
    CHECK(seen == 1);
    CHECK(s.counter() == 1);  // not taken
    CHECK(s.wait() == 1);     // available: returns at once
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "Semaphore::rawlink: called when a permit is there at its turn, in FIFO order with acquirers") {
    Semaphore s(0);
    std::vector<std::string> log;
    auto a = cogent::spawn([&] {
        s.acquire();
        log.push_back("a");
    });
    cogent::sleep(0);
    Semaphore* seen = nullptr;
    s.rawlink([&](Semaphore& x) {
        seen = &x;
        log.push_back("r" + std::to_string(x.counter()));  // takes nothing
    });
    cogent::LinkId gone = s.rawlink([&](Semaphore&) { log.push_back("gone"); });
    auto b = cogent::spawn([&] {
        s.acquire();
        log.push_back("b");
    });
    cogent::sleep(0);
    CHECK(s.linkcount() == 4);
    s.unlink(gone);
    CHECK(s.linkcount() == 3);
    s.release();  // one permit: a takes it; nothing is left for the rawlink, nor for b
    for (int i = 0; i < 3; ++i) cogent::sleep(0);
    CHECK(log == std::vector<std::string>{"a"});
    CHECK(s.linkcount() == 2);
    s.release();
    CHECK(log.size() == 1);  // not from release()
    cogent::joinall({a, b});
    CHECK(log == std::vector<std::string>{"a", "r1", "b"});
    CHECK(seen == &s);
    CHECK(s.counter() == 0);
    s.unlink(gone);  // removed already: nothing
    CHECK_THROWS_AS(s.rawlink(nullptr), std::invalid_argument);
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "Semaphore: greenlets handing a permit back and forth do not keep timers from running") {
    // Each wake-up round ends with the waiters that were there when it began (gevent's
    // _notify_links): one that parks again is woken by the next round, and between rounds the
    // hub gets to its timers. (Before, one hub callback went on as long as the two kept
    // re-parking: main's sleep below ended only once they ran out of turns.)
    constexpr long kLimit = 5'000'000;
    Semaphore s(0);
    bool stop = false;
    long turns = 0;
    auto body = [&] {
        while (!stop && turns < kLimit) {
            s.acquire();
            ++turns;
            s.release();  // the other one waits: this one queues behind it at the next acquire
        }
    };
    auto a = cogent::spawn(body);
    auto b = cogent::spawn(body);
    cogent::sleep(0);
    REQUIRE(s.waiting() == 2);
    s.release();
    cogent::sleep(5ms);
    stop = true;
    cogent::joinall({a, b});
    CHECK(turns > 0);
    CHECK(turns < kLimit);
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "Lock::rawlink runs when the lock is released; BoundedSemaphore's when a permit comes back") {
    Lock l;
    REQUIRE(l.acquire(false));
    int lock_calls = 0;
    l.rawlink([&](Semaphore& x) {
        ++lock_calls;
        CHECK_FALSE(x.locked());
        CHECK(x.acquire(false));  // a callback may take it (never blocking)
    });
    cogent::sleep(0);
    CHECK(lock_calls == 0);
    l.release();
    cogent::sleep(0);
    CHECK(lock_calls == 1);
    CHECK(l.locked());  // taken by the callback
    l.release();

    BoundedSemaphore b(2);
    int bsem_calls = 0;
    b.rawlink([&](Semaphore&) { ++bsem_calls; });  // ready: runs at the next turn
    cogent::sleep(0);
    CHECK(bsem_calls == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Semaphore: iwait on a semaphore") {
    Semaphore s(0);
    auto g = cogent::spawn([&] {
        cogent::sleep(5ms);
        s.release();
    });
    auto ready = cogent::wait(std::vector<Semaphore*>{&s}, 5s);
    CHECK(ready.size() == 1);
    CHECK(s.counter() == 1);
    g.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "BoundedSemaphore refuses to go above its initial value") {
    BoundedSemaphore b(2);
    CHECK_THROWS_WITH_AS(b.release(), doctest::Contains("released too many times"),
                         std::logic_error);
    CHECK(b.counter() == 2);
    b.acquire();
    CHECK(b.release() == 2);
    CHECK_THROWS_AS(b.release(), std::logic_error);
    CHECK(b.counter() == 2);
    // Through a Semaphore reference too: the bound is not a matter of static type.
    Semaphore& s = b;
    CHECK_THROWS_AS(s.release(), std::logic_error);
    CHECK_THROWS_AS(BoundedSemaphore(-2), std::invalid_argument);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a Semaphore blocked on in one thread refuses another thread") {
    Semaphore s(0);
    auto g = cogent::spawn([&] { s.acquire(); });
    cogent::sleep(0);
    bool refused = false;
    std::thread t([&] {
        try {
            s.release();
        } catch (const cogent::GreenletError&) {
            refused = true;
        }
    });
    t.join();
    CHECK(refused);
    CHECK(s.counter() == 0);
    s.release();
    g.join();
}

// ---------------------------------------------------------------------------------------------
// Lock

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Lock: acquire, release, locked; releasing an unlocked lock throws") {
    Lock l;
    CHECK_FALSE(l.locked());
    CHECK_THROWS_AS(l.release(), std::logic_error);
    CHECK(l.acquire());
    CHECK(l.locked());
    CHECK_FALSE(l.acquire(false));
    l.release();
    CHECK_FALSE(l.locked());
    {
        std::lock_guard<Lock> g(l);
        CHECK(l.locked());
    }
    CHECK_FALSE(l.locked());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Lock may be released by another greenlet") {
    Lock l;
    l.acquire();
    auto g = cogent::spawn([&] { l.release(); });
    g.join();
    CHECK_FALSE(l.locked());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Lock protects a counter across yields") {
    Lock l;
    int counter = 0, inside = 0, max_inside = 0;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 20; ++i)
        gs.push_back(cogent::spawn([&] {
            for (int k = 0; k < 10; ++k) {
                std::lock_guard<Lock> g(l);
                ++inside;
                max_inside = std::max(max_inside, inside);
                int v = counter;
                cogent::sleep(0);
                counter = v + 1;
                --inside;
            }
        }));
    cogent::joinall(gs);
    CHECK(counter == 200);
    CHECK(max_inside == 1);
}

// ---------------------------------------------------------------------------------------------
// RLock

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "RLock is re-entrant for its owner") {
    RLock r;
    CHECK_FALSE(r.locked());
    CHECK_FALSE(r.is_owned());
    CHECK(r.count() == 0);
    CHECK(r.acquire());
    CHECK(r.acquire(false));  // the owner never blocks
    {
        std::lock_guard<RLock> g(r);
        CHECK(r.count() == 3);
    }
    CHECK(r.count() == 2);
    CHECK(r.is_owned());
    r.release();
    CHECK(r.locked());
    r.release();
    CHECK_FALSE(r.locked());
    CHECK(r.count() == 0);
    CHECK_THROWS_AS(r.release(), std::logic_error);
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "RLock: others block until the owner releases every level; non-owners cannot release") {
    RLock r;
    r.acquire();
    r.acquire();
    bool got = false, non_owner_error = false, owned_there = true;
    auto g = cogent::spawn([&] {
        owned_there = r.is_owned();
        try {
            r.release();
        } catch (const std::logic_error&) {
            non_owner_error = true;
        }
        r.acquire();
        got = true;
        CHECK(r.count() == 1);
        r.release();
    });
    cogent::sleep(0);
    CHECK(non_owner_error);
    CHECK_FALSE(owned_there);
    CHECK(r.count() == 2);  // the failed release changed nothing
    r.release();
    cogent::sleep(0);
    CHECK_FALSE(got);  // one level is still held
    r.release();
    g.join();
    CHECK(got);
    CHECK_FALSE(r.locked());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "RLock held by a greenlet that died stays its own") {
    RLock r;
    auto g = cogent::spawn([&] { r.acquire(); });
    g.join();
    CHECK(r.locked());
    CHECK_FALSE(r.is_owned());
    // A new greenlet, possibly at the same address, is not the owner.
    auto h = cogent::spawn([&] {
        bool threw = false;
        try {
            r.release();
        } catch (const std::logic_error&) {
            threw = true;
        }
        return threw;
    });
    CHECK(h.get());
    CHECK_FALSE(r.acquire(0s));
}

// ---------------------------------------------------------------------------------------------
// Condition

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Condition: wait and notify need the lock") {
    Condition c;
    CHECK_THROWS_AS(c.wait(0s), std::logic_error);
    CHECK_THROWS_AS(c.notify(), std::logic_error);
    CHECK_THROWS_AS(c.notify_all(), std::logic_error);
    std::lock_guard<Condition> g(c);
    CHECK_THROWS_AS(c.notify(-1), std::invalid_argument);
    c.notify();  // nobody waits: lost
    CHECK_FALSE(c.wait(5ms));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition handshake: wait releases the lock and takes it back") {
    RLock lock;
    Condition c(lock);
    bool ready = false, consumed = false;
    auto consumer = cogent::spawn([&] {
        std::lock_guard<RLock> g(lock);
        lock.acquire();  // two levels: wait must drop and restore both
        while (!ready) c.wait();
        CHECK(lock.count() == 2);
        CHECK(lock.is_owned());
        consumed = true;
        lock.release();
    });
    cogent::sleep(0);
    CHECK(c.waiting() == 1);
    CHECK_FALSE(lock.locked());  // the waiter dropped it
    {
        std::lock_guard<RLock> g(lock);
        ready = true;
        c.notify();
        cogent::sleep(0);
        CHECK_FALSE(consumed);  // it needs the lock back first
    }
    consumer.join();
    CHECK(consumed);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition: notify(n) wakes n waiters in FIFO order, notify_all the rest") {
    Condition c;
    std::vector<int> woke;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 5; ++i)
        gs.push_back(cogent::spawn([&, i] {
            std::lock_guard<Condition> g(c);
            c.wait();
            woke.push_back(i);
        }));
    cogent::sleep(0);
    CHECK(c.waiting() == 5);
    {
        std::lock_guard<Condition> g(c);
        c.notify();
    }
    cogent::sleep(0);
    CHECK(woke == std::vector<int>{0});
    {
        std::lock_guard<Condition> g(c);
        c.notify(2);
    }
    cogent::sleep(0);
    CHECK(woke == std::vector<int>{0, 1, 2});
    {
        std::lock_guard<Condition> g(c);
        c.notify_all();
    }
    cogent::joinall(gs);
    CHECK(woke == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(c.waiting() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition: a notification is not banked for later waiters") {
    Condition c;
    int woke = 0;
    auto a = cogent::spawn([&] {
        std::lock_guard<Condition> g(c);
        if (c.wait(200ms)) ++woke;
    });
    cogent::sleep(0);
    {
        std::lock_guard<Condition> g(c);
        c.notify(5);  // one waiter: one wake-up, not five
    }
    a.join();
    CHECK(woke == 1);
    std::lock_guard<Condition> g(c);
    CHECK_FALSE(c.wait(5ms));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition with a plain Lock, wait timeout, and wait_for") {
    Lock l;
    Condition c(l);
    std::unique_lock<Condition> ul(c);
    CHECK(l.locked());
    auto t0 = Clock::now();
    CHECK_FALSE(c.wait(10ms));
    CHECK(ms_since(t0) >= 10.0);
    CHECK(l.locked());  // taken back after the timeout
    int items = 0;
    auto producer = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) {
            cogent::sleep(2ms);
            std::lock_guard<Condition> g(c);
            ++items;
            c.notify();
        }
    });
    CHECK(c.wait_for([&] { return items == 3; }));
    CHECK(items == 3);
    CHECK(l.locked());
    t0 = Clock::now();
    CHECK_FALSE(c.wait_for([&] { return items == 4; }, 15ms));
    CHECK(ms_since(t0) >= 15.0);
    CHECK(c.wait_for([&] { return items == 3; }, 0s));  // true at once, no wait
    ul.unlock();
    producer.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition: killed while waiting, the lock is held again as it unwinds; the "
                  "notification goes on") {
    RLock lock;
    Condition c(lock);
    bool held_while_unwinding = false, a_returned = false, b_woke = false;
    auto a = cogent::spawn([&] {
        std::lock_guard<RLock> g(lock);
        try {
            c.wait();
            a_returned = true;
        } catch (const cogent::GreenletExit&) {
            held_while_unwinding = lock.is_owned() && lock.count() == 1;
            throw;
        }
    });
    auto b = cogent::spawn([&] {
        std::lock_guard<RLock> g(lock);
        b_woke = c.wait(1s);
    });
    cogent::sleep(0);
    CHECK(c.waiting() == 2);
    {
        std::lock_guard<RLock> g(lock);
        a.kill(cogent::GreenletExit(), false);  // a leaves before the wake-up runs...
        c.notify();                             // ...so the one notification goes to b
    }
    cogent::joinall(std::vector<Greenlet<void>>{a, b});
    CHECK(held_while_unwinding);
    CHECK_FALSE(a_returned);
    CHECK(b_woke);
    CHECK_FALSE(lock.locked());
    CHECK(c.waiting() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition: kill while the waiter retakes the lock; it still ends holding it") {
    Lock l;
    Condition c(l);
    bool held_at_exit = false;
    auto a = cogent::spawn([&] {
        std::lock_guard<Condition> g(c);
        try {
            c.wait();
        } catch (const cogent::GreenletExit&) {
            held_at_exit = l.locked();
            throw;
        }
    });
    cogent::sleep(0);
    l.acquire();
    c.notify();
    cogent::sleep(0);  // a woke up and now blocks taking the lock back
    a.kill(cogent::GreenletExit(), false);
    cogent::sleep(0);
    CHECK_FALSE(a.dead());  // it cannot leave without the lock
    l.release();
    a.join();
    CHECK(a.dead());
    CHECK(held_at_exit);
    CHECK_FALSE(l.locked());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition: a Timeout scope interrupts wait, with the lock held again") {
    Condition c;
    std::lock_guard<Condition> g(c);
    bool fired = false;
    try {
        Timeout t(5ms);
        c.wait();
    } catch (const Timeout&) {
        fired = true;
    }
    CHECK(fired);
    CHECK(c.waiting() == 0);
    c.notify();  // still owned: no throw
}

// ---------------------------------------------------------------------------------------------
// Stress: random timeouts and kills must neither lose nor duplicate a permit.

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Semaphore stress: random timeouts and kills lose nothing") {
    constexpr int kPermits = 3, kWorkers = 60, kRounds = 30;
    Semaphore sem(kPermits);
    std::mt19937 rng(20240611);
    int held = 0, max_held = 0;
    long acquired = 0, released = 0, timeouts = 0, scope_timeouts = 0;
    auto rand_int = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

    std::vector<Greenlet<void>> workers;
    for (int w = 0; w < kWorkers; ++w)
        workers.push_back(cogent::spawn([&] {
            for (int k = 0; k < kRounds; ++k) {
                bool ok = false;
                int mode = rand_int(0, 3);
                try {
                    if (mode == 0) {
                        ok = sem.acquire();
                    } else if (mode == 1) {
                        ok = sem.acquire(false);
                    } else if (mode == 2) {
                        ok = sem.acquire(std::chrono::microseconds(rand_int(1, 3000)));
                    } else {
                        Timeout t(std::chrono::microseconds(rand_int(1, 3000)));
                        ok = sem.acquire();
                    }
                } catch (const Timeout&) {
                    ++scope_timeouts;
                    continue;
                }
                if (!ok) {
                    ++timeouts;
                    cogent::sleep(0);
                    continue;
                }
                ++acquired;
                // Released on every exit, a kill included.
                struct Release {
                    Semaphore& s;
                    int& held;
                    long& released;
                    ~Release() {
                        --held;
                        ++released;
                        s.release();
                    }
                } rel{sem, held, released};
                ++held;
                max_held = std::max(max_held, held);
                if (rand_int(0, 1))
                    cogent::sleep(0);
                else
                    cogent::sleep(std::chrono::microseconds(rand_int(1, 500)));
            }
        }));
    auto killer = cogent::spawn([&] {
        for (int i = 0; i < 25; ++i) {
            cogent::sleep(std::chrono::microseconds(rand_int(100, 2000)));
            workers[rand_int(0, kWorkers - 1)].kill(cogent::GreenletExit(), rand_int(0, 1) == 1);
        }
    });
    cogent::joinall(workers);
    killer.join();
    cogent::joinall(workers);
    CHECK(held == 0);
    CHECK(max_held <= kPermits);
    CHECK(max_held == kPermits);  // the semaphore was actually contended
    CHECK(acquired == released);
    CHECK(acquired > 0);
    CHECK(timeouts + scope_timeouts > 0);
    CHECK(sem.counter() == kPermits);
    CHECK(sem.waiting() == 0);
    CHECK_FALSE(sem.locked());
    MESSAGE("acquired " << acquired << ", failed " << timeouts << ", scope timeouts "
                        << scope_timeouts);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Condition stress: a bounded buffer with random kills keeps its count") {
    // Producers and consumers on one Condition; consumers are killed at random. Every item
    // produced is either consumed or still in the buffer.
    Condition c;
    std::mt19937 rng(7);
    auto rand_int = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int buffer = 0, produced = 0, consumed = 0;
    constexpr int kCap = 4;
    std::vector<Greenlet<void>> producers, consumers;
    for (int p = 0; p < 4; ++p)
        producers.push_back(cogent::spawn([&] {
            for (int i = 0; i < 50; ++i) {
                std::lock_guard<Condition> g(c);
                if (!c.wait_for([&] { return buffer < kCap; }, 200ms)) continue;
                ++buffer;
                ++produced;
                c.notify_all();
            }
        }));
    for (int k = 0; k < 6; ++k)
        consumers.push_back(cogent::spawn([&] {
            for (;;) {
                std::lock_guard<Condition> g(c);
                if (!c.wait_for([&] { return buffer > 0; }, 50ms)) return;
                --buffer;
                ++consumed;
                c.notify_all();
                if (rand_int(0, 3) == 0) cogent::sleep(0);
            }
        }));
    auto killer = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) {
            cogent::sleep(std::chrono::microseconds(rand_int(100, 1000)));
            consumers[rand_int(0, 5)].kill();
        }
    });
    cogent::joinall(producers);
    cogent::joinall(consumers);
    killer.join();
    CHECK(produced > 0);
    CHECK(consumed + buffer == produced);
    CHECK(c.waiting() == 0);
    CHECK(c.try_lock());
    c.unlock();
}
