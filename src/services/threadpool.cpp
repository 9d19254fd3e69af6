// ThreadPool: worker threads, the task queue, delivery to the spawning thread's hub, fork.
//
// Locks, always taken in this order: g_pools_mu, State::mu, g_door_mu, then a hub's own
// cross-thread queue lock (inside run_threadsafe). A worker hands a finished task to its owner
// hub and updates the counters in ONE critical section under State::mu, and fork() is bracketed
// by taking every one of these locks (pthread_atfork prepare), so a forked child sees each task
// in exactly one place: queued, running on a worker, or already handed to a hub.
#include "cogent/threadpool.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include "cogent/exceptions.hpp"
#include "hub/hub.hpp"

namespace cogent::detail::threadpool {

// A thread's way in for results: its hub while the thread lives. Shared by the tasks it spawns,
// so a worker finishing after the thread exited finds the door shut instead of a freed hub.
struct Door {
    HubImpl* hub;  // null once the thread is exiting; read and written under g_door_mu
};

namespace {

std::mutex g_door_mu;
std::mutex g_pools_mu;
std::vector<State*> g_pools;  // every live pool, for the fork handlers

// The door of the calling thread. The holder is a thread_local with a destructor; it must be
// constructed after the thread's ThreadState owner (also a thread_local) so that it is
// destroyed first: the door shuts before the hub goes away.
struct DoorHolder {
    std::shared_ptr<Door> door;
    ~DoorHolder();
};
thread_local bool t_door_closed = false;  // trivially destructible: readable at any time
thread_local Door* t_door = nullptr;
thread_local DoorHolder t_door_holder;
thread_local const State* t_worker_of = nullptr;  // the pool whose worker this thread is

DoorHolder::~DoorHolder() {
    if (door) {
        std::lock_guard<std::mutex> lk(g_door_mu);
        door->hub = nullptr;
    }
    t_door_closed = true;
    t_door = nullptr;
}

std::shared_ptr<Door> my_door() {
    if (t_door_closed)
        throw std::runtime_error("cogent: ThreadPool used by a thread that is exiting");
    HubImpl* hub = hub_of(thread_state());  // the ThreadState first: see DoorHolder
    if (!t_door_holder.door) {
        t_door_holder.door = std::make_shared<Door>(Door{hub});
        t_door = t_door_holder.door.get();
    }
    return t_door_holder.door;
}

// On the owner thread: release the loop reference taken at submit, then set the result.
void finish_on_owner(Task& t) noexcept {
    if (HubImpl* hub = t.door->hub) hub->keep_alive(-1);
    t.deliver();
}

// Hand a finished (or cancelled) task to its owner's hub. Returns it back when the owner thread
// is gone: the caller destroys it outside its locks (it holds user objects).
std::unique_ptr<Task> post(std::unique_ptr<Task> t) {
    std::lock_guard<std::mutex> lk(g_door_mu);
    HubImpl* hub = t->door->hub;
    if (!hub) return t;
    // The callback holds the only reference: the task, its AsyncResult and the user's objects
    // are destroyed on the owner thread, never here while the owner may still be using them.
    try {
        hub->run_threadsafe([sp = std::shared_ptr<Task>(std::move(t))] { finish_on_owner(*sp); });
    } catch (...) {
        // Out of memory queueing the callback: the result is lost, the waiter would hang on a
        // loop reference. Nothing better to do than to report it.
        report_exception("ThreadPool result delivery", std::current_exception());
    }
    return nullptr;
}

// Same for a plain callback (join wake-ups); false if the owner thread is gone.
bool post_fn(Door& door, std::function<void()> fn) {
    std::lock_guard<std::mutex> lk(g_door_mu);
    if (!door.hub) return false;
    door.hub->run_threadsafe(std::move(fn));
    return true;
}

std::exception_ptr killed_error(const char* why) {
    return std::make_exception_ptr(ThreadPoolKilled(std::string("cogent: ") + why));
}

}  // namespace

struct Worker {
    std::thread thread;
    Task* current = nullptr;  // the task it runs (owned by the worker's stack), for fork
    bool stop = false;        // told to exit (kill, or it retires)
};

struct Joiner {
    std::shared_ptr<Door> door;
    std::shared_ptr<AsyncResult<void>> done;
};

struct State {
    State(std::size_t m, TimeoutArg idle) : maxsize(m), idle_timeout(idle) {}
    std::mutex mu;
    std::condition_variable cv;  // workers wait here for tasks
    std::deque<std::unique_ptr<Task>> queue;
    std::list<Worker> workers;        // threads running worker_main
    std::vector<std::thread> exited;  // workers that returned, not yet joined (at most a few)
    std::vector<Joiner> joiners;
    std::size_t maxsize;
    TimeoutArg idle_timeout;
    std::size_t live = 0;        // workers not told to stop
    std::size_t idle = 0;        // workers waiting on cv
    std::size_t starting = 0;    // workers started that have not taken the lock yet
    std::size_t running = 0;     // tasks being run
    std::size_t unfinished = 0;  // tasks queued or running

