// Not a test file: a helper process for tests/test_gdb.cpp, which runs it under gdb and looks at
// its greenlets with scripts/cogent-gdb.py.
//
// Parks greenlets in five different waits, each inside a function with a distinctive name
// (park_in_*_marker), plus one on a second OS thread (with its own hub), then stops itself with
// SIGTRAP from a running greenlet (stop_for_debugger_marker) after spawning one more that has
// not started yet. Under gdb the program stops there; continued, it wakes everything and exits 0.
// Run without a debugger it dies of the SIGTRAP.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cogent/cogent.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

namespace {

using namespace std::chrono_literals;

// After the call: keeps the marker's frame (no tail call into the wait).
#define KEEP_FRAME() asm volatile("" ::: "memory")

[[gnu::noinline]] void park_in_event_wait_marker(cogent::Event& e) {
    e.wait();
    KEEP_FRAME();
}

[[gnu::noinline]] void park_in_sleep_marker() {
    cogent::sleep(1h);
    KEEP_FRAME();
}

[[gnu::noinline]] int park_in_queue_get_marker(cogent::Queue<int>& q) {
    int v = q.get();
    KEEP_FRAME();
    return v;
}

[[gnu::noinline]] void park_in_lock_marker(cogent::Lock& l) {
    l.acquire();
    KEEP_FRAME();
    l.release();
}

[[gnu::noinline]] void park_in_recv_marker(cogent::Socket& s) {
    char buf[16];
    s.recv(buf, sizeof buf);
    KEEP_FRAME();
}

[[gnu::noinline]] void park_on_other_thread_marker() {
    cogent::sleep(1h);
    KEEP_FRAME();
}

[[gnu::noinline]] void stop_for_debugger_marker() {
    std::printf("child_gdb: stack guards: %s\n",
                cogent::debug::stack_guard_uses_madvise() ? "madvise" : "mprotect");
    std::printf("child_gdb: everything parked, stopping for the debugger\n");
    std::fflush(stdout);
    std::raise(SIGTRAP);
    KEEP_FRAME();
}

}  // namespace

int main() {
    // A second OS thread with its own hub: one greenlet parked there while the thread's main
    // greenlet blocks in a plain read() (it is that thread's running greenlet).
    int stop_pipe[2];
    if (pipe(stop_pipe) != 0) return 1;
    std::atomic<bool> other_ready{false};
    std::thread other([&] {
        auto g = cogent::spawn(cogent::SpawnOptions{.name = "other-thread-sleeper"},
                               park_on_other_thread_marker);
        cogent::sleep(0);  // g runs until it parks
        other_ready = true;
        char c;
        if (read(stop_pipe[0], &c, 1) != 1) std::perror("child_gdb: read");
        g.kill();
    });
    while (!other_ready) std::this_thread::sleep_for(1ms);

    cogent::Event event;
    cogent::Queue<int> queue;
    cogent::Lock lock;
    lock.acquire();  // held by main: the lock waiter parks
    auto [sock_a, sock_b] = cogent::Socket::pair();

    // Spawned greenlets start in FIFO order, each running until it parks: by the time the
    // stopper runs, every one before it is parked.
    auto g_event = cogent::spawn(park_in_event_wait_marker, std::ref(event));
    auto g_sleep = cogent::spawn(park_in_sleep_marker);
    auto g_queue = cogent::spawn(park_in_queue_get_marker, std::ref(queue));
    auto g_lock = cogent::spawn(cogent::SpawnOptions{.name = "lock-waiter"}, park_in_lock_marker,
                                std::ref(lock));
    auto g_recv = cogent::spawn(cogent::SpawnOptions{.name = "recv-worker"}, park_in_recv_marker,
                                std::ref(sock_b));
    cogent::Greenlet<void> late;
    auto stopper = cogent::spawn(cogent::SpawnOptions{.name = "stopper"}, [&] {
        late = cogent::spawn(cogent::SpawnOptions{.name = "not-started-yet"}, [] {});
        stop_for_debugger_marker();
    });
    stopper.join();

    // Continued after the stop: wake everyone and finish.
    event.set();
    queue.put(1);
    lock.release();
    sock_a.sendall("x", 1);
    g_sleep.kill();
    cogent::joinall({g_event, g_sleep, g_queue, g_lock, g_recv, late});
    // The debugger looked without disturbing them: each ended by its own wake-up.
    if (!g_event.successful() || !g_queue.successful() || !g_lock.successful() ||
        !g_recv.successful() || !late.successful() || !g_sleep.dead() || g_sleep.exception()) {
        std::printf("child_gdb: a greenlet ended the wrong way\n");
        return 1;
    }
    if (write(stop_pipe[1], "x", 1) != 1) return 1;
    other.join();
    std::printf("child_gdb: done\n");
    return 0;
}
