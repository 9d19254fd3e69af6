// A fake DNS server for the resolver's tests and the dns_concurrent benchmark: UDP and TCP on
// one OS-chosen port of 127.0.0.1 (or ::1), served from its own std::thread with its own cogent
// hub, answering from a small zone the test fills in, with per-name behaviours (NXDOMAIN,
// SERVFAIL, REFUSED, silence, truncation, a malformed reply) and answer delays that do not
// serialize (each query is answered by its own greenlet).
//
//     cogent_test::DnsServer dns;
//     dns.add_a("host.test", "10.1.2.3");
//     dns.set_behavior("bad.test", cogent_test::DnsBehavior::servfail);
//     setenv("COGENT_RESOLVER_SERVERS", dns.server_spec().c_str(), 1);
//
// Names are case-insensitive and a trailing dot is ignored everywhere. Replies: the query's ID
// and RD bit copied, QR and RA set, the question echoed as received, answers owned by the
// question name written as the compression pointer 0xC00C (other owner names and all names in
// RDATA written in full), TTL 60, class IN. A UDP reply longer than 512 bytes is sent truncated
// (TC set, no answers), as a real server would. Garbage (unparsable datagrams or TCP messages,
// responses, opcodes other than QUERY, QDCOUNT != 1) is counted and ignored; additional records
// in a query (EDNS OPT) are ignored.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cogent_test {

// What the server does with a query for a name (set_behavior). Note for resolver tests: c-ares
// 1.18 treats SERVFAIL and REFUSED as a broken server (it tries the next one and finally
// reports ARES_ECONNREFUSED) unless the channel has ARES_FLAG_NOCHECKRESP, with which it reports
// ARES_ESERVFAIL / ARES_EREFUSED; malformed gives ARES_EBADRESP, drop ARES_ETIMEOUT.
enum class DnsBehavior {
    answer,    // NOERROR with the zone's records (NXDOMAIN for an unknown name, NODATA for none)
    nxdomain,  // rcode 3
    servfail,  // rcode 2
    refused,   // rcode 5
    drop,      // never answers (TCP: the connection stays open and silent)
    truncate,  // UDP: TC bit and no answers; TCP: the full answer
    malformed  // right ID and QR bit, ANCOUNT=1 and the answer record cut short
};

// DNS record types the server knows by name (others are answered NODATA).
namespace dns_type {
inline constexpr std::uint16_t A = 1;
inline constexpr std::uint16_t CNAME = 5;
inline constexpr std::uint16_t PTR = 12;
inline constexpr std::uint16_t AAAA = 28;
inline constexpr std::uint16_t ANY = 255;
}  // namespace dns_type

// The fake DNS server. Every public member may be called from any thread (the zone, behaviours,
// delays and counters are behind a mutex), except that construction and destruction belong to
// one thread. Not copyable or movable.
class DnsServer {
public:
    // Starts serving at once on its own thread: UDP and TCP on the same OS-chosen port of
    // `host` ("127.0.0.1" by default, or "::1"), or on `port` when not 0 (53 needs root: the
    // test of resolv.conf's nameserver lines, which carry no port, uses it). Throws
    // std::system_error when the sockets or the thread cannot be set up, std::invalid_argument for
    // a host that is not a numeric IPv4 or IPv6 address (use a loopback one: tests must not serve
    // beyond the machine).
    explicit DnsServer(std::string host = "127.0.0.1", std::uint16_t port = 0);
    // Stops the thread (its greenlets are killed, its sockets closed) and joins it.
    ~DnsServer();
    DnsServer(const DnsServer&) = delete;
    DnsServer& operator=(const DnsServer&) = delete;

    // The port served (UDP and TCP).
    std::uint16_t port() const noexcept { return port_; }
    // The numeric host served ("127.0.0.1" or "::1").
    const std::string& host() const noexcept { return host_; }
    // "127.0.0.1:PORT" or "[::1]:PORT", for COGENT_RESOLVER_SERVERS.
    std::string server_spec() const;

    // Zone. Each throws std::invalid_argument for a name that is not a valid domain name
    // (empty, empty label, label over 63 or name over 253 bytes) or an address that does not
    // parse; nothing is changed then.

    // Add an A record (several calls: several records; an exact duplicate is ignored).
    void add_a(std::string name, std::string ipv4);
    // Add an AAAA record (as add_a).
    void add_aaaa(std::string name, std::string ipv6);
    // Make `alias` a CNAME for `target` (replacing an earlier one): a query for alias is
    // answered with the CNAME record followed by the target's records of the asked type
    // (chains followed up to 8 deep). A CNAME wins over other records of the alias.
    void add_cname(std::string alias, std::string target);
    // Add a PTR record for `ip` ("10.0.0.1" or "::1"), owned by its in-addr.arpa / ip6.arpa
    // name, pointing at `name`.
    void add_ptr(std::string ip, std::string name);
    // What to do with queries for `name` (any type, either transport). Default: answer.
    void set_behavior(std::string name, DnsBehavior b);
    // Same, only for queries of type `qtype` (dns_type::AAAA...); overrides the per-name one.
    void set_behavior(std::string name, std::uint16_t qtype, DnsBehavior b);
    // Delay every answer by d (counted from the query's arrival). Zero: none. Negative throws
    // std::invalid_argument.
    void set_delay(std::chrono::milliseconds d);
    // Delay answers for `name` by d (overrides the global delay; zero: no delay for it).
    void set_delay(std::string name, std::chrono::milliseconds d);

    // Made-up answers for unconfigured names under ".gen.test": the A record ("10.x.y.z") and
    // AAAA record ("fd00::x:y") that the server gives `name`, derived from a hash of the
    // normalized name (lowercase, no trailing dot), stable across runs.
    static std::string made_up_a(std::string_view name);
    static std::string made_up_aaaa(std::string_view name);
    // The in-addr.arpa / ip6.arpa name (no trailing dot) for a numeric IPv4 or IPv6 address;
    // std::invalid_argument when it is neither.
    static std::string reverse_name(std::string_view ip);

    // Counters and log. A query counts once it parses (whatever the behaviour, dropped ones
    // included), at arrival.

    // Queries received over UDP / over TCP.
    std::size_t udp_queries() const;
    std::size_t tcp_queries() const;
    // Queries for `name` (any type, either transport; case-insensitive).
    std::size_t queries_for(std::string name) const;
    // One line per query in arrival order: "udp A host.test", "tcp AAAA x.gen.test",
    // "udp TYPE99 y.test" (name lowercased, no trailing dot).
    std::vector<std::string> query_log() const;
    // Datagrams / TCP messages that did not parse as a query (ignored).
    std::size_t garbage_queries() const;
    // TCP connections accepted.
    std::size_t tcp_connections() const;
    // Replies sent (both transports). A reply is counted before it is sent, so one the client
    // has received is always counted; a send that fails is not counted.
    std::size_t replies_sent() const;
    // Zero all the counters above and clear the log.
    void reset_counters();

    // Internals shared with the server thread (defined in dns_server.cpp).
    struct Zone;
    struct Shared;

private:
    std::string host_;
    std::uint16_t port_ = 0;
    std::shared_ptr<Shared> sh_;
    std::thread thread_;
};

}  // namespace cogent_test