    // Under mu, once unfinished is 0: wake every join().
    void wake_joiners() {
        for (auto& j : joiners) {
            // Moved into the callback, so the owner thread drops the last reference.
            post_fn(*j.door, [done = std::move(j.done)] {
                if (!done->ready()) done->set();
            });
        }
        joiners.clear();
    }
};

namespace {

void worker_main(std::shared_ptr<State> st, Worker* self) noexcept {
    State& s = *st;
    t_worker_of = &s;
    std::unique_lock<std::mutex> lk(s.mu);
    --s.starting;
    for (;;) {
        if (self->stop) break;
        if (s.live > s.maxsize) {  // set_maxsize shrank the pool
            self->stop = true;
            --s.live;
            break;
        }
        if (!s.queue.empty()) {
            std::unique_ptr<Task> t = std::move(s.queue.front());
            s.queue.pop_front();
            self->current = t.get();
            ++s.running;
            lk.unlock();
            t->run();
            lk.lock();
            self->current = nullptr;
            --s.running;
            --s.unfinished;
            // Delivery before the join wake-up: both go to the owner hub's FIFO, so a join()
            // returns after the results of that thread's tasks were set.
            std::unique_ptr<Task> orphan = post(std::move(t));
            if (s.unfinished == 0) s.wake_joiners();
            if (orphan) {
                lk.unlock();
                orphan.reset();  // user objects: destroyed outside the lock
                lk.lock();
            }
            continue;
        }
        ++s.idle;
        auto has_work = [&] { return self->stop || !s.queue.empty() || s.live > s.maxsize; };
        bool woken = true;
        if (s.idle_timeout.forever())
            s.cv.wait(lk, has_work);
        else
            // wait_until a saturated deadline: wait_for adds the duration to now() itself, which
            // overflows for a huge idle_timeout and would retire the worker at once.
            woken = s.cv.wait_until(lk, detail::Deadline::after(s.idle_timeout.value()), has_work);
        --s.idle;
        if (!woken) {  // idle for idle_timeout: retire
            self->stop = true;
            --s.live;
            break;
        }
    }
    // Leave the list; the last worker to exit is joined by the next one (or by spawn or the
    // destructor), so at most one thread stays unjoined for long.
    std::vector<std::thread> zombies;
    zombies.swap(s.exited);
    s.exited.push_back(std::move(self->thread));
    for (auto it = s.workers.begin(); it != s.workers.end(); ++it)
        if (&*it == self) {
            s.workers.erase(it);
            break;
        }
    lk.unlock();
    for (auto& z : zombies)
        if (z.joinable()) z.join();
}

// Under s.mu. Workers block every asynchronous signal: a signal meant for the process is then
// delivered to a thread that runs a hub (libev's handlers), never to a worker in user code.
void start_worker(const std::shared_ptr<State>& st) {
    State& s = *st;
    s.workers.emplace_back();
    Worker* w = &s.workers.back();
    sigset_t all, old;
    sigfillset(&all);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT})
        sigdelset(&all, sig);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        w->thread = std::thread(worker_main, st, w);
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        s.workers.pop_back();
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ++s.live;
    ++s.starting;
}

// Under s.mu: start workers while queued tasks outnumber the idle and starting ones. A failure to
// start one is thrown only when no worker at all exists to run the queue.
void grow(const std::shared_ptr<State>& st) {
    State& s = *st;
    while (s.queue.size() > s.idle + s.starting && s.live < s.maxsize) {
        try {
            start_worker(st);
        } catch (...) {
            if (s.live == 0) throw;
            return;
        }
    }
}

// ---- fork ----

// Objects a forked child must never touch again (their threads do not exist there): kept
// reachable, never destroyed.
std::vector<std::thread>& lost_threads() {
    static auto* v = new std::vector<std::thread>;
    return *v;
}
std::vector<void*>& lost_objects() {
    static auto* v = new std::vector<void*>;
    return *v;
}

