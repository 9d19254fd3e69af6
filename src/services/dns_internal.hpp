// The resolver's parts (dns.hpp), shared by src/services/dns_*.cpp only. Internal.
//   dns_errors.cpp    EAI_* codes and the messages of DnsError
//   dns_addr.cpp      raw addresses: numeric hosts, conversion to Address
//   dns_sort.cpp      the machine's address families and the destination address order
//   dns_hosts.cpp     the hosts file and "localhost"
//   dns_addrinfo.cpp  getaddrinfo's services, hints and result expansion
//   dns_options.cpp   Resolver::Options: validation and the COGENT_RESOLVER* settings
//   dns_libc.cpp      kinds thread and block: the libc resolver
//   dns_ares.cpp      kind ares: the per-hub c-ares channel, its watchers and queries
//   dns_resolver.cpp  Resolver's lookups, the per-hub default resolver, the free functions
#pragma once

#include <ares.h>
#include <netdb.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cogent/dns.hpp"
#include "hub/hub.hpp"
#include "loop/watchers.hpp"

namespace cogent::detail::dns {

// ---- errors (dns_errors.cpp) ----

std::string quote(std::string_view s);
// Throws DnsError. `call` is e.g. `getaddrinfo("x", "80")`; detail (may be empty) says why.
[[noreturn, gnu::cold]] void fail(int code, std::string_view host, const std::string& call,
                                  const std::string& detail = {});
// c-ares status -> the EAI_* code glibc gives for the same DNS outcome.
int eai_from_ares(int status);
std::string ares_detail(int status);
// h_errno -> EAI_*.
int eai_from_herrno(int h);
// `getaddrinfo("host", "service")` for messages.
std::string gai_call(std::string_view host, std::string_view service);

// ---- raw addresses (dns_addr.cpp) ----

struct RawAddr {
    int family = 0;
    unsigned char bytes[16]{};
    std::uint32_t scope = 0;
    std::string text() const;
};
bool operator==(const RawAddr& a, const RawAddr& b);

RawAddr v4(const void* p);
RawAddr v6(const void* p, std::uint32_t scope = 0);
RawAddr v4_mapped(const RawAddr& a);
// A numeric host as getaddrinfo takes it: inet_aton's forms for IPv4 ("127.1" is 127.0.0.1,
// as glibc accepts), inet_pton for IPv6 with an optional "%scope" (index or interface name).
std::optional<RawAddr> parse_numeric(std::string_view host);
Address to_address(const RawAddr& r, std::uint16_t port);

// ---- address families and sorting (dns_sort.cpp) ----

struct Families {
    bool v4 = false;  // a configured IPv4 address other than 127.0.0.1 (glibc's __check_pf)
    bool v6 = false;  // a configured IPv6 address other than ::1
};
// Which address families this machine has (AI_ADDRCONFIG, sorting); cached for a second.
Families configured_families();
// Destination address order, simplified from RFC 6724 (see dns_sort.cpp). Stable.
void sort_addresses(std::vector<RawAddr>& addrs);

// ---- the hosts file and localhost (dns_hosts.cpp) ----

// A forward answer: addresses, canonical name, aliases.
struct Answer {
    std::vector<RawAddr> addrs;
    std::string canon;
    std::vector<std::string> aliases;
    bool found = false;  // the name exists (maybe without addresses of the asked family)
};

std::string lower(std::string_view s);
// "host." and "HOST" name the same host in the hosts file and for "localhost".
std::string normalize_name(std::string_view s);
// The options' hosts file: "/etc/hosts" unless set; "-" is none.
std::string hosts_path(const Resolver::Options& o);
// Hosts file lookup for `name` (lowered): every line naming it, in file order (glibc's
// "multi on"), addresses of the wanted families; canonical name from the first matching line.
Answer hosts_lookup(const std::string& path, const std::string& name, bool want4, bool want6);
// Reverse hosts file lookup: the first line with `addr` names it (out.name), later lines add
// aliases. False when no line has it (or path is "-").
bool hosts_reverse(const std::string& path, const RawAddr& addr, HostEnt& out);
// RFC 6761: "localhost" and "*.localhost" are loopback, whatever DNS says.
bool is_localhost(const std::string& name);
Answer localhost_answer(const std::string& name, bool want4, bool want6);

// ---- getaddrinfo's services, hints and results (dns_addrinfo.cpp) ----

struct TypeProto {
    int socktype;
    int protocol;
    std::uint16_t port;
};
// The socket types and ports `service` expands to under `hints` (glibc's expansion). Throws
// DnsError (EAI_NONAME, EAI_SERVICE, EAI_SOCKTYPE).
std::vector<TypeProto> resolve_service(std::string_view service, const AddrInfoHints& hints,
                                       std::string_view host, const std::string& call);
// Throws DnsError for hints getaddrinfo(3) rejects.
void check_hints(const AddrInfoHints& h, std::string_view host, const std::string& call);
// One AddrInfo per address and socket type; the first carries `canon` if want_canon.
std::vector<AddrInfo> build_results(const std::vector<RawAddr>& addrs,
                                    const std::vector<TypeProto>& tps, const std::string& canon,
                                    bool want_canon);

// ---- options (dns_options.cpp) ----

// "ip", "ip:port", "[v6]:port", "[v6]" or a bare IPv6 address -> "ip:port" / "[v6]:port" for
// ares_set_servers_ports_csv. std::invalid_argument naming `what` otherwise.
std::string server_csv_entry(const std::string& s, const std::string& what);
// std::invalid_argument for options a Resolver refuses.
void validate(const Resolver::Options& o);

// ---- kinds thread and block: the libc resolver (dns_libc.cpp) ----
// Run on the thread pool (kind thread) or on the calling thread (kind block); DnsError as the
// libc call fails.

std::vector<AddrInfo> libc_getaddrinfo(Resolver::Kind kind, std::string host, std::string service,
                                       AddrInfoHints hints, std::string call);
HostEnt libc_gethostbyname(Resolver::Kind kind, std::string name, int family, std::string call);
HostEnt libc_gethostbyaddr(Resolver::Kind kind, RawAddr addr, std::string text, std::string call);

}  // namespace cogent::detail::dns

