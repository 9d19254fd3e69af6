// cogent-bench: the performance figures of issue 2.
//
//   build/bench/cogent-bench [FIGURE...]
//
// Prints exactly one line per figure on stdout, `NAME VALUE UNIT`; diagnostics go to stderr.
// With no argument every figure runs; with names, only those (in the order given, each once).
// An unknown name prints the valid ones on stderr and exits with status 2.
//
// How each figure is taken:
// - Timing figures (switch_ns, boost_switch_ns, yield_ns, spawn_join_ns, and the figures of the
//   synchronization primitives: queue_item_ns, queue_item_bounded_ns, channel_item_ns,
//   event_wake_ns, semaphore_handoff_ns) run in this process, after one untimed warm-up pass,
//   and report the BEST (minimum) of many repetitions: the machine is shared, and interference
//   (preemption, a colleague's compiler evicting caches) only ever adds time, so the minimum is
//   the most reproducible estimate of the cost itself. The repetitions of the per-operation
//   figures are kept short (a few ms, shorter than a scheduler time slice) and repeated until a
//   time budget is spent, so that on a loaded machine some of them still run undisturbed; the
//   median is printed on stderr as a noise indicator. The cogent and Boost switch loops are
//   interleaved repetition by repetition so that both see the same machine conditions (so are
//   the queue variants). spawn_join_ns cannot be cut that short (one repetition is, by
//   definition, 100,000 greenlets, tens of ms), so on a loaded machine its wall-clock figure
//   comes out high; its thread CPU time is printed on stderr alongside to show by how much.
// - Memory figures (blocked_rss_bytes, million_blocked_*) each run in a fresh child process
//   (this executable re-executed with a hidden `--child NAME` flag), so that neither stack-pool
//   nor allocator growth from an earlier figure hides or inflates them.
// - The measured work cannot be optimised away: every loop goes through opaque calls into
//   libcogent / the fcontext assembly, and each one bumps a counter that is checked afterwards.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <boost/context/fiber.hpp>
#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dns_server.hpp"  // tests/: the fake DNS server of the resolver's tests

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

// CPU time of the calling thread: unlike wall time, it does not grow while the thread is
// preempted. Printed on stderr next to the wall-clock figures as a noise indicator.
double thread_cpu_ns() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

// Runs rep() (which returns one measurement) at least min_reps times and until budget_ms of
// wall time has been spent (at most max_reps times); returns the minimum and the median.
struct Best {
    double min = 0, median = 0;
    int reps = 0;
};
template <class F>
Best best_of(F&& rep, int min_reps, int max_reps, double budget_ms) {
    std::vector<double> v;
    auto t0 = Clock::now();
    while (int(v.size()) < max_reps && (int(v.size()) < min_reps || ns_since(t0) < budget_ms * 1e6))
        v.push_back(rep());
    std::sort(v.begin(), v.end());
    return {v.front(), v[v.size() / 2], int(v.size())};
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "cogent-bench: %s\n", msg.c_str());
    std::exit(1);
}

void check(bool ok, const char* what) {
    if (!ok) die(std::string("sanity check failed: ") + what);
}

// ---------------------------------------------------------------------------------------------
// Output: one line per figure, cached so that a group measured once serves all its members.

std::map<std::string, std::string> g_results;  // name -> "VALUE UNIT"

void record(const std::string& name, double value, const char* unit, int precision = 1) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f %s", precision, value, unit);
    g_results[name] = buf;
}

// ---------------------------------------------------------------------------------------------
// /proc readings

std::size_t page_bytes() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Resident bytes (second field of /proc/self/statm).
std::size_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    f >> size >> resident;
    check(static_cast<bool>(f), "reading /proc/self/statm");
    return resident * page_bytes();
}

// A "Key:   N kB" line of /proc/self/status, in bytes.
std::size_t status_bytes(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::size_t klen = std::strlen(key);
    while (std::getline(f, line)) {
        if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
            return std::strtoull(line.c_str() + klen + 1, nullptr, 10) * 1024;
    }
    die(std::string("no ") + key + " in /proc/self/status");
}

