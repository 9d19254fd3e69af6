// libcogent_patch.so's core: the real libc functions, the patched families, the per-fd table,
// and the run-time query of what is patched (patch.hpp's cogent_patch_families).
#include "shim.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace cogent::patch {

Real real{};
std::atomic<bool> real_ready{false};
unsigned patched_families = Family::all;

// One definition of the family bits: the public enum, in the order of COGENT_PATCH's names.
static_assert(Family::socket == 1u << 0 && Family::dns == 1u << 1 && Family::time == 1u << 2 &&
              Family::select == 1u << 3 && Family::sync == 1u << 4 && Family::thread == 1u << 5 &&
              Family::all == detail::kPatchAll && detail::kPatchFamilyCount == 6);

namespace {

// libc's own definitions, looked up in libc.so.6 itself: RTLD_NEXT would find whichever object
// comes next in the search order, which need not be libc when the shim is linked in.
void* libc_sym(void* handle, const char* name) {
    void* p = handle ? dlsym(handle, name) : nullptr;
    if (!p) p = dlsym(RTLD_NEXT, name);
    if (!p) {
        std::fprintf(stderr, "cogent patch: cannot find libc's %s: %s\n", name, dlerror());
        std::abort();
    }
    return p;
}

template <class F>
void get(void* handle, F& slot, const char* name) {
    slot = reinterpret_cast<F>(libc_sym(handle, name));
}

}  // namespace

