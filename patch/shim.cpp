// libcogent_patch.so's core: the real libc functions, the patched families, the per-fd table,
// and the run-time query of what is patched (patch.hpp's cogent_patch_families).
#include "shim.hpp"

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cogent::patch {

Real real{};
std::atomic<bool> real_ready{false};
unsigned patched_families = Family::all;

// One definition of the family bits: the public enum, in the order of COGENT_PATCH's names.
static_assert(Family::socket == 1u << 0 && Family::dns == 1u << 1 && Family::time == 1u << 2 &&
              Family::select == 1u << 3 && Family::sync == 1u << 4 && Family::thread == 1u << 5 &&
              Family::all == detail::kPatchAll && detail::kPatchFamilyCount == 6);

namespace {

// libc's own definitions. dlsym(RTLD_NEXT) first, kept when the definition it finds is libc's:
// it allocates nothing, and resolving can happen inside an allocator's first malloc (jemalloc
// creates its thread keys there, and pthread_key_create is a hook), where allocating again
// deadlocks. Otherwise (another library interposing the same function after the shim)
// libc.so.6 itself is asked, through dlopen(RTLD_NOLOAD).
bool in_libc(void* p) {
    Dl_info info{};
    if (!dladdr(p, &info) || !info.dli_fname) return false;
    const char* base = std::strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    return std::strncmp(base, "libc.so", 7) == 0;
}

void* libc_sym(const char* name) {
    void* p = dlsym(RTLD_NEXT, name);
    if (p && in_libc(p)) return p;
    static void* handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (void* q = handle ? dlsym(handle, name) : nullptr) return q;
    if (!p) {
        std::fprintf(stderr, "cogent patch: cannot find libc's %s: %s\n", name, dlerror());
        std::abort();
    }
    return p;
}

template <class F>
void get(F& slot, const char* name) {
    slot = reinterpret_cast<F>(libc_sym(name));
}

// Sockets, pipes, polls, sleeps, DNS, fork, fclose.
void resolve_io(Real& r) {
    get(r.socket, "socket");
    get(r.socketpair, "socketpair");
    get(r.connect, "connect");
    get(r.accept, "accept");
    get(r.accept4, "accept4");
    get(r.read, "read");
    get(r.write, "write");
    get(r.readv, "readv");
    get(r.writev, "writev");
    get(r.recv, "recv");
    get(r.recvfrom, "recvfrom");
    get(r.recvmsg, "recvmsg");
    get(r.recvmmsg, "recvmmsg");
    get(r.send, "send");
    get(r.sendto, "sendto");
    get(r.sendmsg, "sendmsg");
    get(r.sendmmsg, "sendmmsg");
    get(r.poll, "poll");
    get(r.ppoll, "ppoll");
    get(r.select, "select");
    get(r.pselect, "pselect");
    get(r.epoll_wait, "epoll_wait");
    get(r.epoll_pwait, "epoll_pwait");
    get(r.close, "close");
    get(r.dup, "dup");
    get(r.dup2, "dup2");
    get(r.dup3, "dup3");
    get(r.fcntl, "fcntl");
    get(r.ioctl, "ioctl");
    get(r.setsockopt, "setsockopt");
    get(r.getsockopt, "getsockopt");
    get(r.pipe, "pipe");
    get(r.pipe2, "pipe2");
    get(r.sleep, "sleep");
    get(r.usleep, "usleep");
    get(r.nanosleep, "nanosleep");
    get(r.clock_nanosleep, "clock_nanosleep");
    get(r.getaddrinfo, "getaddrinfo");
    get(r.freeaddrinfo, "freeaddrinfo");
    get(r.getnameinfo, "getnameinfo");
    get(r.gethostbyname, "gethostbyname");
    get(r.gethostbyname2, "gethostbyname2");
    get(r.gethostbyname_r, "gethostbyname_r");
    get(r.gethostbyname2_r, "gethostbyname2_r");
    get(r.gethostbyaddr, "gethostbyaddr");
    get(r.gethostbyaddr_r, "gethostbyaddr_r");
    get(r.fork, "fork");
    get(r.fclose, "fclose");
}

// The sync family.
void resolve_sync(Real& r) {
    get(r.mutex_init, "pthread_mutex_init");
    get(r.mutex_destroy, "pthread_mutex_destroy");
    get(r.mutex_lock, "pthread_mutex_lock");
    get(r.mutex_trylock, "pthread_mutex_trylock");
    get(r.mutex_timedlock, "pthread_mutex_timedlock");
    get(r.mutex_clocklock, "pthread_mutex_clocklock");
    get(r.mutex_unlock, "pthread_mutex_unlock");
    get(r.cond_init, "pthread_cond_init");
    get(r.cond_destroy, "pthread_cond_destroy");
    get(r.cond_wait, "pthread_cond_wait");
    get(r.cond_timedwait, "pthread_cond_timedwait");
    get(r.cond_clockwait, "pthread_cond_clockwait");
    get(r.cond_signal, "pthread_cond_signal");
    get(r.cond_broadcast, "pthread_cond_broadcast");
    get(r.rwlock_init, "pthread_rwlock_init");
    get(r.rwlock_destroy, "pthread_rwlock_destroy");
    get(r.rwlock_rdlock, "pthread_rwlock_rdlock");
    get(r.rwlock_tryrdlock, "pthread_rwlock_tryrdlock");
    get(r.rwlock_timedrdlock, "pthread_rwlock_timedrdlock");
    get(r.rwlock_clockrdlock, "pthread_rwlock_clockrdlock");
    get(r.rwlock_wrlock, "pthread_rwlock_wrlock");
    get(r.rwlock_trywrlock, "pthread_rwlock_trywrlock");
    get(r.rwlock_timedwrlock, "pthread_rwlock_timedwrlock");
    get(r.rwlock_clockwrlock, "pthread_rwlock_clockwrlock");
    get(r.rwlock_unlock, "pthread_rwlock_unlock");
    get(r.barrier_init, "pthread_barrier_init");
    get(r.barrier_destroy, "pthread_barrier_destroy");
    get(r.barrier_wait, "pthread_barrier_wait");
    get(r.spin_lock, "pthread_spin_lock");
    get(r.spin_trylock, "pthread_spin_trylock");
    get(r.spin_unlock, "pthread_spin_unlock");
    get(r.once, "pthread_once");
    get(r.sem_wait, "sem_wait");
    get(r.sem_timedwait, "sem_timedwait");
    get(r.sem_clockwait, "sem_clockwait");
    get(r.sem_trywait, "sem_trywait");
    get(r.sem_post, "sem_post");
    get(r.sem_getvalue, "sem_getvalue");
    get(r.sched_yield, "sched_yield");
}

// The thread family.
void resolve_thread(Real& r) {
    get(r.create, "pthread_create");
    get(r.join, "pthread_join");
    get(r.tryjoin_np, "pthread_tryjoin_np");
    get(r.timedjoin_np, "pthread_timedjoin_np");
    get(r.clockjoin_np, "pthread_clockjoin_np");
    get(r.detach, "pthread_detach");
    get(r.self, "pthread_self");
    get(r.exit_thread, "pthread_exit");
    get(r.cancel, "pthread_cancel");
    get(r.testcancel, "pthread_testcancel");
    get(r.setname_np, "pthread_setname_np");
    get(r.getname_np, "pthread_getname_np");
    get(r.key_create, "pthread_key_create");
    get(r.key_delete, "pthread_key_delete");
    get(r.getspecific, "pthread_getspecific");
    get(r.setspecific, "pthread_setspecific");
    get(r.getattr_np, "pthread_getattr_np");
    get(r.kill, "pthread_kill");
    get(r.getschedparam, "pthread_getschedparam");
    get(r.setschedparam, "pthread_setschedparam");
    get(r.getaffinity_np, "pthread_getaffinity_np");
    get(r.setaffinity_np, "pthread_setaffinity_np");
    get(r.getcpuclockid, "pthread_getcpuclockid");
    get(r.flockfile, "flockfile");
    get(r.ftrylockfile, "ftrylockfile");
    get(r.funlockfile, "funlockfile");
}

}  // namespace

void resolve_real() noexcept {
    // Not std::call_once: that is pthread_once, one of the hooks (and they may need `real`).
    // The first caller resolves; any other spins until it is done (microseconds, once).
    static std::atomic<int> state{0};  // 1 once a caller started resolving
    int expected = 0;
    if (!state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        while (!real_ready.load(std::memory_order_acquire)) cpu_relax();
        return;
    }
    {
        Real r{};
        resolve_io(r);
        resolve_sync(r);
        resolve_thread(r);
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