std::size_t heap_in_use() {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

constexpr double kMiB = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// switch_ns / boost_switch_ns / switch_ratio
//
// Ping-pong between the main greenlet and one raw greenlet: each round trip is two switches
// (main -> g, g -> main). The Boost side does the same with a bare boost::context::fiber
// (resume / resume), with Boost's default stack allocator.

constexpr long kSwitchRounds = 50'000;  // round trips per repetition (2 switches each)

double cogent_switch_once(long rounds) {
    long counter = 0;
    cogent::RawGreenlet main_g = cogent::getcurrent();
    cogent::RawGreenlet g([&]() {
        for (;;) {
            ++counter;
            main_g.switch_to();
        }
    });
    g.switch_to();  // start it: it runs up to its first switch back
    const long before = counter;
    auto t0 = Clock::now();
    for (long i = 0; i < rounds; ++i) g.switch_to();
    double ns = ns_since(t0);
    check(counter - before == rounds, "cogent ping-pong count");
    g.kill_now();  // unwind its stack (GreenletExit at its suspension point)
    check(g.dead(), "raw greenlet dead after kill_now");
    return ns / double(2 * rounds);
}

double boost_switch_once(long rounds) {
    namespace ctx = boost::context;
    long counter = 0;
    bool stop = false;
    ctx::fiber f([&](ctx::fiber&& back) {
        while (!stop) {
            ++counter;
            back = std::move(back).resume();
        }
        return std::move(back);
    });
    f = std::move(f).resume();  // start it: it runs up to its first switch back
    const long before = counter;
    auto t0 = Clock::now();
    for (long i = 0; i < rounds; ++i) f = std::move(f).resume();
    double ns = ns_since(t0);
    check(counter - before == rounds, "boost ping-pong count");
    stop = true;
    f = std::move(f).resume();  // let it return
    check(!f, "boost fiber finished");
    return ns / double(2 * rounds);
}

void fig_switch() {
    cogent_switch_once(kSwitchRounds);  // warm-up: thread state, stack pool, caches
    boost_switch_once(kSwitchRounds);
    // One repetition = one cogent loop and one Boost loop, back to back.
    std::vector<double> c, b;
    best_of(
        [&] {
            c.push_back(cogent_switch_once(kSwitchRounds));
            b.push_back(boost_switch_once(kSwitchRounds));
            return 0.0;
        },
        20, 400, 600);
    std::sort(c.begin(), c.end());
    std::sort(b.begin(), b.end());
    std::fprintf(stderr,
                 "cogent-bench: switch: %zu reps of %ld round trips; cogent best %.2f median "
                 "%.2f ns, boost best %.2f median %.2f ns\n",
                 c.size(), kSwitchRounds, c.front(), c[c.size() / 2], b.front(), b[b.size() / 2]);
    record("switch_ns", c.front(), "ns", 2);
    record("boost_switch_ns", b.front(), "ns", 2);
    record("switch_ratio", c.front() / b.front(), "x", 2);
}

// ---------------------------------------------------------------------------------------------
// yield_ns: two spawned greenlets each calling cogent::sleep(0) in a loop; the hub alternates
// between them. Total time / total number of sleep(0) calls.

constexpr long kYieldsPerGreenlet = 25'000;  // per repetition

double yield_once(long n) {
    long counter = 0;
    auto body = [&counter, n] {
        for (long i = 0; i < n; ++i) {
            cogent::sleep(0);
            ++counter;
        }
    };
    auto t0 = Clock::now();
    auto a = cogent::spawn(body);
    auto b = cogent::spawn(body);
    a.join();
    b.join();
    double ns = ns_since(t0);
    check(a.successful() && b.successful(), "yield greenlets succeeded");
    check(counter == 2 * n, "yield count");
    return ns / double(2 * n);
}

void fig_yield() {
    yield_once(kYieldsPerGreenlet);
    Best r = best_of([] { return yield_once(kYieldsPerGreenlet); }, 20, 400, 600);
    std::fprintf(stderr, "cogent-bench: yield: %d reps of %ld yields; best %.2f median %.2f ns\n",
                 r.reps, 2 * kYieldsPerGreenlet, r.min, r.median);
    record("yield_ns", r.min, "ns", 2);
}

// ---------------------------------------------------------------------------------------------
// spawn_join_ns: spawn 100,000 trivial greenlets into a vector, then joinall() them, then drop
// the handles (which frees the greenlets). Time for all of it / 100,000. Spawning only
// schedules; the greenlets run (FIFO) once the main greenlet blocks in joinall. joinall (the
// gevent idiom) is the figure; the same with one join() per handle, in spawn order, is printed
// on stderr for comparison (it shows what joinall itself costs per greenlet).

constexpr std::size_t kSpawnN = 100'000;

double spawn_join_once(std::size_t n, bool use_joinall, double* best_cpu) {
    std::uint64_t sum = 0;
    std::vector<cogent::Greenlet<void>> gs;
    gs.reserve(n);
    const double c0 = thread_cpu_ns();
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i) gs.push_back(cogent::spawn([&sum, i] { sum += i; }));
    if (use_joinall) {
        auto done = cogent::joinall(gs);
        check(done.size() == n, "joinall returned every greenlet");
    } else {
        for (auto& g : gs) g.join();
    }
    gs.clear();  // the last handles: frees every greenlet
    double ns = ns_since(t0);
    *best_cpu = std::min(*best_cpu, (thread_cpu_ns() - c0) / double(n));
    check(sum == std::uint64_t(n) * (n - 1) / 2, "spawned greenlets all ran");
    return ns / double(n);
}

