// The monkey patch's sync family, linked in (patch_dep): pthread mutexes, conditions, rwlocks,
// barriers, spin locks, once, semaphores, sched_yield and futex-based C++ waits park only the
// calling greenlet; a real thread and greenlets share one object and wake each other; errors
// are libc's.
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <time.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <mutex>
#include <semaphore>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// A greenlet that counts while others wait: proof that a wait parked only its greenlet.
struct Ticker {
    std::atomic<int> ticks{0};
    bool stop = false;
    cogent::Greenlet<void> g;
    Ticker() {
        g = cogent::spawn([this] {
            while (!stop) {
                ++ticks;
                cogent::sleep(2ms);
            }
        });
    }
    ~Ticker() {
        stop = true;
        g.join();
    }
};

timespec in_ms(clockid_t clock, int ms) {
    timespec t{};
    clock_gettime(clock, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += long(ms % 1000) * 1'000'000;
    if (t.tv_nsec >= 1'000'000'000) {
        t.tv_nsec -= 1'000'000'000;
        ++t.tv_sec;
    }
    return t;
}

}  // namespace

TEST_CASE("the sync family is patched by default") {
    CHECK(cogent::patch::is_patched(cogent::patch::Family::sync));
    CHECK_FALSE(cogent::patch::is_patched(cogent::patch::Family::thread));
}

TEST_CASE("a mutex held across a cooperative wait parks only the waiting greenlet") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    Ticker t;
    std::vector<int> order;
    auto holder = cogent::spawn([&] {
        pthread_mutex_lock(&m);
        order.push_back(1);
        cogent::sleep(50ms);  // holds it while parked
        order.push_back(2);
        pthread_mutex_unlock(&m);
    });
    cogent::sleep(5ms);
    const int before = t.ticks;
    REQUIRE(pthread_mutex_lock(&m) == 0);  // the main greenlet waits for the holder
    order.push_back(3);
    CHECK(t.ticks - before >= 1);  // the ticker ran meanwhile: the thread was not blocked
    CHECK(pthread_mutex_unlock(&m) == 0);
    holder.join();
    CHECK(order == std::vector<int>{1, 2, 3});
    CHECK(pthread_mutex_destroy(&m) == 0);
}

TEST_CASE("a pool of 2 behind a mutex and a condition serves 6 greenlets (the memcached case)") {
    std::mutex mu;
    std::condition_variable cv;
    int free_conns = 2;
    int served = 0, timed_out = 0;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 6; ++i)
        gs.push_back(cogent::spawn([&] {
            {
                std::unique_lock<std::mutex> lk(mu);
                if (!cv.wait_for(lk, 2s, [&] { return free_conns > 0; })) {
                    ++timed_out;
                    return;
                }
                --free_conns;
            }
            cogent::sleep(20ms);  // the "fetch", holding the connection, parked
            {
                std::lock_guard<std::mutex> lk(mu);
                ++free_conns;
                ++served;
            }
            cv.notify_one();
        }));
    for (auto& g : gs) g.join();
    CHECK(served == 6);
    CHECK(timed_out == 0);
    CHECK(free_conns == 2);
}

TEST_CASE("pthread_cond_timedwait times out on its own clock, with the mutex held again") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    Ticker t;
    pthread_mutex_lock(&m);
    auto t0 = std::chrono::steady_clock::now();
    timespec at = in_ms(CLOCK_REALTIME, 40);
    CHECK(pthread_cond_timedwait(&c, &m, &at) == ETIMEDOUT);
    CHECK(std::chrono::steady_clock::now() - t0 >= 35ms);
    CHECK(pthread_mutex_trylock(&m) == EBUSY);  // held again
    pthread_mutex_unlock(&m);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_t cm;
    REQUIRE(pthread_cond_init(&cm, &ca) == 0);
    pthread_mutex_lock(&m);
    at = in_ms(CLOCK_MONOTONIC, 30);
    CHECK(pthread_cond_timedwait(&cm, &m, &at) == ETIMEDOUT);
    at = in_ms(CLOCK_MONOTONIC, 30);
    CHECK(pthread_cond_clockwait(&c, &m, CLOCK_MONOTONIC, &at) == ETIMEDOUT);
    CHECK(pthread_cond_clockwait(&c, &m, CLOCK_PROCESS_CPUTIME_ID, &at) == EINVAL);
    timespec bad{0, 1'000'000'000};
    CHECK(pthread_cond_timedwait(&c, &m, &bad) == EINVAL);
    pthread_mutex_unlock(&m);
    CHECK(t.ticks > 0);
    pthread_cond_destroy(&cm);
    pthread_condattr_destroy(&ca);
}

