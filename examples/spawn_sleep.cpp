// gevent's introductory example, in C++: tasks that sleep run concurrently, so the total time
// is that of the longest sleep, not the sum; then the tutorial's synchronous/asynchronous demo.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Part 1: several tasks, each sleeping a different random time.
void concurrent_sleeps() {
    std::printf("== 1. spawn + joinall: tasks sleeping at the same time ==\n");
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pick(20, 200);

    std::vector<cogent::Greenlet<int>> tasks;
    int sum_ms = 0, max_ms = 0;
    auto t0 = Clock::now();
    for (int id = 1; id <= 6; ++id) {
        int ms = pick(rng);
        sum_ms += ms;
        max_ms = std::max(max_ms, ms);
        std::printf("  spawn task %d: will sleep %3d ms\n", id, ms);
        tasks.push_back(
            cogent::spawn(cogent::SpawnOptions{.name = "task-" + std::to_string(id)}, [id, ms, t0] {
                cogent::sleep(std::chrono::milliseconds(ms));
                std::printf("  task %d done after %6.1f ms\n", id, ms_since(t0));
                return ms;
            }));
    }
    // joinall returns the greenlets in the order they finished.
    auto done = cogent::joinall(tasks);
    double elapsed = ms_since(t0);
    std::printf("  completion order:");
    for (auto& g : done) std::printf(" %s", g.name().c_str());
    std::printf("\n  total elapsed %.1f ms: about the longest sleep (%d ms), not the sum (%d ms)\n",
                elapsed, max_ms, sum_ms);
    std::printf("  ran concurrently: %s\n\n", elapsed < 0.8 * sum_ms ? "yes" : "NO");
}

// Part 2: the gevent tutorial's "synchronous vs asynchronous" demo.
void task(int pid, int ms) {
    cogent::sleep(std::chrono::milliseconds(ms));
    std::printf("  Task %d done\n", pid);
}

void synchronous(const std::vector<int>& delays) {
    for (int i = 0; i < static_cast<int>(delays.size()); ++i) task(i, delays[i]);
}

void asynchronous(const std::vector<int>& delays) {
    std::vector<cogent::Greenlet<void>> threads;
    for (int i = 0; i < static_cast<int>(delays.size()); ++i)
        threads.push_back(cogent::spawn(task, i, delays[i]));
    cogent::joinall(threads);
}

void sync_vs_async() {
    std::printf("== 2. synchronous vs asynchronous (the gevent tutorial) ==\n");
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pick(0, 2);  // gevent: random.randint(0, 2) * 0.001 s
    std::vector<int> delays;
    for (int i = 0; i < 10; ++i) delays.push_back(pick(rng) * 10);  // 0, 10 or 20 ms
    std::printf("  delays (ms):");
    for (int d : delays) std::printf(" %d", d);
    std::printf("\n");

    std::printf("Synchronous: tasks run one after another, in order\n");
    auto t0 = Clock::now();
    synchronous(delays);
    double sync_ms = ms_since(t0);

    std::printf("Asynchronous: tasks overlap; they finish in order of their delay\n");
    t0 = Clock::now();
    asynchronous(delays);
    double async_ms = ms_since(t0);

    std::printf("  synchronous took %.1f ms (the sum), asynchronous %.1f ms (the longest)\n",
                sync_ms, async_ms);
}

}  // namespace

int main() {
    concurrent_sleeps();
    sync_vs_async();
    return 0;
}
