// The DNS family of the monkey patch: getaddrinfo, getnameinfo and the gethostby* functions,
// answered on a greenlet by the calling hub's resolver (cogent::get_resolver(): c-ares, whose
// sockets are watchers on the hub), so a lookup parks only its greenlet. glibc's own resolver
// cannot be made cooperative from outside (it does its socket and poll work through internal
// aliases no interposer reaches: DESIGN.md), so these functions are replaced whole.
//
// The caller sees glibc 2.36's contract; only the waiting changes:
//   - getaddrinfo: "*" as node or service means NULL; NULL hints are glibc's defaults
//     (AI_V4MAPPED | AI_ADDRCONFIG, AF_UNSPEC); glibc's checks in glibc's order (both NULL:
//     EAI_NONAME; unknown flag bits or AI_CANONNAME without a node: EAI_BADFLAGS); node "" is a
//     name nothing resolves (EAI_NONAME). The list is allocated exactly as glibc allocates it
//     (each addrinfo and its sockaddr in one malloc block, the sockaddr right after the struct;
//     ai_canonname its own malloc'd string), so glibc's freeaddrinfo frees either origin's
//     lists, and freeaddrinfo simply passes through.
//   - getnameinfo: glibc's flag check, EAI_FAMILY for a short salen or an unknown family,
//     EAI_NONAME for NI_NAMEREQD with neither buffer, NULL or zero-length buffers meaning "not
//     wanted" (no reverse lookup then), EAI_OVERFLOW for a buffer too small (host checked
//     first). AF_UNIX addresses need no lookup and go to libc.
//   - gethostbyname / gethostbyname2 / gethostbyaddr: a per-thread static hostent and buffer
//     (glibc's is per process; either way a second call, from any greenlet of the thread,
//     overwrites the first answer), h_errno HOST_NOT_FOUND / NO_DATA / TRY_AGAIN / NO_RECOVERY
//     / NETDB_INTERNAL as glibc sets it.
//   - the _r variants fill the caller's buffer laid out as glibc lays it out (pointer arrays
//     aligned inside the buffer) and return as glibc's nss wrapper does: 0 on success and on
//     "not found" (*result NULL, *h_errnop says which), EAGAIN for TRY_AGAIN, ERANGE with
//     *h_errnop NETDB_INTERNAL when the buffer is too small (the caller grows it and calls
//     again, which repeats the lookup, as with glibc), errno set to the value returned.
//
// Limits, each a pass-through to libc (which then blocks the thread as it always did): a
// resolver of kind block (COGENT_RESOLVER=block means the libc resolver on this thread: going
// through the Resolver would come back here), AI_IDN with a non-ASCII node, and families the
// resolver does not serve (gethostbyname2 with a family other than AF_INET/AF_INET6). IDN
// output flags (AI_CANONIDN, NI_IDN) are accepted and ignored: names come back as in DNS.
//
// Exceptions: a kill or a Timeout (cogent::BaseException) propagates out of the hook, which is
// how a killed greenlet leaves the call; every std::exception becomes an error code (DnsError:
// its EAI_* code; bad_alloc: EAI_MEMORY; system_error: EAI_SYSTEM with its errno; anything else,
// such as a malformed COGENT_RESOLVER_* setting: EAI_FAIL / NO_RECOVERY). Nothing else escapes
// into C.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "cogent/dns.hpp"
#include "cogent/exceptions.hpp"
#include "shim.hpp"

using namespace cogent;
using cogent::patch::cooperative;
using cogent::patch::Family;
using cogent::patch::libc;

