// Name resolution that parks only the calling greenlet (gevent's resolver_ares). Each hub has
// its own resolver: a c-ares channel whose sockets are libev watchers on the hub's loop, so a
// thousand greenlets resolving at once take about one round trip, not a thousand.
//
// What the default resolver does, like glibc's "hosts: files dns":
//   - numeric addresses ("10.0.0.1", "::1", "fe80::1%lo") are answered without any lookup;
//   - the hosts file (/etc/hosts) is consulted first, re-read when it changes;
//   - then DNS, with the nameservers, `search`, `ndots`, `timeout` and `attempts` of
//     /etc/resolv.conf (and the LOCALDOMAIN / RES_OPTIONS environment variables);
//   - "localhost" and names under ".localhost" that the hosts file lacks are the loopback
//     addresses (RFC 6761), never a query.
// Failures throw DnsError with the EAI_* code glibc would give and a message naming the host.
//
// Settings (read when a Resolver is built from the environment, e.g. a thread's default one):
//   COGENT_RESOLVER=ares|thread|block  ares (default): c-ares as above; thread: the libc
//       resolver on the thread pool (for NSS sources c-ares does not speak: LDAP, mDNS...);
//       block: the libc resolver on the calling thread (blocks every greenlet; for debugging).
//   COGENT_RESOLVER_SERVERS=ip[:port],...  nameservers instead of resolv.conf's ([v6]:port).
//   COGENT_RESOLVER_TIMEOUT=seconds        first try's timeout (c-ares doubles it per round).
//   COGENT_RESOLVER_TRIES=n                tries per nameserver.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cogent/detail/export.hpp"
#include "cogent/socket.hpp"
#include "cogent/time.hpp"

namespace cogent {

// A lookup failed (gevent's socket.gaierror / socket.herror). code() is the EAI_* value
// getaddrinfo(3) would return (EAI_NONAME, EAI_AGAIN, EAI_FAIL, EAI_NODATA, EAI_SERVICE,
// EAI_FAMILY, EAI_BADFLAGS, EAI_SOCKTYPE, EAI_MEMORY...); what() reads like
// `cogent: getaddrinfo("db.example", "5432"): Name or service not known (EAI_NONAME)`.
class COGENT_API DnsError : public std::runtime_error {
public:
    DnsError(int code, std::string host, const std::string& message)
        : std::runtime_error(message), code_(code), host_(std::move(host)) {}
    // The EAI_* code (negative, as in <netdb.h>).
    int code() const noexcept { return code_; }
    // The name (or address) that was being resolved.
    const std::string& host() const noexcept { return host_; }

private:
    int code_;
    std::string host_;
};

// getaddrinfo's hints. flags: AI_PASSIVE, AI_CANONNAME, AI_NUMERICHOST, AI_NUMERICSERV,
// AI_ADDRCONFIG, AI_V4MAPPED, AI_ALL.
struct COGENT_API AddrInfoHints {
    int family = AF_UNSPEC;  // AF_UNSPEC, AF_INET or AF_INET6
    int socktype = 0;        // 0 (any), SOCK_STREAM, SOCK_DGRAM, SOCK_RAW
    int protocol = 0;        // 0 (any), IPPROTO_TCP, IPPROTO_UDP...
    int flags = 0;
};

// One getaddrinfo result: what to pass to Socket(family, socktype, protocol) and connect.
struct COGENT_API AddrInfo {
    int family = 0;
    int socktype = 0;
    int protocol = 0;
    Address address;
    std::string canonname;  // the first result only, and only with AI_CANONNAME
};

// gethostbyname / gethostbyaddr's answer (Python's (hostname, aliaslist, ipaddrlist)).
struct COGENT_API HostEnt {
    std::string name;                    // the official (canonical) name
    std::vector<std::string> aliases;    // other names (CNAMEs followed, hosts-file aliases)
    int family = AF_INET;                // of the addresses
    std::vector<std::string> addresses;  // numeric, in answer order
};

// getnameinfo's answer.
struct COGENT_API NameInfo {
    std::string host;     // a name, or the numeric address (NI_NUMERICHOST, or none found)
    std::string service;  // a service name, or the numeric port (NI_NUMERICSERV, or unknown)
};

// A resolver. The free functions below use the calling hub's (get_resolver()); create one
// yourself to use other settings (a different nameserver, tighter timeouts). A Resolver belongs
// to the thread that created it: using it from another thread throws std::logic_error. Lookups
// wait cooperatively; a killed or timed-out lookup is abandoned cleanly (its answer, when it
// comes, is dropped; nothing calls back into the dead greenlet). Calling a lookup on a hub
// callback (not a greenlet) throws BlockingSwitchOutError, except with kind block.
class COGENT_API Resolver {
public:
    enum class Kind { ares, thread, block };
    struct Options {
        Kind kind = Kind::ares;
        // "ip", "ip:port", "[ipv6]:port"; empty = resolv.conf's nameservers.
        std::vector<std::string> servers;
        std::optional<Duration> timeout;  // first try; absent = resolv.conf's (c-ares: 2 s)
        std::optional<int> tries;         // per server; absent = resolv.conf's attempts (3)
        std::string resolv_conf;          // path; empty = /etc/resolv.conf
        std::string hosts_file;           // path; empty = /etc/hosts; "-" = no hosts file
    };
    // Options from the COGENT_RESOLVER* settings. std::invalid_argument naming the variable for
    // a malformed value.
    static Options options_from_environment();