void resolve_real() noexcept {
    // Not std::call_once: that is pthread_once, one of the hooks (and they may need `real`).
    // The first caller resolves; any other spins until it is done (microseconds, once).
    static std::atomic<int> state{0};  // 1 once a caller started resolving
    int expected = 0;
    if (!state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        while (!real_ready.load(std::memory_order_acquire)) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
        return;
    }
    {
        void* h = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        Real r{};
        get(h, r.socket, "socket");
        get(h, r.socketpair, "socketpair");
        get(h, r.connect, "connect");
        get(h, r.accept, "accept");
        get(h, r.accept4, "accept4");
        get(h, r.read, "read");
        get(h, r.write, "write");
        get(h, r.readv, "readv");
        get(h, r.writev, "writev");
        get(h, r.recv, "recv");
        get(h, r.recvfrom, "recvfrom");
        get(h, r.recvmsg, "recvmsg");
        get(h, r.recvmmsg, "recvmmsg");
        get(h, r.send, "send");
        get(h, r.sendto, "sendto");
        get(h, r.sendmsg, "sendmsg");
        get(h, r.sendmmsg, "sendmmsg");
        get(h, r.poll, "poll");
        get(h, r.ppoll, "ppoll");
        get(h, r.select, "select");
        get(h, r.pselect, "pselect");
        get(h, r.epoll_wait, "epoll_wait");
        get(h, r.epoll_pwait, "epoll_pwait");
        get(h, r.close, "close");
        get(h, r.dup, "dup");
        get(h, r.dup2, "dup2");
        get(h, r.dup3, "dup3");
        get(h, r.fcntl, "fcntl");
        get(h, r.ioctl, "ioctl");
        get(h, r.setsockopt, "setsockopt");
        get(h, r.getsockopt, "getsockopt");
        get(h, r.pipe, "pipe");
        get(h, r.pipe2, "pipe2");
        get(h, r.sleep, "sleep");
        get(h, r.usleep, "usleep");
        get(h, r.nanosleep, "nanosleep");
        get(h, r.clock_nanosleep, "clock_nanosleep");
        get(h, r.getaddrinfo, "getaddrinfo");
        get(h, r.freeaddrinfo, "freeaddrinfo");
        get(h, r.getnameinfo, "getnameinfo");
        get(h, r.gethostbyname, "gethostbyname");
        get(h, r.gethostbyname2, "gethostbyname2");
        get(h, r.gethostbyname_r, "gethostbyname_r");
        get(h, r.gethostbyname2_r, "gethostbyname2_r");
        get(h, r.gethostbyaddr, "gethostbyaddr");
        get(h, r.gethostbyaddr_r, "gethostbyaddr_r");
        get(h, r.fork, "fork");
        get(h, r.fclose, "fclose");
        get(h, r.mutex_init, "pthread_mutex_init");
        get(h, r.mutex_destroy, "pthread_mutex_destroy");
        get(h, r.mutex_lock, "pthread_mutex_lock");
        get(h, r.mutex_trylock, "pthread_mutex_trylock");
        get(h, r.mutex_timedlock, "pthread_mutex_timedlock");
        get(h, r.mutex_clocklock, "pthread_mutex_clocklock");
        get(h, r.mutex_unlock, "pthread_mutex_unlock");
        get(h, r.cond_init, "pthread_cond_init");
        get(h, r.cond_destroy, "pthread_cond_destroy");
        get(h, r.cond_wait, "pthread_cond_wait");
        get(h, r.cond_timedwait, "pthread_cond_timedwait");
        get(h, r.cond_clockwait, "pthread_cond_clockwait");
        get(h, r.cond_signal, "pthread_cond_signal");
        get(h, r.cond_broadcast, "pthread_cond_broadcast");
        get(h, r.rwlock_init, "pthread_rwlock_init");
        get(h, r.rwlock_destroy, "pthread_rwlock_destroy");
        get(h, r.rwlock_rdlock, "pthread_rwlock_rdlock");
        get(h, r.rwlock_tryrdlock, "pthread_rwlock_tryrdlock");
        get(h, r.rwlock_timedrdlock, "pthread_rwlock_timedrdlock");
        get(h, r.rwlock_clockrdlock, "pthread_rwlock_clockrdlock");
        get(h, r.rwlock_wrlock, "pthread_rwlock_wrlock");
        get(h, r.rwlock_trywrlock, "pthread_rwlock_trywrlock");
        get(h, r.rwlock_timedwrlock, "pthread_rwlock_timedwrlock");
        get(h, r.rwlock_clockwrlock, "pthread_rwlock_clockwrlock");
        get(h, r.rwlock_unlock, "pthread_rwlock_unlock");
        get(h, r.barrier_init, "pthread_barrier_init");
        get(h, r.barrier_destroy, "pthread_barrier_destroy");
        get(h, r.barrier_wait, "pthread_barrier_wait");
        get(h, r.spin_lock, "pthread_spin_lock");
        get(h, r.spin_trylock, "pthread_spin_trylock");
        get(h, r.spin_unlock, "pthread_spin_unlock");
        get(h, r.once, "pthread_once");
        get(h, r.sem_wait, "sem_wait");
        get(h, r.sem_timedwait, "sem_timedwait");
        get(h, r.sem_clockwait, "sem_clockwait");
        get(h, r.sem_trywait, "sem_trywait");
        get(h, r.sem_post, "sem_post");
        get(h, r.sem_getvalue, "sem_getvalue");
        get(h, r.sched_yield, "sched_yield");
        get(h, r.create, "pthread_create");
        get(h, r.join, "pthread_join");
        get(h, r.tryjoin_np, "pthread_tryjoin_np");
        get(h, r.timedjoin_np, "pthread_timedjoin_np");
        get(h, r.clockjoin_np, "pthread_clockjoin_np");
        get(h, r.detach, "pthread_detach");
        get(h, r.self, "pthread_self");
        get(h, r.exit_thread, "pthread_exit");
        get(h, r.cancel, "pthread_cancel");
        get(h, r.testcancel, "pthread_testcancel");
        get(h, r.setname_np, "pthread_setname_np");
        get(h, r.getname_np, "pthread_getname_np");
        get(h, r.key_create, "pthread_key_create");
        get(h, r.key_delete, "pthread_key_delete");
        get(h, r.getspecific, "pthread_getspecific");
        get(h, r.setspecific, "pthread_setspecific");
        get(h, r.getattr_np, "pthread_getattr_np");
        get(h, r.kill, "pthread_kill");
        get(h, r.getschedparam, "pthread_getschedparam");
        get(h, r.setschedparam, "pthread_setschedparam");
        get(h, r.getaffinity_np, "pthread_getaffinity_np");
        get(h, r.setaffinity_np, "pthread_setaffinity_np");
        get(h, r.getcpuclockid, "pthread_getcpuclockid");
        get(h, r.flockfile, "flockfile");
        get(h, r.ftrylockfile, "ftrylockfile");
        get(h, r.funlockfile, "funlockfile");
        real = r;
        real_ready.store(true, std::memory_order_release);
    }
}

namespace {
constexpr int kFdTable = 65536;
FdInfo g_fds[kFdTable];

__attribute__((constructor(101))) void shim_init() {
    resolve_real();
    try {
        patched_families = detail::shim_patch_families();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        _exit(2);
    }
}
}  // namespace

FdInfo* fd_info(int fd) noexcept { return fd >= 0 && fd < kFdTable ? &g_fds[fd] : nullptr; }

void fd_forget(int fd) noexcept {
    if (FdInfo* f = fd_info(fd)) {
        f->kind.store(0, std::memory_order_relaxed);
        f->nonblock.store(-1, std::memory_order_relaxed);
        f->rcvtimeo_ns.store(-1, std::memory_order_relaxed);
        f->sndtimeo_ns.store(-1, std::memory_order_relaxed);
    }
}

}  // namespace cogent::patch

// The run-time answer to "what is patched": found by patch.hpp through dlsym, so programs ask
// the same way whether the shim was preloaded, linked in, or is absent.
extern "C" __attribute__((visibility("default"))) unsigned cogent_patch_families() {
    return cogent::patch::patched_families;
}
