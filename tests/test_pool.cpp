// Group, Pool (membership, join, kill, map/imap/apply/apply_async, capacity) and Timer.
#include <algorithm>
#include <chrono>
#include <cogent/pool.hpp>
#include <cogent/timer.hpp>
#include <memory>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent_test::LeakCheck;

namespace {

struct Boom : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Counts scope exits: proves a greenlet's stack was unwound.
struct Guard {
    int& n;
    ~Guard() { ++n; }
};

// How many tasks run at once, and the most seen.
struct Concurrency {
    int now = 0;
    int max = 0;
    void enter() { max = std::max(max, ++now); }
    void leave() { --now; }
};

// A range of 0..4 whose iterator throws Boom("half") when stepping onto 2.
using Half = cogent_test::HalfRange<Boom>;

using Clock = std::chrono::steady_clock;
}  // namespace

// ---------------------------------------------------------------------------------------------
// Group: membership

TEST_CASE_FIXTURE(LeakCheck, "Group: spawn, size, contains, greenlets, join") {
    cogent::Group g;
    CHECK(g.empty());
    CHECK(g.size() == 0);
    CHECK(g.join(0s));  // empty: true at once
    std::vector<int> order;
    auto a = g.spawn([&] {
        cogent::sleep(40ms);
        order.push_back(1);
        return 1;
    });
    auto b = g.spawn(
        [&](int x) {
            cogent::sleep(10ms);
            order.push_back(x);
        },
        2);
    CHECK(g.size() == 2);
    CHECK_FALSE(g.empty());
    CHECK(g.contains(a));
    CHECK(g.contains(b));
    CHECK_FALSE(g.contains(cogent::AnyGreenlet()));
    CHECK(g.greenlets() == std::vector<cogent::AnyGreenlet>{a, b});
    CHECK_FALSE(g.join(0s));
    CHECK_FALSE(g.join(1ms));
    CHECK(g.join());
    CHECK(g.empty());
    CHECK_FALSE(g.contains(a));
    CHECK(a.dead());
    CHECK(a.get() == 1);
    CHECK(order == std::vector<int>{2, 1});
}

TEST_CASE_FIXTURE(LeakCheck, "Group: a greenlet has left by the time its joiners wake") {
    // Both joins park before their greenlet dies (b waits for an Event set only after the
    // checks), so the order does not depend on timers: two sleeps could end in one loop turn
    // on a loaded machine, and a join of an already dead greenlet returns before its links run.
    cogent::Group g;
    cogent::Event go;
    auto a = g.spawn([] { cogent::sleep(1ms); });
    auto b = g.spawn([&] { go.wait(); });
    a.join();
    CHECK_FALSE(g.contains(a));
    CHECK(g.contains(b));
    CHECK(g.size() == 1);
    go.set();
    b.join();
    CHECK(g.empty());
}

TEST_CASE_FIXTURE(LeakCheck, "Group: add, start, discard") {
    cogent::Group g;
    auto x = cogent::make_greenlet([] { cogent::sleep(5ms); });
    g.add(x);
    CHECK(g.contains(x));
    CHECK_FALSE(x.started());
    g.add(x);  // already a member: no-op
    CHECK(g.size() == 1);
    g.start(x);
    CHECK(x.started());
    g.discard(x);
    CHECK(g.empty());
    CHECK(g.join(0s));
    g.discard(x);  // non-member: no-op
    x.join();
    CHECK(g.empty());

    // A dead greenlet may be added: it leaves on the next hub turn.
    auto d = cogent::spawn([] {});
    d.join();
    g.add(d);
    CHECK(g.contains(d));
    cogent::sleep(0);
    CHECK_FALSE(g.contains(d));

    // A discarded greenlet's death no longer touches the group.
    auto y = g.spawn([] { cogent::sleep(1ms); });
    g.discard(y);
    auto z = g.spawn([] { cogent::sleep(20ms); });
    y.join();
    CHECK(g.contains(z));
    CHECK(g.size() == 1);
    g.join();

    CHECK_THROWS_AS(g.add(cogent::AnyGreenlet()), std::invalid_argument);
}

TEST_CASE_FIXTURE(LeakCheck, "Group: destroying a group forgets its members") {
    cogent::Greenlet<int> a;
    {
        cogent::Group g;
        a = g.spawn([] {
            cogent::sleep(5ms);
            return 3;
        });
    }
    CHECK(a.get() == 3);  // its death finds no group (ASan would catch a dangling link)
}

