// Signal handlers that run in greenlets: install a SIGUSR1 handler, send the signal to
// ourselves a few times while a worker greenlet keeps working, then cancel the handler.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>

using namespace std::chrono_literals;

int main() {
    int handled = 0;
    int worker_steps = 0;
    bool stop = false;
    cogent::Event got_signal;

    // The handler runs in a new greenlet on the main thread's hub, not inside the C signal
    // handler: it may sleep, wait, do I/O.
    cogent::SignalHandler handler = cogent::signal_handler(SIGUSR1, [&] {
        ++handled;
        std::printf("  handler: SIGUSR1 #%d, handled in a greenlet (worker at step %d)\n", handled,
                    worker_steps);
        cogent::sleep(5ms);  // blocking is fine here
        got_signal.set();
    });

    auto worker = cogent::spawn([&] {
        while (!stop) {
            ++worker_steps;
            cogent::sleep(2ms);
        }
    });

    std::printf("installed a SIGUSR1 handler; sending the signal to ourselves 3 times\n");
    for (int i = 1; i <= 3; ++i) {
        got_signal.clear();
        std::printf("main: kill(getpid(), SIGUSR1) #%d\n", i);
        ::kill(::getpid(), SIGUSR1);
        if (!got_signal.wait(2s)) {
            std::printf("main: the handler did not run\n");
            return 1;
        }
    }

    handler.cancel();  // SIGUSR1's previous disposition (here SIG_DFL) is back
    std::printf("main: handler cancelled (active: %s); SIGUSR1 would now kill the process\n",
                handler.active() ? "yes" : "no");

    stop = true;
    worker.join();
    std::printf("handled %d signals while the worker made %d steps\n", handled, worker_steps);
    return handled == 3 ? 0 : 1;
}