void fig_spawn_join() {
    double cpu_all = 1e300, cpu_each = 1e300;
    // Warm-up: grows the handle vector's and malloc's arenas, fills the runtime's caches.
    spawn_join_once(kSpawnN, true, &cpu_all);
    spawn_join_once(kSpawnN, false, &cpu_each);
    cpu_all = cpu_each = 1e300;
    Best all = best_of([&] { return spawn_join_once(kSpawnN, true, &cpu_all); }, 7, 40, 1500);
    Best each = best_of([&] { return spawn_join_once(kSpawnN, false, &cpu_each); }, 7, 40, 1000);
    std::fprintf(stderr,
                 "cogent-bench: spawn_join: %d reps of %zu; joinall best %.1f median %.1f ns "
                 "(thread CPU best %.1f); join() per handle best %.1f median %.1f ns (thread CPU "
                 "best %.1f)\n",
                 all.reps, kSpawnN, all.min, all.median, cpu_all, each.min, each.median, cpu_each);
    record("spawn_join_ns", all.min, "ns", 1);
}

// ---------------------------------------------------------------------------------------------
// queue_item_ns / queue_item_bounded_ns / channel_item_ns: one consumer greenlet is spawned and
// left to park in its first get() (it waits first); then one producer greenlet put()s n ints as
// fast as the queue lets it, and the consumer get()s them all. Time from the producer's spawn
// until both have ended / n. The queue is created per repetition (an unbounded one grows its
// ring buffer during the repetition: that is part of its cost). n = kQueueItems for the queues;
// kHandoffItems for the variants where every item is a handoff (about 100 ns each), to keep
// their repetitions a few ms long like the queues' (see the top of the file).
// - queue_item_ns: cogent::Queue<int>, unbounded. put() never blocks, so the producer runs
//   ahead: the consumer is woken once, by the first put(), and then finds items queued. This is
//   the gevent pattern (producer loop, consumer loop) whose gevent cost is about 420 ns/item.
// - queue_item_bounded_ns: Queue<int>(64): the producer blocks whenever 64 items are queued,
//   so the two alternate in batches of 64 through both wait lists.
// - channel_item_ns: cogent::Channel<int>: a rendezvous, every item is a handoff between the
//   two greenlets through the channel's matcher.
// Printed on stderr only: the unbounded queue with the producer calling sleep(0) after every
// put(), so that the consumer is parked in get() for every item (each item costs a wake-up of
// the consumer and a yield of the producer: four switches and two hub callbacks).

constexpr long kQueueItems = 100'000;   // per repetition
constexpr long kHandoffItems = 20'000;  // per repetition, channel and sleep(0) variant

template <class Q, class... Args>
double transfer_once(long n, bool yield_after_put, Args... args) {
    Q q(args...);
    long got = 0;
    std::uint64_t sum = 0;
    auto consumer = cogent::spawn([&q, &got, &sum, n] {
        for (long i = 0; i < n; ++i) {
            sum += std::uint64_t(q.get());
            ++got;
        }
    });
    cogent::sleep(0);  // the consumer starts and parks in its first get()
    check(got == 0 && !consumer.dead(), "consumer waits before the producer starts");
    auto t0 = Clock::now();
    auto producer = cogent::spawn([&q, n, yield_after_put] {
        for (long i = 0; i < n; ++i) {
            q.put(int(i));
            if (yield_after_put) cogent::sleep(0);
        }
    });
    producer.join();
    consumer.join();
    double ns = ns_since(t0);
    check(producer.successful() && consumer.successful(), "queue greenlets succeeded");
    check(got == n && sum == std::uint64_t(n) * std::uint64_t(n - 1) / 2, "every item arrived");
    return ns / double(n);
}

