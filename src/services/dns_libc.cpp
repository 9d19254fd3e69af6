// Kinds thread and block: the libc resolver (for NSS sources c-ares does not speak), on the
// thread pool or on the calling thread.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>

#include <cerrno>
#include <cstring>

#include "cogent/threadpool.hpp"
#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

namespace {

// The libc functions, looked up in libc.so.6 itself: with the patch
// shim loaded, the plain names are the shim's, which would hand the call back to us.
template <class F>
F libc_fn(const char* name) {
    static void* handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void* p = handle ? dlsym(handle, name) : nullptr;
    if (!p) p = dlsym(RTLD_NEXT, name);
    return reinterpret_cast<F>(p);
}

// getaddrinfo(3) itself, on this thread.
std::vector<AddrInfo> libc_getaddrinfo_here(const std::string& host, const std::string& service,
                                            const AddrInfoHints& hints, const std::string& call) {
    addrinfo h{};
    h.ai_family = hints.family;
    h.ai_socktype = hints.socktype;
    h.ai_protocol = hints.protocol;
    h.ai_flags = hints.flags;
    addrinfo* res = nullptr;
    static const auto real_gai =
        libc_fn<int (*)(const char*, const char*, const addrinfo*, addrinfo**)>("getaddrinfo");
    static const auto real_free = libc_fn<void (*)(addrinfo*)>("freeaddrinfo");
    int rc = real_gai(host.empty() ? nullptr : host.c_str(),
                      service.empty() ? nullptr : service.c_str(), &h, &res);
    if (rc != 0) {
        std::string detail = rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : "";
        fail(rc, host, call, detail);
    }
    std::vector<AddrInfo> out;
    for (addrinfo* p = res; p; p = p->ai_next) {
        AddrInfo ai;
        ai.family = p->ai_family;
        ai.socktype = p->ai_socktype;
        ai.protocol = p->ai_protocol;
        ai.address = Address::from_sockaddr(p->ai_addr, p->ai_addrlen);
        if (p->ai_canonname) ai.canonname = p->ai_canonname;
        out.push_back(std::move(ai));
    }
    real_free(res);
    return out;
}

template <class F>
auto run_kind(Resolver::Kind kind, F fn) -> decltype(fn()) {
    if (kind == Resolver::Kind::block) return fn();
    return get_threadpool().apply(std::move(fn));
}

HostEnt hostent_from(const hostent* he) {
    HostEnt out;
    out.name = he->h_name ? he->h_name : "";
    out.family = he->h_addrtype;
    for (char** p = he->h_aliases; p && *p; ++p) out.aliases.emplace_back(*p);
    for (char** p = he->h_addr_list; p && *p; ++p) {
        char buf[INET6_ADDRSTRLEN] = "";
        inet_ntop(he->h_addrtype, *p, buf, sizeof buf);
        out.addresses.emplace_back(buf);
    }
    return out;
}

}  // namespace

std::vector<AddrInfo> libc_getaddrinfo(Resolver::Kind kind, std::string host, std::string service,
                                       AddrInfoHints hints, std::string call) {
    return run_kind(kind,
                    [h = std::move(host), s = std::move(service), hints, call = std::move(call)] {
                        return libc_getaddrinfo_here(h, s, hints, call);
                    });
}

HostEnt libc_gethostbyname(Resolver::Kind kind, std::string name, int family, std::string call) {
    return run_kind(kind, [n = std::move(name), family, call = std::move(call)] {
        hostent he{}, *res = nullptr;
        std::vector<char> buf(8192);
        int herr = 0, rc;
        static const auto real =
            libc_fn<int (*)(const char*, int, hostent*, char*, size_t, hostent**, int*)>(
                "gethostbyname2_r");
        while ((rc = real(n.c_str(), family, &he, buf.data(), buf.size(), &res, &herr)) == ERANGE &&
               buf.size() < (1u << 20))
            buf.resize(buf.size() * 2);
        if (rc != 0 || !res) fail(rc ? EAI_SYSTEM : eai_from_herrno(herr), n, call);
        return hostent_from(res);
    });
}

HostEnt libc_gethostbyaddr(Resolver::Kind kind, RawAddr addr, std::string text, std::string call) {
    return run_kind(kind, [a = addr, text = std::move(text), call = std::move(call)] {
        hostent he{}, *res = nullptr;
        std::vector<char> buf(8192);
        int herr = 0, rc;
        static const auto real =
            libc_fn<int (*)(const void*, socklen_t, int, hostent*, char*, size_t, hostent**, int*)>(
                "gethostbyaddr_r");
        while ((rc = real(a.bytes, a.family == AF_INET ? 4 : 16, a.family, &he, buf.data(),
                          buf.size(), &res, &herr)) == ERANGE &&
               buf.size() < (1u << 20))
            buf.resize(buf.size() * 2);
        if (rc != 0 || !res) fail(rc ? EAI_SYSTEM : eai_from_herrno(herr), text, call);
        return hostent_from(res);
    });
}

}  // namespace cogent::detail::dns