TEST_CASE("a real thread and greenlets share mutexes and conditions both ways") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t to_green = PTHREAD_COND_INITIALIZER, to_thread = PTHREAD_COND_INITIALIZER;
    int stage = 0;
    Ticker t;
    std::thread th([&] {
        for (int i = 0; i < 50; ++i) {
            pthread_mutex_lock(&m);
            while (stage % 2 != 0) pthread_cond_wait(&to_thread, &m);  // a kernel sleep
            ++stage;
            pthread_cond_signal(&to_green);
            pthread_mutex_unlock(&m);
        }
    });
    for (int i = 0; i < 50; ++i) {
        pthread_mutex_lock(&m);
        while (stage % 2 != 1) pthread_cond_wait(&to_green, &m);  // a greenlet park
        ++stage;
        pthread_cond_signal(&to_thread);
        pthread_mutex_unlock(&m);
    }
    th.join();
    CHECK(stage == 100);
}

TEST_CASE("greenlets of two hubs wake each other through one mutex and condition") {
    std::mutex mu;
    std::condition_variable cv;
    int turn = 0;
    constexpr int kRounds = 200;
    std::thread other([&] {
        // This thread's own hub and greenlets.
        auto g = cogent::spawn([&] {
            for (int i = 0; i < kRounds; ++i) {
                std::unique_lock<std::mutex> lk(mu);
                cv.wait(lk, [&] { return turn % 2 == 1; });
                ++turn;
                cv.notify_all();
            }
        });
        g.join();
    });
    for (int i = 0; i < kRounds; ++i) {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return turn % 2 == 0; });
        ++turn;
        cv.notify_all();
    }
    other.join();
    CHECK(turn == 2 * kRounds);
}

TEST_CASE("mutex types give libc's errors") {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t e;
    REQUIRE(pthread_mutex_init(&e, &a) == 0);
    CHECK(pthread_mutex_unlock(&e) == EPERM);
    CHECK(pthread_mutex_lock(&e) == 0);
    CHECK(pthread_mutex_lock(&e) == EDEADLK);
    CHECK(pthread_mutex_trylock(&e) == EBUSY);
    CHECK(pthread_mutex_destroy(&e) == EBUSY);
    int other_unlock = -1;
    cogent::spawn([&] { other_unlock = pthread_mutex_unlock(&e); }).join();
    CHECK(other_unlock == EPERM);  // another greenlet does not own it
    CHECK(pthread_mutex_unlock(&e) == 0);
    CHECK(pthread_mutex_destroy(&e) == 0);
    CHECK(pthread_mutex_lock(&e) == EINVAL);  // destroyed

    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_t r;
    REQUIRE(pthread_mutex_init(&r, &a) == 0);
    CHECK(pthread_mutex_lock(&r) == 0);
    CHECK(pthread_mutex_lock(&r) == 0);
    CHECK(pthread_mutex_trylock(&r) == 0);
    int other_try = -1;
    bool other_got = false;
    auto g = cogent::spawn([&] {
        other_try = pthread_mutex_trylock(&r);
        other_got = pthread_mutex_lock(&r) == 0;  // waits: another greenlet is another owner
        pthread_mutex_unlock(&r);
    });
    cogent::sleep(10ms);
    CHECK(other_try == EBUSY);
    CHECK_FALSE(other_got);
    CHECK(pthread_mutex_unlock(&r) == 0);
    CHECK(pthread_mutex_unlock(&r) == 0);
    CHECK_FALSE(other_got);
    CHECK(pthread_mutex_unlock(&r) == 0);
    g.join();
    CHECK(other_got);
    CHECK(pthread_mutex_unlock(&r) == EPERM);
    pthread_mutex_destroy(&r);
    pthread_mutexattr_destroy(&a);

    pthread_mutex_t n = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&n);
    timespec at = in_ms(CLOCK_REALTIME, 30);
    int timed = -1;
    cogent::spawn([&] { timed = pthread_mutex_timedlock(&n, &at); }).join();
    CHECK(timed == ETIMEDOUT);
    timespec bad{0, -1};
    int inval = -1;
    cogent::spawn([&] { inval = pthread_mutex_timedlock(&n, &bad); }).join();
    CHECK(inval == EINVAL);
    at = in_ms(CLOCK_MONOTONIC, 20);
    cogent::spawn([&] { timed = pthread_mutex_clocklock(&n, CLOCK_MONOTONIC, &at); }).join();
    CHECK(timed == ETIMEDOUT);
    CHECK(pthread_mutex_clocklock(&n, CLOCK_THREAD_CPUTIME_ID, &at) == EINVAL);
    pthread_mutex_unlock(&n);
}