void fig_queue() {
    using IntQueue = cogent::Queue<int>;
    using IntChannel = cogent::Channel<int>;
    const std::optional<std::size_t> unbounded, bounded = 64;
    auto unb = [&] { return transfer_once<IntQueue>(kQueueItems, false, unbounded); };
    auto bnd = [&] { return transfer_once<IntQueue>(kQueueItems, false, bounded); };
    auto chn = [&] { return transfer_once<IntChannel>(kHandoffItems, false); };
    auto hnd = [&] { return transfer_once<IntQueue>(kHandoffItems, true, unbounded); };
    unb();  // warm-up
    bnd();
    chn();
    hnd();
    // One repetition = the four variants back to back (same machine conditions for all).
    std::vector<double> u, b, c, h;
    best_of(
        [&] {
            u.push_back(unb());
            b.push_back(bnd());
            c.push_back(chn());
            h.push_back(hnd());
            return 0.0;
        },
        10, 400, 1500);
    for (auto* v : {&u, &b, &c, &h}) std::sort(v->begin(), v->end());
    auto med = [](const std::vector<double>& v) { return v[v.size() / 2]; };
    std::fprintf(stderr,
                 "cogent-bench: queue: %zu reps of %ld items (channel, sleep(0) variant: %ld); "
                 "best (median) ns/item: unbounded %.2f (%.2f), maxsize 64 %.2f (%.2f), channel "
                 "%.2f (%.2f); unbounded with sleep(0) after each put (consumer woken per item) "
                 "%.2f (%.2f)\n",
                 u.size(), kQueueItems, kHandoffItems, u.front(), med(u), b.front(), med(b),
                 c.front(), med(c), h.front(), med(h));
    record("queue_item_ns", u.front(), "ns", 2);
    record("queue_item_bounded_ns", b.front(), "ns", 2);
    record("channel_item_ns", c.front(), "ns", 2);
}

// ---------------------------------------------------------------------------------------------
// event_wake_ns: kEventWaiters greenlets wait on one Event. One round: set() the event, clear()
// it at once, and sleep(0); the hub runs the event's wake-up callback (which resumes every
// waiter) before the main greenlet's own wake-up, so sleep(0) returns once all of them ran. The
// waiters RE-WAIT: each bumps a counter and calls wait() again (set() had already taken them
// off the wait list, so the clear() does not stop them from waking; their next wait() parks).
// So the figure is, per waiter, one resume from the wake-up callback, the return from wait(),
// and a new park; no greenlet is spawned or ends inside the timed part. Time of kEventRounds
// rounds / (rounds * waiters). Printed on stderr only: the same with waiters that end after
// their one wake-up (fresh greenlets each round; the time then includes their exit, and with
// 1,000 greenlets exiting at once most of them return their stack's pages to the kernel).

constexpr int kEventWaiters = 1000;
constexpr int kEventRounds = 10;  // per repetition

double event_rewait_once(cogent::Event& ev, const long& woken) {
    const long before = woken;
    auto t0 = Clock::now();
    for (int r = 0; r < kEventRounds; ++r) {
        ev.set();
        ev.clear();
        cogent::sleep(0);  // queued behind the event's wake-up callback
    }
    double ns = ns_since(t0);
    check(woken - before == long(kEventWaiters) * kEventRounds, "every waiter woke every round");
    return ns / double(kEventWaiters * kEventRounds);
}

double event_end_once() {
    double total = 0;
    for (int r = 0; r < kEventRounds; ++r) {
        cogent::Event ev;
        long woken = 0;
        std::vector<cogent::Greenlet<void>> gs;
        gs.reserve(kEventWaiters);
        for (int i = 0; i < kEventWaiters; ++i)
            gs.push_back(cogent::spawn([&ev, &woken] {
                if (ev.wait()) ++woken;
            }));
        cogent::sleep(0);  // all of them start and park in wait()
        check(woken == 0, "waiters parked before set()");
        auto t0 = Clock::now();
        ev.set();
        cogent::sleep(0);
        total += ns_since(t0);
        check(woken == kEventWaiters, "every waiter woke");
        for (auto& g : gs) check(g.dead(), "every waiter ended");
    }
    return total / double(kEventWaiters * kEventRounds);
}

