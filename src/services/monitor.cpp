// The monitor (gevent's monitor thread): one OS thread for the process samples every hub and
// reports a hub that has not polled for longer than the limit while it is not asleep in the
// kernel's poll, i.e. a greenlet that computes without yielding or a call that blocks the
// thread; once per incident, naming the greenlet that holds the hub, with the thread's live
// backtrace (run_info.cpp's backtrace_thread: a signal the thread answers itself).
//
// The hubs tell it two things through their loops (loop::Loop::watch_polls, installed on each
// hub's own thread once the monitor starts): whether the loop sleeps in the kernel, and how many
// polls it made. Nothing else is added to the hubs' work: two relaxed stores per poll.
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cogent/util.hpp"
#include "hub/hub.hpp"
#include "services/run_info.hpp"

namespace cogent::detail {

namespace {

constexpr double kDefaultLimit = 0.1;  // gevent's GEVENT_MAX_BLOCKING_TIME

std::mutex g_mu;  // g_handler, starting
monitor::BlockedHandler g_handler;
std::atomic<bool> g_running{false};
std::atomic<double> g_limit{kDefaultLimit};

void watch(HubImpl* h) noexcept { h->loop().watch_polls(&h->polls); }

void report(const monitor::BlockedReport& r) {
    monitor::BlockedHandler h;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        h = g_handler;
    }
    if (h) {
        try {
            h(r);
            return;
        } catch (...) {
            report_exception("the monitor's handler (monitor::on_blocked)",
                             std::current_exception());
        }
    }
    std::fwrite(r.message.data(), 1, r.message.size(), stderr);
    std::fflush(stderr);
}

struct Seen {
    pid_t tid = 0;
    std::uint64_t polls = 0;
    std::uint64_t since_ns = 0;  // when `polls` was first seen, awake
    bool reported = false;
};

struct HubSample {
    std::uint64_t index;
    pid_t tid;
    bool on, sleeping;
    std::uint64_t polls;
};

void* monitor_main(void*) {
    std::map<std::uint64_t, Seen> seen;  // by hub index (never reused)
    for (;;) {
        const double limit = g_limit.load(std::memory_order_relaxed);
        double period = limit / 4;
        if (period > 0.25) period = 0.25;
        if (period < 0.002) period = 0.002;
        timespec nap{time_t(period), long((period - double(time_t(period))) * 1e9)};
        nanosleep(&nap, nullptr);

        std::vector<HubSample> hubs;
        for_each_hub(
            [](HubImpl* h, void* v) {
                static_cast<std::vector<HubSample>*>(v)->push_back(
                    {h->thread_index(), h->tid, h->polls.on.load(std::memory_order_acquire),
                     h->polls.sleeping.load(std::memory_order_relaxed),
                     h->polls.polls.load(std::memory_order_relaxed)});
            },
            &hubs);
        const std::uint64_t now = monotonic_ns();
        std::map<std::uint64_t, Seen> next;
        for (const HubSample& h : hubs) {
            if (!h.on) continue;  // not watched yet (its thread has not run the hook)
            Seen s;
            if (auto it = seen.find(h.index); it != seen.end()) s = it->second;
            if (s.tid != h.tid || s.polls != h.polls || h.sleeping || !s.since_ns) {
                // It polled (or sleeps in poll): a new period begins.
                s = Seen{h.tid, h.polls, now, false};
            } else if (!s.reported && double(now - s.since_ns) / 1e9 > limit) {
                s.reported = true;
                monitor::BlockedReport r;
                r.hub = h.index;
                r.os_thread = int(h.tid);
                r.limit = limit;
                Frames fr;
                const bool got = backtrace_thread(h.tid, &fr, &r.greenlet);
                r.seconds = double(monotonic_ns() - s.since_ns) / 1e9;
                if (got) r.backtrace = format_backtrace(fr, "    ");
                char head[512];
                std::snprintf(head, sizeof head,
                              "cogent: monitor: hub %llu (OS thread %d) has been held for %.3f s "
                              "by greenlet '%s', which has not yielded since (it computes, or a "
                              "call blocks the thread; COGENT_MAX_BLOCKING_TIME=%g); its thread "
                              "is now in:\n",
                              (unsigned long long)r.hub, r.os_thread, r.seconds,
                              r.greenlet.empty() ? "?" : r.greenlet.c_str(), limit);
                r.message = head;
                r.message += got ? r.backtrace : "    (the thread did not answer)\n";
                try {
                    report(r);
                } catch (...) {
                }
            }
            next[h.index] = s;
        }
        seen = std::move(next);
    }
    return nullptr;
}

void start_thread() { start_daemon_thread(&monitor_main, "cogent-monitor"); }

// Every hub watches its polls from its own thread; those made later, from their creation.
void watch_all() {
    std::vector<HubImpl*> hubs;
    for_each_hub([](HubImpl* h, void* v) { static_cast<std::vector<HubImpl*>*>(v)->push_back(h); },
                 &hubs);
    ThreadState* me = tls_state;
    for (HubImpl* h : hubs) {
        if (me && me->hub == h)
            watch(h);
        else
            h->run_threadsafe([h] { watch(h); });
    }
}

void on_hub_created(HubImpl* h) noexcept {
    if (g_running.load(std::memory_order_acquire)) {
        watch(h);
        return;
    }
    // COGENT_MONITOR=1: the first hub starts it. A malformed setting is reported where the
    // program reads it (config() throws there); here it just does not start.
    try {
        if (config().monitor) {
            monitor::start(0);
            watch(h);  // now: this hub is not yet its thread's (ts->hub), so start queued it
        }
    } catch (...) {
    }
}

void after_fork(HubImpl* h) noexcept {
    // The child has no monitor thread: start one again if there was one.
    if (g_running.exchange(false)) {
        try {
            monitor::start(g_limit.load());
        } catch (...) {
        }
    }
    (void)h;
}

const HubHooksRegistration g_hooks{{&on_hub_created, nullptr, nullptr, &after_fork}};

}  // namespace

}  // namespace cogent::detail

namespace cogent::monitor {

using namespace detail;

void start(double limit) {
    if (limit == 0) {
        limit = config().max_blocking_time;
        if (limit == 0) limit = kDefaultLimit;
    }
    if (!(limit >= 0.001 && limit <= 3600))
        throw std::invalid_argument("cogent: monitor::start: a limit of " + std::to_string(limit) +
                                    " s is not between 0.001 and 3600");
    g_limit.store(limit);
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_running.load()) return;
    g_running.store(true, std::memory_order_release);
    start_thread();
    watch_all();
}

bool running() noexcept { return g_running.load(); }

BlockedHandler on_blocked(BlockedHandler handler) {
    std::lock_guard<std::mutex> lk(g_mu);
    BlockedHandler old = std::move(g_handler);
    g_handler = std::move(handler);
    return old;
}

}  // namespace cogent::monitor
