// AsyncResult<T>: set/get/wait, exceptions, timeouts, kill while waiting, FIFO wake order, the
// set-once contract, and set() from other OS threads.
#include <atomic>
#include <chrono>
#include <cogent/async_result.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::AsyncResult;
using cogent::Greenlet;
using cogent::Timeout;
using Clock = std::chrono::steady_clock;

namespace {

struct MyError : std::runtime_error {
    MyError() : std::runtime_error("my error") {}
};

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "set, then get, ready, successful, value, exception") {
    AsyncResult<int> r;
    CHECK_FALSE(r.ready());
    CHECK_FALSE(r.successful());
    CHECK(r.value() == nullptr);
    CHECK_FALSE(r.exception());
    r.set(42);
    CHECK(r.ready());
    CHECK(r.successful());
    REQUIRE(r.value() != nullptr);
    CHECK(*r.value() == 42);
    CHECK_FALSE(r.exception());
    CHECK(r.get() == 42);
    CHECK(r.get(0s) == 42);
    CHECK(r.get_nowait() == 42);
    CHECK(r.wait());
    CHECK(r.wait(0s));
    r.get() = 43;  // get() returns a reference to the stored value
    CHECK(*r.value() == 43);
    const AsyncResult<int>& cr = r;
    CHECK(*cr.value() == 43);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "get blocks until another greenlet sets it; set never switches") {
    AsyncResult<std::string> r;
    std::string got;
    auto g = cogent::spawn([&] { got = r.get(); });
    cogent::sleep(0);
    CHECK(got.empty());
    CHECK_FALSE(g.dead());
    r.set("hello");
    CHECK(got.empty());  // set only scheduled the wake-up
    g.join();
    CHECK(got == "hello");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "waiters wake in FIFO order") {
    AsyncResult<int> r;
    std::vector<int> order;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 6; ++i)
        gs.push_back(cogent::spawn([&, i] {
            r.wait();
            order.push_back(i);
        }));
    cogent::sleep(0);
    r.set(1);
    cogent::joinall(gs);
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
}