void fig_event() {
    cogent::Event ev;
    long woken = 0;
    bool stop = false;
    std::vector<cogent::Greenlet<void>> gs;
    gs.reserve(kEventWaiters);
    for (int i = 0; i < kEventWaiters; ++i)
        gs.push_back(cogent::spawn([&ev, &woken, &stop] {
            for (;;) {
                check(ev.wait(), "Event::wait returned true");
                if (stop) return;
                ++woken;
            }
        }));
    cogent::sleep(0);  // all of them start and park in wait()
    check(woken == 0 && cogent::debug::live_greenlets() >= std::size_t(kEventWaiters),
          "every waiter parked");
    event_rewait_once(ev, woken);  // warm-up
    Best r = best_of([&] { return event_rewait_once(ev, woken); }, 10, 1000, 600);
    stop = true;
    ev.set();
    auto done = cogent::joinall(gs);
    check(done.size() == gs.size(), "waiters joined");
    for (auto& g : gs) check(g.successful(), "waiters succeeded");
    // Not interleaved with the above: its spawns and exits would evict the re-waiters' stacks.
    event_end_once();
    Best e = best_of([] { return event_end_once(); }, 5, 100, 300);
    std::fprintf(stderr,
                 "cogent-bench: event_wake: %d reps of %d rounds x %d waiters; re-waiting best "
                 "%.2f median %.2f ns/waiter; waiters that end instead (%d reps) best %.2f median "
                 "%.2f\n",
                 r.reps, kEventRounds, kEventWaiters, r.min, r.median, e.reps, e.min, e.median);
    record("event_wake_ns", r.min, "ns", 2);
}

// ---------------------------------------------------------------------------------------------
// semaphore_handoff_ns: two greenlets loop { acquire(); count; release(); } on a Semaphore(1).
// The main greenlet holds the permit while both start, so both queue in acquire(); from then on
// every acquire() blocks: the releaser's next acquire() finds the other greenlet queued (the
// semaphore is FIFO-fair: no fast path while someone waits) and parks, and the permit goes to
// the waiter through the wait list and the hub's wake-up callback. Checked: the holder
// alternates on every acquire. Time / number of handoffs. A Lock is timed the same way and
// printed on stderr.

constexpr long kHandoffsPerGreenlet = 10'000;  // per repetition (two greenlets): about 1 ms

template <class S, class... Args>
double handoff_once(long n, Args... args) {
    S sem(args...);
    int last = -1;
    long total = 0, handoffs = 0;
    auto body = [&sem, &last, &total, &handoffs, n](int me) {
        for (long i = 0; i < n; ++i) {
            sem.acquire();
            if (last != me) ++handoffs;
            last = me;
            ++total;
            sem.release();
        }
    };
    check(sem.acquire(false), "main takes the permit");
    auto a = cogent::spawn(body, 0);
    auto b = cogent::spawn(body, 1);
    cogent::sleep(0);  // both start and queue in acquire()
    check(sem.waiting() == 2, "both greenlets blocked in acquire()");
    auto t0 = Clock::now();
    sem.release();
    a.join();
    b.join();
    double ns = ns_since(t0);
    check(a.successful() && b.successful(), "handoff greenlets succeeded");
    check(total == 2 * n && handoffs == 2 * n, "every acquire was a handoff");
    return ns / double(2 * n);
}

void fig_semaphore() {
    auto sem = [] { return handoff_once<cogent::Semaphore>(kHandoffsPerGreenlet, 1); };
    auto lock = [] { return handoff_once<cogent::Lock>(kHandoffsPerGreenlet); };
    sem();  // warm-up
    lock();
    std::vector<double> l;
    Best r = best_of(
        [&] {
            l.push_back(lock());
            return sem();
        },
        10, 400, 800);
    std::sort(l.begin(), l.end());
    std::fprintf(stderr,
                 "cogent-bench: semaphore_handoff: %d reps of %ld handoffs; Semaphore(1) best "
                 "%.2f median %.2f ns; Lock best %.2f median %.2f ns\n",
                 r.reps, 2 * kHandoffsPerGreenlet, r.min, r.median, l.front(), l[l.size() / 2]);
    record("semaphore_handoff_ns", r.min, "ns", 2);
}

// ---------------------------------------------------------------------------------------------
// Blocked greenlets (run in a child process).

struct BlockedRun {
    double spawn_block_s = 0;  // spawn n and let them all block
    double total_s = 0;        // + set the event, join them all
    std::size_t rss_base = 0;  // resident bytes before spawning
    std::size_t rss_blocked = 0;
    std::size_t heap_base = 0, heap_blocked = 0;
    std::size_t pte_blocked = 0;  // VmPTE with all of them blocked
};

