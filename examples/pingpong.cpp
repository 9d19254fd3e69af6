// The greenlet module's explicit switching, with RawGreenlet: the classic 12/56/34 example,
// then a ping-pong in which every switch carries a value in both directions.
#include <any>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <string>

namespace {

// Part 1: greenlet's documentation example. test2 never prints 78: nothing switches back into
// it after gr1 finishes, and a finished gr1 returns to its parent (main).
void classic() {
    std::printf("== 1. the greenlet module's classic example ==\n");
    cogent::RawGreenlet gr1, gr2;
    bool gr2_unwound = false;
    gr1 = cogent::RawGreenlet([&] {
        std::printf("  12\n");
        gr2.switch_to();
        std::printf("  34\n");
    });
    gr2 = cogent::RawGreenlet([&] {
        struct Cleanup {
            bool& flag;
            ~Cleanup() { flag = true; }
        } cleanup{gr2_unwound};
        std::printf("  56\n");
        gr1.switch_to();
        std::printf("  78 (never printed)\n");
    });
    gr1.switch_to();
    std::printf("  back in main: gr1 dead=%d, gr2 suspended (active=%d)\n", gr1.dead(),
                gr2.active());
    // Like greenlet's garbage collector: throw GreenletExit into the abandoned greenlet.
    gr2.kill_now();
    std::printf("  gr2.kill_now(): dead=%d, its destructors ran=%d\n\n", gr2.dead(), gr2_unwound);
}

// Part 2: ping and pong hand a value to each other; each switch_to() returns the value that
// the next switch back into the caller carries.
void ping_pong() {
    std::printf("== 2. ping-pong: values carried both ways by switch_to ==\n");
    cogent::RawGreenlet ping, pong;

    ping = cogent::RawGreenlet([&](std::any arg) -> std::any {
        int rounds = std::any_cast<int>(arg);  // from main's first switch
        std::printf("  ping: started by main with rounds=%d\n", rounds);
        int ball = 1;
        for (int i = 1; i <= rounds; ++i) {
            std::printf("  ping: send %d\n", ball);
            ball = std::any_cast<int>(pong.switch_to(ball));
            std::printf("  ping: received %d\n", ball);
            ball += 1;
        }
        // A negative ball tells pong to return; pong's parent is ping, so its return value
        // comes back here as the result of this switch.
        auto farewell = std::any_cast<std::string>(pong.switch_to(-1));
        std::printf("  ping: pong returned \"%s\"; pong dead=%d\n", farewell.c_str(), pong.dead());
        return std::string("ping played " + std::to_string(rounds) + " rounds, last ball " +
                           std::to_string(ball));
    });

    pong = cogent::RawGreenlet(
        [&](std::any arg) -> std::any {
            int ball = std::any_cast<int>(arg);  // the first switch starts pong with this value
            int hits = 0;
            while (ball >= 0) {
                std::printf("  pong: received %d, send %d\n", ball, ball * 10);
                ++hits;
                ball = std::any_cast<int>(ping.switch_to(ball * 10));
            }
            return std::string("pong hit " + std::to_string(hits) + " balls");
        },
        ping);  // parent: ping (the default would be the creator, main)

    // ping returns to its parent (main): its return value is the result of this switch.
    auto result = std::any_cast<std::string>(ping.switch_to(3));
    std::printf("  main: ping returned \"%s\"; ping dead=%d, pong dead=%d\n", result.c_str(),
                ping.dead(), pong.dead());
}

}  // namespace

int main() {
    classic();
    ping_pong();
    return 0;
}
