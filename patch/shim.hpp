// Internals of libcogent_patch.so, the monkey patch: the real libc functions, the one check
// that decides whether a call is made cooperative, and what the shim remembers per fd.
//
// A hooked call goes cooperative only when (cooperative(family)):
//   - the calling thread has a hub, and the caller is a greenlet of it other than the hub (the
//     hub runs libev and every runtime callback: its calls are the runtime's own and must reach
//     libc unchanged, which is also how libev's epoll_wait and read of its eventfd get through);
//   - the call's family (socket, dns, time, select) is patched (COGENT_PATCH).
// Everything else (a program that never spawned a greenlet, a thread without a hub, the thread
// pool's workers) goes straight to libc, after that one thread-local check.
#pragma once

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "cogent/patch.hpp"       // Family
#include "services/shim_api.hpp"  // src/: the shim's one door into the runtime

namespace cogent::patch {

// The real libc functions. Resolved by a constructor (before main, before any hook can matter)
// and, should a hook run earlier (another preloaded library's constructor), on that first call.
struct Real {
    int (*socket)(int, int, int);
    int (*socketpair)(int, int, int, int*);
    int (*connect)(int, const sockaddr*, socklen_t);
    int (*accept)(int, sockaddr*, socklen_t*);
    int (*accept4)(int, sockaddr*, socklen_t*, int);
    ssize_t (*read)(int, void*, size_t);
    ssize_t (*write)(int, const void*, size_t);
    ssize_t (*readv)(int, const iovec*, int);
    ssize_t (*writev)(int, const iovec*, int);
    ssize_t (*recv)(int, void*, size_t, int);
    ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
    ssize_t (*recvmsg)(int, msghdr*, int);
    int (*recvmmsg)(int, mmsghdr*, unsigned int, int, timespec*);
    ssize_t (*send)(int, const void*, size_t, int);
    ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
    ssize_t (*sendmsg)(int, const msghdr*, int);
    int (*sendmmsg)(int, mmsghdr*, unsigned int, int);
    int (*poll)(pollfd*, nfds_t, int);
    int (*ppoll)(pollfd*, nfds_t, const timespec*, const sigset_t*);
    int (*select)(int, fd_set*, fd_set*, fd_set*, timeval*);
    int (*pselect)(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*);
    int (*epoll_wait)(int, epoll_event*, int, int);
    int (*epoll_pwait)(int, epoll_event*, int, int, const sigset_t*);
    int (*close)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    int (*setsockopt)(int, int, int, const void*, socklen_t);
    int (*getsockopt)(int, int, int, void*, socklen_t*);
    int (*pipe)(int*);
    int (*pipe2)(int*, int);
    unsigned (*sleep)(unsigned);
    int (*usleep)(useconds_t);
    int (*nanosleep)(const timespec*, timespec*);
    int (*clock_nanosleep)(clockid_t, int, const timespec*, timespec*);
    int (*getaddrinfo)(const char*, const char*, const addrinfo*, addrinfo**);
    void (*freeaddrinfo)(addrinfo*);
    int (*getnameinfo)(const sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int);
    hostent* (*gethostbyname)(const char*);
    hostent* (*gethostbyname2)(const char*, int);
    int (*gethostbyname_r)(const char*, hostent*, char*, size_t, hostent**, int*);
    int (*gethostbyname2_r)(const char*, int, hostent*, char*, size_t, hostent**, int*);
    hostent* (*gethostbyaddr)(const void*, socklen_t, int);
    int (*gethostbyaddr_r)(const void*, socklen_t, int, hostent*, char*, size_t, hostent**, int*);
    pid_t (*fork)();
    int (*fclose)(FILE*);
    // The sync family: process-shared, robust and priority-protocol objects keep libc's.
    int (*mutex_init)(pthread_mutex_t*, const pthread_mutexattr_t*);
    int (*mutex_destroy)(pthread_mutex_t*);
    int (*mutex_lock)(pthread_mutex_t*);
    int (*mutex_trylock)(pthread_mutex_t*);
    int (*mutex_timedlock)(pthread_mutex_t*, const timespec*);
    int (*mutex_clocklock)(pthread_mutex_t*, clockid_t, const timespec*);
    int (*mutex_unlock)(pthread_mutex_t*);
    int (*cond_init)(pthread_cond_t*, const pthread_condattr_t*);
    int (*cond_destroy)(pthread_cond_t*);
    int (*cond_wait)(pthread_cond_t*, pthread_mutex_t*);
    int (*cond_timedwait)(pthread_cond_t*, pthread_mutex_t*, const timespec*);
    int (*cond_clockwait)(pthread_cond_t*, pthread_mutex_t*, clockid_t, const timespec*);
    int (*cond_signal)(pthread_cond_t*);
    int (*cond_broadcast)(pthread_cond_t*);
    int (*rwlock_init)(pthread_rwlock_t*, const pthread_rwlockattr_t*);
    int (*rwlock_destroy)(pthread_rwlock_t*);
    int (*rwlock_rdlock)(pthread_rwlock_t*);
    int (*rwlock_tryrdlock)(pthread_rwlock_t*);
    int (*rwlock_timedrdlock)(pthread_rwlock_t*, const timespec*);
    int (*rwlock_clockrdlock)(pthread_rwlock_t*, clockid_t, const timespec*);
    int (*rwlock_wrlock)(pthread_rwlock_t*);
    int (*rwlock_trywrlock)(pthread_rwlock_t*);
    int (*rwlock_timedwrlock)(pthread_rwlock_t*, const timespec*);
    int (*rwlock_clockwrlock)(pthread_rwlock_t*, clockid_t, const timespec*);
    int (*rwlock_unlock)(pthread_rwlock_t*);
    int (*barrier_init)(pthread_barrier_t*, const pthread_barrierattr_t*, unsigned);
    int (*barrier_destroy)(pthread_barrier_t*);
    int (*barrier_wait)(pthread_barrier_t*);
    int (*spin_lock)(pthread_spinlock_t*);
    int (*spin_trylock)(pthread_spinlock_t*);
    int (*spin_unlock)(pthread_spinlock_t*);
    int (*once)(pthread_once_t*, void (*)());
    int (*sem_wait)(sem_t*);
    int (*sem_timedwait)(sem_t*, const timespec*);
    int (*sem_clockwait)(sem_t*, clockid_t, const timespec*);
    int (*sem_trywait)(sem_t*);
    int (*sem_post)(sem_t*);
    int (*sem_getvalue)(sem_t*, int*);
    int (*sched_yield)();
    // The thread family.
    int (*create)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
    int (*join)(pthread_t, void**);
    int (*tryjoin_np)(pthread_t, void**);
    int (*timedjoin_np)(pthread_t, void**, const timespec*);
    int (*clockjoin_np)(pthread_t, void**, clockid_t, const timespec*);
    int (*detach)(pthread_t);
    pthread_t (*self)();
    void (*exit_thread)(void*);
    int (*cancel)(pthread_t);
    void (*testcancel)();
    int (*setname_np)(pthread_t, const char*);
    int (*getname_np)(pthread_t, char*, size_t);
    int (*key_create)(pthread_key_t*, void (*)(void*));
    int (*key_delete)(pthread_key_t);
    void* (*getspecific)(pthread_key_t);
    int (*setspecific)(pthread_key_t, const void*);
    int (*getattr_np)(pthread_t, pthread_attr_t*);
    int (*kill)(pthread_t, int);
    int (*getschedparam)(pthread_t, int*, sched_param*);
    int (*setschedparam)(pthread_t, int, const sched_param*);
    int (*getaffinity_np)(pthread_t, size_t, cpu_set_t*);
    int (*setaffinity_np)(pthread_t, size_t, const cpu_set_t*);
    int (*getcpuclockid)(pthread_t, clockid_t*);
    void (*flockfile)(FILE*);
    int (*ftrylockfile)(FILE*);
    void (*funlockfile)(FILE*);
};
extern Real real;
extern std::atomic<bool> real_ready;
void resolve_real() noexcept;
// The real function table, resolved on first use if the constructor has not run yet.
inline const Real& libc() noexcept {
    if (!real_ready.load(std::memory_order_acquire)) [[unlikely]]
        resolve_real();
    return real;
}

// A pause in a spin-wait.
inline void cpu_relax() noexcept {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

// The shim's own short critical sections (its tables): a spin lock, since a pthread mutex here
// would be one of the shim's own hooks.
class SpinLock {
public:
    void lock() noexcept {
        while (busy_.exchange(true, std::memory_order_acquire)) cpu_relax();
    }
    void unlock() noexcept { busy_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> busy_{false};
};
struct SpinGuard {
    SpinLock& l;
    explicit SpinGuard(SpinLock& lock) : l(lock) { l.lock(); }
    ~SpinGuard() { l.unlock(); }
    SpinGuard(const SpinGuard&) = delete;
    SpinGuard& operator=(const SpinGuard&) = delete;
};

// The patched families (COGENT_PATCH, read once by config.cpp; all by default): bits of
// cogent::patch::Family (cogent/patch.hpp), as in gevent's patch_all(socket=..., dns=...).
extern unsigned patched_families;  // not families(): that is patch.hpp's query

// The one check (see the file comment). A thread that never used cogent is answered by one
// thread-local load; any other makes one call into libcogent (shim_api.hpp).
inline bool cooperative(Family family) noexcept {
    return detail::shim_in_green_context() && (patched_families & family);
}

// Keeps the caller's errno for a call that succeeds after attempts that failed (EAGAIN):
// `return ek.ok(result);` on success; on failure errno is the failure's.
struct ErrnoKeeper {
    int saved = errno;
    template <class T>
    T ok(T v) {
        errno = saved;
        return v;
    }
};

// pthread_create's work (hooks_thread.cpp) for a call made at `caller` (whose library
// COGENT_REAL_THREADS may name): also thrd_create's (hooks_c11.cpp).
int create_thread(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg,
                  void* caller);

// The green-thread watchdog (watchdog.cpp): started with the first green thread.
void start_watchdog() noexcept;

// ---- per-fd memory ----
// What the shim knows about an fd, so that the common path costs no extra system call. Every
// entry is a guess verified by the kernel where it matters: a wrong "socket" guess makes recv
// fail with ENOTSOCK and the hook falls back. Reset by the hooks that create or close fds.
enum class FdKind : std::uint8_t { unknown = 0, socket, pollable, passthrough };
struct FdInfo {
    std::atomic<std::uint8_t> kind{0};          // FdKind
    std::atomic<std::int8_t> nonblock{-1};      // the user's O_NONBLOCK: -1 unknown, 0, 1
    std::atomic<std::int64_t> rcvtimeo_ns{-1};  // SO_RCVTIMEO: -1 unknown, 0 none
    std::atomic<std::int64_t> sndtimeo_ns{-1};  // SO_SNDTIMEO
};
// nullptr for fds beyond the table (65536): then every fact is looked up each time.
FdInfo* fd_info(int fd) noexcept;
// Forget what is known about fd (it was closed, or is a new fd).
void fd_forget(int fd) noexcept;

}  // namespace cogent::patch
