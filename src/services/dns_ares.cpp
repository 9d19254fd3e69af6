// Kind ares: a c-ares channel per Resolver, on its hub's loop.
//   - c-ares tells us (sock_state_cb) which of its sockets to watch; each gets a loop::Io on the
//     hub's loop whose callback calls ares_process_fd, and one loop::Timer drives its timeouts
//     (re-armed from ares_timeout after every call into c-ares);
//   - a lookup is a heap Query: the greenlet issues one ares_search per address family, then
//     parks on the one Parker (wait/park.hpp); c-ares's callbacks (always on the hub, inside
//     ares_process_fd, or synchronously inside ares_search for immediate failures) record the
//     answer and, when the last one is in, queue the greenlet's wake (Parker::wake_later:
//     waking never switches, and c-ares is never re-entered from its own callback);
//   - a greenlet killed or timed out while parked abandons its Query: the Parker unlinks a
//     queued wake, and the Query is freed by the last c-ares callback (which c-ares always
//     makes: an answer, its own timeout, or ARES_EDESTRUCTION when the channel goes).
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/switch.hpp"
#include "services/dns_internal.hpp"
#include "wait/park.hpp"

namespace cogent {

using namespace detail;
using namespace detail::dns;

namespace {

// ---- the channel's sockets ----

// The runtime's own socket calls go straight to the kernel, never through an interposed
// libc function (DESIGN invariant 6: the patch shim must not see c-ares's sockets).
ares_socket_t sys_socket(int domain, int type, int protocol, void*) {
    long fd = ::syscall(SYS_socket, domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd >= 0 && type == SOCK_DGRAM) {
        // One UDP socket carries every query to a server. A thousand answers arriving at
        // once overflow the default 208 KiB buffer (the kernel drops the rest, and those
        // lookups wait for c-ares's retry), so ask for more; the kernel caps it at
        // net.core.rmem_max.
        int bytes = 4 << 20;
        ::syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
    return ares_socket_t(fd);
}
int sys_close(ares_socket_t fd, void*) { return int(::syscall(SYS_close, fd)); }
int sys_connect(ares_socket_t fd, const sockaddr* sa, ares_socklen_t len, void*) {
    return int(::syscall(SYS_connect, fd, sa, len));
}
ares_ssize_t sys_recvfrom(ares_socket_t fd, void* buf, size_t n, int flags, sockaddr* from,
                          ares_socklen_t* fromlen, void*) {
    return ares_ssize_t(::syscall(SYS_recvfrom, fd, buf, n, flags, from, fromlen));
}
ares_ssize_t sys_sendv(ares_socket_t fd, const iovec* iov, int n, void*) {
    return ares_ssize_t(::syscall(SYS_writev, fd, iov, n));
}

// ---- watchers ----

void on_io(loop::Io& io, int revents) {
    auto* self = static_cast<Resolver::Impl*>(io.data());
    const int fd = io.fd();  // io may be freed inside ares_process_fd
    ares_process_fd(self->channel, (revents & loop::kRead) ? fd : ARES_SOCKET_BAD,
                    (revents & loop::kWrite) ? fd : ARES_SOCKET_BAD);
    self->arm_timer();
}

void on_timer(loop::Timer& t) {
    auto* self = static_cast<Resolver::Impl*>(t.data());
    ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    self->arm_timer();
}

// c-ares's sock_state_cb: watch `fd` for what it asks, or stop watching it.
void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Resolver::Impl*>(data);
    if (!self->hub) return;
    auto it = self->socks.find(fd);
    const int events = (readable ? loop::kRead : 0) | (writable ? loop::kWrite : 0);
    if (!events) {
        if (it != self->socks.end()) self->socks.erase(it);  // stops watching
        return;
    }
    loop::Io* io;
    if (it == self->socks.end()) {
        io = self->socks.emplace(fd, std::make_unique<loop::Io>(&on_io, self)).first->second.get();
        io->set(fd, events);
    } else {
        io = it->second.get();
        if (io->events() == events && io->active()) return;
        io->stop();
        io->set(fd, events);
    }
    io->start(self->hub->loop());
}

// ---- building the channel ----

void init_library(std::string_view host, const std::string& call) {
    static std::once_flag lib_once;
    static int lib_status = ARES_SUCCESS;
    std::call_once(lib_once, [] { lib_status = ares_library_init(ARES_LIB_INIT_ALL); });
    if (lib_status != ARES_SUCCESS)
        fail(EAI_SYSTEM, host, call,
             std::string("ares_library_init: ") + ares_strerror(lib_status));
}

// ares_init_options with the resolver's options.
ares_channel new_channel(Resolver::Impl* impl, std::string_view host, const std::string& call) {
    const Resolver::Options& opts = impl->opts;
    ares_options o{};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
    o.sock_state_cb = &on_sock_state;
    o.sock_state_cb_data = impl;
    char lookups[] = "b";  // DNS only: the hosts file is ours (dns_hosts.cpp)
    o.lookups = lookups;
    if (opts.timeout) {
        mask |= ARES_OPT_TIMEOUTMS;
        // c-ares takes an int of ms: clamp (a huge timeout is the longest it can express).
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*opts.timeout);
        o.timeout = int(std::clamp<long long>(ms.count(), 1, INT_MAX));
    }
    if (opts.tries) {
        mask |= ARES_OPT_TRIES;
        o.tries = *opts.tries;
    }
    std::string conf = opts.resolv_conf;
    if (!conf.empty()) {
        mask |= ARES_OPT_RESOLVCONF;
        o.resolvconf_path = conf.data();
    }
    ares_channel c = nullptr;
    int st = ares_init_options(&c, &o, mask);
    if (st != ARES_SUCCESS)
        fail(st == ARES_ENOMEM ? EAI_MEMORY : EAI_SYSTEM, host, call,
             "cannot set up the c-ares channel: " + std::string(ares_strerror(st)));
    return c;
}

// The options' servers instead of resolv.conf's; destroys `c` and throws if c-ares refuses.
void set_servers(ares_channel c, const std::vector<std::string>& servers, std::string_view host,
                 const std::string& call) {
    if (servers.empty()) return;
    std::string csv;
    for (const auto& s : servers) {
        if (!csv.empty()) csv += ',';
        csv += server_csv_entry(s, "servers");
    }
    int st = ares_set_servers_ports_csv(c, csv.c_str());
    if (st != ARES_SUCCESS) {
        ares_destroy(c);
        fail(EAI_SYSTEM, host, call,
             "c-ares rejected the servers " + quote(csv) + ": " + ares_strerror(st));
    }
}

// ---- queries ----

// One lookup in flight: up to two ares calls (A and AAAA). Owned jointly by the waiting
// greenlet (until waiter_gone) and the outstanding c-ares callbacks; the last one frees it.
struct Query {
    Resolver::Impl* impl = nullptr;
    Parker* parker = nullptr;  // the waiting greenlet's (until waiter_gone)
    int outstanding = 0;
    bool parked = false;
    bool waiter_gone = false;
    // Per ares call: 0 = A (or a reverse lookup), 1 = AAAA.
    int status[2] = {ARES_SUCCESS, ARES_SUCCESS};
    Answer ans[2];
};

// One ares call finished (answer, error, timeout, or channel destruction).
void finish(Query* q) {
    Resolver::Impl* self = q->impl;
    --self->in_ares;
    if (--q->outstanding > 0) return;
    if (q->waiter_gone) {
        delete q;
        return;
    }
    if (q->parked) q->parker->wake_later();
}

struct Call {
    Query* q;
    int slot;
};

void on_search(void* arg, int status, int, unsigned char* abuf, int alen) {
    auto* c = static_cast<Call*>(arg);
    Query* q = c->q;
    const int slot = c->slot;
    delete c;
    if (status == ARES_SUCCESS) {
        hostent* he = nullptr;
        int st = slot == 0 ? ares_parse_a_reply(abuf, alen, &he, nullptr, nullptr)
                           : ares_parse_aaaa_reply(abuf, alen, &he, nullptr, nullptr);
        if (st == ARES_SUCCESS && he) {
            Answer& a = q->ans[slot];
            a.found = true;
            a.canon = he->h_name ? he->h_name : "";
            for (char** p = he->h_aliases; p && *p; ++p) a.aliases.emplace_back(*p);
            for (char** p = he->h_addr_list; p && *p; ++p)
                a.addrs.push_back(slot == 0 ? v4(*p) : v6(*p));
            ares_free_hostent(he);
            if (a.addrs.empty()) st = ARES_ENODATA;
        }
        status = st;
    }
    q->status[slot] = status;
    finish(q);
}

struct PtrCall {
    Query* q;
    RawAddr addr;
};

// A PTR answer. ares_query (not ares_gethostbyaddr, which reports every failure, SERVFAIL
// included, as "not found") so that a server failure stays EAI_AGAIN, as in glibc.
void on_ptr(void* arg, int status, int, unsigned char* abuf, int alen) {
    auto* c = static_cast<PtrCall*>(arg);
    Query* q = c->q;
    if (status == ARES_SUCCESS) {
        hostent* he = nullptr;
        const bool four = c->addr.family == AF_INET;
        status =
            ares_parse_ptr_reply(abuf, alen, c->addr.bytes, four ? 4 : 16, c->addr.family, &he);
        if (status == ARES_SUCCESS && he) {
            Answer& a = q->ans[0];
            a.found = true;
            a.canon = he->h_name ? he->h_name : "";
            for (char** p = he->h_aliases; p && *p; ++p) a.aliases.emplace_back(*p);
        }
        if (he) ares_free_hostent(he);
    }
    delete c;
    q->status[0] = status;
    finish(q);
}

// Issue the calls (via `start`, which must call issue_search or issue_ptr for each), park until
// all are in, and return the Query for reading. Killed or timed out: the Query is abandoned to
// its callbacks.
template <class Start>
std::unique_ptr<Query> run(Resolver::Impl& impl, std::string_view host, const std::string& call,
                           const char* what, Start start) {
    impl.check_thread(what);
    impl.ensure_channel(host, call);
    HubImpl* hub = impl.hub;
    ThreadState* ts = thread_state_fast();
    GreenletImpl* cur = ts->current;
    if (cur == hub->greenlet) blocking_on_hub(what);
    Parker parker(hub, cur);
    auto* q = new Query;
    q->impl = &impl;
    q->parker = &parker;
    start(q);
    impl.arm_timer();
    struct Abandon {  // before the Parker goes, which unlinks a wake still queued
        Query* q;
        ~Abandon() {
            if (!q) return;
            q->waiter_gone = true;
            q->parker = nullptr;
            if (q->outstanding == 0) delete q;
        }
    } guard{q};
    if (q->outstanding > 0) {
        q->parked = true;
        parker.park(TimeoutArg(), what);
    }
    guard.q = nullptr;
    return std::unique_ptr<Query>(q);
}

void issue_search(Resolver::Impl& impl, Query* q, const std::string& name, int slot) {
    ++q->outstanding;
    ++impl.in_ares;
    ares_search(impl.channel, name.c_str(), ns_c_in, slot == 0 ? ns_t_a : ns_t_aaaa, &on_search,
                new Call{q, slot});
}

// "4.3.2.1.in-addr.arpa" or the nibbles under ip6.arpa; an IPv4-mapped IPv6 address is
// looked up under in-addr.arpa, as glibc does.
std::string reverse_name(const RawAddr& a) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[80];
    if (a.family == AF_INET || std::memcmp(a.bytes, mapped, 12) == 0) {
        const unsigned char* b = a.family == AF_INET ? a.bytes : a.bytes + 12;
        std::snprintf(buf, sizeof buf, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return buf;
    }
    std::string out;
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        out += hex[a.bytes[i] & 0xf];
        out += '.';
        out += hex[a.bytes[i] >> 4];
        out += '.';
    }
    return out + "ip6.arpa";
}

