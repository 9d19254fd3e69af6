// local<T>: one value per greenlet, made on first use, destroyed when its greenlet ends.
#include <chrono>
#include <cogent/local.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::LeakCheck;

namespace {

struct Tracked {
    static inline int alive = 0;
    static inline int made = 0;
    int v = 0;
    Tracked() {
        ++alive;
        ++made;
    }
    Tracked(const Tracked&) = delete;
    ~Tracked() { --alive; }
};

struct NoDefault {
    explicit NoDefault(int x) : v(x) {}
    int v;
};

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "local: one value per greenlet, made on first use") {
    const int made0 = Tracked::made;
    cogent::local<Tracked> loc;
    CHECK_FALSE(loc.has_value());
    CHECK(Tracked::made == made0);
    loc->v = 1;  // the main greenlet's value
    CHECK(loc.has_value());
    CHECK(Tracked::made == made0 + 1);
    auto a = cogent::spawn([&] {
        CHECK_FALSE(loc.has_value());
        CHECK(loc->v == 0);  // a fresh value, not main's
        loc->v = 2;
        cogent::sleep(5ms);
        CHECK(loc->v == 2);  // b did not touch it
        return (*loc).v;
    });
    auto b = cogent::spawn([&] {
        loc.get().v = 3;
        cogent::sleep(1ms);
        CHECK(loc->v == 3);
    });
    cogent::joinall({a, b});
    CHECK(a.get() == 2);
    CHECK(loc->v == 1);
    CHECK(&loc.get() == &*loc);
    CHECK(Tracked::made == made0 + 3);
}

TEST_CASE_FIXTURE(LeakCheck, "local: a greenlet's value is destroyed when it ends") {
    const int alive0 = Tracked::alive;
    {
        cogent::local<Tracked> loc;

        // Ended normally. The value is destroyed inside the greenlet as it ends (an exit hook),
        // so join() returns after it is gone even though it started waiting first.
        auto g = cogent::spawn([&] {
            loc->v = 9;
            CHECK(Tracked::alive == alive0 + 1);
        });
        g.join();
        CHECK(Tracked::alive == alive0);

        // Killed: the value is gone by the time kill() returns.
        auto k = cogent::spawn([&] {
            loc.get();
            cogent::sleep(10s);
        });
        cogent::sleep(0);
        CHECK(Tracked::alive == alive0 + 1);
        k.kill();
        CHECK(Tracked::alive == alive0);

        // Failed.
        auto f = cogent::spawn([&] {
            loc.get();
            throw std::runtime_error("expected failure");
        });
        f.join();
        cogent::sleep(0);
        CHECK(Tracked::alive == alive0);

        // Many greenlets, all holding their value at once: each waits for `go` (not for a
        // timer, which could fire before main looks and end some of them).
        std::vector<cogent::AnyGreenlet> gs;
        cogent::Event all_started, go;
        int started = 0;
        for (int i = 0; i < 50; ++i)
            gs.push_back(cogent::spawn([&, i] {
                loc->v = i;
                if (++started == 50) all_started.set();
                go.wait();
                CHECK(loc->v == i);
            }));
        CHECK(all_started.wait(60s));
        CHECK(Tracked::alive == alive0 + 50);
        go.set();
        cogent::joinall(gs);
        cogent::sleep(0);
        CHECK(Tracked::alive == alive0);

        // The main greenlet's value lives as long as the local.
        loc.get();
        CHECK(Tracked::alive == alive0 + 1);
    }
    CHECK(Tracked::alive == alive0);
}

TEST_CASE_FIXTURE(LeakCheck, "local: destroying the local destroys live greenlets' values") {
    const int alive0 = Tracked::alive;
    auto loc = std::make_unique<cogent::local<Tracked>>();
    auto g = cogent::spawn([&] {
        loc->get();
        cogent::sleep(10s);
    });
    cogent::sleep(0);
    CHECK(Tracked::alive == alive0 + 1);
    loc.reset();
    CHECK(Tracked::alive == alive0);
    g.kill();  // its death no longer reaches the destroyed local (ASan would tell)
    CHECK(Tracked::alive == alive0);
}

TEST_CASE_FIXTURE(LeakCheck, "local: factory, reset, failing construction") {
    int calls = 0;
    cogent::local<std::string> name([&] {
        ++calls;
        return std::string("anon-") + std::to_string(calls);
    });
    CHECK(*name == "anon-1");
    auto g = cogent::spawn([&] { return *name; });
    CHECK(g.get() == "anon-2");
    CHECK(*name == "anon-1");
    name.reset();
    CHECK_FALSE(name.has_value());
    CHECK(*name == "anon-3");
    name->append("!");
    CHECK(*name == "anon-3!");

    // A factory may block.
    cogent::local<int> slow([] {
        cogent::sleep(1ms);
        return 42;
    });
    CHECK(*slow == 42);

    // A throwing factory stores nothing.
    bool fail = true;
    cogent::local<int> flaky([&] {
        if (fail) throw std::runtime_error("no value");
        return 7;
    });
    CHECK_THROWS_AS(flaky.get(), std::runtime_error);
    CHECK_FALSE(flaky.has_value());
    fail = false;
    CHECK(*flaky == 7);

    cogent::local<NoDefault> nd;
    CHECK_THROWS_AS(nd.get(), std::logic_error);
    cogent::local<NoDefault> nd2([] { return NoDefault(5); });
    CHECK(nd2->v == 5);
    CHECK_THROWS_AS(cogent::local<int>(std::function<int()>()), std::invalid_argument);
}

TEST_CASE_FIXTURE(LeakCheck,
                  "local: raw greenlets get their own value, dropped once they are dead") {
    const int alive0 = Tracked::alive;
    cogent::local<Tracked> loc;
    loc->v = 1;
    cogent::RawGreenlet r([&] {
        CHECK(loc->v == 0);
        loc->v = 5;
    });
    r.switch_to();
    CHECK(r.dead());
    CHECK(Tracked::alive == alive0 + 2);  // main's and the dead raw greenlet's (no death link)
    auto g = cogent::spawn([&] { loc.get(); });  // a first use elsewhere sweeps the dead one
    g.join();
    cogent::sleep(0);
    CHECK(Tracked::alive == alive0 + 1);
    CHECK(loc->v == 1);
}

TEST_CASE_FIXTURE(LeakCheck, "local: one local shared by greenlets of several threads") {
    cogent::local<int> loc;
    *loc = -1;
    std::vector<std::thread> threads;
    std::vector<int> sums(3, 0);
    for (int t = 0; t < 3; ++t)
        threads.emplace_back([&, t] {
            std::vector<cogent::Greenlet<int>> gs;
            for (int i = 0; i < 20; ++i)
                gs.push_back(cogent::spawn([&, i] {
                    *loc = t * 100 + i;
                    cogent::sleep(0);
                    return *loc;
                }));
            cogent::joinall(gs);
            for (int i = 0; i < 20; ++i) sums[t] += gs[i].get() - (t * 100 + i);
        });
    for (auto& th : threads) th.join();
    CHECK(sums == std::vector<int>{0, 0, 0});
    CHECK(*loc == -1);
}
