// getaddrinfo's plumbing around the addresses: the hints it accepts, the socket types and
// ports a service expands to, and one result per address and socket type.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cctype>
#include <cstdlib>

#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

// glibc's expansion: socktype 0 means STREAM/TCP, DGRAM/UDP and (unless the service is a name)
// RAW.
// A named service is looked up per protocol in /etc/services; a type it lacks is left out.
std::vector<TypeProto> resolve_service(std::string_view service, const AddrInfoHints& hints,
                                       std::string_view host, const std::string& call) {
    static const TypeProto table[] = {
        {SOCK_STREAM, IPPROTO_TCP, 0}, {SOCK_DGRAM, IPPROTO_UDP, 0}, {SOCK_RAW, 0, 0}};
    std::vector<TypeProto> out;
    bool numeric = false;
    std::uint16_t port = 0;
    if (!service.empty()) {
        std::string s(service);
        char* end = nullptr;
        unsigned long v = std::strtoul(s.c_str(), &end, 10);
        numeric = end && *end == '\0' && std::isdigit(static_cast<unsigned char>(s[0]));
        if (numeric) {
            // glibc takes the number modulo 65536 ("70000" is port 4464); so do we.
            port = std::uint16_t(v & 0xffff);
        } else if (hints.flags & AI_NUMERICSERV) {
            fail(EAI_NONAME, host, call, "AI_NUMERICSERV and a service that is not a number");
        }
    }
    for (const TypeProto& tp : table) {
        if (hints.socktype && hints.socktype != tp.socktype) continue;
        if (hints.protocol && tp.protocol && hints.protocol != tp.protocol) continue;
        if (!service.empty() && !numeric && tp.socktype == SOCK_RAW) continue;  // no raw service
        TypeProto r = tp;
        if (hints.protocol) r.protocol = hints.protocol;
        if (!service.empty()) {
            if (numeric) {
                r.port = port;
            } else {
                servent se{}, *res = nullptr;
                char buf[1024];
                std::string s(service);
                const char* proto = tp.socktype == SOCK_STREAM ? "tcp" : "udp";
                if (getservbyname_r(s.c_str(), proto, &se, buf, sizeof buf, &res) != 0 || !res)
                    continue;
                r.port = ntohs(std::uint16_t(res->s_port));
            }
        }
        out.push_back(r);
    }
    if (out.empty()) {
        if (hints.socktype && hints.socktype != SOCK_STREAM && hints.socktype != SOCK_DGRAM &&
            hints.socktype != SOCK_RAW)
            fail(EAI_SOCKTYPE, host, call);
        fail(EAI_SERVICE, host, call,
             service.empty() ? "no socket type matches the hints"
                             : "service " + quote(service) + " is unknown for this socket type");
    }
    return out;
}

void check_hints(const AddrInfoHints& h, std::string_view host, const std::string& call) {
    constexpr int known = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_NUMERICSERV |
                          AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL;
    if (h.flags & ~known) fail(EAI_BADFLAGS, host, call, "unknown flag bits");
    if ((h.flags & AI_CANONNAME) && host.empty())
        fail(EAI_BADFLAGS, host, call, "AI_CANONNAME needs a host");
    if (h.family != AF_UNSPEC && h.family != AF_INET && h.family != AF_INET6)
        fail(EAI_FAMILY, host, call);
    if (h.socktype != 0 && h.socktype != SOCK_STREAM && h.socktype != SOCK_DGRAM &&
        h.socktype != SOCK_RAW)
        fail(EAI_SOCKTYPE, host, call);
}

std::vector<AddrInfo> build_results(const std::vector<RawAddr>& addrs,
                                    const std::vector<TypeProto>& tps, const std::string& canon,
                                    bool want_canon) {
    std::vector<AddrInfo> out;
    out.reserve(addrs.size() * tps.size());
    for (const RawAddr& a : addrs)
        for (const TypeProto& tp : tps) {
            AddrInfo ai;
            ai.family = a.family;
            ai.socktype = tp.socktype;
            ai.protocol = tp.protocol;
            ai.address = to_address(a, tp.port);
            if (out.empty() && want_canon) ai.canonname = canon;
            out.push_back(std::move(ai));
        }
    return out;
}

}  // namespace cogent::detail::dns