TEST_CASE("a kill does not interrupt pthread_mutex_lock (no cancellation point): it lands later") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    bool a_got = false, a_after = false, a_killed = false, b_got = false;
    auto a = cogent::spawn([&] {
        try {
            pthread_mutex_lock(&m);
            a_got = true;
            pthread_mutex_unlock(&m);
            cogent::sleep(1s);  // the next suspension point: the kill lands here
            a_after = true;
        } catch (const cogent::GreenletExit&) {
            a_killed = true;
            throw;
        }
    });
    auto b = cogent::spawn([&] {
        pthread_mutex_lock(&m);
        b_got = true;
        pthread_mutex_unlock(&m);
    });
    cogent::sleep(5ms);
    auto killer = cogent::spawn([&] { a.kill(); });
    cogent::sleep(5ms);
    CHECK_FALSE(a_got);  // still waiting for the mutex, kill or not
    pthread_mutex_unlock(&m);
    killer.join();
    b.join();
    CHECK(a_got);
    CHECK(a_killed);
    CHECK_FALSE(a_after);
    CHECK(b_got);
    CHECK(pthread_mutex_trylock(&m) == 0);
    pthread_mutex_unlock(&m);
}

TEST_CASE("a kill interrupts pthread_cond_wait (a cancellation point) with the mutex held") {
    std::mutex mu;
    std::condition_variable cv;
    bool killed = false;
    auto g = cogent::spawn([&] {
        std::unique_lock<std::mutex> lk(mu);
        try {
            cv.wait(lk);
        } catch (const cogent::GreenletExit&) {
            killed = lk.owns_lock() && !mu.try_lock();  // held again, by this greenlet
            throw;
        }
    });
    cogent::sleep(5ms);
    g.kill();
    CHECK(killed);
    CHECK(mu.try_lock());  // the unique_lock released it while unwinding
    mu.unlock();
}

TEST_CASE("a process-shared mutex is libc's and still works") {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_t m;
    REQUIRE(pthread_mutex_init(&m, &a) == 0);
    int count = 0;
    std::thread th([&] {
        for (int i = 0; i < 10000; ++i) {
            pthread_mutex_lock(&m);
            ++count;
            pthread_mutex_unlock(&m);
        }
    });
    for (int i = 0; i < 10000; ++i) {
        pthread_mutex_lock(&m);
        ++count;
        pthread_mutex_unlock(&m);
    }
    th.join();
    CHECK(count == 20000);
    CHECK(pthread_mutex_destroy(&m) == 0);
    pthread_mutexattr_destroy(&a);
}

