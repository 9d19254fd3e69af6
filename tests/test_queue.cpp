// Queue, LifoQueue, PriorityQueue, Channel: every method and exception, blocking, timeouts,
// kills, FIFO service of getters and putters, shutdown, iteration, move-only items, and a
// randomized stress test that checks that nothing is lost or duplicated.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::AnyGreenlet;
using cogent::Channel;
using cogent::Empty;
using cogent::Full;
using cogent::Greenlet;
using cogent::LifoQueue;
using cogent::PriorityQueue;
using cogent::Queue;
using cogent::ShutDown;
using cogent::Timeout;
using Clock = std::chrono::steady_clock;

namespace {

// Let every runnable greenlet run until it blocks (a few rounds, for chains of wake-ups).
void settle(int rounds = 3) {
    for (int i = 0; i < rounds; ++i) cogent::sleep(0);
}

std::size_t callbacks() { return cogent::debug::pending_callbacks(); }

}  // namespace

TEST_SUITE_BEGIN("queue");

// ---------------------------------------------------------------------------------------------
// Queue: the non-blocking API

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Queue basics: FIFO, sizes, nowait, Full and Empty") {
    Queue<int> q(3);
    CHECK(q.maxsize() == std::optional<std::size_t>(3));
    CHECK(q.empty());
    CHECK_FALSE(q.full());
    CHECK(q.qsize() == 0);
    q.put(1);
    q.put_nowait(2);
    q.put(3, false);
    CHECK(q.qsize() == 3);
    CHECK(q.full());
    CHECK_FALSE(q.empty());
    CHECK_THROWS_AS(q.put_nowait(4), Full);
    CHECK_THROWS_AS(q.put(4, false), Full);
    CHECK_THROWS_AS(q.put(4, true, 0s), Full);  // zero timeout: do not block
    CHECK_THROWS_AS(q.put(4, 0ms), Full);
    CHECK(q.qsize() == 3);
    CHECK(q.peek() == 1);
    CHECK(q.peek_nowait() == 1);
    CHECK(q.peek(false) == 1);
    CHECK(q.get() == 1);
    CHECK(q.get_nowait() == 2);
    CHECK(q.get(false) == 3);
    CHECK(q.empty());
    CHECK_THROWS_AS(q.get_nowait(), Empty);
    CHECK_THROWS_AS(q.get(false), Empty);
    CHECK_THROWS_AS(q.get(true, 0s), Empty);
    CHECK_THROWS_AS(q.get(0ms), Empty);
    CHECK_THROWS_AS(q.peek_nowait(), Empty);
    CHECK_THROWS_AS(q.peek(true, 0s), Empty);
    // The exceptions are std::runtime_errors with a message.
    try {
        q.get_nowait();
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("empty") != std::string::npos);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "Queue bounds: unbounded by default, maxsize 0 rejected") {
    Queue<int> q;
    CHECK_FALSE(q.maxsize().has_value());
    for (int i = 0; i < 100000; ++i) q.put_nowait(i);
    CHECK_FALSE(q.full());
    CHECK(q.qsize() == 100000);
    for (int i = 0; i < 100000; ++i) REQUIRE(q.get_nowait() == i);
    Queue<int> q2(std::nullopt);
    CHECK_FALSE(q2.maxsize().has_value());
    CHECK_THROWS_AS(Queue<int>(0), std::invalid_argument);
    CHECK_THROWS_AS(LifoQueue<int>(0), std::invalid_argument);
    CHECK_THROWS_AS(PriorityQueue<int>(0), std::invalid_argument);
    Queue<int> one(1);
    one.put(7);
    CHECK(one.full());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "the ring buffer keeps FIFO order across wrap-around and growth") {
    Queue<std::string> q;
    std::uint64_t next_in = 0, next_out = 0;
    std::mt19937 rng(7);
    for (int round = 0; round < 2000; ++round) {
        int puts = int(rng() % 40), gets = int(rng() % 40);
        for (int i = 0; i < puts; ++i) q.put(std::to_string(next_in++));
        for (int i = 0; i < gets && !q.empty(); ++i) REQUIRE(q.get() == std::to_string(next_out++));
    }
    CHECK(q.qsize() == next_in - next_out);
    q.shutdown(true);  // destroys what is left
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "timeout arguments: negative rejected, zero never yields") {
    Queue<int> q(1);
    CHECK_THROWS_AS(q.get(-1ms), std::invalid_argument);
    bool ran = false;
    auto g = cogent::spawn([&] { ran = true; });
    CHECK_THROWS_AS(q.get(true, 0s), Empty);
    q.put(1);
    CHECK_THROWS_AS(q.put(2, 0s), Full);
    CHECK_FALSE(ran);  // none of these yielded to the hub
    g.join();
    CHECK(ran);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "put and get schedule no hub callback when nobody waits") {
    Queue<int> q(2);
    q.put(1);
    q.put(2);
    CHECK(callbacks() == 0);
    CHECK(q.get() == 1);
    CHECK(q.get() == 2);
    CHECK(callbacks() == 0);
}