void issue_ptr(Resolver::Impl& impl, Query* q, const RawAddr& a) {
    ++q->outstanding;
    ++impl.in_ares;
    ares_query(impl.channel, reverse_name(a).c_str(), ns_c_in, ns_t_ptr, &on_ptr,
               new PtrCall{q, a});
}

// The most telling failure of two (A and AAAA): a server problem beats "no such name".
int worse(int a, int b) {
    auto rank = [](int s) {
        switch (s) {
            case ARES_SUCCESS:
                return 0;
            case ARES_ENODATA:
                return 1;
            case ARES_ENOTFOUND:
                return 2;
            default:
                return 3;
        }
    };
    return rank(b) > rank(a) ? b : a;
}

}  // namespace

// ---- Resolver::Impl's channel ----

void Resolver::Impl::close_channel() noexcept {
    if (!channel) return;
    ares_channel c = channel;
    channel = nullptr;
    ares_destroy(c);
    socks.clear();  // each watcher stops as it goes
    timer.stop();
}

void Resolver::Impl::ensure_channel(std::string_view host, const std::string& call) {
    if (channel && pid == ::getpid()) return;
    init_library(host, call);
    ares_channel c = new_channel(this, host, call);
    static const ares_socket_functions funcs = {sys_socket, sys_close, sys_connect, sys_recvfrom,
                                                sys_sendv};
    ares_set_socket_functions(c, &funcs, this);
    set_servers(c, opts.servers, host, call);
    timer.set_callback(&on_timer, this);
    channel = c;
    pid = ::getpid();
}