TEST_CASE_FIXTURE(LeakCheck, "Group: join(raise_error) rethrows the first failure to happen") {
    cogent::Group g;
    g.spawn([] {
        cogent::sleep(30ms);
        throw Boom("late");
    });
    g.spawn([] {
        cogent::sleep(10ms);
        throw Boom("early");
    });
    g.spawn([] { cogent::sleep(20ms); });
    CHECK_THROWS_WITH_AS(g.join({}, true), "early", Boom);
    CHECK(g.empty());

    // Without raise_error failures are not rethrown.
    g.spawn([] { throw Boom("quiet"); });
    CHECK(g.join());

    // Timeout with raise_error: false, and failures so far are still rethrown.
    g.spawn([] { throw Boom("now"); });
    auto slow = g.spawn([] { cogent::sleep(30ms); });
    CHECK_THROWS_WITH_AS(g.join(5ms, true), "now", Boom);
    CHECK(g.contains(slow));
    CHECK_FALSE(g.join(1ms, true));
    CHECK(g.join({}, true));
}

// ---------------------------------------------------------------------------------------------
// Group: kill

TEST_CASE_FIXTURE(LeakCheck, "Group: kill unwinds running members and stops unstarted ones") {
    cogent::Group g;
    int unwound = 0;
    for (int i = 0; i < 3; ++i)
        g.spawn([&] {
            Guard guard{unwound};
            cogent::sleep(10s);
        });
    cogent::sleep(0);  // the three are now suspended in sleep
    bool late_ran = false;
    auto late = g.spawn([&] { late_ran = true; });  // not started yet
    auto t0 = Clock::now();
    g.kill();
    CHECK(ms_since(t0) < 1000);
    CHECK(g.empty());
    CHECK(unwound == 3);
    CHECK(late.dead());
    CHECK(late.killed());
    CHECK_FALSE(late_ran);
}

TEST_CASE_FIXTURE(LeakCheck, "Group: kill with an exception, without blocking") {
    cogent::Group g;
    auto a = g.spawn([] { cogent::sleep(10s); });
    auto b = g.spawn([] { cogent::sleep(10s); });
    cogent::sleep(0);
    g.kill(Boom("stop"), false);
    CHECK_FALSE(a.dead());  // not blocking: delivered on the next hub turn
    CHECK(g.join());
    CHECK_THROWS_WITH_AS(a.get(), "stop", Boom);
    CHECK_THROWS_WITH_AS(b.get(), "stop", Boom);
}

TEST_CASE_FIXTURE(LeakCheck, "Group: kill's timeout returns without throwing") {
    cogent::Group g;
    int kills_seen = 0;
    auto stubborn = g.spawn([&] {
        try {
            cogent::sleep(10s);
        } catch (const cogent::GreenletExit&) {
            ++kills_seen;
        }
        cogent::sleep(40ms);  // ignores the kill for a while
    });
    cogent::sleep(0);
    auto t0 = Clock::now();
    g.kill(cogent::GreenletExit(), true, 5ms);
    CHECK(ms_since(t0) < 35);
    CHECK(g.contains(stubborn));
    g.kill(cogent::GreenletExit(), true, 1ms);  // already being killed: not killed twice
    CHECK(g.join());
    CHECK(kills_seen == 1);
    CHECK(stubborn.successful());
}

TEST_CASE_FIXTURE(LeakCheck, "Group: killone") {
    cogent::Group g;
    int unwound = 0;
    auto a = g.spawn([&] {
        Guard guard{unwound};
        cogent::sleep(10s);
    });
    auto b = g.spawn([] { cogent::sleep(10ms); });
    cogent::sleep(0);
    g.killone(a);
    CHECK(a.dead());
    CHECK(a.killed());
    CHECK(unwound == 1);
    CHECK(g.size() == 1);
    CHECK_FALSE(b.dead());
    auto outsider = cogent::spawn([] { cogent::sleep(1ms); });
    g.killone(outsider);  // not a member: untouched
    CHECK(outsider.join());
    CHECK_FALSE(outsider.killed());
    g.killone(b, Boom("x"), false);
    CHECK_FALSE(b.dead());
    CHECK(g.join());
    CHECK(b.exception());
}

// ---------------------------------------------------------------------------------------------
// map, imap, imap_unordered