// ---------------------------------------------------------------------------------------------
// Queue: blocking

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get blocks until a put; waking never switches") {
    Queue<int> q;
    int got = 0;
    auto g = cogent::spawn([&] { got = q.get(); });
    settle();
    CHECK(got == 0);
    q.put(42);
    CHECK(got == 0);          // put() only scheduled the wake-up
    CHECK(callbacks() == 1);  // one hub callback
    cogent::sleep(0);
    CHECK(got == 42);
    CHECK(q.empty());
    g.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "put blocks while full until a get makes room") {
    Queue<int> q(1);
    q.put(1);
    bool stored = false;
    auto g = cogent::spawn([&] {
        q.put(2);
        stored = true;
    });
    settle();
    CHECK_FALSE(stored);
    CHECK(q.get() == 1);
    CHECK_FALSE(stored);  // woken later, by the hub
    settle();
    CHECK(stored);
    CHECK(q.get() == 2);
    g.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "get and put with a timeout throw Empty and Full in time") {
    Queue<int> q(1);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(q.get(30ms), Empty);
    double ms = ms_since(t0);
    CHECK(ms >= 29.0);
    CHECK(ms < 500.0);
    q.put(1);
    t0 = Clock::now();
    CHECK_THROWS_AS(q.put(2, true, 30ms), Full);
    ms = ms_since(t0);
    CHECK(ms >= 29.0);
    CHECK(ms < 500.0);
    CHECK(q.qsize() == 1);
    t0 = Clock::now();
    CHECK(q.peek(false, 1s) == 1);  // block=false ignores the timeout
    CHECK_THROWS_AS(q.put(2, false, 1s), Full);
    CHECK(ms_since(t0) < 100.0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a timed get succeeds when an item arrives in time") {
    Queue<int> q;
    auto p = cogent::spawn([&] {
        cogent::sleep(10ms);
        q.put(5);
    });
    CHECK(q.get(2s) == 5);
    p.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "peek waits without taking; peekers and getters are woken together") {
    Queue<int> q;
    int peeked = 0, got = 0;
    auto a = cogent::spawn([&] { peeked = q.peek(); });
    auto b = cogent::spawn([&] { got = q.get(); });
    settle();
    q.put(9);
    settle();
    CHECK(peeked == 9);
    CHECK(got == 9);
    CHECK(q.empty());
    a.join();
    b.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "waiting on the hub is refused, non-blocking calls work there") {
    Queue<int> q(1);
    bool refused = false, ok = false;
    cogent::get_hub().run_callback([&] {
        try {
            q.get();
        } catch (const cogent::BlockingSwitchOutError&) {
            refused = true;
        }
        q.put_nowait(3);
        ok = q.get_nowait() == 3;
    });
    settle();
    CHECK(refused);
    CHECK(ok);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a queue waited on in one thread is refused to another") {
    Queue<int> q;
    Channel<int> ch;
    CHECK_THROWS_AS(q.get(1ms), Empty);  // a wait binds the queue to this thread
    CHECK_THROWS_AS(ch.get(1ms), Empty);
    int refused = 0;
    std::thread t([&] {
        auto refuse = [&](auto&& fn) {
            try {
                fn();
            } catch (const cogent::GreenletError&) {
                ++refused;
            }
        };
        refuse([&] { q.put_nowait(1); });
        refuse([&] { q.get_nowait(); });
        refuse([&] { q.shutdown(); });
        refuse([&] { ch.put_nowait(1); });
        refuse([&] { ch.get_nowait(); });
    });
    t.join();
    CHECK(refused == 5);
    CHECK(q.empty());
    CHECK_FALSE(q.is_shutdown());
}

// ---------------------------------------------------------------------------------------------
// Queue: kill and timeout while waiting; nothing lost

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill while blocked in get or put") {
    Queue<int> q(1);
    auto getter = cogent::spawn([&] { return q.get(); });
    settle();
    getter.kill();
    CHECK(getter.dead());
    CHECK(getter.killed());
    q.put(1);  // nobody waits any more: no callback
    CHECK(callbacks() == 0);
    auto putter = cogent::spawn([&] { q.put(2); });
    settle();
    putter.kill();
    CHECK(putter.dead());
    CHECK(q.qsize() == 1);
    CHECK(q.get() == 1);
    CHECK(q.empty());  // the killed putter stored nothing
    CHECK(q.unfinished_tasks() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a getter killed after the put that woke it loses nothing") {
    Queue<int> q;
    std::vector<int> got;
    auto g1 = cogent::spawn([&] { got.push_back(q.get() * 10 + 1); });
    auto g2 = cogent::spawn([&] { got.push_back(q.get() * 10 + 2); });
    settle();
    SUBCASE("kill, then put: the item goes to the next getter") {
        g1.kill(cogent::GreenletExit(), false);  // queued before the put's wake-up
        q.put(7);
        settle();
        CHECK(g1.killed());
        REQUIRE(got.size() == 1);
        CHECK(got[0] == 72);
        CHECK(q.empty());
        g2.join();
    }
    SUBCASE("put, then kill: the first getter runs first and keeps its item") {
        q.put(7);
        g1.kill(cogent::GreenletExit(), false);
        settle();
        REQUIRE(got.size() == 1);
        CHECK(got[0] == 71);
        CHECK(q.empty());
        g2.kill();
    }
    SUBCASE("timeout: a getter that timed out leaves the item for the next one") {
        g1.kill();
        g2.kill();
        got.clear();
        auto t = cogent::spawn([&] {
            try {
                q.get(5ms);
            } catch (const Empty&) {
                got.push_back(-1);
            }
        });
        auto late = cogent::spawn([&] { got.push_back(q.get()); });
        cogent::sleep(30ms);
        q.put(8);
        settle();
        CHECK(got == std::vector<int>{-1, 8});
        t.join();
        late.join();
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a Timeout scope interrupts get and the item stays queued") {
    Queue<int> q;
    auto g = cogent::spawn([&] {
        Timeout t(5ms);
        try {
            q.get();
        } catch (const Timeout& e) {
            return e == t ? 1 : 2;
        }
        return 0;
    });
    CHECK(g.get() == 1);
    q.put(1);
    CHECK(callbacks() == 0);  // the waiter unlinked itself
    CHECK(q.get_nowait() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a putter killed after the get that woke it takes no space") {
    Queue<int> q(1);
    q.put(0);
    std::vector<int> stored;
    auto p1 = cogent::spawn([&] {
        q.put(1);
        stored.push_back(1);
    });
    auto p2 = cogent::spawn([&] {
        q.put(2);
        stored.push_back(2);
    });
    settle();
    p1.kill(cogent::GreenletExit(), false);
    CHECK(q.get() == 0);  // room for one: the wake-up goes past the killed p1 to p2
    settle();
    CHECK(p1.killed());
    CHECK(stored == std::vector<int>{2});
    CHECK(q.qsize() == 1);
    CHECK(q.get() == 2);
    CHECK(q.empty());
    p2.join();
}

// ---------------------------------------------------------------------------------------------
// Queue: FIFO service

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "getters are served in the order they started waiting") {
    Queue<int> q;
    std::vector<std::pair<int, int>> got;  // (getter, item)
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 5; ++i)
        gs.push_back(cogent::spawn([&, i] { got.push_back({i, q.get()}); }));
    settle();
    for (int i = 0; i < 5; ++i) q.put(100 + i);
    // A newcomer that blocks queues behind them, although items are queued right now.
    gs.push_back(cogent::spawn([&] { got.push_back({5, q.get()}); }));
    settle();
    REQUIRE(got.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(got[i] == std::make_pair(i, 100 + i));
    q.put(105);
    settle();
    REQUIRE(got.size() == 6);
    CHECK(got[5] == std::make_pair(5, 105));
    cogent::joinall(gs);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a getter that comes back for more queues behind the others") {
    Queue<int> q;
    std::vector<std::pair<int, int>> got;
    auto worker = [&](int id) {
        for (int k = 0; k < 3; ++k) got.push_back({id, q.get()});
    };
    auto a = cogent::spawn(worker, 0);
    auto b = cogent::spawn(worker, 1);
    settle();
    for (int i = 0; i < 6; ++i) q.put(i);
    settle(10);
    REQUIRE(got.size() == 6);
    for (int i = 0; i < 6; ++i) CHECK(got[i] == std::make_pair(i % 2, i));  // round robin
    a.join();
    b.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "putters are served in the order they started waiting") {
    Queue<int> q(1);
    q.put(-1);
    std::vector<Greenlet<void>> ps;
    for (int i = 0; i < 5; ++i) ps.push_back(cogent::spawn([&q, i] { q.put(i); }));
    settle();
    std::vector<int> out;
    for (int i = 0; i < 6; ++i) out.push_back(q.get());  // each get wakes the next putter
    CHECK(out == std::vector<int>{-1, 0, 1, 2, 3, 4});
    cogent::joinall(ps);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a non-blocking call takes what is there, even ahead of waiters") {
    Queue<int> q;
    int got = 0;
    auto g = cogent::spawn([&] { got = q.get(); });
    settle();
    q.put(1);
    CHECK(q.get_nowait() == 1);  // the waiter had not run yet
    settle();
    CHECK(got == 0);  // still waiting, nothing lost: it was simply not woken
    q.put(2);
    settle();
    CHECK(got == 2);
    g.join();
}

// ---------------------------------------------------------------------------------------------
// Queue: task_done / join (JoinableQueue)

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "task_done and join") {
    cogent::JoinableQueue<int> q;
    CHECK(q.join());  // nothing unfinished: at once
    CHECK(q.join(0s));
    CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    q.put(1);
    q.put(2);
    CHECK(q.unfinished_tasks() == 2);
    CHECK_FALSE(q.join(10ms));
    CHECK_FALSE(q.join(0s));
    std::vector<int> done;
    auto worker = cogent::spawn([&] {
        for (int i = 0; i < 2; ++i) {
            int v = q.get();
            cogent::sleep(1ms);
            done.push_back(v);
            q.task_done();
        }
    });
    bool joined = false;
    auto joiner = cogent::spawn([&] { joined = q.join(); });
    CHECK(q.join(5s));
    CHECK(done == std::vector<int>{1, 2});
    CHECK(q.unfinished_tasks() == 0);
    settle();
    CHECK(joined);
    CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    worker.join();
    joiner.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill while blocked in join") {
    Queue<int> q;
    q.put(1);
    auto j = cogent::spawn([&] { return q.join(); });
    settle();
    j.kill();
    CHECK(j.killed());
    q.get();
    q.task_done();
    CHECK(callbacks() == 0);
}

// ---------------------------------------------------------------------------------------------
// Queue: shutdown and iteration

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "shutdown: puts refused, gets drain then throw, waiters woken") {
    Queue<int> q(2);
    std::vector<std::string> log;
    auto getter_until_shutdown = [&](std::string name) {
        try {
            for (;;) log.push_back(name + std::to_string(q.get()));
        } catch (const ShutDown&) {
            log.push_back(name + "!");
        }
    };
    SUBCASE("blocked getters wake with ShutDown") {
        auto a = cogent::spawn(getter_until_shutdown, "a");
        auto b = cogent::spawn(getter_until_shutdown, "b");
        settle();
        CHECK_FALSE(q.is_shutdown());
        q.shutdown();
        CHECK(q.is_shutdown());
        settle();
        CHECK(log == std::vector<std::string>{"a!", "b!"});
        CHECK_THROWS_AS(q.put(1), ShutDown);
        CHECK_THROWS_AS(q.put_nowait(1), ShutDown);
        CHECK_THROWS_AS(q.get(), ShutDown);
        CHECK_THROWS_AS(q.get_nowait(), ShutDown);
        CHECK_THROWS_AS(q.peek(), ShutDown);
        cogent::joinall(std::vector<AnyGreenlet>{a, b});
    }
    SUBCASE("blocked putters wake with ShutDown; queued items drain") {
        q.put(1);
        q.put(2);
        int refused = 0;
        auto p = cogent::spawn([&] {
            try {
                q.put(3);
            } catch (const ShutDown&) {
                ++refused;
            }
        });
        settle();
        q.shutdown();
        settle();
        CHECK(refused == 1);
        CHECK(q.qsize() == 2);
        CHECK(q.peek() == 1);
        CHECK(q.get() == 1);
        CHECK(q.get_nowait() == 2);
        CHECK_THROWS_AS(q.get(), ShutDown);
        CHECK_THROWS_AS(q.get(false), ShutDown);
        q.task_done();
        q.task_done();
        CHECK(q.join(0s));
        p.join();
    }
    SUBCASE("immediate: queued items are discarded and count as done") {
        q.put(1);
        q.put(2);
        CHECK(q.get() == 1);  // taken, not yet done
        auto a = cogent::spawn([&] { return q.join(); });
        settle();
        q.shutdown(true);
        CHECK(q.empty());
        CHECK(q.unfinished_tasks() == 1);  // the item taken before the shutdown
        CHECK_THROWS_AS(q.get(), ShutDown);
        settle();
        CHECK_FALSE(a.dead());
        q.task_done();
        CHECK(a.get(1s));
    }
    SUBCASE("shutdown twice is harmless; a later immediate one still discards") {
        q.put(1);
        q.shutdown();
        q.shutdown();
        CHECK(q.qsize() == 1);
        q.shutdown(true);
        CHECK(q.empty());
        CHECK(q.unfinished_tasks() == 0);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "range-for iterates until shutdown, draining first") {
    Queue<int> q(2);
    std::vector<int> seen;
    auto consumer = cogent::spawn([&] {
        for (auto item : q) seen.push_back(item);
        return seen.size();
    });
    for (int i = 0; i < 10; ++i) q.put(i);  // blocks while full: the consumer runs meanwhile
    q.shutdown();
    CHECK(consumer.get(1s) == 10);
    std::vector<int> want(10);
    for (int i = 0; i < 10; ++i) want[i] = i;
    CHECK(seen == want);
    // Over an already shut down, non-empty queue: drains and stops without blocking.
    Queue<int> r;
    r.put(1);
    r.put(2);
    r.shutdown();
    int n = 0;
    for (int v : r) n += v;
    CHECK(n == 3);
    static_assert(std::input_iterator<Queue<int>::iterator>);
}

// ---------------------------------------------------------------------------------------------
// Move-only items, LIFO and priority order

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "move-only items") {
    Queue<std::unique_ptr<int>> q(1);
    q.put(std::make_unique<int>(1));
    auto p = cogent::spawn([&] {
        q.put(std::make_unique<int>(2));  // waits for room
        q.put(std::make_unique<int>(3));
    });
    settle();
    CHECK(*q.peek() == 1);
    CHECK(*q.get() == 1);
    settle();
    CHECK(*q.get() == 2);
    settle();
    CHECK(*q.get() == 3);
    p.join();
    q.put(std::make_unique<int>(4));
    q.shutdown();
    int sum = 0;
    for (auto item : q) sum += *item;  // moved out by the iterator
    CHECK(sum == 4);

    LifoQueue<std::unique_ptr<int>> l;
    l.put(std::make_unique<int>(1));
    l.put(std::make_unique<int>(2));
    CHECK(*l.get() == 2);

    auto by_value = [](const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) {
        return *a < *b;
    };
    PriorityQueue<std::unique_ptr<int>, decltype(by_value)> pq(std::nullopt, by_value);
    for (int v : {5, 1, 3}) pq.put(std::make_unique<int>(v));
    CHECK(*pq.peek() == 1);
    CHECK(*pq.get() == 1);
    CHECK(*pq.get() == 3);
    CHECK(*pq.get() == 5);

    Channel<std::unique_ptr<int>> ch;
    auto g = cogent::spawn([&] { return *ch.get(); });
    ch.put(std::make_unique<int>(11));
    CHECK(g.get() == 11);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "LifoQueue: last in, first out, with the Queue API") {
    LifoQueue<int> q(3);
    q.put(1);
    q.put(2);
    q.put(3);
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(4), Full);
    CHECK(q.peek() == 3);
    CHECK(q.get() == 3);
    q.put(4);
    CHECK(q.get() == 4);
    CHECK(q.get() == 2);
    CHECK(q.get() == 1);
    CHECK_THROWS_AS(q.get_nowait(), Empty);
    // Blocking works the same way.
    int got = 0;
    auto g = cogent::spawn([&] { got = q.get(); });
    settle();
    q.put(8);
    settle();
    CHECK(got == 8);
    g.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "PriorityQueue: smallest first; the comparator decides") {
    PriorityQueue<int> q;
    for (int v : {5, 1, 4, 1, 3, 9, 2, 6}) q.put(v);
    std::vector<int> out;
    while (!q.empty()) out.push_back(q.get());
    CHECK(out == std::vector<int>{1, 1, 2, 3, 4, 5, 6, 9});

    PriorityQueue<int, std::greater<int>> big;
    for (int v : {5, 1, 4}) big.put(v);
    CHECK(big.get() == 5);
    CHECK(big.get() == 4);
    CHECK(big.get() == 1);

    // (priority, payload) pairs, as in gevent.
    PriorityQueue<std::pair<int, std::string>> jobs(2);
    jobs.put({2, "write"});
    jobs.put({1, "read"});
    CHECK(jobs.full());
    CHECK_THROWS_AS(jobs.put({0, "x"}, 0s), Full);
    CHECK(jobs.get().second == "read");
    CHECK(jobs.get().second == "write");

    // A random sequence comes out sorted.
    PriorityQueue<int> r;
    std::mt19937 rng(3);
    std::vector<int> in;
    for (int i = 0; i < 1000; ++i) {
        in.push_back(int(rng() % 100));
        r.put(in.back());
    }
    std::sort(in.begin(), in.end());
    std::vector<int> sorted;
    for (int i = 0; i < 1000; ++i) sorted.push_back(r.get());
    CHECK(sorted == in);
}

