// C11 <threads.h> under the shim. glibc (2.34 and later) implements every thrd_*, mtx_*,
// cnd_*, tss_* and call_once on its pthread functions, but calls them inside libc, where no
// interposer sees them: without these hooks C11 threads would stay OS threads under --threads
// and a C11 mutex would block the hub. Each hook does what glibc's does, on the public pthread
// functions (the shim's own where it has them), with glibc's mapping of error numbers to thrd_*
// results. The types have the pthread layouts (mtx_t is a pthread_mutex_t, cnd_t a
// pthread_cond_t, tss_t a pthread_key_t, once_flag a pthread_once_t, thrd_t a pthread_t).
#include <pthread.h>
#include <sched.h>
#include <threads.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "shim.hpp"

static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t));
static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t));
static_assert(sizeof(tss_t) == sizeof(pthread_key_t));
static_assert(sizeof(once_flag) == sizeof(pthread_once_t));
static_assert(sizeof(thrd_t) == sizeof(pthread_t));

namespace {

int map(int e) noexcept {  // glibc's thrd_err_map
    switch (e) {
        case 0:
            return thrd_success;
        case ENOMEM:
            return thrd_nomem;
        case ETIMEDOUT:
            return thrd_timedout;
        case EBUSY:
            return thrd_busy;
        default:
            return thrd_error;
    }
}

pthread_mutex_t* M(mtx_t* m) noexcept { return reinterpret_cast<pthread_mutex_t*>(m); }
pthread_cond_t* C(cnd_t* c) noexcept { return reinterpret_cast<pthread_cond_t*>(c); }

// A C11 thread's function returns an int: carried in the pthread result, as glibc does.
struct Start {
    thrd_start_t fn;
    void* arg;
};
void* c11_start(void* p) {
    const Start s = *static_cast<Start*>(p);
    delete static_cast<Start*>(p);
    return reinterpret_cast<void*>(static_cast<std::intptr_t>(s.fn(s.arg)));
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK int thrd_create(thrd_t* thr, thrd_start_t fn, void* arg) {
    auto* s = new (std::nothrow) Start{fn, arg};
    if (!s) return thrd_nomem;
    pthread_t t{};
    const int e =
        cogent::patch::create_thread(&t, nullptr, c11_start, s, __builtin_return_address(0));
    if (e) {
        delete s;
        return e == EAGAIN ? thrd_nomem : map(e);  // glibc: EAGAIN is thrd_nomem here
    }
    *thr = t;
    return thrd_success;
}

COGENT_HOOK int thrd_join(thrd_t thr, int* res) {
    void* r = nullptr;
    const int e = pthread_join(thr, &r);
    if (e) return thrd_error;
    if (res) *res = static_cast<int>(reinterpret_cast<std::intptr_t>(r));
    return thrd_success;
}

COGENT_HOOK int thrd_detach(thrd_t thr) { return pthread_detach(thr) ? thrd_error : thrd_success; }

COGENT_HOOK thrd_t thrd_current() { return pthread_self(); }

// thrd_equal is not hooked: it compares the two ids, as pthread_equal does, and <threads.h>
// defines it inline when optimising.

COGENT_HOOK void thrd_exit(int res) {
    pthread_exit(reinterpret_cast<void*>(static_cast<std::intptr_t>(res)));
}

// C11: 0 when slept, -1 when interrupted by a signal, another negative value on failure.
COGENT_HOOK int thrd_sleep(const timespec* duration, timespec* remaining) {
    const int e = clock_nanosleep(CLOCK_REALTIME, 0, duration, remaining);
    return e == 0 ? 0 : e == EINTR ? -1 : -2;
}

COGENT_HOOK void thrd_yield() { sched_yield(); }

COGENT_HOOK int mtx_init(mtx_t* m, int type) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    switch (type) {
        case mtx_plain:
        case mtx_timed:
            pthread_mutexattr_settype(&a, PTHREAD_MUTEX_NORMAL);
            break;
        case mtx_plain | mtx_recursive:
        case mtx_timed | mtx_recursive:
            pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
            break;
        default:
            pthread_mutexattr_destroy(&a);
            return thrd_error;
    }
    const int e = pthread_mutex_init(M(m), &a);
    pthread_mutexattr_destroy(&a);
    return map(e);
}

COGENT_HOOK int mtx_lock(mtx_t* m) { return map(pthread_mutex_lock(M(m))); }

COGENT_HOOK int mtx_timedlock(mtx_t* __restrict m, const timespec* __restrict at) {
    return map(pthread_mutex_timedlock(M(m), at));
}

COGENT_HOOK int mtx_trylock(mtx_t* m) { return map(pthread_mutex_trylock(M(m))); }

COGENT_HOOK int mtx_unlock(mtx_t* m) { return map(pthread_mutex_unlock(M(m))); }

COGENT_HOOK void mtx_destroy(mtx_t* m) { pthread_mutex_destroy(M(m)); }

COGENT_HOOK int cnd_init(cnd_t* c) { return map(pthread_cond_init(C(c), nullptr)); }

COGENT_HOOK int cnd_signal(cnd_t* c) { return map(pthread_cond_signal(C(c))); }

COGENT_HOOK int cnd_broadcast(cnd_t* c) { return map(pthread_cond_broadcast(C(c))); }

COGENT_HOOK int cnd_wait(cnd_t* c, mtx_t* m) { return map(pthread_cond_wait(C(c), M(m))); }

COGENT_HOOK int cnd_timedwait(cnd_t* __restrict c, mtx_t* __restrict m,
                              const timespec* __restrict at) {
    return map(pthread_cond_timedwait(C(c), M(m), at));
}

COGENT_HOOK void cnd_destroy(cnd_t* c) { pthread_cond_destroy(C(c)); }

COGENT_HOOK int tss_create(tss_t* key, tss_dtor_t dtor) {
    return map(pthread_key_create(reinterpret_cast<pthread_key_t*>(key), dtor));
}

COGENT_HOOK void* tss_get(tss_t key) { return pthread_getspecific(key); }

COGENT_HOOK int tss_set(tss_t key, void* value) { return map(pthread_setspecific(key, value)); }

COGENT_HOOK void tss_delete(tss_t key) { pthread_key_delete(key); }

COGENT_HOOK void call_once(once_flag* flag, void (*fn)()) {
    pthread_once(reinterpret_cast<pthread_once_t*>(flag), fn);
}

}  // extern "C"