TEST_CASE("rwlocks: readers share, a writer excludes, errors as libc's") {
    pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
    CHECK(pthread_rwlock_unlock(&l) == EPERM);
    CHECK(pthread_rwlock_rdlock(&l) == 0);
    int reader2 = -1;
    cogent::spawn([&] {
        reader2 = pthread_rwlock_rdlock(&l);
        pthread_rwlock_unlock(&l);
    }).join();
    CHECK(reader2 == 0);
    bool wrote = false;
    Ticker t;
    auto w = cogent::spawn([&] {
        pthread_rwlock_wrlock(&l);
        wrote = true;
        pthread_rwlock_unlock(&l);
    });
    cogent::sleep(20ms);
    CHECK_FALSE(wrote);
    CHECK(pthread_rwlock_trywrlock(&l) == EBUSY);
    CHECK(pthread_rwlock_unlock(&l) == 0);
    w.join();
    CHECK(wrote);
    CHECK(pthread_rwlock_wrlock(&l) == 0);
    CHECK(pthread_rwlock_wrlock(&l) == EDEADLK);
    CHECK(pthread_rwlock_rdlock(&l) == EDEADLK);
    CHECK(pthread_rwlock_destroy(&l) == EBUSY);
    int timed = -1;
    cogent::spawn([&] {
        timespec at = in_ms(CLOCK_REALTIME, 20);
        timed = pthread_rwlock_timedrdlock(&l, &at);
    }).join();
    CHECK(timed == ETIMEDOUT);
    CHECK(pthread_rwlock_unlock(&l) == 0);
    CHECK(pthread_rwlock_destroy(&l) == 0);

    std::shared_mutex sm;
    int shared_in = 0, max_shared = 0;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 4; ++i)
        gs.push_back(cogent::spawn([&] {
            std::shared_lock lk(sm);
            max_shared = std::max(max_shared, ++shared_in);
            cogent::sleep(10ms);
            --shared_in;
        }));
    for (auto& g : gs) g.join();
    CHECK(max_shared == 4);
}

TEST_CASE("barriers: one serial greenlet per round, over several rounds") {
    pthread_barrier_t b;
    CHECK(pthread_barrier_init(&b, nullptr, 0) == EINVAL);
    REQUIRE(pthread_barrier_init(&b, nullptr, 3) == 0);
    std::atomic<int> serial{0}, passed{0};
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&] {
            for (int round = 0; round < 5; ++round) {
                int r = pthread_barrier_wait(&b);
                if (r == PTHREAD_BARRIER_SERIAL_THREAD)
                    ++serial;
                else
                    CHECK(r == 0);
                ++passed;
            }
        }));
    for (auto& g : gs) g.join();
    CHECK(serial == 5);
    CHECK(passed == 15);
    CHECK(pthread_barrier_destroy(&b) == 0);

    std::barrier<> cb(2);
    int phases = 0;
    auto g = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) cb.arrive_and_wait();
    });
    for (int i = 0; i < 3; ++i) {
        cb.arrive_and_wait();
        ++phases;
    }
    g.join();
    CHECK(phases == 3);
}

TEST_CASE("a spin lock held across a cooperative wait: the other greenlet yields, not spins") {
    pthread_spinlock_t s;
    REQUIRE(pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE) == 0);
    auto holder = cogent::spawn([&] {
        pthread_spin_lock(&s);
        cogent::sleep(20ms);
        pthread_spin_unlock(&s);
    });
    cogent::sleep(2ms);
    CHECK(pthread_spin_trylock(&s) == EBUSY);
    CHECK(pthread_spin_lock(&s) == 0);
    CHECK(pthread_spin_unlock(&s) == 0);
    holder.join();
    pthread_spin_destroy(&s);
}

namespace {
pthread_once_t g_once = PTHREAD_ONCE_INIT;
std::atomic<int> g_once_runs{0};
void once_init() {
    ++g_once_runs;
    cogent::sleep(20ms);  // parks inside the init routine
}
}  // namespace