namespace {

// glibc 2.36's accepted getaddrinfo flags: the POSIX ones, AI_IDN, AI_CANONIDN and the two
// deprecated IDN bits (0x100, 0x200), which it accepts and ignores.
constexpr int kIdnFlags = AI_IDN | AI_CANONIDN | 0x100 | 0x200;
constexpr int kGaiFlags = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_V4MAPPED | AI_ALL |
                          AI_ADDRCONFIG | AI_NUMERICSERV | kIdnFlags;
// glibc's getnameinfo flags: NI_IDN and its two deprecated companions (64, 128) included.
constexpr int kNiIdnFlags = NI_IDN | 64 | 128;
constexpr int kNiFlags =
    NI_NUMERICHOST | NI_NUMERICSERV | NI_NOFQDN | NI_NAMEREQD | NI_DGRAM | kNiIdnFlags;

// The EAI_* code for an exception out of the resolver; errno set as EAI_SYSTEM wants it.
int eai_of(const std::exception& e) noexcept {
    if (auto* d = dynamic_cast<const DnsError*>(&e)) {
        // The resolver's EAI_SYSTEM (its channel could not be set up) carries no errno.
        if (d->code() == EAI_SYSTEM) errno = EIO;
        return d->code();
    }
    if (dynamic_cast<const std::bad_alloc*>(&e)) {
        errno = ENOMEM;
        return EAI_MEMORY;
    }
    if (auto* s = dynamic_cast<const std::system_error*>(&e)) {
        const auto& cat = s->code().category();
        if ((cat == std::generic_category() || cat == std::system_category()) &&
            s->code().value()) {
            errno = s->code().value();
            return EAI_SYSTEM;
        }
    }
    return EAI_FAIL;
}

// True when lookups must go to libc: the thread's resolver is of kind block (see the file
// comment). get_resolver() builds the default resolver on first use, which can throw.
bool resolver_is_libc() { return get_resolver().kind() == Resolver::Kind::block; }

bool is_ascii(const char* s) noexcept {
    for (; *s; ++s)
        if (static_cast<unsigned char>(*s) >= 0x80) return false;
    return true;
}

// ---- getaddrinfo ------------------------------------------------------------------------------

// One glibc-style list node: the addrinfo and its sockaddr in one block; nullptr when out of
// memory.
addrinfo* new_node(const AddrInfo& ai) noexcept {
    const socklen_t len = ai.address.length();
    auto* n = static_cast<addrinfo*>(std::malloc(sizeof(addrinfo) + len));
    if (!n) return nullptr;
    std::memset(n, 0, sizeof(addrinfo));
    n->ai_family = ai.family;
    n->ai_socktype = ai.socktype;
    n->ai_protocol = ai.protocol;
    n->ai_addrlen = len;
    n->ai_addr = reinterpret_cast<sockaddr*>(n + 1);
    std::memcpy(n->ai_addr, ai.address.sockaddr_ptr(), len);
    if (!ai.canonname.empty()) {
        n->ai_canonname = strdup(ai.canonname.c_str());
        if (!n->ai_canonname) {
            std::free(n);
            return nullptr;
        }
    }
    return n;
}

int coop_getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
    static const addrinfo default_hints = {
        AI_V4MAPPED | AI_ADDRCONFIG, AF_UNSPEC, 0, 0, 0, nullptr, nullptr, nullptr};
    const char* const node_in = node;
    const char* const service_in = service;
    if (node && node[0] == '*' && node[1] == '\0') node = nullptr;
    if (service && service[0] == '*' && service[1] == '\0') service = nullptr;
    if (!node && !service) return EAI_NONAME;
    if (!hints) hints = &default_hints;
    if (hints->ai_flags & ~kGaiFlags) return EAI_BADFLAGS;
    if ((hints->ai_flags & AI_CANONNAME) && !node) return EAI_BADFLAGS;
    if ((hints->ai_flags & AI_IDN) && node && !is_ascii(node))
        return libc().getaddrinfo(node_in, service_in, hints, res);

    AddrInfoHints h;
    h.family = hints->ai_family;
    h.socktype = hints->ai_socktype;
    h.protocol = hints->ai_protocol;
    h.flags = hints->ai_flags & ~kIdnFlags;
    std::vector<AddrInfo> list;
    try {
        if (resolver_is_libc()) return libc().getaddrinfo(node_in, service_in, hints, res);
        if (node && !*node) {
            // The resolver reads an empty host as "none" (NULL); glibc looks "" up and finds
            // nothing. Its hint checks still come first.
            if (h.family != AF_UNSPEC && h.family != AF_INET && h.family != AF_INET6)
                return EAI_FAMILY;
            if (h.socktype != 0 && h.socktype != SOCK_STREAM && h.socktype != SOCK_DGRAM &&
                h.socktype != SOCK_RAW)
                return EAI_SOCKTYPE;
            return EAI_NONAME;
        }
        list = get_resolver().getaddrinfo(node ? node : "", service ? service : "", h);
    } catch (const std::exception& e) {
        return eai_of(e);
    }
    if (list.empty()) return EAI_NONAME;  // the resolver fails instead; never an empty list

