// The classic producer/consumer: two producers and three consumers share a bounded Queue.
// Producers block while the queue is full (back-pressure); consumers block while it is empty;
// join() waits until every item has been processed (task_done), and shutdown() ends the
// consumers' `for (auto item : queue)` loops.
//
//   build/examples/producer_consumer
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct Job {
    std::string name;
    int cost_ms;
};

double elapsed_ms(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
    const auto t0 = std::chrono::steady_clock::now();
    cogent::Queue<Job> queue(3);  // at most 3 jobs waiting: producers block beyond that

    auto producer = [&](std::string who, int jobs, std::chrono::milliseconds pace) {
        for (int i = 1; i <= jobs; ++i) {
            Job job{who + std::to_string(i), 10 + 5 * (i % 3)};
            if (queue.full())
                std::printf("%6.1f ms  producer %s: queue full, waiting to put %s\n",
                            elapsed_ms(t0), who.c_str(), job.name.c_str());
            std::string name = job.name;
            queue.put(std::move(job));  // blocks while the queue is full
            std::printf("%6.1f ms  producer %s: put %s (%zu queued)\n", elapsed_ms(t0), who.c_str(),
                        name.c_str(), queue.qsize());
            cogent::sleep(pace);
        }
        std::printf("%6.1f ms  producer %s: done\n", elapsed_ms(t0), who.c_str());
    };

    auto consumer = [&](int id) {
        int handled = 0;
        for (auto job : queue) {  // blocks while empty; ends at shutdown, once drained
            std::printf("%6.1f ms    consumer %d: working on %s (%d ms)\n", elapsed_ms(t0), id,
                        job.name.c_str(), job.cost_ms);
            cogent::sleep(std::chrono::milliseconds(job.cost_ms));
            ++handled;
            queue.task_done();
        }
        std::printf("%6.1f ms    consumer %d: queue shut down, handled %d jobs\n", elapsed_ms(t0),
                    id, handled);
        return handled;
    };

    std::vector<cogent::Greenlet<void>> producers{
        cogent::spawn(producer, "A", 6, 1ms),  // a fast producer: soon blocked by the full queue
        cogent::spawn(producer, "B", 4, 15ms),
    };
    std::vector<cogent::Greenlet<int>> consumers;
    for (int id = 1; id <= 3; ++id) consumers.push_back(cogent::spawn(consumer, id));

    cogent::joinall(producers);
    std::printf("%6.1f ms  main: producers finished, waiting for the queue to be processed\n",
                elapsed_ms(t0));
    queue.join();  // every job put has been marked task_done()
    std::printf("%6.1f ms  main: all jobs processed, shutting the queue down\n", elapsed_ms(t0));
    queue.shutdown();

    int total = 0;
    for (auto& c : consumers) total += c.get();
    std::printf("%6.1f ms  main: %d jobs handled by %zu consumers\n", elapsed_ms(t0), total,
                consumers.size());
    return total == 10 ? 0 : 1;
}