void Resolver::Impl::arm_timer() {
    if (!hub || !channel) return;
    timer.stop();
    if (in_ares == 0) return;
    timeval tv{};
    if (!ares_timeout(channel, nullptr, &tv)) return;
    timer.start(hub->loop(),
                std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
}

// ---- lookups ----

Answer Resolver::Impl::forward(const std::string& name, bool want4, bool want6,
                               std::string_view host, const std::string& call, const char* what,
                               int& status_out) {
    auto q = run(*this, host, call, what, [&](Query* qq) {
        if (want4) issue_search(*this, qq, name, 0);
        if (want6) issue_search(*this, qq, name, 1);
    });
    Answer out;
    int status = ARES_SUCCESS;
    bool any = false;
    for (int slot = 0; slot < 2; ++slot) {
        if (!(slot == 0 ? want4 : want6)) continue;
        if (q->status[slot] == ARES_SUCCESS) {
            any = true;
            Answer& a = q->ans[slot];
            if (out.canon.empty()) out.canon = a.canon;
            for (auto& al : a.aliases)
                if (std::find(out.aliases.begin(), out.aliases.end(), al) == out.aliases.end())
                    out.aliases.push_back(al);
            out.addrs.insert(out.addrs.end(), a.addrs.begin(), a.addrs.end());
        } else {
            status = worse(status, q->status[slot]);
        }
    }
    out.found = any;
    status_out = any ? ARES_SUCCESS : status;
    return out;
}

int Resolver::Impl::reverse(const RawAddr& addr, std::string_view host, const std::string& call,
                            const char* what, Answer& out) {
    auto q = run(*this, host, call, what, [&](Query* qq) { issue_ptr(*this, qq, addr); });
    if (q->status[0] == ARES_SUCCESS) out = std::move(q->ans[0]);
    return q->status[0];
}

}  // namespace cogent
