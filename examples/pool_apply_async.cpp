// The multiprocessing example "Pool.apply_async with a callback", done with greenlets:
//
//     pool = Pool(4)
//     for i in range(10):
//         pool.apply_async(work, args=(i,), callback=log_result)
//     pool.close(); pool.join()
//
// Each job sleeps a pseudo-random time. apply_async never blocks: jobs beyond the pool's size
// wait for a slot. The callbacks run in the caller's hub in the order the jobs complete, and at
// most 4 jobs ever run at once.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cogent/pool.hpp>
#include <cstdio>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int main() {
    constexpr int kJobs = 10;
    constexpr std::size_t kPoolSize = 4;
    const auto t0 = Clock::now();
    auto ms = [t0] { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); };

    cogent::Pool pool(kPoolSize);
    int running = 0, max_running = 0;
    std::vector<int> results;  // in completion order, filled by the callback
    cogent::Event all_done;

    auto work = [&](int i) {
        ++running;
        max_running = std::max(max_running, running);
        int delay = 10 + (i * 37) % 60;  // deterministic "random" durations
        std::printf("%7.1f ms  job %d starts (%d running), sleeps %d ms\n", ms(), i, running,
                    delay);
        cogent::sleep(std::chrono::milliseconds(delay));
        --running;
        return i * i;
    };
    auto log_result = [&](int result) {
        results.push_back(result);
        std::printf("%7.1f ms  callback: result %d\n", ms(), result);
        if (results.size() == kJobs) all_done.set();
    };

    for (int i = 0; i < kJobs; ++i) pool.apply_async(work, log_result, i);
    std::printf("%7.1f ms  submitted %d jobs without blocking; %zu running, the rest wait\n", ms(),
                kJobs, pool.size());

    all_done.wait();
    pool.join();
    std::printf("results in completion order:");
    for (int r : results) std::printf(" %d", r);
    std::printf("\nmax concurrent jobs: %d (pool size %zu)\n", max_running, kPoolSize);
    return max_running <= static_cast<int>(kPoolSize) ? 0 : 1;
}