// ---------------------------------------------------------------------------------------------
// Channel

// gevent's Channel: empty() and full() are always true, whoever waits (test__queue's
// test_get_nowait_unlock_channel; TestPutInterruptChannel's `while not full(): put()` relies on
// it); balance() tells who waits.
TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: empty() and full() are always true") {
    Channel<int> ch;
    CHECK(ch.empty());
    CHECK(ch.full());
    CHECK(ch.balance() == 0);
    auto putter = cogent::spawn([&] { ch.put(1); });
    settle();
    CHECK(ch.empty());  // gevent: true even with a putter offering an item
    CHECK(ch.full());
    CHECK(ch.balance() == 1);
    CHECK(ch.get() == 1);
    putter.join();
    auto getters = std::vector<AnyGreenlet>{cogent::spawn([&] { ch.get(); }),
                                            cogent::spawn([&] { ch.get(); })};
    settle();
    CHECK(ch.full());  // gevent: true even with getters waiting
    CHECK(ch.empty());
    CHECK(ch.balance() == -2);
    ch.put_nowait(2);  // one getter is promised the item; it still waits until it runs
    CHECK(ch.full());
    CHECK(ch.empty());
    ch.put(3);
    cogent::joinall(getters);
    CHECK(ch.balance() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: put waits for a getter to take the item") {
    Channel<int> ch;
    CHECK(ch.maxsize() == std::optional<std::size_t>(0));
    CHECK(ch.qsize() == 0);
    CHECK(ch.empty());
    CHECK(ch.full());
    std::vector<std::string> log;
    auto putter = cogent::spawn([&] {
        log.push_back("put");
        ch.put(1);
        log.push_back("delivered");
    });
    settle();
    CHECK(log == std::vector<std::string>{"put"});
    CHECK(ch.balance() == 1);  // a putter waits: get_nowait would succeed
    CHECK(ch.qsize() == 0);
    CHECK(ch.get() == 1);
    log.push_back("got");
    settle();
    CHECK(log == std::vector<std::string>{"put", "got", "delivered"});
    putter.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: get waits for a putter") {
    Channel<int> ch;
    int got = 0;
    auto getter = cogent::spawn([&] { got = ch.get(); });
    settle();
    CHECK(ch.balance() == -1);  // a getter waits: put_nowait would succeed
    ch.put(5);                  // returns once the getter has it in hand
    CHECK(got == 5);
    getter.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: non-blocking calls and timeouts") {
    Channel<int> ch;
    CHECK_THROWS_AS(ch.put_nowait(1), Full);
    CHECK_THROWS_AS(ch.put(1, false), Full);
    CHECK_THROWS_AS(ch.put(1, 0s), Full);
    CHECK_THROWS_AS(ch.get_nowait(), Empty);
    CHECK_THROWS_AS(ch.get(0s), Empty);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(ch.get(20ms), Empty);
    CHECK(ms_since(t0) >= 19.0);
    t0 = Clock::now();
    CHECK_THROWS_AS(ch.put(1, true, 20ms), Full);  // nobody took it: not delivered
    CHECK(ms_since(t0) >= 19.0);
    CHECK(ch.empty());

    // put_nowait hands the item to a waiting getter.
    int got = 0;
    auto g = cogent::spawn([&] { got = ch.get(); });
    settle();
    ch.put_nowait(7);
    CHECK_THROWS_AS(ch.put_nowait(8), Full);  // the one getter is already promised an item
    CHECK(ch.qsize() == 1);
    settle();
    CHECK(got == 7);
    CHECK(ch.qsize() == 0);
    g.join();

    // get_nowait takes the item of a waiting putter; the putter then returns normally.
    bool delivered = false;
    auto p = cogent::spawn([&] {
        ch.put(9);
        delivered = true;
    });
    settle();
    CHECK(ch.get_nowait() == 9);
    CHECK_FALSE(delivered);
    settle();
    CHECK(delivered);
    p.join();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: getters and putters are paired FIFO") {
    Channel<int> ch;
    std::vector<std::pair<int, int>> got;
    std::vector<AnyGreenlet> gs;
    for (int i = 0; i < 4; ++i)
        gs.push_back(cogent::spawn([&, i] { got.push_back({i, ch.get()}); }));
    settle();
    std::vector<int> delivered;
    for (int i = 0; i < 4; ++i)
        gs.push_back(cogent::spawn([&, i] {
            ch.put(100 + i);
            delivered.push_back(i);
        }));
    settle(6);
    REQUIRE(got.size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(got[i] == std::make_pair(i, 100 + i));
    CHECK(delivered == std::vector<int>{0, 1, 2, 3});
    // And the other way round: putters waiting first.
    got.clear();
    for (int i = 0; i < 3; ++i) gs.push_back(cogent::spawn([&, i] { ch.put(200 + i); }));
    settle();
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&, i] { got.push_back({i, ch.get()}); }));
    settle(6);
    REQUIRE(got.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(got[i] == std::make_pair(i, 200 + i));
    cogent::joinall(gs);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: kill and timeout while waiting lose nothing") {
    Channel<int> ch;
    SUBCASE("a killed putter's item is not delivered") {
        auto p1 = cogent::spawn([&] { ch.put(1); });
        auto p2 = cogent::spawn([&] { ch.put(2); });
        settle();
        p1.kill();
        CHECK(ch.get() == 2);
        p2.join();
        CHECK(ch.empty());
    }
    SUBCASE("a getter killed before the pairing: the putter's item goes to the next getter") {
        std::vector<int> got;
        auto g1 = cogent::spawn([&] { got.push_back(ch.get()); });
        auto g2 = cogent::spawn([&] { got.push_back(ch.get() + 100); });
        settle();
        g1.kill(cogent::GreenletExit(), false);
        ch.put(3);
        CHECK(got == std::vector<int>{103});
        g2.join();
    }
    SUBCASE("put_nowait, then kill: the getter runs first and keeps its item") {
        auto g1 = cogent::spawn([&] { return ch.get(); });
        settle();
        ch.put_nowait(4);
        g1.kill(cogent::GreenletExit(), false);  // queued after the pairing callback
        settle();
        CHECK(g1.get() == 4);
        CHECK(ch.qsize() == 0);
    }
    SUBCASE("a getter that left before put_nowait's item reached it leaves it held") {
        auto g1 = cogent::spawn([&] { return ch.get(); });
        settle();
        g1.kill(cogent::GreenletExit(),
                false);  // queued first: g1 is gone when the item is matched
        ch.put_nowait(5);
        settle();
        CHECK(g1.killed());
        CHECK(ch.qsize() == 1);
        CHECK_THROWS_AS(ch.put_nowait(6), Full);
        CHECK(ch.get() == 5);  // held items come first, without waiting
        CHECK(ch.qsize() == 0);
    }
    SUBCASE("a putter that timed out did not deliver; one that returned did") {
        std::vector<int> got;
        auto p = cogent::spawn([&] {
            try {
                ch.put(6, 5ms);
                return true;
            } catch (const Full&) {
                return false;
            }
        });
        CHECK_FALSE(p.get(1s));
        auto g = cogent::spawn([&] { got.push_back(ch.get()); });
        settle();
        CHECK(got.empty());
        auto p2 = cogent::spawn([&] {
            ch.put(7, 1s);
            return true;
        });
        CHECK(p2.get(1s));
        CHECK(got == std::vector<int>{7});
        g.join();
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: shutdown and iteration") {
    Channel<int> ch;
    std::vector<int> seen;
    auto consumer = cogent::spawn([&] {
        for (int v : ch) seen.push_back(v);
    });
    for (int i = 0; i < 5; ++i) ch.put(i);
    int refused = 0;
    auto late_putter = cogent::spawn([&] {
        try {
            ch.put(99);
        } catch (const ShutDown&) {
            ++refused;
        }
    });
    ch.shutdown();  // before the late putter runs
    CHECK(ch.is_shutdown());
    consumer.join();
    late_putter.join();
    CHECK(refused == 1);
    CHECK(seen == std::vector<int>{0, 1, 2, 3, 4});
    CHECK_THROWS_AS(ch.put(1), ShutDown);
    CHECK_THROWS_AS(ch.get(), ShutDown);
    CHECK_THROWS_AS(ch.get_nowait(), ShutDown);

    Channel<int> c2;
    auto waiting_putter = cogent::spawn([&] {
        try {
            c2.put(1);
            return 0;
        } catch (const ShutDown&) {
            return 1;
        }
    });
    auto waiting_getter = cogent::spawn([&] {
        cogent::sleep(5ms);  // arrives after the shutdown
        try {
            c2.get();
            return 0;
        } catch (const ShutDown&) {
            return 1;
        }
    });
    settle();
    c2.shutdown();
    CHECK(waiting_putter.get(1s) == 1);
    CHECK(waiting_getter.get(1s) == 1);

    // Held items drain after a shutdown; an immediate one discards them.
    Channel<int> c3;
    auto g = cogent::spawn([&] { return c3.get(); });
    settle();
    g.kill(cogent::GreenletExit(), false);
    c3.put_nowait(1);
    settle();
    CHECK(c3.qsize() == 1);
    c3.shutdown();
    CHECK(c3.get() == 1);
    CHECK_THROWS_AS(c3.get(), ShutDown);
    Channel<int> c4;
    auto g4 = cogent::spawn([&] { return c4.get(); });
    settle();
    g4.kill(cogent::GreenletExit(), false);
    c4.put_nowait(1);
    settle();
    c4.shutdown(true);
    CHECK(c4.qsize() == 0);
    CHECK_THROWS_AS(c4.get(), ShutDown);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "Channel: waiting on the hub is refused") {
    Channel<int> ch;
    bool refused_put = false, refused_get = false;
    cogent::get_hub().run_callback([&] {
        try {
            ch.put(1);
        } catch (const cogent::BlockingSwitchOutError&) {
            refused_put = true;
        }
        try {
            ch.get();
        } catch (const cogent::BlockingSwitchOutError&) {
            refused_get = true;
        }
    });
    settle();
    CHECK(refused_put);
    CHECK(refused_get);
    CHECK(callbacks() == 0);
}

// ---------------------------------------------------------------------------------------------
// Randomized stress: many producers and consumers with random timeouts and kills.
// Every item is unique. At the end: every item whose put() returned was received exactly once
// or is still queued, no item was received twice, and (for Queue) no item whose put() threw
// was ever received, and the items came out in the order their put()s returned.

namespace {

struct StressResult {
    std::vector<int> put_ok;        // items whose put() returned, in that order
    std::set<int> put_failed;       // items whose put() threw Full or ShutDown
    std::set<int> put_interrupted;  // items whose put() was interrupted (kill, Timeout scope)
    std::vector<int> received;      // in the order get() returned them
    std::vector<int> remaining;     // drained at the end
    int kills = 0;
};

// Timeout scopes only wrap waits without a timeout of their own: when a scope's timer and the
// wait's timer expire in the same loop iteration, the core (as of this writing) lets libev call
// the wait's already-destroyed timer (see the queue report: pending timers are not cleared).
template <class Q>
StressResult stress(Q& q, unsigned seed, int producers, int consumers, int per_producer,
                    bool leave_items) {
    StressResult r;
    std::mt19937 rng(seed);
    auto pick_timeout = [&rng]() -> cogent::TimeoutArg {
        switch (rng() % 5) {
            case 0:
                return {};
            case 1:
                return 0s;
            case 2:
                return std::chrono::microseconds(50 + rng() % 200);
            case 3:
                return std::chrono::microseconds(500 + rng() % 1500);
            default:
                return std::chrono::milliseconds(5);
        }
    };
    std::vector<AnyGreenlet> prods, conss;
    const int total = producers * per_producer;
    int next_item = 0;
    auto producer = [&] {
        while (next_item < total) {
            const int item = next_item++;
            const bool block = rng() % 4 != 0;
            const auto timeout = pick_timeout();
            try {
                if (rng() % 8 == 0) {
                    // (A Timeout scope around a wait that has no timeout of its own: see below.)
                    Timeout t(std::chrono::microseconds(100 + rng() % 500));
                    q.put(item, block);
                } else {
                    q.put(item, block, timeout);
                }
                r.put_ok.push_back(item);
            } catch (const Full&) {
                r.put_failed.insert(item);
            } catch (const ShutDown&) {
                r.put_failed.insert(item);
                return;
            } catch (const Timeout&) {
                r.put_interrupted.insert(item);
            } catch (...) {
                r.put_interrupted.insert(item);
                throw;
            }
            if (rng() % 2 == 0) cogent::sleep(std::chrono::microseconds(rng() % 400));
        }
    };
    auto consumer = [&] {
        for (;;) {
            const bool block = rng() % 4 != 0;
            const auto timeout = pick_timeout();
            try {
                if (rng() % 8 == 0) {
                    Timeout t(std::chrono::microseconds(100 + rng() % 500));
                    r.received.push_back(q.get(block));
                } else {
                    r.received.push_back(q.get(block, timeout));
                }
            } catch (const Empty&) {
                if (!block || rng() % 2) cogent::sleep(std::chrono::microseconds(rng() % 300));
            } catch (const Timeout&) {
            } catch (const ShutDown&) {
                return;
            }
            if (rng() % 4 == 0) cogent::sleep(0);
        }
    };
    for (int p = 0; p < producers; ++p) prods.push_back(cogent::spawn(producer));
    for (int c = 0; c < consumers; ++c) conss.push_back(cogent::spawn(consumer));
    // The killer: kills random producers and consumers every so often, with or without waiting
    // for them to die, and replaces them, until every item was tried.
    auto killer = cogent::spawn([&] {
        while (next_item < total) {
            cogent::sleep(std::chrono::microseconds(50 + rng() % 300));
            const bool kill_consumer = rng() % 2 == 0;
            auto& pool = kill_consumer ? conss : prods;
            AnyGreenlet victim = pool[rng() % pool.size()];
            if (victim.dead()) continue;
            victim.kill(cogent::GreenletExit(), rng() % 2 == 0);
            ++r.kills;
            if (kill_consumer)
                conss.push_back(cogent::spawn(consumer));
            else
                prods.push_back(cogent::spawn(producer));
        }
    });
    killer.join();
    cogent::joinall(std::vector<AnyGreenlet>(prods));
    // Consumers still alive drain what they can; shutdown ends them; the rest stays queued.
    cogent::sleep(2ms);
    if (leave_items) {
        // Kill the consumers and leave a few items behind, to be found at the end.
        cogent::killall(std::vector<AnyGreenlet>(conss));
        for (int i = 0; i < 3 && !q.full(); ++i) {
            q.put(total + i, false);
            r.put_ok.push_back(total + i);
        }
    }
    q.shutdown();
    cogent::joinall(conss);
    for (;;) {
        try {
            r.remaining.push_back(q.get_nowait());
        } catch (const ShutDown&) {
            break;
        }
    }
    return r;
}

void check_no_loss(const StressResult& r, bool exact) {
    INFO("put_ok=" << r.put_ok.size() << " failed=" << r.put_failed.size() << " interrupted="
                   << r.put_interrupted.size() << " received=" << r.received.size()
                   << " remaining=" << r.remaining.size() << " kills=" << r.kills);
    std::multiset<int> out(r.received.begin(), r.received.end());
    out.insert(r.remaining.begin(), r.remaining.end());
    std::set<int> unique_out(out.begin(), out.end());
    CHECK(unique_out.size() == out.size());  // nothing twice
    for (int item : r.put_ok) CHECK_MESSAGE(unique_out.count(item) == 1, "lost item " << item);
    for (int item : r.put_failed)
        CHECK_MESSAGE(unique_out.count(item) == 0, "a put that threw delivered " << item);
    if (exact) {
        // A Queue stores an item exactly when put() returns: the counts add up, in order.
        CHECK(out.size() == r.put_ok.size());
        for (int item : r.put_interrupted) CHECK(unique_out.count(item) == 0);
        std::vector<int> seq = r.received;
        seq.insert(seq.end(), r.remaining.begin(), r.remaining.end());
        CHECK(seq == r.put_ok);
    } else {
        // A Channel putter interrupted after a get_nowait() took its item did deliver it.
        std::set<int> ok(r.put_ok.begin(), r.put_ok.end());
        for (int item : unique_out)
            CHECK((ok.count(item) == 1 || r.put_interrupted.count(item) == 1));
    }
    CHECK(r.put_ok.size() > 100);  // the test did exercise the queue
    CHECK(r.received.size() > 100);
    CHECK(r.kills > 5);
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "stress: bounded Queue, random timeouts and kills") {
    Queue<int> q(4);
    auto r = stress(q, 12345, 8, 6, 300, true);
    CHECK(r.remaining.size() >= 3);
    check_no_loss(r, true);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "stress: unbounded Queue, random timeouts and kills") {
    Queue<int> q;
    auto r = stress(q, 777, 6, 8, 300, false);
    check_no_loss(r, true);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "stress: Channel, random timeouts and kills") {
    Channel<int> ch;
    auto r = stress(ch, 4242, 8, 8, 200, false);
    check_no_loss(r, false);
}

TEST_SUITE_END();