TEST_CASE("pthread_once and std::call_once: one run, the others wait cooperatively") {
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 4; ++i)
        gs.push_back(cogent::spawn([] { CHECK(pthread_once(&g_once, once_init) == 0); }));
    for (auto& g : gs) g.join();
    CHECK(g_once_runs == 1);

    std::once_flag flag;
    int runs = 0, attempts = 0;
    std::vector<cogent::Greenlet<void>> hs;
    for (int i = 0; i < 3; ++i)
        hs.push_back(cogent::spawn([&] {
            try {
                std::call_once(flag, [&] {
                    ++attempts;
                    cogent::sleep(5ms);
                    if (attempts == 1) throw std::runtime_error("first attempt fails");
                    ++runs;
                });
            } catch (const std::runtime_error&) {
            }
        }));
    for (auto& h : hs) h.join();
    CHECK(attempts == 2);  // the failed attempt does not count as done
    CHECK(runs == 1);
}

TEST_CASE("unnamed semaphores: greenlets wait, a real thread posts") {
    sem_t s;
    REQUIRE(sem_init(&s, 0, 0) == 0);
    CHECK(sem_trywait(&s) == -1);
    CHECK(errno == EAGAIN);
    Ticker t;
    std::atomic<int> got{0};
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&] {
            if (sem_wait(&s) == 0) ++got;
        }));
    cogent::sleep(10ms);
    CHECK(got == 0);
    std::thread th([&] {
        for (int i = 0; i < 3; ++i) sem_post(&s);
    });
    th.join();
    for (auto& g : gs) g.join();
    CHECK(got == 3);
    int v = -1;
    sem_getvalue(&s, &v);
    CHECK(v == 0);
    timespec at = in_ms(CLOCK_REALTIME, 20);
    errno = 0;
    CHECK(sem_timedwait(&s, &at) == -1);
    CHECK(errno == ETIMEDOUT);
    timespec bad{0, 2'000'000'000};
    CHECK(sem_timedwait(&s, &bad) == -1);
    CHECK(errno == EINVAL);
    sem_post(&s);
    CHECK(sem_timedwait(&s, &bad) == -1);  // checked first, as glibc does
    CHECK(sem_trywait(&s) == 0);
    sem_destroy(&s);
}

TEST_CASE("C++ waits on futexes: counting_semaphore, latch, atomic wait") {
    std::counting_semaphore<4> sem(0);
    std::latch done(3);
    std::atomic<int> flag{0};
    Ticker t;
    int acquired = 0;
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < 3; ++i)
        gs.push_back(cogent::spawn([&] {
            sem.acquire();
            ++acquired;
            flag.wait(0);
            done.count_down();
        }));
    cogent::sleep(10ms);
    CHECK(acquired == 0);
    sem.release(3);
    cogent::sleep(10ms);
    CHECK(acquired == 3);
    flag = 1;
    flag.notify_all();
    done.wait();
    for (auto& g : gs) g.join();
    CHECK(t.ticks > 0);
    CHECK_FALSE(sem.try_acquire_for(20ms));
}

TEST_CASE("sched_yield in a greenlet lets the others run") {
    std::vector<int> order;
    auto a = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) {
            order.push_back(0);
            sched_yield();
        }
    });
    auto b = cogent::spawn([&] {
        for (int i = 0; i < 3; ++i) {
            order.push_back(1);
            sched_yield();
        }
    });
    a.join();
    b.join();
    CHECK(order == std::vector<int>{0, 1, 0, 1, 0, 1});
}

TEST_CASE("destroying a condition with a waiter: EBUSY, never a hang") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    bool woke = false;
    auto g = cogent::spawn([&] {
        pthread_mutex_lock(&m);
        pthread_cond_wait(&c, &m);
        woke = true;
        pthread_mutex_unlock(&m);
    });
    cogent::sleep(5ms);
    CHECK(pthread_cond_destroy(&c) == EBUSY);
    pthread_mutex_lock(&m);
    pthread_cond_signal(&c);
    pthread_mutex_unlock(&m);
    g.join();
    CHECK(woke);
    CHECK(pthread_cond_destroy(&c) == 0);
}