// Spawn n greenlets that block on one Event; with all of them blocked, take readings; then set
// the event and join them all. The handle vector is allocated and touched before the baseline,
// so the figure counts what the runtime needs per greenlet, not the caller's handle array.
BlockedRun run_blocked(std::size_t n) {
    BlockedRun r;
    cogent::Event ev;
    std::size_t reached = 0, woke = 0;
    std::vector<cogent::Greenlet<void>> gs(n);
    r.rss_base = rss_bytes();
    r.heap_base = heap_in_use();
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i)
        gs[i] = cogent::spawn([&] {
            ++reached;
            if (ev.wait()) ++woke;
        });
    cogent::sleep(0);  // queued behind every start: returns once all of them are parked
    r.spawn_block_s = ns_since(t0) / 1e9;
    check(reached == n, "every greenlet reached Event::wait before the reading");
    check(cogent::debug::live_greenlets() == n, "every greenlet is alive and blocked");
    r.rss_blocked = rss_bytes();
    r.heap_blocked = heap_in_use();
    r.pte_blocked = status_bytes("VmPTE");
    ev.set();
    auto done = cogent::joinall(gs);
    r.total_s = ns_since(t0) / 1e9;
    check(done.size() == n && woke == n, "every blocked greenlet woke and was joined");
    return r;
}

// A small warm-up: creates the thread state, the hub and its loop, and the first stack slab, so
// that these one-time costs are not charged to the measured greenlets. It is kept small so that
// the memory it frees cannot be reused to hide the per-greenlet cost.
void warm_up_runtime() {
    cogent::Event ev;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 16; ++i) gs.push_back(cogent::spawn([&] { ev.wait(); }));
    cogent::sleep(0);
    ev.set();
    cogent::joinall(gs);
    malloc_trim(0);
}

constexpr std::size_t kBlockedN = 100'000;

void child_blocked_rss() {
    warm_up_runtime();
    BlockedRun r = run_blocked(kBlockedN);
    const double per = double(r.rss_blocked - r.rss_base) / double(kBlockedN);
    const double heap = (double(r.heap_blocked) - double(r.heap_base)) / double(kBlockedN);
    std::fprintf(stderr,
                 "cogent-bench: blocked_rss_bytes: %zu greenlets, RSS +%.1f MiB (%.0f B each, of "
                 "which malloc'd %.0f B), VmPTE %.1f MiB (%.0f B each), spawn+block %.3f s\n",
                 kBlockedN, double(r.rss_blocked - r.rss_base) / kMiB, per, heap,
                 double(r.pte_blocked) / kMiB, double(r.pte_blocked) / double(kBlockedN),
                 r.spawn_block_s);
    record("blocked_rss_bytes", per, "bytes", 0);
}

constexpr std::size_t kMillion = 1'000'000;

void child_million() {
    // No warm-up: the figure is the whole thing, from a cold process, and the peak is the
    // process's (VmHWM), as an operator would see it.
    BlockedRun r = run_blocked(kMillion);
    const std::size_t hwm = status_bytes("VmHWM");
    const std::size_t pte = std::max(r.pte_blocked, status_bytes("VmPTE"));
    std::fprintf(stderr,
                 "cogent-bench: million_blocked: spawn+block %.3f s, total %.3f s, RSS blocked "
                 "%.1f MiB (%.0f B each over base), peak %.1f MiB, VmPTE %.1f MiB\n",
                 r.spawn_block_s, r.total_s, double(r.rss_blocked) / kMiB,
                 double(r.rss_blocked - r.rss_base) / double(kMillion), double(hwm) / kMiB,
                 double(pte) / kMiB);
    record("million_blocked_s", r.total_s, "s", 3);
    record("million_blocked_rss_mib", double(hwm) / kMiB, "MiB", 1);
    record("million_blocked_pte_mib", double(pte) / kMiB, "MiB", 1);
}

