// What format_run_info() costs: 1,000 greenlets parked on an Event, run info formatted with and
// without backtraces, 3 times each (the first call with backtraces also reads the debug
// information). Prints NAME VALUE UNIT lines.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cogent/cogent.hpp"

int main() {
    constexpr int kGreenlets = 1000;
    cogent::Event ev;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < kGreenlets; ++i) gs.push_back(cogent::spawn([&] { ev.wait(); }));
    cogent::sleep(0);
    double first = 0, best[2] = {1e18, 1e18};
    for (int round = 0; round < 3; ++round)
        for (int stacks = 1; stacks >= 0; --stacks) {
            const auto t0 = std::chrono::steady_clock::now();
            const std::string s = cogent::format_run_info({.stacks = stacks == 1});
            const double us =
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count();
            if (round == 0 && stacks) first = us;
            if (round > 0 && us < best[stacks]) best[stacks] = us;
            if (s.size() < std::size_t(kGreenlets) * 20) return 1;  // not every greenlet shown
        }
    std::printf("run_info_first_call_ms %.1f ms\n", first / 1000);
    std::printf("run_info_per_greenlet_us %.1f us\n", best[1] / kGreenlets);
    std::printf("run_info_no_stacks_per_greenlet_us %.1f us\n", best[0] / kGreenlets);
    ev.set();
    cogent::joinall(gs);
    return 0;
}