namespace cogent {

// A Resolver's state. Kind ares keeps a c-ares channel on its hub's loop (dns_ares.cpp); the
// registry and the thread checks are in dns_resolver.cpp.
struct Resolver::Impl {
    Options opts;
    detail::ThreadState* owner = nullptr;
    detail::HubImpl* hub = nullptr;  // null once the hub has ended
    ares_channel channel = nullptr;
    std::unordered_map<int, std::unique_ptr<loop::Io>> socks;  // c-ares's sockets, watched
    loop::Timer timer;                                         // c-ares's next timeout
    int in_ares = 0;  // ares calls outstanding (abandoned ones included)
    pid_t pid = 0;    // the process the channel was made in

    ~Impl();
    // Leave the hub's list of resolvers.
    void unregister();
    // std::logic_error unless called on the owner's thread while its hub lives.
    void check_thread(const char* what) const;

    // dns_ares.cpp.
    // Destroy the channel: c-ares calls every outstanding callback with ARES_EDESTRUCTION
    // (waking their greenlets with EAI_AGAIN), and closes its sockets after telling us to stop
    // watching them.
    void close_channel() noexcept;
    // The channel for this process, built on first use (DnsError if c-ares cannot).
    void ensure_channel(std::string_view host, const std::string& call);
    // Re-arm the timeout timer from ares_timeout (stopped when no call is outstanding).
    void arm_timer();
    // A/AAAA lookups of `name` in DNS, parking the calling greenlet. status_out is
    // ARES_SUCCESS when either family answered, else the most telling failure.
    detail::dns::Answer forward(const std::string& name, bool want4, bool want6,
                                std::string_view host, const std::string& call, const char* what,
                                int& status_out);
    // The PTR lookup of `addr`, parking the calling greenlet: the c-ares status; on success,
    // out has the name (canon) and aliases.
    int reverse(const detail::dns::RawAddr& addr, std::string_view host, const std::string& call,
                const char* what, detail::dns::Answer& out);
};

}  // namespace cogent