// Re-execute this program as `--child NAME`; its stdout lines are parsed into g_results.
void run_child(const char* self, const char* name) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed");
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, "--child", name, static_cast<char*>(nullptr));
        std::fprintf(stderr, "cogent-bench: cannot re-execute %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    std::string out;
    char buf[4096];
    for (ssize_t k; (k = read(fds[0], buf, sizeof buf)) != 0;) {
        if (k < 0) {
            if (errno == EINTR) continue;
            break;
        }
        out.append(buf, std::size_t(k));
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die(std::string("child for ") + name + " failed (status " + std::to_string(status) + ")");
    std::size_t pos = 0;
    while (pos < out.size()) {
        std::size_t nl = out.find('\n', pos);
        if (nl == std::string::npos) nl = out.size();
        std::string line = out.substr(pos, nl - pos);
        pos = nl + 1;
        std::size_t sp = line.find(' ');
        if (sp != std::string::npos) g_results[line.substr(0, sp)] = line.substr(sp + 1);
    }
}

// The million-greenlet run is repeated in fresh processes; the best time is reported, with the
// largest memory readings of those runs (memory barely varies; the max is the conservative one).
constexpr int kMillionReps = 3;

void run_million_children(const char* self) {
    std::optional<double> best_s;
    double rss = 0, pte = 0;
    for (int r = 0; r < kMillionReps; ++r) {
        run_child(self, "million");
        best_s = std::min(best_s.value_or(1e300), std::stod(g_results.at("million_blocked_s")));
        rss = std::max(rss, std::stod(g_results.at("million_blocked_rss_mib")));
        pte = std::max(pte, std::stod(g_results.at("million_blocked_pte_mib")));
    }
    record("million_blocked_s", *best_s, "s", 3);
    record("million_blocked_rss_mib", rss, "MiB", 1);
    record("million_blocked_pte_mib", pte, "MiB", 1);
}

// ---------------------------------------------------------------------------------------------
// dns_concurrent (issue 5): N lookups at once against the test DNS server answering each after
// kDnsDelay, divided by one lookup's time. 1.0 is the floor (all N in one round trip); doing
// them one after another would give N. dns_roundtrip_us: one lookup with no delay, end to end
// (resolver, c-ares, and the fake server on its own thread: mostly two thread wake-ups).

constexpr int kDnsN = 1000;
constexpr auto kDnsDelay = std::chrono::milliseconds(50);

void fig_dns() {
    using clock = std::chrono::steady_clock;
    cogent_test::DnsServer dns;
    cogent::Resolver::Options o;
    o.servers = {dns.server_spec()};
    o.timeout = std::chrono::seconds(5);
    o.tries = 1;
    o.hosts_file = "-";
    cogent::Resolver r(o);
    cogent::AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};
    auto lookup = [&](const std::string& name) {
        if (r.getaddrinfo(name, {}, v4).empty()) die("dns: empty answer for " + name);
    };
    // Cost per lookup without delay.
    for (int i = 0; i < 200; ++i) lookup("warm" + std::to_string(i) + ".gen.test");
    constexpr int kSeq = 3000;
    auto t0 = clock::now();
    for (int i = 0; i < kSeq; ++i) lookup("s" + std::to_string(i) + ".gen.test");
    double per_us = std::chrono::duration<double, std::micro>(clock::now() - t0).count() / kSeq;
    // One delayed lookup: the best of 5.
    dns.set_delay(kDnsDelay);
    double one = 1e300;
    for (int i = 0; i < 5; ++i) {
        auto t = clock::now();
        lookup("one" + std::to_string(i) + ".gen.test");
        one = std::min(one, std::chrono::duration<double>(clock::now() - t).count());
    }
    // N at once, each its own name (no answer can serve two).
    double all = 1e300;
    for (int rep = 0; rep < 3; ++rep) {
        std::vector<cogent::Greenlet<void>> gs;
        gs.reserve(kDnsN);
        auto t = clock::now();
        for (int i = 0; i < kDnsN; ++i)
            gs.push_back(cogent::spawn(
                lookup, "c" + std::to_string(rep) + "-" + std::to_string(i) + ".gen.test"));
        int failed = 0;
        for (auto& g : gs) {
            g.join();
            if (!g.successful()) ++failed;
        }
        if (failed)
            die("dns: " + std::to_string(failed) + " of " + std::to_string(kDnsN) +
                " lookups failed; the server received " + std::to_string(dns.udp_queries()) +
                " queries in all");
        all = std::min(all, std::chrono::duration<double>(clock::now() - t).count());
    }
    std::fprintf(stderr, "cogent-bench: dns: one lookup %.1f ms, %d at once %.1f ms\n", one * 1e3,
                 kDnsN, all * 1e3);
    record("dns_concurrent", all / one, "x", 2);
    record("dns_roundtrip_us", per_us, "us", 1);
}

// ---------------------------------------------------------------------------------------------
// patch_passthrough_ratio, patch_pingpong_ratio and the sync family's figures: measured by
// cogent-patch-bench (bench/patch_bench.cpp, next to this executable), which needs processes
// with and without the monkey patch preloaded; its `NAME VALUE UNIT` lines are taken over as
// they are.

void run_patch_bench() {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) die("cannot read /proc/self/exe");
    std::string dir(exe, std::size_t(n));
    dir = dir.substr(0, dir.rfind('/'));
    const std::string cmd = "'" + dir + "/cogent-patch-bench'";
    std::fflush(stdout);
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) die("cannot run " + cmd);
    char line[256];
    while (std::fgets(line, sizeof line, p)) {
        std::string l(line);
        if (!l.empty() && l.back() == '\n') l.pop_back();
        std::size_t sp = l.find(' ');
        if (sp != std::string::npos) g_results[l.substr(0, sp)] = l.substr(sp + 1);
    }
    if (pclose(p) != 0) die(cmd + " failed");
}

