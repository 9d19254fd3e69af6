// cogent-spawn-storm: many greenlets spawning subprocesses at once, and what the hub (every
// other greenlet of the thread) gets meanwhile (issue 12, "a storm of subprocess spawns").
//
//   build-rel/bench/cogent-spawn-storm [--greenlets N] [--rounds N] [--rss-mb N]
//
// After 0.5 s of the ticker alone (its share with no spawns), N greenlets (20) each run
// Popen({"true"}) + wait() `rounds` times (50) while a ticker greenlet sleeps 1 ms in a loop and
// counts how many times it ran. Prints the spawn rate, the hub time per spawn
// (debug::spawn_stats(): how long the thread was held inside a spawn), the ticker's share of its 1
// ms slots and its longest gap. --rss-mb N first allocates and touches N MiB, so the parent is big:
// fork's cost grows with the parent's page tables, vfork's does not.
#include <algorithm>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms(std::chrono::nanoseconds d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: cogent-spawn-storm [--greenlets N] [--rounds N] [--rss-mb N]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    int greenlets = 20, rounds = 50;
    long rss_mb = 0;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage();
        long v = std::strtol(argv[++i], nullptr, 10);
        if (v < 0) usage();
        if (a == "--greenlets")
            greenlets = int(v);
        else if (a == "--rounds")
            rounds = int(v);
        else if (a == "--rss-mb")
            rss_mb = v;
        else
            usage();
    }
    std::vector<char> ballast;
    if (rss_mb > 0) {
        ballast.resize(std::size_t(rss_mb) << 20);
        for (std::size_t off = 0; off < ballast.size(); off += 4096) ballast[off] = char(off >> 12);
    }

    bool done = false;
    long ticks = 0;
    Clock::duration max_gap{};
    auto ticker = cogent::spawn([&] {
        auto last = Clock::now();
        while (!done) {
            cogent::sleep(std::chrono::milliseconds(1));
            auto now = Clock::now();
            max_gap = std::max(max_gap, now - last);
            last = now;
            ++ticks;
        }
    });
    // The ticker alone first: its share of the slots on this machine, with nothing to compete.
    cogent::sleep(std::chrono::milliseconds(5));
    ticks = 0;
    const auto idle0 = Clock::now();
    cogent::sleep(std::chrono::milliseconds(500));
    const long idle_ticks = ticks;
    const double idle_slots =
        ms(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - idle0));
    ticks = 0;
    max_gap = {};
    cogent::debug::reset_spawn_stats();
    const auto t0 = Clock::now();
    std::vector<cogent::Greenlet<void>> workers;
    long failures = 0;
    for (int g = 0; g < greenlets; ++g)
        workers.push_back(cogent::spawn([&] {
            for (int r = 0; r < rounds; ++r) {
                cogent::subprocess::Popen p({"true"});
                if (p.wait() != 0) ++failures;
            }
        }));
    for (auto& w : workers) w.join();
    const auto elapsed = Clock::now() - t0;
    const long ticks_seen = ticks;
    const auto gap = max_gap;
    done = true;
    ticker.join();
    for (auto& w : workers)
        if (w.exception()) ++failures;

    const auto st = cogent::debug::spawn_stats();
    const double secs = std::chrono::duration<double>(elapsed).count();
    const double slots = ms(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed));
    std::printf("greenlets %d, rounds %d, parent RSS +%ld MiB\n", greenlets, rounds, rss_mb);
    std::printf("spawns            %llu in %.2f s: %.0f spawns/s (%llu on the calling thread)\n",
                (unsigned long long)st.count, secs, double(st.count) / secs,
                (unsigned long long)st.inline_count);
    std::printf("hub time in spawn avg %.3f ms, max %.3f ms\n", ms(st.hub_avg()), ms(st.hub_max));
    std::printf("1 ms ticker alone %ld of %.0f slots (%.0f%%)\n", idle_ticks, idle_slots,
                100.0 * double(idle_ticks) / idle_slots);
    std::printf("1 ms ticker       %ld of %.0f slots (%.0f%%), longest gap %.1f ms\n", ticks_seen,
                slots, 100.0 * double(ticks_seen) / slots,
                ms(std::chrono::duration_cast<std::chrono::nanoseconds>(gap)));
    if (failures) {
        std::fprintf(stderr, "%ld spawns failed\n", failures);
        return 1;
    }
    return 0;
}