    addrinfo* head = nullptr;
    addrinfo** tail = &head;
    for (const AddrInfo& ai : list) {
        addrinfo* n = new_node(ai);
        if (!n) {
            libc().freeaddrinfo(head);
            errno = ENOMEM;
            return EAI_MEMORY;
        }
        *tail = n;
        tail = &n->ai_next;
    }
    *res = head;
    return 0;
}

// ---- getnameinfo ------------------------------------------------------------------------------

int coop_getnameinfo(const sockaddr* sa, socklen_t salen, char* host, socklen_t hostlen, char* serv,
                     socklen_t servlen, int flags) {
    if (flags & ~kNiFlags) return EAI_BADFLAGS;
    if (!sa || salen < sizeof(sa_family_t)) return EAI_FAMILY;
    if ((flags & NI_NAMEREQD) && !host && !serv) return EAI_NONAME;
    socklen_t need;
    switch (sa->sa_family) {
        case AF_INET:
            need = sizeof(sockaddr_in);
            break;
        case AF_INET6:
            need = sizeof(sockaddr_in6);
            break;
        case AF_UNIX:  // glibc answers from uname() and the path: nothing to wait for
            return libc().getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
        default:
            return EAI_FAMILY;
    }
    if (salen < need) return EAI_FAMILY;
    const bool want_host = host && hostlen > 0;
    const bool want_serv = serv && servlen > 0;
    if (!want_host && !want_serv) return 0;

    int f = flags & ~kNiIdnFlags;
    if (!want_host) f = (f | NI_NUMERICHOST) & ~NI_NAMEREQD;  // no reverse lookup for nothing
    if (!want_serv) f |= NI_NUMERICSERV;
    NameInfo ni;
    try {
        if (resolver_is_libc())
            return libc().getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
        ni = get_resolver().getnameinfo(Address::from_sockaddr(sa, need), f);
    } catch (const std::exception& e) {
        return eai_of(e);
    }
    if (want_host) {
        if (ni.host.size() >= hostlen) return EAI_OVERFLOW;
        std::memcpy(host, ni.host.c_str(), ni.host.size() + 1);
    }
    if (want_serv) {
        if (ni.service.size() >= servlen) return EAI_OVERFLOW;
        std::memcpy(serv, ni.service.c_str(), ni.service.size() + 1);
    }
    return 0;
}

// ---- gethostby* -------------------------------------------------------------------------------

// A lookup's outcome: the entry, or the EAI_* code it failed with.
struct HostLookup {
    HostEnt he;
    int eai = 0;
};

HostLookup lookup_name(const char* name, int af) {
    HostLookup out;
    try {
        out.he = get_resolver().gethostbyname(name, af);
    } catch (const std::exception& e) {
        out.eai = eai_of(e);
    }
    return out;
}

HostLookup lookup_addr(const void* addr, int af) {
    HostLookup out;
    char text[INET6_ADDRSTRLEN] = "";
    inet_ntop(af, addr, text, sizeof text);
    try {
        out.he = get_resolver().gethostbyaddr(text);
        out.he.family = af;
        out.he.addresses = {text};  // glibc's h_addr_list is the address asked about
    } catch (const std::exception& e) {
        out.eai = eai_of(e);
    }
    return out;
}

// The binary addresses of an entry (4 or 16 bytes each, per its family).
std::vector<unsigned char> packed_addresses(const HostEnt& he, int addr_len) {
    std::vector<unsigned char> out;
    unsigned char a[16];
    for (const std::string& s : he.addresses)
        if (inet_pton(he.family, s.c_str(), a) == 1) out.insert(out.end(), a, a + addr_len);
    return out;
}

// Bytes the entry takes in a caller's buffer, the alignment padding at its start included.
std::size_t hostent_bytes(const HostEnt& he, std::size_t naddr, int addr_len) {
    std::size_t n = alignof(char*) - 1;
    n += (naddr + 1 + he.aliases.size() + 1) * sizeof(char*);
    n += naddr * std::size_t(addr_len);
    n += he.name.size() + 1;
    for (const std::string& a : he.aliases) n += a.size() + 1;
    return n;
}

