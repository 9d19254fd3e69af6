// ThreadPool: results and their order, the hub staying responsive while workers block,
// exceptions crossing threads with their type, timeouts and kills while a worker runs, idle
// retirement, maxsize, kill/join/destructor, several spawning threads, fork, bad input.
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent::AsyncResult;
using cogent::ThreadPool;
using cogent::ThreadPoolKilled;
using cogent::ThreadPoolOptions;
using cogent::Timeout;
using cogent_test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

struct MyError : std::runtime_error {
    explicit MyError(const std::string& m) : std::runtime_error(m) {}
};

std::size_t os_threads() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/task")) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') ++n;
        closedir(d);
    }
    return n;
}

// Blocks the OS thread (as a real blocking call would), not cooperatively.
void block_for(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

// Poll a condition cooperatively for up to `limit`.
template <class P>
bool eventually(P pred, std::chrono::milliseconds limit = 5s) {
    auto t0 = Clock::now();
    while (!pred()) {
        if (Clock::now() - t0 > limit) return false;
        cogent::sleep(5ms);
    }
    return true;
}

// A greenlet that counts 10 ms ticks on the hub until stopped.
struct Ticker {
    int ticks = 0;
    bool stop = false;
    cogent::Greenlet<void> g = cogent::spawn([this] {
        while (!stop) {
            cogent::sleep(10ms);
            ++ticks;
        }
    });
    ~Ticker() {
        stop = true;
        g.join();
    }
};

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "spawn returns an AsyncResult set with the value") {
    ThreadPool pool(3);
    auto caller = std::this_thread::get_id();
    auto r1 = pool.spawn([](int a, int b) { return a * b; }, 6, 7);
    auto r2 = pool.spawn([] { return std::string("hello"); });
    auto r3 = pool.spawn([caller] { return std::this_thread::get_id() != caller; });
    std::atomic<bool> ran{false};
    auto r4 = pool.spawn([&ran] { ran = true; });
    CHECK(r1->get() == 42);
    CHECK(r2->get() == "hello");
    CHECK(r3->get());  // it really ran on another OS thread
    r4->get();
    CHECK(ran);
    CHECK(r1->successful());
    // Move-only arguments and results.
    auto r5 = pool.spawn([](std::unique_ptr<int> p) { return std::make_unique<int>(*p + 1); },
                         std::make_unique<int>(1));
    CHECK(*r5->get() == 2);
    CHECK(pool.join(5s));
    CHECK(pool.unfinished_tasks() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "apply returns the value; map and imap keep input order") {
    ThreadPool pool(4);
    CHECK(pool.apply([](int x) { return x + 1; }, 41) == 42);
    pool.apply([] {});
    // Items that finish in reverse order still come back in input order.
    std::vector<int> in{5, 4, 3, 2, 1, 0};
    auto slow_square = [](int x) {
        block_for(std::chrono::milliseconds(5 * x));
        return x * x;
    };
    CHECK(pool.map(slow_square, in) == std::vector<int>{25, 16, 9, 4, 1, 0});
    CHECK(pool.map(slow_square, std::vector<int>{}).empty());
    std::vector<int> got;
    for (int v : pool.imap(slow_square, in, 2)) got.push_back(v);
    CHECK(got == std::vector<int>{25, 16, 9, 4, 1, 0});
    // An rvalue range is owned by the iterator; the default window works too.
    got.clear();
    auto it = pool.imap([](int x) { return -x; }, std::vector<int>{1, 2, 3});
    while (auto v = it.next()) got.push_back(*v);
    CHECK(got == std::vector<int>{-1, -2, -3});
    CHECK_FALSE(it.next());
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "workers blocking do not block the hub") {
    const int n = 4;
    ThreadPool pool(n);
    Ticker ticker;
    auto t0 = Clock::now();
    std::vector<std::shared_ptr<AsyncResult<int>>> rs;
    for (int i = 0; i < n; ++i)
        rs.push_back(pool.spawn([i] {
            block_for(100ms);
            return i;
        }));
    for (int i = 0; i < n; ++i) CHECK(rs[std::size_t(i)]->get() == i);
    double ms = ms_since(t0);
    MESSAGE("4 x 100 ms blocking tasks in a pool of 4: " << ms << " ms, " << ticker.ticks
                                                         << " ticks meanwhile");
    CHECK(ms >= 95);
    CHECK(ms < 350);           // concurrent, not 400 ms
    CHECK(ticker.ticks >= 4);  // the hub ran the ticker while every worker was blocked
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "maxsize bounds concurrency: 4 tasks on 2 workers run in two waves") {
    ThreadPool pool(2);
    std::atomic<int> running{0}, peak{0};
    auto task = [&] {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        block_for(100ms);
        --running;
    };
    auto t0 = Clock::now();
    std::vector<std::shared_ptr<AsyncResult<void>>> rs;
    for (int i = 0; i < 4; ++i) rs.push_back(pool.spawn(task));
    CHECK(pool.size() <= 2);
    for (auto& r : rs) r->get();
    double ms = ms_since(t0);
    CHECK(peak == 2);
    CHECK(pool.size() == 2);
    CHECK(ms >= 195);
    CHECK(ms < 450);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a worker's exception is rethrown in the caller with its type and message") {
    ThreadPool pool(2);
    CHECK_THROWS_WITH_AS(pool.apply([] { throw MyError("disk on fire"); }), "disk on fire",
                         MyError);
    CHECK_THROWS_AS(pool.apply([]() -> int { throw 7; }), int);
    auto r = pool.spawn([]() -> int { throw std::out_of_range("index 9"); });
    CHECK_THROWS_WITH_AS(r->get(), "index 9", std::out_of_range);
    CHECK_FALSE(r->successful());
    CHECK(r->exception());
    // map rethrows the first failure in input order, though a later item fails first.
    auto f = [](int x) {
        if (x == 1) {
            block_for(50ms);
            throw MyError("item 1");
        }
        if (x == 2) throw MyError("item 2");
        return x;
    };
    CHECK_THROWS_WITH_AS(pool.map(f, std::vector<int>{0, 1, 2, 3}), "item 1", MyError);
    // imap: the failed item raises from its next(), and the iteration carries on (gevent).
    auto it = pool.imap(f, std::vector<int>{0, 2, 3});
    CHECK(*it.next() == 0);
    CHECK_THROWS_WITH_AS(it.next(), "item 2", MyError);
    CHECK(it.next() == 3);
    CHECK_FALSE(it.next());
    CHECK(pool.join(5s));
}

// gevent's test__pool TestErrorInHandler, on a thread pool (same GroupMappingMixin there).
TEST_CASE_FIXTURE(cogent_test::LeakCheck, "imap and imap_unordered carry on after a failed item") {
    ThreadPool pool(1);
    cogent_test::check_imap_carries_on(pool);
    // A range that fails half-way: imap gives the items submitted before the failure first.
    using Half = cogent_test::HalfRange<MyError>;
    static_assert(std::ranges::input_range<Half>);
    auto half = pool.imap([](int x) { return x; }, Half{}, 4);
    CHECK(half.next() == 0);
    CHECK(half.next() == 1);
    CHECK_THROWS_WITH_AS(half.next(), "half", MyError);
    CHECK_FALSE(half.next());
    CHECK(pool.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "imap_unordered yields results in completion order") {
    ThreadPool pool(4);
    std::atomic<bool> release{false};
    // Item 0 blocks until the others were consumed: in input order this would never end.
    auto f = [&release](int x) {
        if (x == 0)
            while (!release) block_for(1ms);
        return x;
    };
    auto it = pool.imap_unordered(f, std::vector<int>{0, 1, 2, 3});
    std::vector<int> got;
    for (int i = 0; i < 3; ++i) got.push_back(it.next(5s).value());
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<int>{1, 2, 3});
    CHECK_THROWS_AS(it.next(5ms), Timeout);  // item 0 is still blocked; ask again later
    release = true;
    CHECK(it.next(5s) == 0);
    CHECK_FALSE(it.next());
    // A window of 1 submits one task at a time.
    std::atomic<int> running{0}, peak{0};
    auto one = pool.imap_unordered(
        [&](int x) {
            peak = std::max(peak.load(), ++running);
            block_for(2ms);
            --running;
            return x;
        },
        std::vector<int>{1, 2, 3}, 1);
    int sum = 0;
    for (int v : one) sum += v;
    CHECK(sum == 6);
    CHECK(peak == 1);
    CHECK(pool.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "apply_async returns a greenlet; the callback gets the result on this thread") {
    ThreadPool pool(2);
    const auto caller = std::this_thread::get_id();
    std::vector<int> seen;
    std::thread::id callback_thread;
    auto g = pool.apply_async(
        [](int a, int b) {
            block_for(5ms);
            return a + b;
        },
        [&](const int& v) {
            seen.push_back(v);
            callback_thread = std::this_thread::get_id();
        },
        40, 2);
    static_assert(std::is_same_v<decltype(g), cogent::Greenlet<int>>);
    CHECK(g.get(5s) == 42);
    CHECK(seen == std::vector<int>{42});
    CHECK(callback_thread == caller);  // run in the caller's hub, not on the worker
    // Never blocks, even with every worker busy: tasks queue, in call order.
    std::vector<int> order;
    std::vector<cogent::AnyGreenlet> gs;
    ThreadPool one(1);
    for (int i = 0; i < 4; ++i)
        gs.push_back(one.apply_async([i] { return i; }, [&](int v) { order.push_back(v); }));
    cogent::joinall(gs);
    CHECK(order == std::vector<int>{0, 1, 2, 3});
    // A failure fails the greenlet; the callback is not called.
    bool called = false;
    auto bad =
        pool.apply_async([]() -> int { throw MyError("nope"); }, [&](int) { called = true; });
    CHECK_THROWS_WITH_AS(bad.get(5s), "nope", MyError);
    CHECK_FALSE(called);
    // No callback, and void functions.
    auto plain = pool.apply_async([] { return std::string("x"); });
    CHECK(plain.get(5s) == "x");
    bool void_cb = false;
    auto v = pool.apply_async([] {}, [&] { void_cb = true; });
    v.get(5s);
    CHECK(void_cb);
    // From one of the pool's own workers, fn runs inline in the greenlet (the only worker is
    // busy running this very task: submitting it would never finish).
    CHECK(one.apply([&one] {
        std::thread::id ran;
        int v = one.apply_async([&ran] {
                       ran = std::this_thread::get_id();
                       return 7;
                   })
                    .get(5s);
        return v == 7 && ran == std::this_thread::get_id();
    }));
    CHECK(pool.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "map_async maps in a greenlet and calls back") {
    ThreadPool pool(2);
    std::vector<int> seen;
    std::vector<int> in{1, 2, 3};
    auto g = pool.map_async([](int x) { return x * x; }, in,
                            [&](const std::vector<int>& r) { seen = r; });
    static_assert(std::is_same_v<decltype(g), cogent::Greenlet<std::vector<int>>>);
    CHECK(seen.empty());  // returned at once
    CHECK(g.get(5s) == std::vector<int>{1, 4, 9});
    CHECK(seen == std::vector<int>{1, 4, 9});
    auto bad = pool.map_async(
        [](int x) {
            if (x == 2) throw MyError("two");
            return x;
        },
        std::vector<int>{1, 2});
    CHECK_THROWS_WITH_AS(bad.get(5s), "two", MyError);
    CHECK(pool.join(5s));
}

// gevent: ThreadPool(0) is allowed; tasks queue until maxsize is raised.
TEST_CASE_FIXTURE(cogent_test::LeakCheck, "maxsize 0 queues tasks until it is raised") {
    ThreadPool pool(0);
    CHECK(pool.maxsize() == 0);
    CHECK(pool.free_count() == 0);
    auto r = pool.spawn([] { return 5; });
    CHECK_FALSE(r->wait(20ms));  // nothing runs it
    CHECK(pool.size() == 0);
    CHECK(pool.unfinished_tasks() == 1);
    CHECK_FALSE(pool.join(5ms));
    pool.set_maxsize(1);
    CHECK(r->get(5s) == 5);
    CHECK(pool.join(5s));
    // Down to 0 again: the worker retires and new work waits.
    pool.set_maxsize(0);
    CHECK(eventually([&] { return pool.size() == 0; }));
    auto r2 = pool.spawn([] { return 6; });
    CHECK_FALSE(r2->wait(20ms));
    pool.set_maxsize(2);
    CHECK(r2->get(5s) == 6);
    // imap's default window is at least 1 with maxsize 0.
    ThreadPool zero(0);
    auto it = zero.imap([](int x) { return x; }, std::vector<int>{1});
    CHECK_THROWS_AS(it.next(5ms), Timeout);
    zero.set_maxsize(1);
    CHECK(it.next(5s) == 1);
    CHECK(zero.join(5s));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a timeout or a kill interrupts the wait, not the worker") {
    ThreadPool pool(1);
    std::atomic<bool> finished{false};
    auto t0 = Clock::now();
    CHECK_THROWS_AS(cogent::with_timeout(50ms,
                                         [&] {
                                             return pool.apply([&] {
                                                 block_for(200ms);
                                                 finished = true;
                                                 return 1;
                                             });
                                         }),
                    Timeout);
    CHECK(ms_since(t0) < 180);
    CHECK_FALSE(finished);
    CHECK(pool.unfinished_tasks() == 1);  // still running on the worker
    // A greenlet killed while it waits in apply.
    std::atomic<bool> second{false};
    auto g = cogent::spawn([&] {
        pool.apply([&] {
            block_for(50ms);
            second = true;
        });
    });
    cogent::sleep(10ms);
    g.kill();
    CHECK(g.dead());
    CHECK_FALSE(second);
    // Both tasks end later; their outcomes are dropped without harm.
    CHECK(pool.join(5s));
    CHECK(finished);
    CHECK(second);
    // A spawn result left unread while its waiter timed out still gets the value.
    auto r = pool.spawn([] {
        block_for(30ms);
        return 5;
    });
    CHECK_THROWS_AS(r->get(5ms), Timeout);
    CHECK(r->get(5s) == 5);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a pending task keeps the hub's loop alive") {
    // An unreferenced sleep raises LoopExit as soon as nothing referenced is left: here only the
    // pool's reference on the loop keeps it running until the result arrives.
    ThreadPool pool(1);
    auto r = pool.spawn([] {
        block_for(100ms);
        return 3;
    });
    auto t0 = Clock::now();
    CHECK_THROWS_AS(cogent::sleep(5s, /*ref=*/false), cogent::LoopExit);
    CHECK(ms_since(t0) >= 90);
    CHECK(r->ready());
    CHECK(*r->value() == 3);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "idle workers retire after the idle timeout") {
    std::size_t before = os_threads();
    ThreadPool pool(3, ThreadPoolOptions{.idle_timeout = 60ms});
    CHECK(pool.size() == 0);  // started on demand
    std::vector<std::shared_ptr<AsyncResult<void>>> rs;
    for (int i = 0; i < 3; ++i) rs.push_back(pool.spawn([] { block_for(30ms); }));
    for (auto& r : rs) r->get();
    CHECK(pool.size() == 3);
    CHECK(eventually([&] { return pool.idle_count() == 3; }));
    CHECK(os_threads() == before + 3);
    CHECK(eventually([&] { return pool.size() == 0; }));
    CHECK(pool.idle_count() == 0);
    // A retired worker is joined by the next one, by spawn or by the destructor: at most one
    // thread lingers briefly.
    CHECK(eventually([&] { return os_threads() <= before + 1; }));
    // The pool starts workers again afterwards.
    CHECK(pool.apply([] { return 9; }) == 9);
    CHECK(pool.size() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "an absent idle timeout keeps workers") {
    ThreadPool pool(1, ThreadPoolOptions{.idle_timeout = std::nullopt});
    CHECK(pool.idle_timeout().forever());
    pool.apply([] {});
    cogent::sleep(100ms);
    CHECK(pool.size() == 1);
    CHECK(pool.idle_count() == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill cancels queued tasks; the pool stays usable") {
    ThreadPool pool(1);
    auto first = pool.spawn([] {
        block_for(80ms);
        return 1;
    });
    std::vector<std::shared_ptr<AsyncResult<int>>> queued;
    for (int i = 0; i < 3; ++i) queued.push_back(pool.spawn([i] { return i; }));
    cogent::sleep(10ms);  // let the worker take the first task
    CHECK(pool.unfinished_tasks() == 4);
    CHECK(pool.free_count() == 0);
    pool.kill();
    CHECK(pool.size() == 0);
    CHECK(pool.unfinished_tasks() == 1);  // the running one cannot be interrupted
    for (auto& r : queued) CHECK_THROWS_AS(r->get(5s), ThreadPoolKilled);
    CHECK(first->get(5s) == 1);  // it finishes and delivers
    CHECK(pool.join(5s));
    CHECK(pool.apply([] { return 2; }) == 2);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "join waits cooperatively for every task") {
    ThreadPool pool(2);
    CHECK(pool.join(0s));  // nothing to wait for
    std::atomic<int> done{0};
    for (int i = 0; i < 4; ++i)
        (void)pool.spawn([&] {
            block_for(40ms);
            ++done;
        });
    CHECK_FALSE(pool.join(0s));
    CHECK_FALSE(pool.join(10ms));
    Ticker ticker;
    CHECK(pool.join(5s));
    CHECK(done == 4);
    CHECK(ticker.ticks >= 2);  // join did not block the hub
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "set_maxsize grows and shrinks the pool") {
    ThreadPool pool(1);
    CHECK(pool.maxsize() == 1);
    std::vector<std::shared_ptr<AsyncResult<void>>> rs;
    for (int i = 0; i < 4; ++i) rs.push_back(pool.spawn([] { block_for(100ms); }));
    auto t0 = Clock::now();
    pool.set_maxsize(4);  // the queued tasks get workers at once
    CHECK(pool.maxsize() == 4);
    for (auto& r : rs) r->get();
    CHECK(ms_since(t0) < 300);  // not 4 x 100 ms
    CHECK(pool.size() == 4);
    pool.set_maxsize(2);
    CHECK(eventually([&] { return pool.size() == 2; }));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "the destructor cancels queued work and joins the threads") {
    std::size_t before = os_threads();
    std::shared_ptr<AsyncResult<int>> running;
    std::vector<std::shared_ptr<AsyncResult<int>>> queued;
    std::atomic<int> ran{0};
    auto t0 = Clock::now();
    {
        ThreadPool pool(2);
        for (int i = 0; i < 2; ++i)
            running = pool.spawn([&] {
                block_for(100ms);
                ++ran;
                return 1;
            });
        for (int i = 0; i < 20; ++i)
            queued.push_back(pool.spawn([&] {
                block_for(100ms);
                ++ran;
                return 2;
            }));
        cogent::sleep(10ms);
    }
    double ms = ms_since(t0);
    CHECK(ms < 400);  // waited for the two running tasks only
    CHECK(ran == 2);
    CHECK(os_threads() == before);  // every worker joined
    CHECK(running->get(5s) == 1);
    for (auto& r : queued)
        CHECK_THROWS_WITH_AS(r->get(5s), doctest::Contains("killed"), ThreadPoolKilled);
}

TEST_CASE_FIXTURE(
    cogent_test::LeakCheck,
    "greenlets of three OS threads use one pool at once, each waiting on its own hub") {
    ThreadPool pool(4);
    auto use = [&pool](int base, int* sum, int* ticks) {
        Ticker ticker;
        std::vector<std::shared_ptr<AsyncResult<int>>> rs;
        for (int i = 0; i < 8; ++i)
            rs.push_back(pool.spawn([base, i] {
                block_for(20ms);
                return base + i;
            }));
        // A greenlet of this thread waits while this thread's ticker keeps running.
        auto g = cogent::spawn([&] {
            for (auto& r : rs) *sum += r->get();
        });
        g.join();
        *sum += pool.apply([] { return 1000; });
        *ticks = ticker.ticks;
    };
    int sum1 = 0, sum2 = 0, ticks1 = 0, ticks2 = 0;
    std::thread t1(use, 0, &sum1, &ticks1);
    std::thread t2(use, 100, &sum2, &ticks2);
    int sum3 = 0, ticks3 = 0;
    use(10000, &sum3, &ticks3);  // and the main thread at the same time
    t1.join();
    t2.join();
    CHECK(sum1 == 28 + 1000);
    CHECK(sum2 == 800 + 28 + 1000);
    CHECK(sum3 == 80000 + 28 + 1000);
    CHECK(ticks1 >= 1);
    CHECK(ticks2 >= 1);
    CHECK(ticks3 >= 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "a thread that exits before its result arrives does not crash the worker") {
    ThreadPool pool(1);
    std::atomic<bool> finished{false};
    std::thread t([&] {
        // Spawn and leave at once: the worker finds the thread's door shut.
        auto r = pool.spawn([&] {
            block_for(50ms);
            finished = true;
            return std::string(100, 'x');
        });
        (void)r;
    });
    t.join();
    CHECK(pool.join(5s));
    CHECK(finished);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "apply and map from a worker of the same pool run inline") {
    ThreadPool pool(1);  // waiting for a second worker would deadlock
    int v = pool.apply([&pool] {
        CHECK(pool.in_worker_thread());
        auto m = pool.map([](int x) { return x * 2; }, std::vector<int>{1, 2});
        return pool.apply([] { return 40; }) + m[0];
    });
    CHECK(v == 42);
    CHECK_FALSE(pool.in_worker_thread());
    CHECK_THROWS_AS(pool.apply([&pool] { return pool.join(); }), std::logic_error);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "bad input is rejected with a clear error") {
    CHECK_THROWS_WITH_AS(ThreadPool(std::size_t(-1)), doctest::Contains("negative"),
                         std::invalid_argument);
    CHECK_THROWS_AS(ThreadPool(1, ThreadPoolOptions{.idle_timeout = -1s}), std::invalid_argument);
    ThreadPool pool(1);
    CHECK_THROWS_WITH_AS(pool.set_maxsize(std::size_t(-1)), doctest::Contains("negative"),
                         std::invalid_argument);
    CHECK(pool.maxsize() == 1);
    CHECK_THROWS_AS(pool.imap([](int x) { return x; }, std::vector<int>{1}, 0),
                    std::invalid_argument);
    CHECK_THROWS_AS(pool.join(-1s), std::invalid_argument);
    // Blocking on the hub is refused before anything is submitted.
    std::string what;
    cogent::get_hub().run_callback([&] {
        try {
            pool.apply([] { return 1; });
        } catch (const cogent::BlockingSwitchOutError& e) {
            what = e.what();
        }
    });
    cogent::sleep(0);
    CHECK(what.find("ThreadPool::apply") != std::string::npos);
    CHECK(pool.unfinished_tasks() == 0);
    // spawn never blocks, so the hub may call it.
    std::shared_ptr<AsyncResult<int>> r;
    cogent::get_hub().run_callback([&] { r = pool.spawn([] { return 4; }); });
    cogent::sleep(0);
    REQUIRE(r);
    CHECK(r->get(5s) == 4);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get_threadpool is one process-wide pool") {
    ThreadPool& a = cogent::get_threadpool();
    CHECK(&a == &cogent::get_threadpool());
    if (!std::getenv("COGENT_THREADPOOL_SIZE")) CHECK(a.maxsize() == 10);
    CHECK(a.apply([] { return 5; }) == 5);
}

// Runs itself again with the setting (config is read once per process); the child takes the
// other branch.
TEST_CASE("get_threadpool honours COGENT_THREADPOOL_SIZE") {
    if (const char* e = std::getenv("COGENT_THREADPOOL_SIZE"); e && std::getenv("TP_CHILD")) {
        if (std::string(e) == "3") {
            CHECK(cogent::get_threadpool().maxsize() == 3);
        } else {
            CHECK_THROWS_WITH_AS(
                cogent::get_threadpool(),
                doctest::Contains(("COGENT_THREADPOOL_SIZE='" + std::string(e)).c_str()),
                std::invalid_argument);
            CHECK_THROWS_AS(cogent::get_threadpool(), std::invalid_argument);  // every time
        }
        return;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    exe[n] = 0;
    for (const char* value : {"3", "0", "1025", "ten", "4x", "-2"}) {
        auto r = cogent_test::run_child(std::string("env TP_CHILD=1 COGENT_THREADPOOL_SIZE='") +
                                        value + "' '" + exe + "' -tc='get_threadpool honours*'");
        std::string setting = value;
        CAPTURE(setting);
        CAPTURE(r.output);
        CHECK(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(r.output.find("1 passed") != std::string::npos);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "after fork the child can use the pools again") {
    ThreadPool pool(1);
    // Workers exist in the parent, one busy and a task queued behind it when fork() is called.
    CHECK(pool.apply([] { return 1; }) == 1);
    CHECK(cogent::get_threadpool().apply([] { return 1; }) == 1);
    auto busy = pool.spawn([] {
        block_for(150ms);
        return 7;
    });
    auto queued = pool.spawn([] { return 8; });
    cogent::sleep(20ms);
    REQUIRE(pool.unfinished_tasks() == 2);
    std::fflush(nullptr);  // or the child would print the parent's buffered output again
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int code = 0;
        try {
            // The task running in the parent when it forked does not run here.
            for (auto* r : {&busy, &queued}) {
                try {
                    (*r)->get(2s);
                    code = 10;
                } catch (const ThreadPoolKilled&) {
                }
            }
            if (pool.size() != 0 || pool.unfinished_tasks() != 0) code = 11;
            if (pool.apply([] { return 40; }) + 2 != 42) code = 12;
            auto m = pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2, 3});
            if (m != std::vector<int>{2, 3, 4}) code = 13;
            if (cogent::get_threadpool().apply([] { return 3; }) != 3) code = 14;
            if (!pool.join(2s)) code = 15;
        } catch (...) {
            code = 20;
        }
        _exit(code);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // The parent is unaffected.
    CHECK(busy->get(5s) == 7);
    CHECK(queued->get(5s) == 8);
    CHECK(pool.apply([] { return 9; }) == 9);
}
