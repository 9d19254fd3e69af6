// The classic threading lessons, with greenlets: a race on a shared counter and the Lock that
// fixes it, a Condition handshake between a producer and a consumer, a threading.Timer, and a
// real OS thread handing a result back through an AsyncResult.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Read, yield, write: the yield stands for any blocking call (I/O, sleep) in the middle of a
// read-modify-write. Greenlets only switch at such points, but that is enough to lose updates.
int count_up(cogent::Lock* lock, int greenlets, int increments) {
    int counter = 0;
    std::vector<cogent::Greenlet<void>> gs;
    for (int g = 0; g < greenlets; ++g)
        gs.push_back(cogent::spawn([&] {
            for (int i = 0; i < increments; ++i) {
                std::unique_lock<cogent::Lock> guard;
                if (lock) guard = std::unique_lock<cogent::Lock>(*lock);
                int seen = counter;
                cogent::sleep(0);
                counter = seen + 1;
            }
        }));
    cogent::joinall(gs);
    return counter;
}

void shared_counter() {
    std::printf("== 1. A shared counter ==\n");
    const int greenlets = 10, increments = 100;
    std::printf(
        "  %d greenlets each add 1 to a counter %d times, yielding between the read and "
        "the write\n",
        greenlets, increments);
    int racy = count_up(nullptr, greenlets, increments);
    std::printf("  without a lock: %d (expected %d): updates were lost\n", racy,
                greenlets * increments);
    cogent::Lock lock;
    int safe = count_up(&lock, greenlets, increments);
    std::printf("  with a cogent::Lock held across the read-modify-write: %d\n\n", safe);
}

void condition_handshake() {
    std::printf("== 2. Condition: producer/consumer handshake ==\n");
    cogent::Condition cond;  // owns an RLock
    std::deque<int> items;
    bool done = false;
    auto consumer = cogent::spawn([&] {
        std::unique_lock<cogent::Condition> lk(cond);
        for (;;) {
            // wait_for releases the lock while it waits and holds it again when it returns.
            cond.wait_for([&] { return !items.empty() || done; });
            if (items.empty()) break;
            int v = items.front();
            items.pop_front();
            std::printf("  consumer: got item %d\n", v);
            cond.notify();  // tell the producer there is room
            lk.unlock();
            cogent::sleep(5ms);  // a slow consumer: the producer fills the buffer meanwhile
            lk.lock();
        }
        std::printf("  consumer: producer is done, leaving\n");
    });
    auto producer = cogent::spawn([&] {
        for (int i = 1; i <= 4; ++i) {
            std::unique_lock<cogent::Condition> lk(cond);
            if (items.size() == 2) std::printf("  producer: buffer full, waiting\n");
            cond.wait_for([&] { return items.size() < 2; });  // a buffer of two slots
            items.push_back(i);
            std::printf("  producer: put item %d (buffer holds %zu)\n", i, items.size());
            cond.notify();
        }
        std::lock_guard<cogent::Condition> lk(cond);
        done = true;
        cond.notify_all();
    });
    cogent::joinall(std::vector<cogent::Greenlet<void>>{producer, consumer});
    std::printf("\n");
}

void timer() {
    std::printf("== 3. A timer (threading.Timer) ==\n");
    auto t0 = Clock::now();
    auto fires = cogent::spawn_later(
        30ms, [&] { std::printf("  timer fired after %.0f ms\n", ms_since(t0)); });
    auto cancelled = cogent::spawn_later(20ms, [] { std::printf("  never printed\n"); });
    cancelled.kill();  // cancel(): killed before it started, it never runs
    fires.join();
    std::printf("  the other timer was cancelled before it fired\n\n");
}

void thread_result() {
    std::printf("== 4. A result computed by a real OS thread ==\n");
    cogent::AsyncResult<long> result;
    auto t0 = Clock::now();
    std::thread worker([&] {
        long sum = 0;
        for (long i = 1; i <= 1'000'000; ++i) sum += i;
        std::this_thread::sleep_for(20ms);  // a blocking call: fine on a plain thread
        result.set(sum);                    // safe from another thread: wakes our hub
    });
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        while (!result.ready()) {
            ++ticks;
            cogent::sleep(2ms);
        }
    });
    long sum = result.get();  // only this greenlet blocks; the ticker keeps running
    std::printf("  worker thread's sum: %ld after %.0f ms; a greenlet ticked %d times meanwhile\n",
                sum, ms_since(t0), ticks);
    ticker.join();
    worker.join();
}

}  // namespace

int main() {
    shared_counter();
    condition_handshake();
    timer();
    thread_result();
    return 0;
}
