// Misuse across threads is an error, never a crash (issue 12): a greenlet or waitable belongs
// to the thread that constructed it; a call from another thread throws GreenletError in the
// caller, naming the call (and the greenlet), and leaves the object as it was. Self-join is an
// error too.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// Run fn on a new std::thread; the GreenletError message it threw, or a note that it did not.
std::string foreign(const std::function<void()>& fn) {
    std::string out = "<no exception>";
    std::thread t([&] {
        try {
            fn();
        } catch (const cogent::GreenletError& e) {
            out = e.what();
        } catch (const std::exception& e) {
            out = std::string("<other exception> ") + e.what();
        }
    });
    t.join();
    return out;
}

bool has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string self_join_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const cogent::GreenletError& e) {
        return e.what();
    }
    return "<no exception>";
}

}  // namespace

TEST_SUITE("misuse_threads") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "kill from another thread throws and kills nothing") {
        auto g = cogent::spawn(cogent::SpawnOptions{.name = "sleeper"}, [] { cogent::sleep(10s); });
        cogent::sleep(0ms);  // started and parked
        std::string m = foreign([&] { g.kill(); });
        CHECK(has(m, "cogent: sleeper.kill() called from another thread"));
        m = foreign([&] { g.kill(cogent::GreenletExit(), false); });  // non-blocking too
        CHECK(has(m, "sleeper.kill()"));
        cogent::sleep(10ms);
        CHECK_FALSE(g.dead());  // the kill was not sent
        g.kill();               // the owner still kills it normally
        CHECK(g.dead());
        CHECK(g.killed());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "greenlet calls from another thread throw and change nothing") {
        auto g = cogent::spawn(cogent::SpawnOptions{.name = "worker"}, [] {
            cogent::sleep(20ms);
            return 7;
        });
        auto later = cogent::make_greenlet([] { return 1; });
        CHECK(has(foreign([&] { g.join(); }), "worker.join() called from another thread"));
        CHECK(has(foreign([&] { g.join(1ms); }), "worker.join()"));
        CHECK(has(foreign([&] { g.get(); }), "worker.get()"));
        CHECK(has(foreign([&] { g.link([](cogent::AnyGreenlet) {}); }), "worker.link()"));
        CHECK(
            has(foreign([&] { g.link_value([](cogent::AnyGreenlet) {}); }), "worker.link_value()"));
        CHECK(has(foreign([&] { g.link_exception([](cogent::AnyGreenlet) {}); }),
                  "worker.link_exception()"));
        CHECK(has(foreign([&] { g.rawlink([](cogent::AnyGreenlet) {}); }), "worker.rawlink()"));
        CHECK(has(foreign([&] { g.unlink(12345); }), "worker.unlink()"));
        CHECK(has(foreign([&] { g.set_name("x"); }), "worker.set_name()"));
        CHECK(has(foreign([&] { (void)g.raw(); }), "worker.raw()"));
        CHECK(has(foreign([&] { (void)g.value(); }), "worker.value()"));
        CHECK(has(foreign([&] { later.start(); }), ".start() called from another thread"));
        CHECK(has(foreign([&] { later.start_later(1ms); }), ".start_later()"));
        CHECK(g.state()->linkcount() == 0);  // no link was added
        CHECK(g.name() == "worker");
        CHECK_FALSE(later.started());
        // The owner thread goes on normally.
        CHECK(g.get() == 7);
        CHECK(g.value() == 7);
        later.start();
        CHECK(later.get() == 1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "joinall, killall, iwait and wait check every object first") {
        auto mine = cogent::spawn([] { cogent::sleep(20ms); });
        cogent::AnyGreenlet theirs;
        // A greenlet of another thread (that thread waits for it; its hub ends with it).
        std::atomic<bool> made{false}, checked{false};
        std::thread t([&] {
            auto own = cogent::spawn([] { cogent::sleep(1ms); });
            theirs = own;
            made = true;
            while (!checked) std::this_thread::sleep_for(1ms);
            own.join();
        });
        while (!made) std::this_thread::sleep_for(1ms);
        std::vector<cogent::AnyGreenlet> both{mine, theirs};
        auto msg = [](const std::function<void()>& fn) { return self_join_message(fn); };
        CHECK(has(msg([&] { cogent::joinall(both); }), ".joinall() called from another thread"));
        CHECK(has(msg([&] { cogent::killall(both); }), ".killall() called from another thread"));
        CHECK(has(msg([&] { (void)cogent::iwait(both); }), ".iwait() called from another thread"));
        CHECK(has(msg([&] { (void)cogent::wait(both); }), ".iwait() called from another thread"));
        both.clear();  // drop main's references to the other thread's greenlet while it lives
        theirs = {};
        checked = true;
        t.join();
        CHECK(mine.state()->linkcount() == 0);  // nothing was left linked
        CHECK_FALSE(mine.dead());               // killall sent no kill
        CHECK(cogent::joinall({mine}).size() == 1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "Event, Semaphore, Queue, Group and Pool calls from another thread throw") {
        cogent::Event ev;
        CHECK(has(foreign([&] { ev.set(); }), "cogent: Event::set called from another thread"));
        CHECK(has(foreign([&] { ev.wait(1ms); }), "Event::wait called from another thread"));
        CHECK(has(foreign([&] { ev.clear(); }), "Event::clear"));
        CHECK(has(foreign([&] { ev.rawlink([](cogent::Event&) {}); }),
                  "rawlink called from another"));
        CHECK(has(foreign([&] { ev.unlink(1); }), "unlink called from another"));
        CHECK_FALSE(ev.is_set());
        CHECK(ev.linkcount() == 0);
        auto setter = cogent::spawn([&] { ev.set(); });
        CHECK(ev.wait(5s));

        cogent::Semaphore sem(1);
        CHECK(
            has(foreign([&] { sem.acquire(); }), "Semaphore::acquire called from another thread"));
        CHECK(has(foreign([&] { sem.release(); }), "Semaphore::release"));
        CHECK(sem.acquire(false));  // the permit is still there
        sem.release();

        cogent::Queue<int> q;
        CHECK(has(foreign([&] { q.put(1); }), "Queue::put called from another thread"));
        CHECK(has(foreign([&] { (void)q.get(false); }), "Queue::get"));
        CHECK(q.empty());
        q.put(2);
        CHECK(q.get() == 2);

        cogent::Pool pool(2);
        auto g = pool.spawn([] { cogent::sleep(5ms); });
        CHECK(has(foreign([&] { pool.spawn([] {}); }), "Group::add called from another thread"));
        CHECK(has(foreign([&] { pool.join(); }), "Group::join"));
        CHECK(has(foreign([&] { pool.kill(); }), "Group::kill"));
        CHECK(has(foreign([&] { pool.discard(g); }), "Group::discard"));
        CHECK(has(foreign([&] { (void)pool.greenlets(); }), "Group::greenlets"));
        CHECK(has(foreign([&] { pool.wait_available(); }), "Pool::wait_available"));
        CHECK(pool.size() == 1);
        CHECK(pool.contains(g));
        CHECK(pool.join(5s));
        CHECK(g.dead());
        setter.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "AsyncResult::set from another thread still works; get from it throws") {
        cogent::AsyncResult<int> r;
        CHECK(has(foreign([&] { (void)r.get(1ms); }), "called from a thread other than the one"));
        std::thread t([&] { r.set(5); });
        CHECK(r.get(5s) == 5);
        t.join();
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "a greenlet joining itself throws GreenletError, timed or not") {
        std::vector<std::string> msgs;
        cogent::Greenlet<int> g;
        g = cogent::spawn(cogent::SpawnOptions{.name = "selfish"}, [&] {
            cogent::Greenlet<int> me = g;
            msgs.push_back(self_join_message([&] { me.join(); }));
            msgs.push_back(self_join_message([&] { me.join(10ms); }));
            msgs.push_back(self_join_message([&] { me.join(0ms); }));
            msgs.push_back(self_join_message([&] { me.get(); }));
            msgs.push_back(self_join_message([&] { me.get(10ms); }));
            msgs.push_back(self_join_message([&] { cogent::joinall({cogent::AnyGreenlet(me)}); }));
            std::vector<cogent::AnyGreenlet> v{me};
            msgs.push_back(self_join_message([&] { (void)cogent::iwait(v); }));
            msgs.push_back(self_join_message([&] { (void)cogent::wait(v, 10ms); }));
            msgs.push_back(self_join_message([&] { cogent::killall(v); }));
            cogent::sleep(1ms);  // still works normally afterwards
            return 3;
        });
        CHECK(g.get(5s) == 3);
        REQUIRE(msgs.size() == 9);
        for (const auto& m : msgs) {
            INFO(m);
            CHECK(has(m, "cogent: selfish cannot join itself"));
        }
        CHECK(has(msgs[0], "selfish.join()"));
        CHECK(has(msgs[3], "selfish.get()"));
        CHECK(has(msgs[5], "selfish.joinall()"));
        CHECK(g.state()->linkcount() == 0);
    }

}  // TEST_SUITE
