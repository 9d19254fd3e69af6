// The hub: sleep, idle, LoopExit, BlockingSwitchOutError, callbacks (also cross-thread),
// fairness between yielding greenlets and timers, one hub per thread.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using namespace std::chrono_literals;
using cogent::BlockingSwitchOutError;
using cogent::Event;
using cogent::GreenletError;
using cogent::LoopExit;
using Clock = std::chrono::steady_clock;

namespace {}  // namespace

TEST_SUITE("hub") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "sleep(0) yields once to every runnable greenlet and returns") {
        std::vector<std::string> log;
        auto worker = [&log](std::string name) {
            for (int i = 0; i < 3; ++i) {
                log.push_back(name + std::to_string(i));
                cogent::sleep(0);
            }
        };
        auto a = cogent::spawn(worker, std::string("a"));
        auto b = cogent::spawn(worker, std::string("b"));
        auto c = cogent::spawn(worker, std::string("c"));
        cogent::sleep(0);
        // Each ran up to its first yield; none ran twice before the main greenlet got back.
        CHECK(log == std::vector<std::string>{"a0", "b0", "c0"});
        cogent::sleep(0);
        CHECK(log == std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "c1"});
        cogent::joinall({a, b, c});
        CHECK(log.size() == 9);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "sleep(negative) yields like sleep(0); sleep(NaN) is rejected") {
        bool ran = false;
        auto g = cogent::spawn([&] { ran = true; });
        auto t0 = Clock::now();
        cogent::sleep(-5ms);
        CHECK(ran);
        CHECK(ms_since(t0) < 1000.0);
        cogent::sleep(-1.0);
        CHECK_THROWS_AS(cogent::sleep(std::nan("")), std::invalid_argument);
        cogent::yield();
        g.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "sleep(d) resumes no earlier than d") {
        for (auto d : {1ms, 15ms, 40ms}) {
            auto t0 = Clock::now();
            cogent::sleep(d);
            double ms = ms_since(t0);
            CHECK(ms >= std::chrono::duration<double, std::milli>(d).count());
            CHECK(ms < std::chrono::duration<double, std::milli>(d).count() + 2000.0);
        }
        auto t0 = Clock::now();
        cogent::sleep(0.025);  // gevent spelling: seconds
        CHECK(ms_since(t0) >= 25.0);
        // A sub-nanosecond duration still sleeps (it is rounded up, not turned into a yield).
        cogent::sleep(std::chrono::duration<double, std::nano>(0.4));
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "concurrent sleepers wake in deadline order") {
        std::vector<int> order;
        std::vector<cogent::Greenlet<void>> gs;
        for (int ms : {30, 10, 20})
            gs.push_back(cogent::spawn([&order, ms] {
                cogent::sleep(std::chrono::milliseconds(ms));
                order.push_back(ms);
            }));
        cogent::joinall(gs);
        CHECK(order == std::vector<int>{10, 20, 30});
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a ref=false sleep does not keep the loop alive") {
        // The main greenlet blocking on nothing but an unreferenced timer: LoopExit at once.
        auto t0 = Clock::now();
        CHECK_THROWS_AS(cogent::sleep(2s, false), LoopExit);
        CHECK(ms_since(t0) < 1000.0);

        // Blocking on a greenlet that only has an unreferenced sleep: LoopExit too.
        auto g = cogent::spawn([] { cogent::sleep(10s, false); });
        std::string msg;
        try {
            g.join();
        } catch (const LoopExit& e) {
            msg = e.what();
        }
        CHECK(msg.find("This operation would block forever") != std::string::npos);
        CHECK(msg.find("Greenlet::join") != std::string::npos);
        g.kill();
        CHECK(g.dead());

        // With something else keeping the loop alive, the unreferenced sleep still fires.
        bool woke = false;
        auto h = cogent::spawn([&] {
            cogent::sleep(5ms, false);
            woke = true;
        });
        cogent::sleep(100ms);
        CHECK(woke);
        CHECK(h.dead());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "idle() returns once nothing else is runnable") {
        int finished = 0;
        std::vector<cogent::Greenlet<void>> gs;
        for (int i = 0; i < 3; ++i)
            gs.push_back(cogent::spawn([&finished] {
                for (int k = 0; k < 5; ++k) cogent::sleep(0);
                ++finished;
            }));
        cogent::idle();
        CHECK(finished == 3);

        // idle() does not wait for timers that are not due.
        bool late = false;
        auto s = cogent::spawn([&] {
            cogent::sleep(30s);
            late = true;
        });
        cogent::sleep(0);
        auto t0 = Clock::now();
        cogent::idle();
        CHECK(ms_since(t0) < 10000.0);
        CHECK_FALSE(late);
        s.kill();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "LoopExit says it would block forever and what was waited on") {
        Event ev;
        std::string msg;
        try {
            ev.wait();
        } catch (const LoopExit& e) {
            msg = e.what();
        }
        INFO("LoopExit: " << msg);
        CHECK(msg.find("This operation would block forever") != std::string::npos);
        CHECK(msg.find("Event::wait") != std::string::npos);
        // LoopExit is an ordinary std::exception (unlike GreenletExit and Timeout).
        CHECK_THROWS_AS(ev.wait(), std::runtime_error);
        // The hub is still usable afterwards.
        auto g = cogent::spawn([] { return 5; });
        CHECK(g.get() == 5);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "blocking in a hub callback raises BlockingSwitchOutError") {
        int caught = 0;
        std::string what;
        Event ev;
        auto sleeper = cogent::spawn([] { cogent::sleep(10s); });
        cogent::get_hub().run_callback([&] {
            try {
                cogent::sleep(0);
            } catch (const BlockingSwitchOutError& e) {
                ++caught;
                what = e.what();
            }
            try {
                cogent::sleep(10ms);
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
            try {
                ev.wait();
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
            try {
                ev.wait(1s);
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
            try {
                cogent::idle();
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
            try {
                sleeper.join();
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
            try {
                cogent::Timeout t(1ms);
                cogent::sleep(1s);
            } catch (const BlockingSwitchOutError&) {
                ++caught;
            }
        });
        cogent::sleep(0);
        CHECK(caught == 7);
        CHECK(what.find("sleep") != std::string::npos);
        sleeper.kill();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "blocking in a rawlink raises BlockingSwitchOutError") {
        bool caught = false;
        Event never;
        auto g = cogent::spawn([] { return 1; });
        g.rawlink([&](cogent::AnyGreenlet) {
            try {
                never.wait();
            } catch (const BlockingSwitchOutError&) {
                caught = true;
            }
        });
        g.join();
        for (int i = 0; i < 5 && !caught; ++i) cogent::sleep(0);
        CHECK(caught);
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "run_callback is FIFO, runs before the caller resumes, and reports exceptions") {
        std::vector<int> order;
        auto hub = cogent::get_hub();
        for (int i = 0; i < 5; ++i) hub.run_callback([&order, i] { order.push_back(i); });
        CHECK(order.empty());  // queued, not run
        cogent::sleep(0);
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});

        StderrCapture cap;
        bool after = false;
        hub.run_callback([] { throw std::runtime_error("callback failure 77"); });
        hub.run_callback([&] { after = true; });
        cogent::sleep(0);
        std::string err = cap.text();
        CHECK(after);
        CHECK(err.find("callback failure 77") != std::string::npos);
        CHECK_THROWS_AS(hub.run_callback(nullptr), std::invalid_argument);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "run_callback from another thread is refused") {
        auto hub = cogent::get_hub();
        bool refused = false;
        std::thread t([&] {
            try {
                hub.run_callback([] {});
            } catch (const GreenletError&) {
                refused = true;
            }
        });
        t.join();
        CHECK(refused);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "run_callback_threadsafe from another thread wakes a blocked hub") {
        auto hub = cogent::get_hub();
        Event ev;
        std::thread::id ran_on;
        std::thread t([&] {
            std::this_thread::sleep_for(30ms);
            hub.run_callback_threadsafe([&] {
                ran_on = std::this_thread::get_id();
                ev.set();
            });
        });
        auto t0 = Clock::now();
        // The timeout keeps the loop referenced; the wake-up must come from the other thread.
        bool set = ev.wait(10s);
        double ms = ms_since(t0);
        t.join();
        CHECK(set);
        CHECK(ms < 5000.0);
        CHECK(ran_on == std::this_thread::get_id());
        CHECK(hub.is_current_thread());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "many run_callback_threadsafe calls from several threads all run") {
        auto hub = cogent::get_hub();
        int count = 0;  // touched only on the hub thread
        Event all;
        constexpr int kThreads = 3, kEach = 200;
        std::vector<std::thread> ts;
        for (int i = 0; i < kThreads; ++i)
            ts.emplace_back([&] {
                for (int k = 0; k < kEach; ++k)
                    hub.run_callback_threadsafe([&] {
                        if (++count == kThreads * kEach) all.set();
                    });
            });
        bool ok = all.wait(10s);
        for (auto& t : ts) t.join();
        CHECK(ok);
        CHECK(count == kThreads * kEach);
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "greenlets looping on sleep(0) do not starve timers or cross-thread wake-ups") {
        // Two greenlets yield in a loop until a timer in a third greenlet, a timer of the main
        // greenlet and a callback from another thread have all fired (or kCapMs has passed: a hub
        // that ran yielding greenlets forever without polling would get there). How late each one
        // is depends on the machine's load, so the lateness bounds are loose.
        auto t0 = Clock::now();
        constexpr double kCapMs = 20000.0;
        long spins = 0;
        long spins_at_timer = -1, spins_at_main = -1;
        long spins_at_async = -1;
        auto all_fired = [&] {
            return spins_at_timer >= 0 && spins_at_main >= 0 && spins_at_async >= 0;
        };
        auto spinner = [&] {
            while (!all_fired() && ms_since(t0) < kCapMs) {
                ++spins;
                cogent::sleep(0);
            }
        };
        auto s1 = cogent::spawn(spinner);
        auto s2 = cogent::spawn(spinner);
        double timer_late = -1;
        auto timer = cogent::spawn([&] {
            cogent::sleep(20ms);  // let the spinners get going
            auto t = Clock::now();
            cogent::sleep(2ms);
            timer_late = ms_since(t);
            spins_at_timer = spins;
        });
        // A wake-up from another thread (an ev_async, i.e. I/O on an eventfd) while they spin.
        auto hub = cogent::get_hub();
        double async_late = -1;
        std::atomic<bool> sent{false};
        Clock::time_point sent_at;
        std::thread other([&] {
            std::this_thread::sleep_for(60ms);
            sent_at = Clock::now();
            sent = true;
            hub.run_callback_threadsafe([&] {
                async_late = ms_since(sent_at);
                spins_at_async = spins;
            });
        });
        // The main greenlet sleeps too, among the spinners.
        cogent::sleep(0);
        auto tm = Clock::now();
        cogent::sleep(2ms);
        double main_late = ms_since(tm);
        spins_at_main = spins;
        cogent::joinall({s1, s2, timer});
        other.join();
        INFO("timer " << timer_late << " ms, main " << main_late << " ms, async " << async_late
                      << " ms late; spins " << spins << " (at timer " << spins_at_timer << ", main "
                      << spins_at_main << ", async " << spins_at_async << ")");
        REQUIRE(all_fired());
        CHECK(ms_since(t0) < kCapMs);  // they fired while the spinners were still spinning
        // ...and the spinners had been spinning before each of them.
        CHECK(spins_at_timer > 0);
        CHECK(spins_at_main > 0);
        CHECK(spins_at_async > 0);
        CHECK(timer_late >= 2.0);
        CHECK(timer_late < 2000.0);
        CHECK(main_late >= 2.0);
        CHECK(main_late < 2000.0);
        REQUIRE(sent);
        CHECK(async_late < 2000.0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "get_hub: one per thread, created on first use") {
        auto h1 = cogent::get_hub();
        auto h2 = cogent::get_hub();
        CHECK(h1 == h2);
        CHECK(h1.index() == h2.index());
        CHECK(h1.index() >= 1);
        CHECK(h1.is_current_thread());
        CHECK(cogent::debug::has_hub());

        std::uint64_t other_index = 0;
        bool had_hub_before = true, has_hub_after = false, same_in_thread = false;
        bool main_hub_is_current_there = true;
        std::thread t([&] {
            had_hub_before = cogent::debug::has_hub();
            auto a = cogent::get_hub();
            auto b = cogent::get_hub();
            same_in_thread = a == b;
            other_index = a.index();
            has_hub_after = cogent::debug::has_hub();
            main_hub_is_current_there = h1.is_current_thread();
        });
        t.join();
        CHECK_FALSE(had_hub_before);
        CHECK(has_hub_after);
        CHECK(same_in_thread);
        CHECK(other_index != 0);
        CHECK(other_index != h1.index());
        CHECK_FALSE(main_hub_is_current_there);
        // The hub greenlet is the parent of spawned greenlets, and describes itself as a hub.
        auto g = cogent::spawn([] { return cogent::getcurrent().parent().describe(); });
        CHECK(g.get().rfind("<Hub", 0) == 0);
    }

    // gevent.wait() with no objects = Hub.join(): run until nothing is left.
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "wait() with no objects runs until nothing is left") {
        // Nothing to do: returns at once.
        auto t0 = Clock::now();
        CHECK(cogent::wait());
        CHECK(ms_since(t0) < 1000.0);

        // Greenlets, the greenlets they spawn, sleeps and delayed spawns all run to the end.
        std::vector<std::string> log;
        auto a = cogent::spawn([&] {
            cogent::sleep(20ms);
            log.push_back("a");
            cogent::spawn([&] {
                cogent::sleep(20ms);
                log.push_back("a's child");
            });
        });
        auto later = cogent::spawn_later(30ms, [&] { log.push_back("later"); });
        bool read_done = false;
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        auto reader = cogent::spawn([&] {
            cogent::wait_read(fds[0]);  // an fd being waited on keeps the loop too
            read_done = true;
        });
        auto writer = cogent::spawn([&] {
            cogent::sleep(50ms);
            REQUIRE(::write(fds[1], "x", 1) == 1);
        });
        t0 = Clock::now();
        CHECK(cogent::wait());
        CHECK(ms_since(t0) >= 45.0);
        CHECK(log == std::vector<std::string>{"a", "later", "a's child"});
        CHECK(read_done);
        CHECK(a.dead());
        CHECK(later.dead());
        CHECK(writer.dead());
        CHECK(reader.dead());
        ::close(fds[0]);
        ::close(fds[1]);

        // A thread pool result on its way counts too.
        cogent::ThreadPool pool(1);
        int got = 0;
        auto r = pool.apply_async(
            [] {
                std::this_thread::sleep_for(30ms);
                return 7;
            },
            [&](int v) { got = v; });
        CHECK(cogent::wait());
        CHECK(got == 7);
        CHECK(r.dead());

        // A greenlet blocked on what nothing can set any more does not (gevent does the same).
        Event never;
        auto stuck = cogent::spawn([&] { never.wait(); });
        CHECK(cogent::wait());
        CHECK_FALSE(stuck.dead());
        never.set();
        stuck.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "wait(timeout) with no objects, and Hub::join") {
        auto sleeper = cogent::spawn([] { cogent::sleep(10s); });
        auto t0 = Clock::now();
        CHECK_FALSE(cogent::wait(20ms));  // something is left: false at the timeout
        CHECK(ms_since(t0) >= 19.0);
        CHECK(ms_since(t0) < 5000.0);
        CHECK_FALSE(cogent::get_hub().join(0s));  // the sleeper is still there
        sleeper.kill();
        CHECK(cogent::get_hub().join(10s));  // its timer does not keep the loop alive
        // The hub keeps working afterwards.
        auto g = cogent::spawn([] { return 3; });
        CHECK(g.get() == 3);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "wait() with no objects only from the main greenlet") {
        auto g = cogent::spawn([] { return cogent::wait(); });
        CHECK_THROWS_WITH_AS(g.get(), doctest::Contains("main greenlet"), GreenletError);
        std::string on_hub;
        cogent::get_hub().run_callback([&] {
            try {
                cogent::wait();
            } catch (const BlockingSwitchOutError&) {
                on_hub = "refused";
            }
        });
        cogent::sleep(0);
        CHECK(on_hub == "refused");
        auto main_hub = cogent::get_hub();
        std::string other;
        std::thread t([&] {
            try {
                main_hub.join();
            } catch (const GreenletError&) {
                other = "refused";
            }
        });
        t.join();
        CHECK(other == "refused");
        // A Timeout scope interrupts it like any wait.
        auto sleeper = cogent::spawn([] { cogent::sleep(10s); });
        CHECK_THROWS_AS(cogent::with_timeout(10ms, [] { return cogent::wait(); }), cogent::Timeout);
        sleeper.kill();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a burst of spawns is not starved by greenlets woken by I/O") {
        // 200 socket pairs keep up ping-pong (every poll resumes 200 readers) while one
        // greenlet spawns 2,000 greenlets that compute for 20 us each. Each queued start runs
        // in the hub's next round of callbacks, however long that round takes: they all start
        // within a few I/O rounds, not a few of them per round (once, 16 per 0.5 ms).
        constexpr int kPairs = 200, kSpawns = 2000;
        long reads = 0;  // recv completions, all pairs: about kPairs per I/O round
        bool stop = false;
        std::vector<cogent::Greenlet<void>> io;
        for (int i = 0; i < kPairs; ++i) {
            auto [a, b] = cogent::Socket::pair();
            auto side = [&reads, &stop](cogent::Socket s, bool first) {
                char c = 'x';
                try {
                    if (first) s.sendall(&c, 1);
                    while (!stop) {
                        if (s.recv(&c, 1) != 1) return;
                        ++reads;
                        s.sendall(&c, 1);
                    }
                } catch (const std::system_error&) {
                    // the peer saw `stop` first and closed its end (EPIPE, ECONNRESET)
                }
            };
            io.push_back(cogent::spawn(side, std::move(a), true));
            io.push_back(cogent::spawn(side, std::move(b), false));
        }
        while (reads < 4 * kPairs) cogent::sleep(1ms);
        const long at_spawn = reads;
        long last_start = 0;
        std::vector<cogent::Greenlet<void>> burst;
        burst.reserve(kSpawns);
        for (int i = 0; i < kSpawns; ++i)
            burst.push_back(cogent::spawn([&] {
                last_start = reads;
                const auto t = Clock::now();
                while (Clock::now() - t < 20us) {
                }
            }));
        cogent::joinall(burst);
        const long lag = last_start - at_spawn;
        INFO("I/O reads between the spawns and the last start: " << lag << " (" << kPairs
                                                                 << " per I/O round)");
        CHECK(lag <= 10 * kPairs);
        stop = true;
        cogent::joinall(io);
    }

}  // TEST_SUITE
