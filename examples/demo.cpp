// The cogent tour that `./dev.sh demo` runs: many greenlets sleeping at once, explicit
// switching, a timeout, and LoopExit. Takes about a second.
#include <any>
#include <atomic>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void many_sleepers() {
    constexpr int kCount = 10'000;
    constexpr auto kSleep = 200ms;
    std::printf("1. %d greenlets each sleep %lld ms, all at the same time\n", kCount,
                static_cast<long long>(kSleep.count()));
    std::printf("   (each has its own %zu KiB stack above a %zu KiB guard region)\n",
                cogent::debug::default_stack_size() / 1024,
                cogent::debug::stack_guard_size() / 1024);
    int finished = 0;
    std::vector<cogent::Greenlet<void>> gs;
    gs.reserve(kCount);
    auto t0 = Clock::now();
    for (int i = 0; i < kCount; ++i)
        gs.push_back(cogent::spawn([&finished, kSleep] {
            cogent::sleep(kSleep);
            ++finished;  // one OS thread: no data race, no lock
        }));
    double spawn_ms = ms_since(t0);
    cogent::sleep(0);  // let them all start and park in their sleep
    std::size_t live = cogent::debug::live_greenlets();
    cogent::joinall(gs);
    double total_ms = ms_since(t0);
    std::printf("   spawned in %.1f ms; %zu were alive at once; all %d finished after %.0f ms\n",
                spawn_ms, live, finished, total_ms);
    std::printf("   guard installed with %s\n", cogent::debug::stack_guard_uses_madvise()
                                                    ? "MADV_GUARD_INSTALL (no VMA split)"
                                                    : "mprotect (older kernel)");
    std::printf("   => about the time of ONE sleep, not %d x %lld ms = %lld s\n\n", kCount,
                static_cast<long long>(kSleep.count()),
                static_cast<long long>(kCount * kSleep.count() / 1000));
}

void ping_pong() {
    std::printf("2. ping-pong between two raw greenlets (values carried by switch_to)\n");
    cogent::RawGreenlet ping, pong;
    bool quiet = false;
    long long last = 0;
    ping = cogent::RawGreenlet([&](std::any v) -> std::any {
        long long rounds = std::any_cast<long long>(v);
        long long ball = 0;
        for (long long i = 0; i < rounds; ++i) {
            if (!quiet) std::printf("   ping -> %lld\n", ball);
            ball = std::any_cast<long long>(pong.switch_to(ball)) + 1;
        }
        return ball;
    });
    pong = cogent::RawGreenlet([&](std::any v) -> std::any {
        for (;;) {
            long long ball = std::any_cast<long long>(v);
            if (!quiet) std::printf("   pong <- %lld, returns %lld\n", ball, ball + 1);
            v = ping.switch_to(ball + 1);
        }
    });
    last = std::any_cast<long long>(ping.switch_to(3LL));
    std::printf("   ping finished with %lld\n", last);
    pong.kill_now();  // pong waits forever: unwind it, as greenlet's GC would

    // The same, quietly and many times, to show what a switch costs.
    quiet = true;
    constexpr long long kRounds = 200'000;
    ping = cogent::RawGreenlet([&](std::any v) -> std::any {
        long long rounds = std::any_cast<long long>(v), ball = 0;
        for (long long i = 0; i < rounds; ++i)
            ball = std::any_cast<long long>(pong.switch_to(ball)) + 1;
        return ball;
    });
    pong = cogent::RawGreenlet([&](std::any v) -> std::any {
        for (;;) v = ping.switch_to(std::any_cast<long long>(v) + 1);
    });
    auto t0 = Clock::now();
    last = std::any_cast<long long>(ping.switch_to(kRounds));
    double ms = ms_since(t0);
    pong.kill_now();
    std::printf(
        "   %lld round trips (%lld switches) in %.1f ms: %.0f ns per switch, std::any included\n\n",
        kRounds, 2 * kRounds, ms, ms * 1e6 / double(2 * kRounds));
}

void a_timeout() {
    std::printf("3. a Timeout scope interrupts a blocking wait\n");
    cogent::Event never_set;
    auto t0 = Clock::now();
    try {
        cogent::Timeout t(100ms);
        never_set.wait();
        std::printf("   not reached\n");
    } catch (const cogent::Timeout& e) {
        std::printf("   Event::wait() gave up after %.0f ms with Timeout: \"%s\"\n", ms_since(t0),
                    e.what());
    }
    std::printf("   with_timeout_or(50ms, -1, slow) = %d\n\n",
                cogent::with_timeout_or(50ms, -1, [] {
                    cogent::sleep(10s);
                    return 42;
                }));
}

void loop_exit() {
    std::printf("4. LoopExit: blocking on something nothing can ever wake\n");
    cogent::Event orphan;  // no greenlet, timer or callback will ever set it
    auto t0 = Clock::now();
    try {
        orphan.wait();
        std::printf("   not reached\n");
    } catch (const cogent::LoopExit& e) {
        std::printf("   detected at once (%.1f ms) instead of hanging:\n   LoopExit: %s\n\n",
                    ms_since(t0), e.what());
    }
}

}  // namespace

int main() {
    auto t0 = Clock::now();
    std::printf("cogent demo: gevent, natively in C++20\n\n");
    many_sleepers();
    ping_pong();
    a_timeout();
    loop_exit();
    std::printf("demo finished in %.2f s\n", ms_since(t0) / 1000.0);
    return 0;
}
