// Timeouts, kills and links: Timeout as an RAII scope, nested timeouts that tell themselves
// apart, with_timeout_or, killing a sleeping greenlet (its destructors run), link callbacks.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void timeout_scope() {
    std::printf("== 1. Timeout scope ==\n");
    auto t0 = Clock::now();
    try {
        cogent::Timeout t(50ms);  // starts now; fires only while we are blocked inside the scope
        cogent::sleep(1s);
        std::printf("  not reached\n");
    } catch (const cogent::Timeout& e) {
        // Timeout derives from cogent::BaseException, not std::exception: catch it by name.
        std::printf("  sleep(1s) interrupted after %.0f ms: caught Timeout (\"%s\")\n",
                    ms_since(t0), e.what());
    }
    // Leaving the scope cancels the timer: nothing fires later.
    {
        cogent::Timeout t(50ms);
        cogent::sleep(10ms);
    }
    cogent::sleep(60ms);
    std::printf("  a scope left before its deadline never fires\n");
    // A Timeout can throw an exception of your choice instead of itself.
    try {
        cogent::Timeout t(20ms, std::runtime_error("backend too slow"));
        cogent::sleep(1s);
    } catch (const std::runtime_error& e) {
        std::printf("  Timeout(20ms, runtime_error) threw: %s\n", e.what());
    }
    // Greenlet::get(timeout) and Event::wait(timeout) take the same durations.
    cogent::Event never;
    std::printf("  Event::wait(20ms) on an unset event returned %s\n",
                never.wait(20ms) ? "true" : "false");
    auto slow = cogent::spawn([] {
        cogent::sleep(100ms);
        return 7;
    });
    try {
        slow.get(20ms);
    } catch (const cogent::Timeout&) {
        std::printf("  Greenlet::get(20ms) on a greenlet still sleeping threw Timeout\n");
    }
    std::printf("  ...and get() without a timeout waits for its value: %d\n\n", slow.get());
}

void nested_timeouts() {
    std::printf("== 2. nested timeouts tell themselves apart ==\n");
    // The outer one expires first: the inner scope sees a Timeout that is not its own and
    // lets it through.
    try {
        cogent::Timeout outer(30ms);
        cogent::Timeout inner(500ms);
        try {
            cogent::sleep(1s);
        } catch (const cogent::Timeout& e) {
            std::printf("  inner scope caught a Timeout; is it mine? %s\n",
                        e == inner ? "yes" : "no -> rethrow");
            if (e != inner) throw;
        }
    } catch (const cogent::Timeout& e) {
        std::printf("  outer scope caught it: the outer timeout of %.3f s\n", e.seconds());
    }
    // The inner one expires first: handled inside; the outer scope keeps running.
    try {
        cogent::Timeout outer(500ms);
        cogent::Timeout inner(20ms);
        try {
            cogent::sleep(1s);
        } catch (const cogent::Timeout& e) {
            if (e != inner) throw;
            std::printf("  inner timeout (%.3f s) fired and was handled; outer still pending=%d\n",
                        e.seconds(), outer.pending());
        }
        cogent::sleep(10ms);
        std::printf("  outer scope finished normally\n");
    } catch (const cogent::Timeout&) {
        std::printf("  not reached\n");
    }
    std::printf("\n");
}

void with_timeouts() {
    std::printf("== 3. with_timeout / with_timeout_or ==\n");
    auto slow_answer = [] {
        cogent::sleep(200ms);
        return 42;
    };
    auto fast_answer = [] {
        cogent::sleep(1ms);
        return 42;
    };
    std::printf("  with_timeout_or(20ms, -1, slow) = %d\n",
                cogent::with_timeout_or(20ms, -1, slow_answer));
    std::printf("  with_timeout_or(500ms, -1, fast) = %d\n",
                cogent::with_timeout_or(500ms, -1, fast_answer));
    try {
        cogent::with_timeout(20ms, slow_answer);
    } catch (const cogent::Timeout&) {
        std::printf("  with_timeout(20ms, slow) threw Timeout\n");
    }
    // Absent = forever, zero = do not block, negative = rejected.
    try {
        cogent::Timeout bad(-1s);
    } catch (const std::invalid_argument& e) {
        std::printf("  a negative timeout is rejected: %s\n\n", e.what());
    }
}