    // A resolver with the environment's settings, or with `options`. std::invalid_argument for
    // malformed options (a server that is not "ip[:port]", tries < 1, timeout <= 0). The channel
    // and resolv.conf are read at the first lookup; a failure there throws DnsError (EAI_SYSTEM
    // or EAI_FAIL) from that lookup.
    Resolver();
    explicit Resolver(Options options);
    // Lookups in flight in other greenlets keep the channel and finish normally; it closes
    // after the last one.
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    Kind kind() const noexcept;
    const Options& options() const noexcept;

    // As the free functions below.
    std::vector<AddrInfo> getaddrinfo(std::string_view host, std::string_view service = {},
                                      const AddrInfoHints& hints = {});
    NameInfo getnameinfo(const Address& address, int flags = 0);
    HostEnt gethostbyname(std::string_view name, int family = AF_INET);
    HostEnt gethostbyaddr(std::string_view address);

    struct Impl;

private:
    friend void set_resolver(std::shared_ptr<Resolver> resolver);
    std::shared_ptr<Impl> impl_;
};

// getaddrinfo(3) as C++ values. An empty host means none (NULL): the wildcard address with
// AI_PASSIVE, else loopback. An empty service means port 0. Results expand per socket type as
// glibc's do (hints.socktype 0: STREAM/TCP, DGRAM/UDP and, without a service, RAW). DnsError on
// failure; std::logic_error/BlockingSwitchOutError as for Resolver.
COGENT_API std::vector<AddrInfo> getaddrinfo(std::string_view host, std::string_view service = {},
                                             const AddrInfoHints& hints = {});
// getnameinfo(3): flags NI_NUMERICHOST, NI_NUMERICSERV, NI_NAMEREQD, NI_NOFQDN, NI_DGRAM.
// DnsError (EAI_NONAME with NI_NAMEREQD and no name; EAI_FAMILY for a Unix address).
COGENT_API NameInfo getnameinfo(const Address& address, int flags = 0);
// gethostbyname2: the addresses of `family` (AF_INET or AF_INET6) for a name. DnsError.
COGENT_API HostEnt gethostbyname(std::string_view name, int family = AF_INET);
// gethostbyaddr: the name of a numeric IPv4 or IPv6 address (hosts file, then a PTR query).
// DnsError (EAI_NONAME when there is none; std::invalid_argument for a non-numeric address).
COGENT_API HostEnt gethostbyaddr(std::string_view address);

// The calling thread's hub's resolver (created from the environment on first use).
COGENT_API Resolver& get_resolver();
// Replace the calling thread's resolver (gevent's hub.resolver = ...); nullptr restores the
// default on next use. Lookups in flight on the old one finish on it. std::logic_error for a
// Resolver created on another thread.
COGENT_API void set_resolver(std::shared_ptr<Resolver> resolver);

// The addresses for host:port as connect() wants them: numeric hosts directly, names through
// the calling thread's resolver (getaddrinfo with SOCK_STREAM unless `socktype` says otherwise).
// Throws DnsError.
COGENT_API std::vector<Address> resolve_addresses(std::string_view host, std::uint16_t port,
                                                  int family = AF_UNSPEC,
                                                  int socktype = SOCK_STREAM);

}  // namespace cogent