// Lays the entry out in buf as glibc does: the h_addr_list and h_aliases pointer arrays
// (aligned), the addresses, then the strings. False when buflen is too small.
bool fill_hostent(const HostEnt& he, hostent* ret, char* buf, std::size_t buflen) {
    const int addr_len = he.family == AF_INET6 ? 16 : 4;
    const std::vector<unsigned char> addrs = packed_addresses(he, addr_len);
    const std::size_t naddr = addrs.size() / std::size_t(addr_len);
    if (!buf || hostent_bytes(he, naddr, addr_len) > buflen) return false;
    const std::size_t pad =
        (alignof(char*) - reinterpret_cast<std::uintptr_t>(buf) % alignof(char*)) % alignof(char*);
    char* p = buf + pad;
    char** addr_list = reinterpret_cast<char**>(p);
    char** aliases = addr_list + naddr + 1;
    p = reinterpret_cast<char*>(aliases + he.aliases.size() + 1);
    for (std::size_t i = 0; i < naddr; ++i) {
        std::memcpy(p, addrs.data() + i * std::size_t(addr_len), std::size_t(addr_len));
        addr_list[i] = p;
        p += addr_len;
    }
    addr_list[naddr] = nullptr;
    auto put = [&p](const std::string& s) {
        char* out = p;
        std::memcpy(p, s.c_str(), s.size() + 1);
        p += s.size() + 1;
        return out;
    };
    ret->h_name = put(he.name);
    for (std::size_t i = 0; i < he.aliases.size(); ++i) aliases[i] = put(he.aliases[i]);
    aliases[he.aliases.size()] = nullptr;
    ret->h_aliases = aliases;
    ret->h_addrtype = he.family;
    ret->h_length = addr_len;
    ret->h_addr_list = addr_list;
    return true;
}

// What glibc's nss wrapper returns for a failed lookup (see the file comment).
int failed_r(int eai, int* h_errnop) {
    int rc = 0;
    switch (eai) {
        case EAI_NONAME:
        case EAI_ADDRFAMILY:  // a numeric address of the other family
            *h_errnop = HOST_NOT_FOUND;
            break;
        case EAI_NODATA:
            *h_errnop = NO_DATA;
            break;
        case EAI_AGAIN:
            *h_errnop = TRY_AGAIN;
            rc = EAGAIN;
            break;
        case EAI_MEMORY:
            *h_errnop = NETDB_INTERNAL;
            rc = ENOMEM;
            break;
        case EAI_SYSTEM:
            *h_errnop = NETDB_INTERNAL;
            rc = errno ? errno : EIO;
            break;
        default:  // EAI_FAIL and the rest
            *h_errnop = NO_RECOVERY;
            break;
    }
    errno = rc;
    return rc;
}

// A finished lookup into the caller's buffer, with the _r functions' return contract.
int result_r(const HostLookup& l, hostent* ret, char* buf, std::size_t buflen, hostent** result,
             int* h_errnop) {
    if (l.eai) return failed_r(l.eai, h_errnop);
    if (!fill_hostent(l.he, ret, buf, buflen)) {
        *h_errnop = NETDB_INTERNAL;
        errno = ERANGE;
        return ERANGE;
    }
    *result = ret;
    *h_errnop = NETDB_SUCCESS;
    errno = 0;
    return 0;
}

HostLookup name_lookup_or_empty(const char* name, int af) {
    if (!*name) {  // glibc: NO_RECOVERY for "", asking no one
        HostLookup l;
        l.eai = EAI_FAIL;
        return l;
    }
    return lookup_name(name, af);
}

// The thread's static entry for the non-_r functions.
struct StaticHost {
    hostent he{};
    std::vector<char> buf;
};
thread_local StaticHost tls_host;

// A finished lookup into the thread's static entry, with the non-_r contract (NULL and h_errno
// on failure).
hostent* result_static(const HostLookup& l) {
    if (l.eai) {
        int herr = 0;
        failed_r(l.eai, &herr);
        h_errno = herr;
        return nullptr;
    }
    StaticHost& s = tls_host;
    const int addr_len = l.he.family == AF_INET6 ? 16 : 4;
    const std::size_t need = hostent_bytes(l.he, l.he.addresses.size(), addr_len);
    try {
        if (s.buf.size() < need) s.buf.resize(need);
    } catch (const std::bad_alloc&) {
        h_errno = NETDB_INTERNAL;
        errno = ENOMEM;
        return nullptr;
    }
    fill_hostent(l.he, &s.he, s.buf.data(), s.buf.size());
    return &s.he;
}