// gevent's AbstractLinkable._wait (issue 1520), as for Event: wait() on a result that is set
// while its earlier waiters are still to be woken waits its turn behind them, in the same round.
// get() returns the value at once (gevent's get() does not queue either).
TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "wait() while the waiters of a set() are being woken runs after them; get() does not") {
    AsyncResult<int> r;
    std::vector<int> results;
    auto g1 = cogent::spawn([&] {
        CHECK(r.wait());
        results.push_back(1);
    });
    auto g2 = cogent::spawn([&] {
        CHECK(r.get() == 7);
        results.push_back(2);
    });
    cogent::sleep(0);
    CHECK(r.linkcount() == 2);
    r.set(7);
    cogent::get_hub().run_callback([&] { results.push_back(4); });
    CHECK(r.get() == 7);  // at once
    CHECK(results.empty());
    CHECK(r.wait());
    results.push_back(3);
    CHECK(results == std::vector<int>{1, 2, 3});
    cogent::sleep(0);
    CHECK(results == std::vector<int>{1, 2, 3, 4});
    cogent::joinall({g1, g2});
    CHECK(r.wait(0s));
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "rawlink: called on the hub with the result, in FIFO order with the waiters; unlink") {
    AsyncResult<int> r;
    std::vector<std::string> order;
    auto a = cogent::spawn([&] {
        r.get();
        order.push_back("a");
    });
    cogent::sleep(0);
    AsyncResult<int>* seen = nullptr;
    r.rawlink([&](AsyncResult<int>& x) {
        seen = &x;
        order.push_back("r" + std::to_string(*x.value()));
    });
    cogent::LinkId gone = r.rawlink([&](AsyncResult<int>&) { order.push_back("gone"); });
    auto b = cogent::spawn([&] {
        r.wait();
        order.push_back("b");
    });
    cogent::sleep(0);
    CHECK(r.linkcount() == 4);
    r.unlink(gone);
    r.unlink(gone);  // removed already: nothing
    CHECK(r.linkcount() == 3);
    r.set(5);
    CHECK(order.empty());
    cogent::joinall({a, b});
    CHECK(order == std::vector<std::string>{"a", "r5", "b"});
    CHECK(seen == &r);
    // Set already: a new link runs at the next turn.
    r.rawlink([&](AsyncResult<int>&) { order.push_back("late"); });
    CHECK(order.size() == 3);
    cogent::sleep(0);
    CHECK(order.back() == "late");

    AsyncResult<void> e;
    bool failed = false;
    e.rawlink([&](AsyncResult<void>& x) { failed = x.exception() != nullptr; });
    e.set_exception(MyError());
    cogent::sleep(0);
    CHECK(failed);
    CHECK_THROWS_AS(e.rawlink(nullptr), std::invalid_argument);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "get(timeout) throws Timeout; get(0s) and get_nowait do not block") {
    AsyncResult<int> r;
    auto t0 = Clock::now();
    CHECK_THROWS_AS(r.get(20ms), Timeout);
    CHECK(ms_since(t0) >= 20.0);
    t0 = Clock::now();
    CHECK_THROWS_AS(r.get(0s), Timeout);
    CHECK_THROWS_AS(r.get_nowait(), Timeout);
    CHECK_FALSE(r.wait(0s));
    CHECK(ms_since(t0) < 20.0);
    t0 = Clock::now();
    CHECK_FALSE(r.wait(15ms));
    CHECK(ms_since(t0) >= 15.0);
    CHECK_THROWS_AS(r.get(-1s), std::invalid_argument);
    CHECK_FALSE(r.ready());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a Timeout scope interrupts get") {
    AsyncResult<int> r;
    bool fired = false;
    try {
        Timeout t(10ms);
        r.get();
    } catch (const Timeout&) {
        fired = true;
    }
    CHECK(fired);
    r.set(5);  // nobody is linked any more: nothing to schedule
    CHECK(cogent::debug::pending_callbacks() == 0);
    CHECK(r.get() == 5);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "set_exception: get rethrows, wait does not") {
    AsyncResult<int> r;
    r.set_exception(MyError());
    CHECK(r.ready());
    CHECK_FALSE(r.successful());
    CHECK(r.value() == nullptr);
    CHECK(r.exception());
    CHECK(r.wait());
    CHECK_THROWS_AS(r.get(), MyError);
    CHECK_THROWS_WITH_AS(r.get(), "my error", MyError);  // every get rethrows

    AsyncResult<int> p;
    p.set_exception(std::make_exception_ptr(std::out_of_range("range")));
    CHECK_THROWS_AS(p.get(), std::out_of_range);

    // Exceptions of any type, including cogent's own.
    AsyncResult<int> q;
    q.set_exception(cogent::GreenletExit("stop"));
    CHECK_THROWS_AS(q.get(), cogent::GreenletExit);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "set_exception wakes a blocked getter with the exception") {
    AsyncResult<int> r;
    bool threw = false;
    auto g = cogent::spawn([&] {
        try {
            r.get();
        } catch (const MyError&) {
            threw = true;
        }
    });
    cogent::sleep(0);
    r.set_exception(MyError());
    g.join();
    CHECK(threw);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "the first set wins; later ones throw logic_error") {
    AsyncResult<int> r;
    r.set(1);
    CHECK_THROWS_AS(r.set(2), std::logic_error);
    CHECK_THROWS_AS(r.set_exception(MyError()), std::logic_error);
    CHECK(r.get() == 1);
    CHECK(r.successful());

    AsyncResult<int> e;
    e.set_exception(MyError());
    CHECK_THROWS_AS(e.set(3), std::logic_error);
    CHECK_THROWS_AS(e.get(), MyError);

    AsyncResult<int> n;
    CHECK_THROWS_AS(n.set_exception(std::exception_ptr()), std::invalid_argument);
    CHECK_FALSE(n.ready());
    n.set(7);
    CHECK(n.get() == 7);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a value whose construction throws leaves the result unset") {
    struct Bomb {
        Bomb() = default;
        Bomb(Bomb&&) { throw MyError(); }
    };
    AsyncResult<Bomb> r;
    CHECK_THROWS_AS(r.set(Bomb()), MyError);
    CHECK_FALSE(r.ready());
    r.set_exception(std::runtime_error("instead"));
    CHECK_THROWS_AS(r.get(), std::runtime_error);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "move-only values") {
    AsyncResult<std::unique_ptr<int>> r;
    auto g = cogent::spawn([&] { return *r.get(); });
    cogent::sleep(0);
    r.set(std::make_unique<int>(9));
    CHECK(g.get() == 9);
    std::unique_ptr<int> taken = std::move(r.get());
    CHECK(*taken == 9);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "AsyncResult<void>") {
    AsyncResult<void> r;
    CHECK_FALSE(r.ready());
    CHECK_THROWS_AS(r.get(0s), Timeout);
    CHECK_THROWS_AS(r.get_nowait(), Timeout);
    bool done = false;
    auto g = cogent::spawn([&] {
        r.get();
        done = true;
    });
    cogent::sleep(0);
    CHECK_FALSE(done);
    r.set();
    g.join();
    CHECK(done);
    CHECK(r.successful());
    CHECK_FALSE(r.exception());
    CHECK_THROWS_AS(r.set(), std::logic_error);

    AsyncResult<void> e;
    CHECK_FALSE(e.wait(5ms));
    e.set_exception(MyError());
    CHECK(e.wait());
    CHECK_FALSE(e.successful());
    CHECK(e.exception());
    CHECK_THROWS_AS(e.get(), MyError);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "kill while waiting: destructors run and the waiter is unlinked") {
    AsyncResult<int> r;
    bool unwound = false, returned = false;
    auto g = cogent::spawn([&] {
        SetOnDestroy d{&unwound};
        r.get();
        returned = true;
    });
    cogent::sleep(0);
    REQUIRE(g.active());
    g.kill();
    CHECK(g.dead());
    CHECK(unwound);
    CHECK_FALSE(returned);
    // Its wait node is gone: setting schedules nothing.
    r.set(1);
    CHECK(cogent::debug::pending_callbacks() == 0);
    // A later waiter is unaffected.
    auto h = cogent::spawn([&] { return r.get() + 1; });
    CHECK(h.get() == 2);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a killed waiter does not lose the wake-up of the next one") {
    AsyncResult<int> r;
    std::vector<int> got;
    auto a = cogent::spawn([&] { got.push_back(r.get()); });
    auto b = cogent::spawn([&] { got.push_back(r.get() * 10); });
    cogent::sleep(0);
    a.kill(cogent::GreenletExit(), false);  // queued, not delivered yet
    r.set(3);                               // the wake-up is queued behind the kill
    cogent::joinall(std::vector<Greenlet<void>>{a, b});
    CHECK(got == std::vector<int>{30});
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "waiting on the hub throws BlockingSwitchOutError; a set result can be read there") {
    AsyncResult<int> r;
    bool blocked_error = false;
    cogent::get_hub().run_callback([&] {
        try {
            r.get();
        } catch (const cogent::BlockingSwitchOutError&) {
            blocked_error = true;
        }
    });
    cogent::sleep(0);
    CHECK(blocked_error);
    r.set(1);
    int seen = 0;
    cogent::get_hub().run_callback([&] { seen = r.get(); });
    cogent::sleep(0);
    CHECK(seen == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "iwait and wait accept AsyncResult pointers") {
    AsyncResult<int> a, b, c;
    auto g = cogent::spawn([&] {
        b.set(2);
        cogent::sleep(0);
        c.set_exception(MyError());
        cogent::sleep(0);
        a.set(1);
    });
    std::vector<cogent::detail::Linkable*> order;
    for (auto* p : cogent::iwait(std::vector<cogent::detail::Linkable*>{&a, &b, &c}))
        order.push_back(p);
    CHECK(order == std::vector<cogent::detail::Linkable*>{&b, &c, &a});
    g.join();
    auto done = cogent::wait(std::vector<AsyncResult<int>*>{&a, &b}, 0s);
    CHECK(done.size() == 2);
}

// ---------------------------------------------------------------------------------------------
// Other threads

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "set from another thread wakes the waiter; no LoopExit meanwhile") {
    // The main greenlet is the only one, and nothing but the other thread can wake it: without
    // the loop reference held by get(), the hub would raise LoopExit.
    AsyncResult<int> r;
    auto t0 = Clock::now();
    std::thread t([&] {
        std::this_thread::sleep_for(30ms);
        r.set(11);
    });
    int v = 0;
    CHECK_NOTHROW(v = r.get());
    t.join();
    CHECK(v == 11);
    CHECK(ms_since(t0) >= 25.0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "set_exception from another thread; several greenlets waiting") {
    AsyncResult<void> r;
    int failed = 0;
    std::vector<Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&] {
            try {
                r.get();
            } catch (const MyError&) {
                ++failed;
            }
        }));
    cogent::sleep(0);
    std::thread t([&] {
        std::this_thread::sleep_for(10ms);
        r.set_exception(MyError());
    });
    cogent::joinall(gs);
    t.join();
    CHECK(failed == 3);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "rawlink runs on the owner's hub when another thread sets the result; rawlink "
                  "from another thread throws") {
    AsyncResult<int> r;
    std::thread::id ran_on;
    int got = 0;
    r.rawlink([&](AsyncResult<int>& x) {
        ran_on = std::this_thread::get_id();
        got = x.get();
    });
    bool refused = false;
    std::thread t([&] {
        try {
            r.rawlink([](AsyncResult<int>&) {});
        } catch (const cogent::GreenletError&) {
            refused = true;
        }
        std::this_thread::sleep_for(10ms);
        r.set(9);
    });
    CHECK(r.wait(5s));  // usually queued behind the rawlink (unless the set came first)
    t.join();
    auto t0 = Clock::now();
    while (got == 0 && ms_since(t0) < 5000.0) cogent::sleep(1ms);
    CHECK(refused);
    CHECK(got == 9);
    CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "set from another thread before anyone waits") {
    AsyncResult<int> r;
    std::thread t([&] { r.set(5); });
    t.join();
    CHECK(r.ready());
    CHECK(r.get(0s) == 5);
    cogent::sleep(5ms);  // the queued cross-thread wake-up runs and finds nobody
    CHECK(r.get() == 5);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "an AsyncResult destroyed before its cross-thread wake-up runs") {
    for (int i = 0; i < 20; ++i) {
        auto r = std::make_unique<AsyncResult<int>>();
        std::thread t([&] { r->set(i); });
        t.join();
        CHECK(r->get() == i);
        r.reset();  // the wake-up queued on the hub must not touch it
    }
    cogent::sleep(5ms);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a second set from another thread throws there; the first wins") {
    AsyncResult<int> r;
    r.set(1);
    bool threw = false;
    std::thread t([&] {
        try {
            r.set(2);
        } catch (const std::logic_error&) {
            threw = true;
        }
    });
    t.join();
    CHECK(threw);
    CHECK(r.get() == 1);
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "waiting from a thread that does not own it throws GreenletError; reading a set one works") {
    AsyncResult<int> r;
    bool wrong_thread = false;
    std::thread t([&] {
        try {
            r.wait(10ms);
        } catch (const cogent::GreenletError&) {
            wrong_thread = true;
        }
    });
    t.join();
    CHECK(wrong_thread);
    r.set(4);
    int seen = 0;
    std::thread u([&] { seen = r.get(); });
    u.join();
    CHECK(seen == 4);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "iwait on a result set from another thread") {
    AsyncResult<int> r;
    std::thread t([&] {
        std::this_thread::sleep_for(10ms);
        r.set(1);
    });
    // The overall timeout's timer keeps the loop alive (iwait does not hold it by itself).
    auto done = cogent::wait(std::vector<AsyncResult<int>*>{&r}, 5s);
    t.join();
    CHECK(done.size() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "many threads setting many results, many greenlets waiting") {
    constexpr int kThreads = 8, kPerThread = 200;
    std::vector<std::unique_ptr<AsyncResult<int>>> results;
    for (int i = 0; i < kThreads * kPerThread; ++i)
        results.push_back(std::make_unique<AsyncResult<int>>());
    long long sum = 0;
    int failures = 0;
    std::vector<Greenlet<void>> waiters;
    for (int w = 0; w < kThreads; ++w)
        waiters.push_back(cogent::spawn([&, w] {
            // Each waiter takes a strided slice, so results are set out of its order.
            for (int i = w; i < kThreads * kPerThread; i += kThreads) {
                try {
                    sum += results[i]->get();
                } catch (const MyError&) {
                    ++failures;
                }
            }
        }));
    cogent::sleep(0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int k = 0; k < kPerThread; ++k) {
                int i = t * kPerThread + k;
                if (i % 10 == 9)
                    results[i]->set_exception(MyError());
                else
                    results[i]->set(i);
                if (k % 16 == 0) std::this_thread::yield();
            }
        });
    cogent::joinall(waiters);
    for (auto& t : threads) t.join();
    long long expected = 0;
    int expected_failures = 0;
    for (int i = 0; i < kThreads * kPerThread; ++i) {
        if (i % 10 == 9)
            ++expected_failures;
        else
            expected += i;
    }
    CHECK(sum == expected);
    CHECK(failures == expected_failures);
    cogent::sleep(5ms);
    results.clear();
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "results owned by another thread's hub") {
    // A worker thread with its own hub creates and waits on a result that this thread sets.
    std::atomic<AsyncResult<int>*> shared{nullptr};
    std::atomic<int> seen{0};
    std::thread t([&] {
        AsyncResult<int> r;
        shared = &r;
        seen = r.get(5s);
        shared = nullptr;
        // r is destroyed at once: its destructor waits until set() is out on the other thread.
    });
    while (!shared.load()) std::this_thread::sleep_for(1ms);
    shared.load()->set(77);
    t.join();
    CHECK(seen == 77);
}