void fork_prepare() {
    g_pools_mu.lock();
    for (State* s : g_pools) s->mu.lock();
    g_door_mu.lock();
}

void fork_parent() {
    g_door_mu.unlock();
    for (State* s : g_pools) s->mu.unlock();
    g_pools_mu.unlock();
}

// In the child (pthread_atfork): the locks were taken by fork_prepare on this very thread, and
// the condition variables may list waiters that do not exist here; start them all afresh.
// Registered by the pool itself, so it runs even in a process whose hubs came later.
void fork_child_locks() {
    new (&g_door_mu) std::mutex;
    new (&g_pools_mu) std::mutex;
    for (State* s : g_pools) {
        new (&s->mu) std::mutex;
        new (&s->cv) std::condition_variable;
    }
}

// In the child, after the hub was reinitialised (a runtime fork hook): only the forking thread
// exists. Every pool forgets its workers; this thread's tasks that were queued or running in
// the parent fail with ThreadPoolKilled (they run only in the parent); other threads' tasks
// are left untouched. Takes no lock: the child has one thread.
void fork_child() {
    Door* mine = t_door && t_door->hub ? t_door : nullptr;
    auto fail = [mine](AsyncResultBase& r) {
        mine->hub->keep_alive(-1);
        try {
            r.set_exception(killed_error(
                "the thread pool task was queued or running when the process forked; it runs "
                "only in the parent"));
        } catch (...) {
        }
    };
    for (State* s : g_pools) {
        for (Worker& w : s->workers) {
            if (w.current) {
                if (w.current->door.get() == mine) fail(*w.current->result);
                lost_objects().push_back(w.current);
            }
            lost_threads().push_back(std::move(w.thread));
        }
        s->workers.clear();
        for (auto& t : s->exited) lost_threads().push_back(std::move(t));
        s->exited.clear();
        for (auto& t : s->queue) {
            if (t->door.get() == mine) {
                fail(*t->result);
                t.reset();
            } else {
                lost_objects().push_back(t.release());
            }
        }
        s->queue.clear();
        for (auto& j : s->joiners) {
            if (j.door.get() == mine) {
                if (!j.done->ready()) j.done->set();
            } else {
                lost_objects().push_back(new Joiner(std::move(j)));
            }
        }
        s->joiners.clear();
        s->live = s->idle = s->starting = s->running = s->unfinished = 0;
    }
}

void install_fork_handlers() {
    static const bool once = [] {
        pthread_atfork(&fork_prepare, &fork_parent, &fork_child_locks);
        add_fork_child_hook(&fork_child);
        return true;
    }();
    (void)once;
}

}  // namespace

void Task::deliver() noexcept {
    try {
        if (error)
            result->set_exception(error);
        else
            set_value();
    } catch (...) {
        // The user set the AsyncResult already: the first set wins.
    }
}

void check_maxsize(std::size_t n) {
    if (n > std::size_t(PTRDIFF_MAX))
        throw std::invalid_argument("cogent: ThreadPool maxsize must not be negative (got " +
                                    std::to_string(static_cast<std::ptrdiff_t>(n)) + ")");
}

}  // namespace cogent::detail::threadpool