// gethostbyaddr's checks before any lookup (glibc's order); 0 to go on, else *ret_out and
// *h_errnop say how to fail.
bool addr_rejected(const void* addr, socklen_t len, int type, int* ret_out, int* h_errnop) {
    if (len == sizeof(in6_addr) && std::memcmp(addr, &in6addr_any, sizeof(in6_addr)) == 0) {
        *h_errnop = HOST_NOT_FOUND;  // glibc: "::" is nobody's, and says ENOENT
        *ret_out = ENOENT;
        return true;
    }
    const socklen_t size = type == AF_INET    ? sizeof(in_addr)
                           : type == AF_INET6 ? sizeof(in6_addr)
                                              : 0;
    if (!size || len < size) {
        *h_errnop = NETDB_INTERNAL;
        errno = EAFNOSUPPORT;
        *ret_out = EAFNOSUPPORT;
        return true;
    }
    return false;
}

}  // namespace

extern "C" {

#define COGENT_HOOK __attribute__((visibility("default")))

COGENT_HOOK int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                            addrinfo** res) {
    if (!cooperative(Family::dns)) return libc().getaddrinfo(node, service, hints, res);
    return coop_getaddrinfo(node, service, hints, res);
}

// Lists from either origin have glibc's layout: glibc's freeaddrinfo frees them all.
COGENT_HOOK void freeaddrinfo(addrinfo* ai) noexcept { libc().freeaddrinfo(ai); }

COGENT_HOOK int getnameinfo(const sockaddr* sa, socklen_t salen, char* host, socklen_t hostlen,
                            char* serv, socklen_t servlen, int flags) {
    if (!cooperative(Family::dns))
        return libc().getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    return coop_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
}

COGENT_HOOK hostent* gethostbyname2(const char* name, int af) {
    if (!cooperative(Family::dns) || !name || (af != AF_INET && af != AF_INET6))
        return libc().gethostbyname2(name, af);
    try {
        if (resolver_is_libc()) return libc().gethostbyname2(name, af);
    } catch (const std::exception& e) {
        return result_static(HostLookup{{}, eai_of(e)});
    }
    return result_static(name_lookup_or_empty(name, af));
}

COGENT_HOOK hostent* gethostbyname(const char* name) {
    if (!cooperative(Family::dns)) return libc().gethostbyname(name);
    return gethostbyname2(name, AF_INET);
}

COGENT_HOOK int gethostbyname2_r(const char* name, int af, hostent* ret, char* buf, size_t buflen,
                                 hostent** result, int* h_errnop) {
    if (!cooperative(Family::dns) || !name || (af != AF_INET && af != AF_INET6))
        return libc().gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    *result = nullptr;
    try {
        if (resolver_is_libc())
            return libc().gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    } catch (const std::exception& e) {
        return failed_r(eai_of(e), h_errnop);
    }
    return result_r(name_lookup_or_empty(name, af), ret, buf, buflen, result, h_errnop);
}

COGENT_HOOK int gethostbyname_r(const char* name, hostent* ret, char* buf, size_t buflen,
                                hostent** result, int* h_errnop) {
    if (!cooperative(Family::dns))
        return libc().gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
    return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

COGENT_HOOK int gethostbyaddr_r(const void* addr, socklen_t len, int type, hostent* ret, char* buf,
                                size_t buflen, hostent** result, int* h_errnop) {
    if (!cooperative(Family::dns) || !addr)
        return libc().gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
    *result = nullptr;
    int rc = 0;
    if (addr_rejected(addr, len, type, &rc, h_errnop)) return rc;
    try {
        if (resolver_is_libc())
            return libc().gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
    } catch (const std::exception& e) {
        return failed_r(eai_of(e), h_errnop);
    }
    return result_r(lookup_addr(addr, type), ret, buf, buflen, result, h_errnop);
}

COGENT_HOOK hostent* gethostbyaddr(const void* addr, socklen_t len, int type) {
    if (!cooperative(Family::dns) || !addr) return libc().gethostbyaddr(addr, len, type);
    int rc = 0, herr = 0;
    if (addr_rejected(addr, len, type, &rc, &herr)) {
        h_errno = herr;
        return nullptr;
    }
    try {
        if (resolver_is_libc()) return libc().gethostbyaddr(addr, len, type);
    } catch (const std::exception& e) {
        return result_static(HostLookup{{}, eai_of(e)});
    }
    return result_static(lookup_addr(addr, type));
}

}  // extern "C"
