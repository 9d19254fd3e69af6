// Raw addresses: the bytes of an IPv4 or IPv6 address (with its scope) as the resolver passes
// them around, numeric hosts parsed the way getaddrinfo parses them, and conversion to Address.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

std::string RawAddr::text() const {
    char buf[INET6_ADDRSTRLEN] = "";
    inet_ntop(family, bytes, buf, sizeof buf);
    return buf;
}

bool operator==(const RawAddr& a, const RawAddr& b) {
    return a.family == b.family && a.scope == b.scope &&
           std::memcmp(a.bytes, b.bytes, a.family == AF_INET ? 4 : 16) == 0;
}

RawAddr v4(const void* p) {
    RawAddr r;
    r.family = AF_INET;
    std::memcpy(r.bytes, p, 4);
    return r;
}
RawAddr v6(const void* p, std::uint32_t scope) {
    RawAddr r;
    r.family = AF_INET6;
    std::memcpy(r.bytes, p, 16);
    r.scope = scope;
    return r;
}
RawAddr v4_mapped(const RawAddr& a) {
    unsigned char b[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(b + 12, a.bytes, 4);
    return v6(b);
}

std::optional<RawAddr> parse_numeric(std::string_view host) {
    if (host.empty() || host.size() >= 128) return std::nullopt;
    char buf[128];
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
    if (host.find(':') == std::string_view::npos) {
        in_addr a{};
        // inet_aton stops at whitespace; glibc's getaddrinfo rejects any trailing garbage.
        for (char c : host)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.') return std::nullopt;
        if (inet_aton(buf, &a) == 0) return std::nullopt;
        return v4(&a);
    }
    std::uint32_t scope = 0;
    if (char* pct = std::strchr(buf, '%')) {
        *pct++ = '\0';
        char* end = nullptr;
        unsigned long id = std::strtoul(pct, &end, 10);
        if (*pct && end && *end == '\0')
            scope = std::uint32_t(id);
        else if (!(scope = if_nametoindex(pct)))
            return std::nullopt;
    }
    in6_addr a{};
    if (inet_pton(AF_INET6, buf, &a) != 1) return std::nullopt;
    return v6(&a, scope);
}

Address to_address(const RawAddr& r, std::uint16_t port) {
    sockaddr_storage ss{};
    socklen_t len;
    if (r.family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        std::memcpy(&a->sin_addr, r.bytes, 4);
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        std::memcpy(&a->sin6_addr, r.bytes, 16);
        a->sin6_scope_id = r.scope;
        len = sizeof *a;
    }
    return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace cogent::detail::dns