TEST_CASE_FIXTURE(LeakCheck, "Group: map returns results in input order") {
    cogent::Group g;
    auto sleepy = [](int ms) {
        cogent::sleep(std::chrono::milliseconds(ms));
        return ms * 2;
    };
    std::vector<int> in{60, 20, 40, 0};
    CHECK(g.map(sleepy, in) == std::vector<int>{120, 40, 80, 0});
    CHECK(g.empty());
    auto lens = g.map([](const std::string& s) { return s.size(); },
                      std::vector<std::string>{"a", "bb", ""});
    CHECK(lens == std::vector<std::size_t>{1, 2, 0});
    CHECK(g.map(sleepy, std::vector<int>{}).empty());
    CHECK(g.map([](int i) { return i + 1; }, std::views::iota(0, 5)) ==
          std::vector<int>{1, 2, 3, 4, 5});
    auto boxes = g.map([](int i) { return std::make_unique<int>(i); }, std::vector<int>{4, 5});
    REQUIRE(boxes.size() == 2);
    CHECK(*boxes[0] == 4);
    CHECK(*boxes[1] == 5);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "Group: map rethrows the first failure in input order, kills the rest") {
    // gevent's map is list(imap): the failure of the first failed item in input order, raised
    // once the items before it are done (test__pool's TestErrorInHandler.test_map).
    cogent::Pool pool(10);
    int unwound = 0;
    bool slow_finished = false;
    auto fn = [&](int i) -> int {
        Guard guard{unwound};
        if (i == 0) cogent::sleep(30ms);
        if (i == 1) {
            cogent::sleep(40ms);
            throw Boom("first in input order");
        }
        if (i == 2) throw Boom("first to happen");
        if (i == 3) {
            cogent::sleep(10s);
            slow_finished = true;
        }
        return i;
    };
    auto t0 = Clock::now();
    CHECK_THROWS_WITH_AS(pool.map(fn, std::vector<int>{0, 1, 2, 3}), "first in input order", Boom);
    CHECK(ms_since(t0) < 5000);
    // The other tasks were killed and have ended by the time map throws.
    CHECK(unwound == 4);
    CHECK_FALSE(slow_finished);
    CHECK(pool.empty());
    CHECK(pool.free_count() == 10);
    CHECK(cogent::debug::live_greenlets() == 0);
}