namespace cogent {

using detail::threadpool::State;
using detail::threadpool::Task;

ThreadPool::ThreadPool(std::size_t maxsize, ThreadPoolOptions options) {
    detail::threadpool::check_maxsize(maxsize);
    detail::threadpool::install_fork_handlers();
    st_ = std::make_shared<State>(maxsize, options.idle_timeout);
    std::lock_guard<std::mutex> lk(detail::threadpool::g_pools_mu);
    detail::threadpool::g_pools.push_back(st_.get());
}

ThreadPool::~ThreadPool() {
    State& s = *st_;
    kill();
    std::vector<std::thread> threads;
    {
        std::lock_guard<std::mutex> lk(s.mu);
        for (auto& w : s.workers) threads.push_back(std::move(w.thread));
        for (auto& t : s.exited) threads.push_back(std::move(t));
        s.exited.clear();
    }
    for (auto& t : threads) {
        if (!t.joinable()) continue;
        if (t.get_id() == std::this_thread::get_id())
            t.detach();  // destroyed from its own task: that worker exits after the task
        else
            t.join();
    }
    {
        std::lock_guard<std::mutex> lk(s.mu);
        s.exited.clear();  // only moved-from threads can have arrived meanwhile
    }
    std::lock_guard<std::mutex> lk(detail::threadpool::g_pools_mu);
    auto& pools = detail::threadpool::g_pools;
    pools.erase(std::remove(pools.begin(), pools.end(), st_.get()), pools.end());
}

void ThreadPool::submit(std::unique_ptr<Task> task) {
    State& s = *st_;
    auto door = detail::threadpool::my_door();
    detail::HubImpl* hub = door->hub;
    task->door = std::move(door);
    std::vector<std::thread> reap;
    std::exception_ptr failed;
    {
        std::lock_guard<std::mutex> lk(s.mu);
        s.queue.push_back(std::move(task));
        ++s.unfinished;
        try {
            detail::threadpool::grow(st_);
            if (s.idle > 0) s.cv.notify_one();
            hub->keep_alive(1);  // released by finish_on_owner, on this thread
        } catch (...) {
            failed = std::current_exception();
            task = std::move(s.queue.back());  // destroyed below, outside the lock
            s.queue.pop_back();
            --s.unfinished;
        }
        reap.swap(s.exited);
    }
    for (auto& t : reap)
        if (t.joinable()) t.join();  // an exited worker: returns at once
    if (failed) std::rethrow_exception(failed);
}

bool ThreadPool::join(TimeoutArg timeout) {
    State& s = *st_;
    if (in_worker_thread())
        throw std::logic_error(
            "cogent: ThreadPool::join called from one of the pool's own workers (it would wait "
            "for itself)");
    {
        std::lock_guard<std::mutex> lk(s.mu);
        if (s.unfinished == 0) return true;
    }
    if (timeout.zero()) return false;
    detail::check_may_block("ThreadPool::join");
    auto done = std::make_shared<AsyncResult<void>>();
    {
        auto door = detail::threadpool::my_door();
        std::lock_guard<std::mutex> lk(s.mu);
        if (s.unfinished == 0) return true;
        s.joiners.push_back({std::move(door), done});
    }
    auto forget = [&] {
        std::lock_guard<std::mutex> lk(s.mu);
        auto& js = s.joiners;
        js.erase(
            std::remove_if(js.begin(), js.end(),
                           [&](const detail::threadpool::Joiner& j) { return j.done == done; }),
            js.end());
    };
    bool ok;
    try {
        ok = done->wait(timeout);
    } catch (...) {
        forget();
        throw;
    }
    if (!ok) forget();
    return ok;
}

void ThreadPool::kill() {
    State& s = *st_;
    std::vector<std::unique_ptr<Task>> orphans;
    {
        std::lock_guard<std::mutex> lk(s.mu);
        std::deque<std::unique_ptr<Task>> cancelled;
        cancelled.swap(s.queue);
        for (auto& w : s.workers)
            if (!w.stop) {
                w.stop = true;
                --s.live;
            }
        s.cv.notify_all();
        s.unfinished -= cancelled.size();
        for (auto& t : cancelled) {
            t->error =
                detail::threadpool::killed_error("the thread pool was killed before this task ran");
            if (auto back = detail::threadpool::post(std::move(t)))
                orphans.push_back(std::move(back));
        }
        if (s.unfinished == 0) s.wake_joiners();
    }
    // orphans (their owner thread is gone) are destroyed here, outside the lock
}

std::size_t ThreadPool::maxsize() const noexcept {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->maxsize;
}

void ThreadPool::set_maxsize(std::size_t n) {
    detail::threadpool::check_maxsize(n);
    std::lock_guard<std::mutex> lk(st_->mu);
    st_->maxsize = n;
    detail::threadpool::grow(st_);
    st_->cv.notify_all();  // idle workers above the new size retire
}

std::size_t ThreadPool::size() const noexcept {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->live;
}

std::size_t ThreadPool::idle_count() const noexcept {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->idle;
}

std::size_t ThreadPool::unfinished_tasks() const noexcept {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->unfinished;
}

std::size_t ThreadPool::free_count() const noexcept {
    std::lock_guard<std::mutex> lk(st_->mu);
    std::size_t busy = st_->running + st_->queue.size();
    return st_->maxsize > busy ? st_->maxsize - busy : 0;
}

TimeoutArg ThreadPool::idle_timeout() const noexcept { return st_->idle_timeout; }

bool ThreadPool::in_worker_thread() const noexcept {
    return detail::threadpool::t_worker_of == st_.get();
}

ThreadPool& get_threadpool() {
    // Never destroyed: at exit its workers may still be running tasks that use objects the
    // static destructors would free.
    static ThreadPool* pool = new ThreadPool(detail::config().threadpool_size);
    return *pool;
}

}  // namespace cogent
