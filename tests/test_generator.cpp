// Generator<T, S>: yield, iterate, send, exceptions, early destruction.
#include <chrono>
#include <cogent/generator.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::LeakCheck;

namespace {

struct Boom : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Guard {
    int& n;
    ~Guard() { ++n; }
};

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "Generator: range-for yields every value, then ends") {
    cogent::Generator<int> gen([](cogent::Yielder<int>& yield) {
        for (int i = 0; i < 5; ++i) yield(i * i);
    });
    CHECK_FALSE(gen.done());
    std::vector<int> got;
    for (int v : gen) got.push_back(v);
    CHECK(got == std::vector<int>{0, 1, 4, 9, 16});
    CHECK(gen.done());
    CHECK_FALSE(gen.next());
    CHECK(gen.begin() == gen.end());
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: next() and a generic producer") {
    cogent::Generator<std::string> gen([](auto& y) {
        y("a");
        y.yield("b");
    });
    CHECK(gen.next() == "a");
    CHECK(gen.next() == "b");
    CHECK_FALSE(gen.next());
    CHECK(gen.done());

    cogent::Generator<int> empty([](auto&) {});
    CHECK(empty.begin() == empty.end());
    CHECK(empty.done());

    // Mixing next() and range-for continues where it left off.
    cogent::Generator<int> mixed([](auto& y) {
        for (int i = 1; i <= 4; ++i) y(i);
    });
    CHECK(mixed.next() == 1);
    std::vector<int> rest;
    for (int v : mixed) rest.push_back(v);
    CHECK(rest == std::vector<int>{2, 3, 4});
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: the produce/consume coroutine with send") {
    // Python's classic: the generator is the consumer; the producer sends it work and reads
    // back its status.
    std::vector<std::string> log;
    cogent::Generator<std::string, int> consumer([&](cogent::Yielder<std::string, int>& yield) {
        std::string status;
        for (;;) {
            std::optional<int> n = yield(status);
            if (!n) return;
            log.push_back("consume " + std::to_string(*n));
            status = "200 OK " + std::to_string(*n);
        }
    });
    CHECK_THROWS_AS(consumer.send(1), std::logic_error);  // not started yet
    CHECK(consumer.next() == "");
    for (int n = 1; n <= 3; ++n) {
        log.push_back("produce " + std::to_string(n));
        CHECK(consumer.send(n) == "200 OK " + std::to_string(n));
    }
    CHECK(consumer.next() == std::nullopt);  // a plain next() sends nothing: it returns
    CHECK(consumer.done());
    CHECK(log == std::vector<std::string>{"produce 1", "consume 1", "produce 2", "consume 2",
                                          "produce 3", "consume 3"});
    CHECK_FALSE(consumer.send(4));
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: the producer's exception reaches the consumer") {
    cogent::Generator<int> gen([](auto& y) {
        y(1);
        throw Boom("bad");
    });
    CHECK(gen.next() == 1);
    CHECK_THROWS_WITH_AS(gen.next(), "bad", Boom);
    CHECK(gen.done());
    CHECK_FALSE(gen.next());

    cogent::Generator<int> loop([](auto& y) {
        y(1);
        y(2);
        throw Boom("in loop");
    });
    std::vector<int> got;
    auto consume = [&] {
        for (int v : loop) got.push_back(v);
    };
    CHECK_THROWS_WITH_AS(consume(), "in loop", Boom);
    CHECK(got == std::vector<int>{1, 2});
}