void kill_sleeper() {
    std::printf("== 4. kill a sleeping greenlet: RAII cleanup runs ==\n");
    struct Connection {
        ~Connection() { std::printf("  ~Connection(): closed while unwinding the kill\n"); }
    };
    auto sleeper = cogent::spawn(cogent::SpawnOptions{.name = "sleeper"}, [] {
        Connection c;
        std::printf("  sleeper: opened a connection, sleeping for an hour\n");
        cogent::sleep(std::chrono::hours(1));
        return 1;
    });
    cogent::sleep(10ms);  // let it start and park
    auto t0 = Clock::now();
    sleeper.kill();  // throws GreenletExit at its sleep; block=true waits for it to die
    std::printf("  kill() returned after %.1f ms: dead=%d killed=%d successful=%d\n", ms_since(t0),
                sleeper.dead(), sleeper.killed(), sleeper.successful());
    try {
        sleeper.get();
    } catch (const cogent::GreenletExit&) {
        std::printf("  get() on a killed Greenlet<int> throws GreenletExit (there is no int)\n");
    }
    // Killed before it ever ran: it never runs at all.
    auto never = cogent::spawn([] { std::printf("  not reached\n"); });
    never.kill();
    std::printf("  killed before it started: dead=%d, its function never ran\n\n", never.dead());
}

void links() {
    std::printf("== 5. link callbacks ==\n");
    auto ok = cogent::spawn(cogent::SpawnOptions{.name = "worker-ok"}, [] {
        cogent::sleep(5ms);
        return std::string("result");
    });
    auto bad = cogent::spawn(cogent::SpawnOptions{.name = "worker-bad"}, []() -> int {
        cogent::sleep(10ms);
        throw std::runtime_error("disk on fire");
    });
    for (auto g : {cogent::AnyGreenlet(ok), cogent::AnyGreenlet(bad)}) {
        g.link([](cogent::AnyGreenlet d) {
            std::printf("  link:           %s ended (successful=%d)\n", d.name().c_str(),
                        d.successful());
        });
        g.link_value([](cogent::AnyGreenlet d) {
            std::printf("  link_value:     %s succeeded\n", d.name().c_str());
        });
        g.link_exception([](cogent::AnyGreenlet d) {
            try {
                std::rethrow_exception(d.exception());
            } catch (const std::exception& e) {
                std::printf("  link_exception: %s failed with \"%s\"\n", d.name().c_str(),
                            e.what());
            }
        });
        g.rawlink([](cogent::AnyGreenlet d) {
            std::printf("  rawlink:        %s ended (runs on the hub, must not block)\n",
                        d.name().c_str());
        });
    }
    auto removed = ok.link([](cogent::AnyGreenlet) { std::printf("  not reached\n"); });
    ok.unlink(removed);
    std::printf("  (the hub also reports worker-bad's uncaught exception on stderr)\n");
    cogent::joinall({cogent::AnyGreenlet(ok), cogent::AnyGreenlet(bad)});
    cogent::idle();  // link callbacks run in new greenlets: let them finish
    std::printf("  ok.get() = \"%s\"\n", ok.get().c_str());
    // Linking to a greenlet that is already dead runs the callback too.
    ok.link([](cogent::AnyGreenlet d) {
        std::printf("  link added after the end still runs for %s\n", d.name().c_str());
    });
    cogent::idle();
}

}  // namespace

int main() {
    // Line-buffered even into a pipe, so the hub's stderr report lands where it happens.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    timeout_scope();
    nested_timeouts();
    with_timeouts();
    kill_sleeper();
    links();
    return 0;
}
