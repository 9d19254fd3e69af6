// Which address families this machine has (for AI_ADDRCONFIG and sorting), and the order of
// destination addresses in an answer.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

Families configured_families() {
    static std::mutex mu;
    static Families cached;
    static std::uint64_t when = 0;
    std::lock_guard<std::mutex> lk(mu);
    std::uint64_t now = monotonic_ns();
    if (when && now - when < 1'000'000'000ULL) return cached;  // interfaces change rarely
    Families f;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) == 0) {
        for (ifaddrs* i = list; i; i = i->ifa_next) {
            if (!i->ifa_addr) continue;
            if (i->ifa_addr->sa_family == AF_INET) {
                auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
                if (a->sin_addr.s_addr != htonl(INADDR_LOOPBACK)) f.v4 = true;
            } else if (i->ifa_addr->sa_family == AF_INET6) {
                auto* a = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
                if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) f.v6 = true;
            }
        }
        freeifaddrs(list);
    }
    cached = f;
    when = now;
    return f;
}

namespace {

// RFC 6724's default policy table precedence (section 2.1).
int precedence(const RawAddr& a) {
    if (a.family == AF_INET) return 35;
    const unsigned char* b = a.bytes;
    static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (std::memcmp(b, loop, 16) == 0) return 50;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, mapped, 12) == 0) return 35;
    if (b[0] == 0x20 && b[1] == 0x02) return 30;
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return 5;
    if ((b[0] & 0xfe) == 0xfc) return 3;
    static const unsigned char zero12[12] = {};
    if (std::memcmp(b, zero12, 12) == 0) return 1;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return 1;
    if (b[0] == 0x3f && b[1] == 0xfe) return 1;
    return 40;
}

bool is_loopback(const RawAddr& a) {
    if (a.family == AF_INET) return a.bytes[0] == 127;
    static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::memcmp(a.bytes, loop, 16) == 0;
}

}  // namespace

// Destination address order, simplified from RFC 6724 (what glibc's getaddrinfo does with
// gai.conf's defaults): rule 1, prefer destinations this machine can reach (a configured
// source address of that family; loopback always), then rule 6, higher precedence. Stable:
// equal addresses keep the answer's order.
void sort_addresses(std::vector<RawAddr>& addrs) {
    if (addrs.size() < 2) return;
    Families f = configured_families();
    auto usable = [&](const RawAddr& a) {
        return is_loopback(a) || (a.family == AF_INET ? f.v4 : f.v6);
    };
    std::stable_sort(addrs.begin(), addrs.end(), [&](const RawAddr& a, const RawAddr& b) {
        bool ua = usable(a), ub = usable(b);
        if (ua != ub) return ua;
        return precedence(a) > precedence(b);
    });
}

}  // namespace cogent::detail::dns