TEST_CASE_FIXTURE(LeakCheck,
                  "Generator: destroying a half-consumed generator unwinds the producer") {
    int unwound = 0;
    bool ran = false;
    {
        cogent::Generator<int> gen([&](auto& y) {
            Guard g{unwound};
            for (int i = 0;; ++i) y(i);
        });
        for (int v : gen)
            if (v == 3) break;
    }
    CHECK(unwound == 1);
    {
        cogent::Generator<int> never([&](auto& y) {
            ran = true;
            y(1);
        });
    }
    CHECK_FALSE(ran);  // never started: never runs

    cogent::Generator<int> closing([&](auto& y) {
        Guard g{unwound};
        y(1);
        y(2);
    });
    CHECK(closing.next() == 1);
    closing.close();
    CHECK(unwound == 2);
    CHECK(closing.done());
    CHECK_FALSE(closing.next());
    closing.close();  // again: no-op
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: a producer that ignores GreenletExit") {
    int yields = 0;
    {
        cogent::Generator<int> stubborn([&](auto& y) {
            try {
                y(1);
            } catch (const cogent::GreenletExit&) {
            }
            ++yields;
            y(2);  // the second GreenletExit is not caught
        });
        CHECK(stubborn.next() == 1);
        CHECK_THROWS_AS(stubborn.close(), std::runtime_error);
        CHECK_FALSE(stubborn.done());
        CHECK(yields == 1);
    }  // the destructor's close() ends it
    CHECK(cogent::debug::live_greenlets() == 0);
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: move-only values, moves, other greenlets") {
    cogent::Generator<std::unique_ptr<int>> gen([](auto& y) {
        for (int i = 0; i < 3; ++i) y(std::make_unique<int>(i));
    });
    auto first = gen.next();
    REQUIRE(first);
    CHECK(**first == 0);
    cogent::Generator<std::unique_ptr<int>> moved = std::move(gen);
    CHECK(gen.done());  // moved-from
    // Resumed from another greenlet: yields come back to whoever resumes it.
    auto g = cogent::spawn([&] {
        int sum = 0;
        for (auto& p : moved) sum += *p;
        return sum;
    });
    CHECK(g.get() == 3);
    CHECK(moved.done());
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: a producer may block while other greenlets run") {
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) {
            cogent::sleep(1ms);
            ++ticks;
        }
    });
    auto consumer = cogent::spawn([] {
        cogent::Generator<int> gen([](auto& y) {
            for (int i = 1; i <= 3; ++i) {
                cogent::sleep(2ms);
                y(i);
            }
        });
        int sum = 0;
        for (int v : gen) sum += v;
        return sum;
    });
    CHECK(consumer.get() == 6);
    ticker.join();
    CHECK(ticks == 3);
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: a consumer interrupted while the producer blocks") {
    int unwound = 0;
    {
        cogent::Generator<int> gen([&](auto& y) {
            Guard g{unwound};
            cogent::sleep(10s);
            y(1);
        });
        CHECK_THROWS_AS(cogent::with_timeout(5ms, [&] { return gen.next(); }), cogent::Timeout);
        CHECK_THROWS_AS(gen.next(), std::logic_error);  // still running: not resumable
        CHECK(unwound == 0);
    }  // destruction unwinds the blocked producer
    CHECK(unwound == 1);
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: misuse") {
    cogent::Yielder<int>* saved = nullptr;
    cogent::Generator<int> gen([&](auto& y) {
        saved = &y;
        y(1);
        y(2);
    });
    CHECK(gen.next() == 1);
    REQUIRE(saved);
    CHECK_THROWS_AS((*saved)(5), std::logic_error);  // outside the producer

    // Resuming a generator from its own producer.
    cogent::Generator<int>* self = nullptr;
    bool refused = false;
    cogent::Generator<int> rec([&](auto& y) {
        try {
            self->next();
        } catch (const std::logic_error&) {
            refused = true;
        }
        y(0);
    });
    self = &rec;
    CHECK(rec.next() == 0);
    CHECK(refused);
}

TEST_CASE_FIXTURE(LeakCheck, "Generator: nested generators") {
    auto range = [](int lo, int hi) {
        return cogent::Generator<int>([lo, hi](auto& y) {
            for (int i = lo; i < hi; ++i) y(i);
        });
    };
    cogent::Generator<int> evens([&](auto& y) {
        for (int v : range(0, 10))
            if (v % 2 == 0) y(v);
    });
    std::vector<int> got;
    for (int v : evens) got.push_back(v);
    CHECK(got == std::vector<int>{0, 2, 4, 6, 8});
}