// ---------------------------------------------------------------------------------------------
// Figure table

struct Figure {
    const char* name;
    const char* group;  // figures of one group are measured together, once
};

const Figure kFigures[] = {
    {"switch_ns", "switch"},
    {"boost_switch_ns", "switch"},
    {"switch_ratio", "switch"},
    {"yield_ns", "yield"},
    {"spawn_join_ns", "spawn_join"},
    {"queue_item_ns", "queue"},
    {"queue_item_bounded_ns", "queue"},
    {"channel_item_ns", "queue"},
    {"event_wake_ns", "event"},
    {"semaphore_handoff_ns", "semaphore"},
    {"blocked_rss_bytes", "blocked_rss"},
    {"million_blocked_s", "million"},
    {"million_blocked_rss_mib", "million"},
    {"million_blocked_pte_mib", "million"},
    {"dns_concurrent", "dns"},
    {"dns_roundtrip_us", "dns"},
    {"patch_passthrough_ratio", "patch"},
    {"patch_pingpong_ratio", "patch"},
    {"patch_mutex_passthrough_ratio", "patch"},
    {"green_mutex_handoff_ns", "patch"},
    {"thread_mutex_handoff_ns", "patch"},
    {"green_cond_pingpong_ns", "patch"},
    {"thread_cond_pingpong_ns", "patch"},
    {"green_thread_create_join_ns", "patch"},
    {"thread_create_join_ns", "patch"},
    {"green_thread_rss_bytes", "patch"},
    {"thread_rss_bytes", "patch"},
};

void run_group(const std::string& group, const char* self) {
    if (group == "switch")
        fig_switch();
    else if (group == "yield")
        fig_yield();
    else if (group == "spawn_join")
        fig_spawn_join();
    else if (group == "queue")
        fig_queue();
    else if (group == "event")
        fig_event();
    else if (group == "semaphore")
        fig_semaphore();
    else if (group == "blocked_rss")
        run_child(self, "blocked_rss");
    else if (group == "million")
        run_million_children(self);
    else if (group == "dns")
        fig_dns();
    else if (group == "patch")
        run_patch_bench();
}

int child_main(const std::string& which) {
    if (which == "blocked_rss")
        child_blocked_rss();
    else if (which == "million")
        child_million();
    else
        return 2;
    for (auto& [name, value] : g_results) std::printf("%s %s\n", name.c_str(), value.c_str());
    std::fflush(stdout);
    return 0;
}

// Timing figures on a busy machine come out high: say so on stderr.
void warn_if_loaded() {
    std::ifstream f("/proc/loadavg");
    double load1 = 0;
    if (!(f >> load1)) return;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0 && load1 > double(cpus) - 0.5)
        std::fprintf(stderr,
                     "cogent-bench: warning: load average %.2f on %ld CPUs; timing figures may "
                     "be inflated\n",
                     load1, cpus);
}

void usage_valid(FILE* to) {
    std::fprintf(to, "valid figures:");
    for (const auto& f : kFigures) std::fprintf(to, " %s", f.name);
    std::fprintf(to, "\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "--child") return child_main(args[1]);
    if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
        std::fprintf(stderr, "usage: cogent-bench [FIGURE...]\n");
        usage_valid(stderr);
        return 0;
    }

    std::vector<const Figure*> wanted;
    if (args.empty()) {
        for (const auto& f : kFigures) wanted.push_back(&f);
    } else {
        for (const auto& a : args) {
            const Figure* found = nullptr;
            for (const auto& f : kFigures)
                if (a == f.name) found = &f;
            if (!found) {
                std::fprintf(stderr, "cogent-bench: unknown figure '%s'\n", a.c_str());
                usage_valid(stderr);
                return 2;
            }
            if (std::find(wanted.begin(), wanted.end(), found) == wanted.end())
                wanted.push_back(found);
        }
    }

    warn_if_loaded();
    // /proc/self/exe, so that the child is this very binary whatever the cwd or argv[0].
    const char* self = "/proc/self/exe";
    std::vector<std::string> done_groups;
    for (const Figure* f : wanted) {
        if (std::find(done_groups.begin(), done_groups.end(), f->group) == done_groups.end()) {
            run_group(f->group, self);
            done_groups.push_back(f->group);
        }
        auto it = g_results.find(f->name);
        if (it == g_results.end()) die(std::string("no result for ") + f->name);
        std::printf("%s %s\n", f->name, it->second.c_str());
        std::fflush(stdout);
    }
    return 0;
}
