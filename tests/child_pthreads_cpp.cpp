// The C++ side of the pthread conformance program (see child_pthreads.c): std::thread,
// std::jthread, std::mutex, std::condition_variable, std::shared_mutex, std::call_once,
// std::counting_semaphore, std::latch, std::barrier. Built without cogent; run with real threads
// and under `cogent-run --threads`, its output must be the same.
#include <pthread.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <mutex>
#include <semaphore>
#include <shared_mutex>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
// A result that is wrong whatever the threads are: reported, and the exit status says so
// (the test also compares the whole output with the real-thread run).
int g_failures = 0;
void expect(bool ok, const char* what) {
    if (ok) return;
    std::printf("FAILED: %s\n", what);
    ++g_failures;
}
}  // namespace

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    // std::thread and std::mutex
    std::mutex mu;
    long counter = 0;
    {
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; ++i)
            ts.emplace_back([&] {
                for (int k = 0; k < 1000; ++k) {
                    std::lock_guard<std::mutex> lk(mu);
                    long v = counter;
                    if (k % 100 == 0) std::this_thread::yield();
                    counter = v + 1;
                }
            });
        for (auto& t : ts) t.join();
    }
    std::printf("std::thread + std::mutex: %ld\n", counter);
    expect(counter == 4000, "4 threads x 1000 increments under a mutex");

    // std::condition_variable ping-pong
    std::condition_variable cv;
    int turn = 0;
    std::thread other([&] {
        for (int i = 0; i < 100; ++i) {
            std::unique_lock<std::mutex> lk(mu);
            cv.wait(lk, [&] { return turn % 2 == 1; });
            ++turn;
            cv.notify_all();
        }
    });
    for (int i = 0; i < 100; ++i) {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return turn % 2 == 0; });
        ++turn;
        cv.notify_all();
    }
    other.join();
    std::printf("condition_variable ping-pong: %d\n", turn);
    expect(turn == 200, "200 turns");
    {
        std::unique_lock<std::mutex> lk(mu);
        bool woke = cv.wait_for(lk, 20ms, [] { return false; });
        std::printf("wait_for timeout: %d\n", int(woke));
        expect(!woke, "wait_for on a predicate that stays false times out");
    }

    // std::shared_mutex: readers together (all three hold it when they meet at the barrier,
    // which they could not if it excluded them), a writer alone
    std::shared_mutex sm;
    std::atomic<int> readers{0};
    std::barrier<> met(3);
    bool writer_alone = true;
    {
        std::vector<std::thread> ts;
        for (int i = 0; i < 3; ++i)
            ts.emplace_back([&] {
                std::shared_lock lk(sm);
                ++readers;
                met.arrive_and_wait();
                --readers;
            });
        ts.emplace_back([&] {
            std::unique_lock lk(sm);
            if (readers != 0) writer_alone = false;
        });
        for (auto& t : ts) t.join();
    }
    std::printf("shared_mutex: 3 readers met holding it, writer alone %d\n", int(writer_alone));
    expect(writer_alone, "the writer never saw a reader");

    // std::call_once
    std::once_flag once;
    std::atomic<int> runs{0};
    {
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; ++i)
            ts.emplace_back([&] {
                std::call_once(once, [&] {
                    std::this_thread::sleep_for(10ms);
                    ++runs;
                });
            });
        for (auto& t : ts) t.join();
    }
    std::printf("call_once: %d\n", runs.load());
    expect(runs == 1, "call_once ran once");

    // std::counting_semaphore, std::latch, std::barrier
    std::counting_semaphore<8> sem(0);
    std::latch done(3);
    std::barrier<> bar(3);
    std::atomic<int> acquired{0}, phases{0};
    {
        std::vector<std::thread> ts;
        for (int i = 0; i < 3; ++i)
            ts.emplace_back([&] {
                sem.acquire();
                ++acquired;
                for (int r = 0; r < 4; ++r) {
                    bar.arrive_and_wait();
                    ++phases;
                }
                done.count_down();
            });
        std::this_thread::sleep_for(10ms);
        std::printf("semaphore: %d acquired before release\n", acquired.load());
        expect(acquired == 0, "nothing acquired from an empty semaphore");
        sem.release(3);
        done.wait();
        for (auto& t : ts) t.join();
    }
    std::printf("semaphore: %d, barrier phases: %d, latch: done\n", acquired.load(), phases.load());
    expect(acquired == 3 && phases == 12, "3 acquired, 3 threads x 4 barrier phases");
    const bool got = sem.try_acquire_for(20ms);
    std::printf("try_acquire_for empty: %d\n", int(got));
    expect(!got, "try_acquire_for on an empty semaphore times out");

    // std::jthread and its stop_token: it loops until the destructor asks it to stop
    std::atomic<int> loops{0};
    {
        std::jthread j([&](std::stop_token st) {
            while (!st.stop_requested()) {
                ++loops;
                std::this_thread::sleep_for(1ms);
            }
        });
        while (loops == 0) std::this_thread::sleep_for(1ms);
    }  // requests stop and joins
    std::printf("jthread stopped after looping: %d\n", int(loops > 0));

    // ids: distinct from main's, equal to what the thread itself sees
    std::thread::id seen;
    std::thread t([&] { seen = std::this_thread::get_id(); });
    std::thread::id given = t.get_id();
    t.join();
    std::printf("thread ids: own == given %d, != main %d\n", int(seen == given),
                int(seen != std::this_thread::get_id()));
    expect(seen == given && seen != std::this_thread::get_id(), "thread ids");
    std::printf("done\n");
    return g_failures == 0 ? 0 : 1;
}
