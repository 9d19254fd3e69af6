// libcogent_patch.so's core: the real libc functions, the patched families, the per-fd table,
// and the run-time query of what is patched (patch.hpp's cogent_patch_families).
#include "shim.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace cogent::patch {

Real real{};
std::atomic<bool> real_ready{false};
unsigned patched_families = Family::all;

// One definition of the family bits: the public enum, in the order of COGENT_PATCH's names.
static_assert(Family::socket == 1u << 0 && Family::dns == 1u << 1 && Family::time == 1u << 2 &&
              Family::select == 1u << 3 && Family::all == detail::kPatchAll);

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
    static std::once_flag once;
    std::call_once(once, [] {
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
        real = r;
        real_ready.store(true, std::memory_order_release);
    });
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