// gevent's test__pool TestErrorInHandler.test_imap / test_imap_unordered: a failed item raises
// from its next(), and the following next() carries on with the rest.
TEST_CASE_FIXTURE(LeakCheck, "Pool: imap and imap_unordered carry on after a failed item") {
    cogent::Pool pool(1);
    cogent_test::check_imap_carries_on(pool);
    CHECK(pool.join(1s));
    // Input order: the failure waits for the items before it, whatever finished first.
    cogent::Group g;
    auto it = g.imap(
        [](int i) {
            if (i == 1) throw Boom("one");
            cogent::sleep(std::chrono::milliseconds(i == 0 ? 20 : 1));
            return i;
        },
        std::vector<int>{0, 1, 2});
    CHECK(it.next() == 0);
    CHECK_THROWS_WITH_AS(it.next(), "one", Boom);
    CHECK(it.next() == 2);
    CHECK_FALSE(it.next());
    // A killed task's item raises GreenletExit from its next(); the rest go on.
    std::vector<cogent::AnyGreenlet> tasks;
    auto it2 = g.imap(
        [](int i) {
            cogent::sleep(std::chrono::milliseconds(i == 0 ? 10'000 : 1));
            return i;
        },
        std::vector<int>{0, 1});
    cogent::sleep(1ms);
    for (auto& m : g.greenlets())
        if (m.active()) tasks.push_back(m);
    REQUIRE_FALSE(tasks.empty());
    g.killone(tasks.front());  // the first member still running is item 0's
    CHECK_THROWS_AS(it2.next(), cogent::GreenletExit);
    CHECK(it2.next() == 1);
    CHECK_FALSE(it2.next());
    CHECK(g.join(1s));
}

TEST_CASE_FIXTURE(LeakCheck, "Group: imap is in input order, imap_unordered in completion order") {
    cogent::Group g;
    auto sleepy = [](int ms) {
        cogent::sleep(std::chrono::milliseconds(ms));
        return ms;
    };
    std::vector<int> in{60, 20, 40};
    std::vector<int> ordered;
    for (int v : g.imap(sleepy, in)) ordered.push_back(v);
    CHECK(ordered == in);
    std::vector<int> unordered;
    for (int v : g.imap_unordered(sleepy, in)) unordered.push_back(v);
    CHECK(unordered == std::vector<int>{20, 40, 60});
    CHECK(g.empty());
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: imap and imap_unordered run at most `size` tasks at once") {
    for (bool ordered : {true, false}) {
        CAPTURE(ordered);
        cogent::Pool pool(3);
        Concurrency c;
        int started = 0;
        auto task = [&](int i) {
            ++started;
            c.enter();
            cogent::sleep(std::chrono::milliseconds(1 + (i * 7) % 5));
            c.leave();
            return i;
        };
        std::vector<int> got;
        if (ordered) {
            auto it = pool.imap(task, std::views::iota(0, 20));
            CHECK(started == 0);  // lazy: nothing runs until the caller yields
            for (int v : it) got.push_back(v);
            std::vector<int> want(20);
            std::iota(want.begin(), want.end(), 0);
            CHECK(got == want);
        } else {
            auto it = pool.imap_unordered(task, std::views::iota(0, 20));
            CHECK(started == 0);
            for (int v : it) got.push_back(v);
            std::sort(got.begin(), got.end());
            CHECK(got.size() == 20);
            CHECK(got.front() == 0);
            CHECK(got.back() == 19);
        }
        CHECK(c.max == 3);
        CHECK(pool.empty());
    }
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: imap pulls an infinite range only as slots free") {
    cogent::Pool pool(2);
    Concurrency c;
    int started = 0;
    auto task = [&](int i) {
        ++started;
        c.enter();
        cogent::sleep(1ms);
        c.leave();
        return i;
    };
    auto it = pool.imap_unordered(task, std::views::iota(0));
    int n = 0;
    for (int v : it) {
        CHECK(v >= 0);
        if (++n == 5) break;
    }
    CHECK(c.max == 2);
    CHECK(started <= 5 + 2);
    it.close();  // kills what is still running, and waits
    CHECK(pool.empty());
    CHECK_FALSE(it.next());
}

TEST_CASE_FIXTURE(LeakCheck, "Group: imap maxsize bounds the work ahead of the consumer") {
    cogent::Group g;
    int started = 0;
    auto it = g.imap(
        [&](int i) {
            ++started;
            return i * i;
        },
        std::views::iota(0), 4);
    int n = 0;
    for (int v : it) {
        CHECK(v == n * n);
        CHECK(started <= n + 5);  // n + 1 consumed, at most 4 ahead
        if (++n == 10) break;
    }
    cogent::sleep(0);
    CHECK(started <= n + 4);
    CHECK_THROWS_AS(g.imap([](int i) { return i; }, std::vector<int>{1}, 0), std::invalid_argument);
}

TEST_CASE_FIXTURE(LeakCheck, "Group: imap next(timeout), failures, early destruction") {
    cogent::Group g;
    {
        auto it = g.imap(
            [](int i) {
                cogent::sleep(50ms);
                return i;
            },
            std::vector<int>{7});
        CHECK_THROWS_AS(it.next(5ms), cogent::Timeout);
        CHECK(it.next() == 7);
        CHECK_FALSE(it.next());
        CHECK_FALSE(it.next());
    }
    {
        auto it = g.imap_unordered(
            [](int i) {
                if (i == 2) throw Boom("two");
                cogent::sleep(20ms);
                return i;
            },
            std::vector<int>{1, 2, 3});
        CHECK_THROWS_WITH_AS(it.next(), "two", Boom);
        std::vector<int> rest;  // the failure does not end the iteration
        while (auto v = it.next()) rest.push_back(*v);
        std::sort(rest.begin(), rest.end());
        CHECK(rest == std::vector<int>{1, 3});
    }
    CHECK(g.join());
    int unwound = 0;
    {
        auto it = g.imap(
            [&](int i) {
                Guard guard{unwound};
                cogent::sleep(std::chrono::milliseconds(i == 0 ? 1 : 10'000));
                return i;
            },
            std::vector<int>{0, 1, 2});
        CHECK(it.next() == 0);
    }  // destroyed half-way: the rest are killed
    CHECK(g.join());
    CHECK(unwound == 3);
    // A failure of the range itself reaches the consumer too.
    struct Bad {
        int* begin() { throw Boom("range"); }
        int* end() { return nullptr; }
    };
    auto it = g.imap([](int i) { return i; }, Bad{});
    CHECK_THROWS_WITH_AS(it.next(), "range", Boom);
    CHECK_FALSE(it.next());  // and ends it
    // A range that fails half-way: the items before the failure come first (imap), then it.
    auto half = g.imap(
        [](int i) {
            cogent::sleep(std::chrono::milliseconds(10 - i * 5));
            return i;
        },
        Half{});
    CHECK(half.next() == 0);
    CHECK(half.next() == 1);
    CHECK_THROWS_WITH_AS(half.next(), "half", Boom);
    CHECK_FALSE(half.next());
    CHECK(g.join(1s));
}

TEST_CASE_FIXTURE(LeakCheck, "Group: killing an imap consumer kills its tasks") {
    cogent::Pool pool(2);
    auto consumer = cogent::spawn([&] {
        auto it = pool.imap(
            [](int i) {
                cogent::sleep(10s);
                return i;
            },
            std::vector<int>{1, 2, 3});
        return it.next().value_or(-1);
    });
    cogent::sleep(1ms);
    CHECK(pool.size() == 2);
    consumer.kill();  // its iterator is destroyed: tasks are killed
    CHECK(pool.join(1s));
}

// ---------------------------------------------------------------------------------------------
// map_async

TEST_CASE_FIXTURE(LeakCheck, "Pool: map_async runs map in a new greenlet and calls back") {
    cogent::Pool pool(2);
    Concurrency c;
    auto task = [&](int i) {
        c.enter();
        cogent::sleep(std::chrono::milliseconds(1 + (i * 3) % 4));
        c.leave();
        return i * 10;
    };
    std::vector<int> in{1, 2, 3, 4, 5};
    std::vector<std::vector<int>> calls;
    auto g = pool.map_async(task, in, [&](const std::vector<int>& r) { calls.push_back(r); });
    static_assert(std::is_same_v<decltype(g), cogent::Greenlet<std::vector<int>>>);
    CHECK_FALSE(pool.contains(g));  // not a member (gevent: Greenlet.spawn)
    CHECK(calls.empty());           // nothing ran yet: map_async never blocks
    CHECK(g.get() == std::vector<int>{10, 20, 30, 40, 50});
    REQUIRE(calls.size() == 1);
    CHECK(calls[0] == std::vector<int>{10, 20, 30, 40, 50});
    CHECK(c.max == 2);  // the pool's bound holds
    // No callback, an rvalue range (moved into the greenlet).
    auto g2 = pool.map_async([](const std::string& s) { return s.size(); },
                             std::vector<std::string>{"a", "bcd"});
    CHECK(g2.get() == std::vector<std::size_t>{1, 3});
    // A failure fails the greenlet; the callback is not called.
    bool called = false;
    auto bad = pool.map_async(
        [](int i) {
            if (i == 2) throw Boom("two");
            return i;
        },
        std::vector<int>{1, 2, 3}, [&](const std::vector<int>&) { called = true; });
    CHECK_THROWS_WITH_AS(bad.get(), "two", Boom);
    CHECK_FALSE(called);
    CHECK(pool.join(1s));
    cogent::Group group;
    CHECK(group.map_async([](int i) { return -i; }, std::views::iota(0, 3)).get() ==
          std::vector<int>{0, -1, -2});
}

// ---------------------------------------------------------------------------------------------
// apply, apply_async

TEST_CASE_FIXTURE(LeakCheck, "Group: apply") {
    cogent::Pool pool(1);
    CHECK(pool.apply([](int a, int b) { return a + b; }, 2, 3) == 5);
    CHECK_THROWS_WITH_AS(pool.apply([] { throw Boom("x"); }), "x", Boom);
    bool ran = false;
    pool.apply([&] { ran = true; });
    CHECK(ran);

    // From a member of a full pool it runs inline instead of deadlocking.
    auto outer = pool.spawn([&] {
        auto self = cogent::getcurrent();
        return pool.apply([&] { return cogent::getcurrent() == self; });
    });
    CHECK(outer.get());

    // An interrupted apply kills its task.
    bool finished = false;
    CHECK_THROWS_AS(cogent::with_timeout(5ms,
                                         [&] {
                                             pool.apply([&] {
                                                 cogent::sleep(1s);
                                                 finished = true;
                                             });
                                         }),
                    cogent::Timeout);
    CHECK(pool.join(1s));
    CHECK_FALSE(finished);
}

TEST_CASE_FIXTURE(
    LeakCheck, "Pool: apply_async never blocks; callbacks follow completion, in the caller's hub") {
    cogent::Pool pool(2);
    const auto tid = std::this_thread::get_id();
    const cogent::Hub hub = cogent::get_hub();
    std::vector<int> done, callbacks;
    bool same_hub = true;
    cogent::Event all_called;
    std::vector<cogent::Greenlet<int>> gs;
    auto t0 = Clock::now();
    for (int ms : {50, 10, 30, 20}) {
        gs.push_back(pool.apply_async(
            [&done](int d) {
                cogent::sleep(std::chrono::milliseconds(d));
                done.push_back(d);
                return d;
            },
            [&](int v) {
                callbacks.push_back(v);
                same_hub =
                    same_hub && std::this_thread::get_id() == tid && cogent::get_hub() == hub;
                if (callbacks.size() == 4) all_called.set();
            },
            ms));
    }
    CHECK(ms_since(t0) < 5);  // the pool was full after two, yet nothing blocked
    CHECK(pool.size() == 2);
    CHECK(pool.full());
    CHECK_FALSE(gs[2].started());  // waiting for a slot
    CHECK(all_called.wait(2s));
    CHECK(done.size() == 4);
    CHECK(callbacks == done);
    CHECK(same_hub);
    CHECK(pool.join());
    for (auto& g : gs) CHECK(g.get() > 0);

    // void functions, no callback, and failures (no callback)
    int hits = 0;
    cogent::Event called;
    pool.apply_async([&] { ++hits; }, [&] { called.set(); });
    auto plain = pool.apply_async([&] {
        ++hits;
        return 1;
    });
    auto bad = pool.apply_async([]() -> int { throw Boom("no"); }, [&](int) { hits = -100; });
    CHECK(called.wait(1s));
    CHECK(plain.get() == 1);
    CHECK_THROWS_AS(bad.get(), Boom);
    CHECK(pool.join());
    cogent::sleep(0);
    CHECK(hits == 2);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "Pool: an apply_async task killed while waiting for a slot never runs") {
    cogent::Pool pool(1);
    cogent::Event stop;
    pool.spawn([&] { stop.wait(); });
    bool ran = false, called = false;
    auto g = pool.apply_async([&] { ran = true; }, [&] { called = true; });
    cogent::sleep(0);
    g.kill();
    CHECK(g.dead());
    stop.set();
    CHECK(pool.join());
    cogent::sleep(0);
    CHECK_FALSE(ran);
    CHECK_FALSE(called);  // a killed task has no result: no callback
    CHECK(pool.free_count() == 1);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "Pool: queued apply_async tasks: join waits for them, kill stops them") {
    cogent::Pool pool(1);
    std::vector<int> ran;
    pool.apply_async([&] {
        cogent::sleep(5ms);
        ran.push_back(0);
    });
    auto q1 = pool.apply_async([&] { ran.push_back(1); });
    CHECK(pool.size() == 1);
    CHECK_FALSE(pool.contains(q1));  // queued, not a member yet
    CHECK(pool.join());              // ... but join waits for it
    CHECK(ran == std::vector<int>{0, 1});
    CHECK(q1.dead());

    pool.apply_async([&] {
        cogent::sleep(10s);
        ran.push_back(2);
    });
    auto q3 = pool.apply_async([&] { ran.push_back(3); }, [&] { ran.push_back(33); });
    cogent::sleep(0);
    pool.kill();
    CHECK(q3.dead());
    CHECK(q3.killed());
    CHECK(pool.join(0s));
    cogent::sleep(0);
    CHECK(ran == std::vector<int>{0, 1});
    CHECK(pool.free_count() == 1);
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: queued apply_async tasks and blocked spawners share one FIFO") {
    cogent::Pool pool(1);
    cogent::Event stop;
    pool.spawn([&] { stop.wait(); });
    std::vector<std::string> order;
    auto spawner = cogent::spawn([&] { pool.spawn([&] { order.push_back("spawner"); }); });
    cogent::sleep(0);  // the spawner now waits for the slot
    pool.apply_async([&] { order.push_back("async 1"); });
    auto late = cogent::spawn([&] { pool.spawn([&] { order.push_back("late spawner"); }); });
    cogent::sleep(0);
    pool.apply_async([&] { order.push_back("async 2"); });
    stop.set();
    CHECK(pool.join());
    cogent::joinall({spawner, late});
    CHECK(order == std::vector<std::string>{"spawner", "async 1", "late spawner", "async 2"});
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: destroying a pool kills its queued tasks") {
    cogent::Event stop;
    cogent::Greenlet<void> member, queued;
    bool ran = false;
    {
        cogent::Pool pool(1);
        member = pool.spawn([&] { stop.wait(); });
        queued = pool.apply_async([&] { ran = true; });
    }
    CHECK(queued.dead());
    CHECK(queued.killed());
    stop.set();
    CHECK(member.join());
    CHECK_FALSE(ran);
}

// ---------------------------------------------------------------------------------------------
// Pool capacity

TEST_CASE_FIXTURE(LeakCheck, "Pool: PoolFull, free_count, full, wait_available") {
    CHECK_THROWS_WITH_AS(cogent::Pool(std::size_t(-1)), doctest::Contains("negative"),
                         std::invalid_argument);
    cogent::Pool pool(2);
    CHECK(pool.capacity() == 2);
    CHECK(pool.free_count() == 2);
    CHECK_FALSE(pool.full());
    CHECK(pool.wait_available() == 2);
    cogent::Event stop;
    pool.spawn([&] { stop.wait(); });
    CHECK(pool.free_count() == 1);
    pool.spawn([&] { stop.wait(); });
    CHECK(pool.full());
    CHECK(pool.free_count() == 0);

    CHECK_THROWS_AS(pool.spawn(cogent::PoolSpawnOptions{false}, [] {}), cogent::PoolFull);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(pool.spawn(cogent::PoolSpawnOptions{true, 5ms}, [] {}), cogent::PoolFull);
    CHECK(ms_since(t0) >= 4);
    CHECK_THROWS_AS(pool.spawn(cogent::PoolSpawnOptions{true, 0s}, [] {}), cogent::PoolFull);
    auto c = cogent::make_greenlet([] {});
    CHECK_THROWS_AS(pool.add(c, false), cogent::PoolFull);
    CHECK_THROWS_AS(pool.add(c, true, 5ms), cogent::PoolFull);
    CHECK_THROWS_AS(pool.start(c, false), cogent::PoolFull);
    CHECK_FALSE(c.started());
    CHECK_FALSE(pool.contains(c));
    CHECK(pool.wait_available(0s) == 0);
    CHECK(pool.wait_available(5ms) == 0);

    auto freer = cogent::spawn([&] {
        cogent::sleep(5ms);
        stop.set();
    });
    CHECK(pool.wait_available() >= 1);
    pool.start(c);
    CHECK(pool.join());
    CHECK(pool.free_count() == 2);
    freer.join();

    auto named = pool.spawn(cogent::PoolSpawnOptions{true, {}, {"worker"}}, [] {});
    CHECK(named.name() == "worker");
    CHECK(pool.join());
}

TEST_CASE_FIXTURE(
    LeakCheck,
    "Pool: spawners get slots in FIFO order; a killed or timed-out waiter loses nothing") {
    cogent::Pool pool(1);
    cogent::Event stop;
    pool.spawn([&] { stop.wait(); });
    std::vector<int> order;
    std::vector<cogent::Greenlet<void>> waiters;
    for (int i = 0; i < 5; ++i)
        waiters.push_back(cogent::spawn([&, i] {
            cogent::PoolSpawnOptions opts;
            if (i == 3) opts.timeout = 5ms;
            try {
                pool.spawn(opts,
                           [&, i] {
                               order.push_back(i);
                               cogent::sleep(1ms);
                           })
                    .join();
            } catch (const cogent::PoolFull&) {
                order.push_back(-i);
            }
        }));
    cogent::sleep(0);  // all five now wait for the slot
    waiters[1].kill();
    cogent::sleep(10ms);  // waiter 3 times out
    stop.set();
    cogent::joinall(waiters);
    CHECK(order == std::vector<int>{-3, 0, 2, 4});
    CHECK(pool.join());
    CHECK(pool.free_count() == 1);
}

// gevent: Pool(0) "creates a pool that can never have any active greenlets"; spawning waits
// forever, so only a timeout (or non-blocking) makes sense.
TEST_CASE_FIXTURE(LeakCheck, "Pool: a pool of size 0 is always full") {
    cogent::Pool pool(0);
    CHECK(pool.capacity() == 0);
    CHECK(pool.full());
    CHECK(pool.free_count() == 0);
    CHECK(pool.wait_available(0s) == 0);
    CHECK(pool.wait_available(5ms) == 0);
    CHECK_THROWS_AS(pool.spawn(cogent::PoolSpawnOptions{false}, [] {}), cogent::PoolFull);
    auto t0 = Clock::now();
    CHECK_THROWS_AS(pool.spawn(cogent::PoolSpawnOptions{true, 5ms}, [] {}), cogent::PoolFull);
    CHECK(ms_since(t0) >= 4);
    auto c = cogent::make_greenlet([] {});
    CHECK_THROWS_AS(pool.add(c, true, 5ms), cogent::PoolFull);
    CHECK_FALSE(pool.contains(c));
    // A blocking spawn waits until it is killed.
    auto spawner = cogent::spawn([&] { pool.spawn([] {}); });
    cogent::sleep(5ms);
    CHECK_FALSE(spawner.dead());
    spawner.kill();
    CHECK(spawner.killed());
    // apply_async never blocks: its task stays queued, and join() waits for it.
    bool ran = false;
    auto task = pool.apply_async([&] { ran = true; });
    cogent::sleep(1ms);
    CHECK_FALSE(task.started());
    CHECK_FALSE(pool.join(5ms));
    pool.kill();
    CHECK(task.dead());
    CHECK_FALSE(ran);
    CHECK(pool.join(0s));
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: the Group interface honours the capacity") {
    cogent::Pool pool(1);
    cogent::Group& g = pool;
    auto a = g.spawn([] { cogent::sleep(10ms); });
    CHECK(g.full());
    auto t0 = Clock::now();
    auto b = g.spawn([] {});  // waits for a's slot
    CHECK(ms_since(t0) >= 8);
    CHECK(a.dead());
    auto x = cogent::make_greenlet([] {});
    auto waiter = cogent::spawn([&] { g.add(x); });
    cogent::sleep(0);
    CHECK_FALSE(g.contains(x));  // b still holds the slot
    waiter.join();
    CHECK(g.contains(x));
    CHECK(b.dead());
    g.discard(x);  // x never started: discarding it frees the slot
    CHECK(pool.free_count() == 1);
    CHECK(g.join(0s));
}

TEST_CASE_FIXTURE(LeakCheck, "Pool: waiting for a slot on the hub is refused") {
    cogent::Pool pool(1);
    cogent::Event stop;
    pool.spawn([&] { stop.wait(); });
    bool refused = false;
    cogent::get_hub().run_callback([&] {
        try {
            pool.spawn([] {});
        } catch (const cogent::BlockingSwitchOutError&) {
            refused = true;
        }
    });
    cogent::sleep(0);
    CHECK(refused);
    stop.set();
    CHECK(pool.join());
}

// ---------------------------------------------------------------------------------------------
// Timer (spawn_later + kill)

TEST_CASE_FIXTURE(LeakCheck, "Timer: runs after its delay; cancel before it fires stops it") {
    int ran = 0;
    auto t0 = Clock::now();
    cogent::Timer t(
        20ms, [&](int add) { ran += add; }, 5);
    CHECK(t.pending());
    CHECK_FALSE(t.ready());
    CHECK_FALSE(t.join(1ms));
    CHECK(t.join());
    CHECK(ms_since(t0) >= 19);
    CHECK(ran == 5);
    CHECK(t.ready());
    CHECK_FALSE(t.pending());
    CHECK_FALSE(t.cancelled());
    CHECK_FALSE(t.cancel());  // after it ran: no-op
    CHECK(t.greenlet().successful());

    auto c = cogent::call_later(10ms, [&] { ran = 100; });
    auto copy = c;
    CHECK(copy.cancel());
    CHECK(c.cancelled());
    CHECK(c.ready());
    CHECK_FALSE(c.cancel());
    CHECK(c.join(0s));
    cogent::sleep(30ms);
    CHECK(ran == 5);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "Timer: a running call is not interrupted; dropped handles still fire") {
    bool finished = false;
    auto r = cogent::call_later(0.001, [&] {
        cogent::sleep(20ms);
        finished = true;
    });
    cogent::sleep(5ms);
    CHECK_FALSE(r.pending());
    CHECK_FALSE(r.cancel());
    CHECK(r.join());
    CHECK(finished);
    CHECK_FALSE(r.cancelled());

    cogent::Event fired;
    cogent::call_later(2ms, [&] { fired.set(); });  // handle dropped at once
    CHECK(fired.wait(1s));

    auto failing = cogent::Timer(1ms, [] { throw Boom("timer"); });
    CHECK(failing.join());
    CHECK(failing.greenlet().exception());

    CHECK_THROWS_AS(cogent::Timer(-1.0, [] {}), std::invalid_argument);
    CHECK_THROWS_AS(cogent::Timer(-1ms, [] {}), std::invalid_argument);
}