TEST_CASE("flockfile excludes other greenlets of the same thread") {
    FILE* f = std::tmpfile();
    REQUIRE(f);
    std::vector<int> order;
    auto a = cogent::spawn([&] {
        flockfile(f);
        order.push_back(1);
        cogent::sleep(20ms);  // holds it while parked
        order.push_back(2);
        funlockfile(f);
    });
    cogent::sleep(2ms);
    CHECK(ftrylockfile(f) != 0);  // held by another greenlet, though by this very thread
    flockfile(f);
    order.push_back(3);
    flockfile(f);  // recursive for its owner
    funlockfile(f);
    funlockfile(f);
    a.join();
    CHECK(order == std::vector<int>{1, 2, 3});
    CHECK(ftrylockfile(f) == 0);
    funlockfile(f);
    std::fclose(f);
}

TEST_CASE("fair hand-over: a greenlet that unlocks and locks again lets the waiter in") {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    sem_t s;
    REQUIRE(sem_init(&s, 0, 1) == 0);
    std::vector<char> order;
    auto greedy = cogent::spawn([&] {
        for (int i = 0; i < 4; ++i) {
            pthread_mutex_lock(&m);
            sem_wait(&s);
            order.push_back('g');
            sched_yield();  // the waiter is queued meanwhile
            sem_post(&s);
            pthread_mutex_unlock(&m);
        }
    });
    auto polite = cogent::spawn([&] {
        for (int i = 0; i < 4; ++i) {
            pthread_mutex_lock(&m);
            sem_wait(&s);
            order.push_back('p');
            sem_post(&s);
            pthread_mutex_unlock(&m);
            sched_yield();
        }
    });
    greedy.join();
    polite.join();
    // Without the hand-over the greedy one would take all its turns first (no preemption).
    CHECK(std::string(order.begin(), order.end()) == "gpgpgpgp");
    sem_destroy(&s);
}

TEST_CASE(
    "stress: greenlets of three hubs and two real threads on one mutex, condition, semaphore") {
    // Every kind of caller and every wake-up path at once (same-thread, cross-thread to a hub,
    // to a kernel sleeper), with timed waits racing the wake-ups: nothing lost, nothing doubled.
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    sem_t s;
    REQUIRE(sem_init(&s, 0, 3) == 0);
    long counter = 0;
    std::atomic<long> timed_outs{0}, done{0};
    constexpr int kPerCaller = 300;
    auto work = [&](unsigned seed) {
        for (int i = 0; i < kPerCaller; ++i) {
            seed = seed * 1103515245u + 12345u;
            if (seed % 7 == 0) {
                timespec at = in_ms(CLOCK_REALTIME, 1);
                if (pthread_mutex_timedlock(&m, &at) != 0) {
                    ++timed_outs;
                    pthread_mutex_lock(&m);
                }
            } else {
                pthread_mutex_lock(&m);
            }
            ++counter;
            if (seed % 5 == 0) {
                timespec at = in_ms(CLOCK_REALTIME, 1);
                pthread_cond_timedwait(&c, &m, &at);  // woken or timed out: either is fine
            }
            pthread_cond_signal(&c);
            pthread_mutex_unlock(&m);
            if (seed % 3 == 0) {
                sem_wait(&s);
                sched_yield();
                sem_post(&s);
            }
        }
        ++done;
    };
    std::vector<std::thread> threads;
    for (int h = 0; h < 3; ++h)
        threads.emplace_back([&, h] {
            std::vector<cogent::Greenlet<void>> gs;
            for (int g = 0; g < 20; ++g) gs.push_back(cogent::spawn(work, unsigned(h * 100 + g)));
            for (auto& g : gs) g.join();
        });
    for (int r = 0; r < 2; ++r) threads.emplace_back(work, unsigned(1000 + r));
    for (auto& t : threads) t.join();
    CHECK(done == 62);
    CHECK(counter == 62L * kPerCaller);
    int v = -1;
    sem_getvalue(&s, &v);
    CHECK(v == 3);
    CHECK(pthread_mutex_trylock(&m) == 0);
    pthread_mutex_unlock(&m);
    CHECK(pthread_cond_destroy(&c) == 0);
    sem_destroy(&s);
    MESSAGE("mutex timedlock timeouts: " << timed_outs.load());
}
