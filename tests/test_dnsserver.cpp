// The fake DNS server of tests/dns_server.hpp, checked with plain blocking UDP/TCP client
// sockets, hand-built queries and a small reply parser: the wire format (ID, flags, echoed
// question, 0xC00C owners, TTL, class), A/AAAA/CNAME/PTR/made-up answers, NXDOMAIN and NODATA,
// every behaviour on both transports, overlapping delays, TCP framing (several queries per
// connection, split writes), garbage, counters, bad arguments, IPv6 and a clean shutdown.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dns_server.hpp"
#include "support.hpp"

using namespace cogent_test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint16_t A = dns_type::A, AAAA = dns_type::AAAA, CNAME = dns_type::CNAME,
                        PTR = dns_type::PTR;

// ---- building queries ----

void put16(std::string& s, std::uint16_t v) {
    s.push_back(char(v >> 8));
    s.push_back(char(v & 0xff));
}

std::string wire_name(const std::string& name) {
    std::string out;
    std::size_t start = 0;
    while (start < name.size()) {
        std::size_t dot = name.find('.', start);
        if (dot == std::string::npos) dot = name.size();
        out.push_back(char(dot - start));
        out += name.substr(start, dot - start);
        start = dot + 1;
    }
    out.push_back('\0');
    return out;
}

// A standard query; `edns` appends an OPT additional record, as resolvers may.
std::string make_query(std::uint16_t id, const std::string& name, std::uint16_t qtype,
                       bool rd = true, bool edns = false) {
    std::string q;
    put16(q, id);
    q.push_back(rd ? 0x01 : 0x00);
    q.push_back(0x00);
    put16(q, 1);
    put16(q, 0);
    put16(q, 0);
    put16(q, edns ? 1 : 0);
    q += wire_name(name);
    put16(q, qtype);
    put16(q, 1);
    if (edns) {
        q.push_back('\0');  // root owner
        put16(q, 41);       // OPT
        put16(q, 4096);     // UDP payload size
        q += std::string(4, '\0');
        put16(q, 0);
    }
    return q;
}

// ---- parsing replies ----

struct Rr {
    std::string owner;
    bool owner_is_pointer_to_question = false;  // written as exactly 0xC00C
    std::uint16_t type = 0, cls = 0;
    std::uint32_t ttl = 0;
    std::string rdata;
    std::string target;  // CNAME/PTR: the name in the RDATA
    std::string addr;    // A/AAAA: the address as text
};

struct Reply {
    std::uint16_t id = 0;
    bool qr = false, tc = false, rd = false, ra = false;
    int opcode = 0, rcode = 0;
    std::uint16_t qd = 0, an = 0, ns = 0, ar = 0;
    std::string qname_raw;  // the question's name as wire bytes
    std::string qname;
    std::uint16_t qtype = 0, qclass = 0;
    std::vector<Rr> answers;
    bool complete = false;  // every section parsed to the last byte
};

struct Cut {};  // the message ended inside a field

struct Reader {
    std::string_view m;
    std::size_t i = 0;
    unsigned u8() {
        if (i >= m.size()) throw Cut{};
        return static_cast<unsigned char>(m[i++]);
    }
    unsigned u16() {
        unsigned hi = u8();
        return hi << 8 | u8();
    }
    std::uint32_t u32() {
        std::uint32_t hi = u16();
        return hi << 16 | u16();
    }
    // A possibly compressed name starting at i (i moves past it).
    std::string name() {
        std::string out;
        std::size_t pos = i;
        bool jumped = false;
        for (int hops = 0; hops < 32;) {
            if (pos >= m.size()) throw Cut{};
            unsigned len = static_cast<unsigned char>(m[pos]);
            if ((len & 0xc0) == 0xc0) {
                ++hops;  // bounded, so that a pointer loop cannot hang the parser
                if (pos + 1 >= m.size()) throw Cut{};
                std::size_t target = (len & 0x3f) << 8 | static_cast<unsigned char>(m[pos + 1]);
                if (!jumped) i = pos + 2;
                jumped = true;
                pos = target;
                continue;
            }
            if (len == 0) {
                if (!jumped) i = pos + 1;
                return out;
            }
            if (pos + 1 + len > m.size()) throw Cut{};
            if (!out.empty()) out.push_back('.');
            out += m.substr(pos + 1, len);
            pos += 1 + len;
        }
        throw Cut{};
    }
};

// The reply's fields as far as they parse; nullopt when even the header is short.
std::optional<Reply> parse_reply(std::string_view m) {
    if (m.size() < 12) return std::nullopt;
    Reply r;
    Reader rd{m};
    try {
        r.id = std::uint16_t(rd.u16());
        unsigned f1 = rd.u8(), f2 = rd.u8();
        r.qr = f1 & 0x80;
        r.opcode = (f1 >> 3) & 0x0f;
        r.tc = f1 & 0x02;
        r.rd = f1 & 0x01;
        r.ra = f2 & 0x80;
        r.rcode = f2 & 0x0f;
        r.qd = std::uint16_t(rd.u16());
        r.an = std::uint16_t(rd.u16());
        r.ns = std::uint16_t(rd.u16());
        r.ar = std::uint16_t(rd.u16());
        for (unsigned k = 0; k < r.qd; ++k) {
            std::size_t start = rd.i;
            r.qname = rd.name();
            r.qname_raw = std::string(m.substr(start, rd.i - start));
            r.qtype = std::uint16_t(rd.u16());
            r.qclass = std::uint16_t(rd.u16());
        }
        for (unsigned k = 0; k < r.an; ++k) {
            Rr rr;
            rr.owner_is_pointer_to_question = rd.i + 1 < m.size() &&
                                              static_cast<unsigned char>(m[rd.i]) == 0xc0 &&
                                              static_cast<unsigned char>(m[rd.i + 1]) == 0x0c;
            rr.owner = rd.name();
            rr.type = std::uint16_t(rd.u16());
            rr.cls = std::uint16_t(rd.u16());
            rr.ttl = rd.u32();
            std::size_t len = rd.u16();
            if (rd.i + len > m.size()) throw Cut{};
            rr.rdata = std::string(m.substr(rd.i, len));
            char buf[INET6_ADDRSTRLEN] = "";
            if (rr.type == A && len == 4) inet_ntop(AF_INET, rr.rdata.data(), buf, sizeof buf);
            if (rr.type == AAAA && len == 16) inet_ntop(AF_INET6, rr.rdata.data(), buf, sizeof buf);
            rr.addr = buf;
            if (rr.type == CNAME || rr.type == PTR) {
                Reader sub{m, rd.i};
                rr.target = sub.name();
                if (sub.i != rd.i + len) throw Cut{};
            }
            rd.i += len;
            r.answers.push_back(std::move(rr));
        }
        r.complete = rd.i == m.size();
    } catch (Cut) {
        r.complete = false;
    }
    return r;
}

// ---- blocking client sockets ----

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) { REQUIRE(fd >= 0); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

sockaddr_storage server_addr(const DnsServer& dns, socklen_t& len) {
    sockaddr_storage ss{};
    if (dns.host().find(':') != std::string::npos) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(dns.port());
        REQUIRE(inet_pton(AF_INET6, dns.host().c_str(), &s6->sin6_addr) == 1);
        len = sizeof(sockaddr_in6);
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(dns.port());
        REQUIRE(inet_pton(AF_INET, dns.host().c_str(), &s4->sin_addr) == 1);
        len = sizeof(sockaddr_in);
    }
    return ss;
}

void set_rcv_timeout(int fd, std::chrono::milliseconds t) {
    timeval tv{};
    tv.tv_sec = t.count() / 1000;
    tv.tv_usec = (t.count() % 1000) * 1000;
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
}

// A socket of `type` connected to the server.
int connect_to(const DnsServer& dns, int type) {
    socklen_t len = 0;
    sockaddr_storage ss = server_addr(dns, len);
    int fd = ::socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        ::close(fd);
        FAIL("connect to " << dns.server_spec() << ": " << std::strerror(errno));
    }
    set_rcv_timeout(fd, 2s);
    return fd;
}

void send_all(int fd, const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        REQUIRE(n > 0);
        off += std::size_t(n);
    }
}

// The next datagram, or nullopt when none arrives within `wait` (by default, a bound that only
// a lost reply reaches, even on a loaded machine; a check that expects none passes its own).
std::optional<std::string> udp_recv(int fd, std::chrono::milliseconds wait = 10s) {
    set_rcv_timeout(fd, wait);
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, std::size_t(n));
}

// Send one datagram and wait for the reply.
std::optional<std::string> udp_ask(const DnsServer& dns, const std::string& query,
                                   std::chrono::milliseconds wait = 10s) {
    Fd s(connect_to(dns, SOCK_DGRAM));
    send_all(s.fd, query);
    return udp_recv(s.fd, wait);
}

Reply udp_reply(const DnsServer& dns, const std::string& query) {
    auto raw = udp_ask(dns, query);
    REQUIRE_MESSAGE(raw.has_value(), "no UDP reply");
    auto r = parse_reply(*raw);
    REQUIRE(r.has_value());
    return *r;
}

void tcp_send(int fd, const std::string& msg) {
    std::string framed;
    put16(framed, std::uint16_t(msg.size()));
    send_all(fd, framed + msg);
}

// Exactly n bytes, or nullopt on timeout or end of stream.
std::optional<std::string> recv_n(int fd, std::size_t n, std::chrono::milliseconds wait) {
    set_rcv_timeout(fd, wait);
    std::string out;
    char buf[4096];
    while (out.size() < n) {
        ssize_t k = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
        if (k <= 0) return std::nullopt;
        out.append(buf, std::size_t(k));
    }
    return out;
}

std::optional<std::string> tcp_recv(int fd, std::chrono::milliseconds wait = 10s) {
    auto len = recv_n(fd, 2, wait);
    if (!len) return std::nullopt;
    std::size_t n = std::size_t(static_cast<unsigned char>((*len)[0])) << 8 |
                    static_cast<unsigned char>((*len)[1]);
    return recv_n(fd, n, wait);
}

Reply tcp_reply(const DnsServer& dns, const std::string& query) {
    Fd s(connect_to(dns, SOCK_STREAM));
    tcp_send(s.fd, query);
    auto raw = tcp_recv(s.fd);
    REQUIRE_MESSAGE(raw.has_value(), "no TCP reply");
    auto r = parse_reply(*raw);
    REQUIRE(r.has_value());
    return *r;
}

std::vector<std::string> addrs(const Reply& r) {
    std::vector<std::string> out;
    for (auto& rr : r.answers) out.push_back(rr.addr);
    return out;
}

}  // namespace

TEST_CASE_FIXTURE(LeakCheck, "an A query: header, echoed question, compressed owner, TTL, class") {
    DnsServer dns;
    CHECK(dns.port() != 0);
    CHECK(dns.server_spec() == "127.0.0.1:" + std::to_string(dns.port()));
    dns.add_a("Host.Test.", "10.1.2.3");
    dns.add_a("host.test", "10.1.2.4");
    dns.add_a("host.test", "10.1.2.3");  // a duplicate: ignored

    // The name asked in mixed case: echoed as sent, matched case-insensitively.
    std::string q = make_query(0xbeef, "hOsT.tEsT", A);
    Reply r = udp_reply(dns, q);
    CHECK(r.complete);
    CHECK(r.id == 0xbeef);
    CHECK(r.qr);
    CHECK(r.ra);
    CHECK(r.rd);
    CHECK_FALSE(r.tc);
    CHECK(r.opcode == 0);
    CHECK(r.rcode == 0);
    CHECK(r.qd == 1);
    CHECK(r.ns == 0);
    CHECK(r.ar == 0);
    CHECK(r.qname_raw == wire_name("hOsT.tEsT"));
    CHECK(r.qtype == A);
    CHECK(r.qclass == 1);
    REQUIRE(r.an == 2);
    REQUIRE(r.answers.size() == 2);
    CHECK(addrs(r) == std::vector<std::string>{"10.1.2.3", "10.1.2.4"});
    for (auto& rr : r.answers) {
        CHECK(rr.owner_is_pointer_to_question);
        CHECK(rr.type == A);
        CHECK(rr.cls == 1);
        CHECK(rr.ttl == 60);
    }

    // RD clear in the query: clear in the reply.
    Reply r2 = udp_reply(dns, make_query(7, "host.test", A, false));
    CHECK(r2.id == 7);
    CHECK_FALSE(r2.rd);
    CHECK(r2.an == 2);
}

TEST_CASE_FIXTURE(LeakCheck, "AAAA, NODATA, NXDOMAIN, CNAME chains and PTR") {
    DnsServer dns;
    dns.add_a("both.test", "192.0.2.1");
    dns.add_aaaa("both.test", "2001:db8::1");
    dns.add_a("v4only.test", "192.0.2.2");
    dns.add_cname("alias.test", "mid.test");
    dns.add_cname("mid.test", "both.test");
    dns.add_cname("dangling.test", "nowhere.test");
    dns.add_ptr("192.0.2.1", "both.test");
    dns.add_ptr("2001:db8::1", "both.test.");

    Reply r = udp_reply(dns, make_query(1, "both.test", AAAA));
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].type == AAAA);
    CHECK(r.answers[0].addr == "2001:db8::1");

    r = udp_reply(dns, make_query(2, "v4only.test", AAAA));  // NODATA
    CHECK(r.rcode == 0);
    CHECK(r.an == 0);
    CHECK(r.complete);

    r = udp_reply(dns, make_query(3, "nothing.test", A));  // NXDOMAIN
    CHECK(r.rcode == 3);
    CHECK(r.an == 0);
    CHECK(r.qname == "nothing.test");

    // alias -> mid -> both: two CNAMEs then the A; names other than the question in full.
    r = udp_reply(dns, make_query(4, "alias.test", A));
    CHECK(r.complete);
    REQUIRE(r.an == 3);
    REQUIRE(r.answers.size() == 3);
    CHECK(r.answers[0].type == CNAME);
    CHECK(r.answers[0].owner_is_pointer_to_question);
    CHECK(r.answers[0].target == "mid.test");
    CHECK(r.answers[1].type == CNAME);
    CHECK_FALSE(r.answers[1].owner_is_pointer_to_question);
    CHECK(r.answers[1].owner == "mid.test");
    CHECK(r.answers[1].target == "both.test");
    CHECK(r.answers[2].type == A);
    CHECK(r.answers[2].owner == "both.test");
    CHECK(r.answers[2].addr == "192.0.2.1");

    r = udp_reply(dns, make_query(5, "alias.test", CNAME));  // only the CNAME itself
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].target == "mid.test");

    r = udp_reply(dns, make_query(6, "dangling.test", A));  // CNAME to nowhere: NOERROR
    CHECK(r.rcode == 0);
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].type == CNAME);

    CHECK(DnsServer::reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa");
    r = udp_reply(dns, make_query(7, "1.2.0.192.in-addr.arpa", PTR));
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].type == PTR);
    CHECK(r.answers[0].owner_is_pointer_to_question);
    CHECK(r.answers[0].target == "both.test");

    std::string v6 = DnsServer::reverse_name("2001:db8::1");
    CHECK(v6 == "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    r = udp_reply(dns, make_query(8, v6, PTR));
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].target == "both.test");
}

TEST_CASE_FIXTURE(LeakCheck, "made-up answers under .gen.test are stable and predictable") {
    DnsServer dns;
    const std::string a1 = DnsServer::made_up_a("one.gen.test");
    CHECK(a1 == DnsServer::made_up_a("ONE.gen.test."));
    CHECK(a1.rfind("10.", 0) == 0);
    CHECK(DnsServer::made_up_aaaa("one.gen.test").rfind("fd00::", 0) == 0);
    std::set<std::string> distinct;
    for (int i = 0; i < 50; ++i)
        distinct.insert(DnsServer::made_up_a("h" + std::to_string(i) + ".gen.test"));
    CHECK(distinct.size() >= 45);

    Reply r = udp_reply(dns, make_query(1, "One.Gen.Test", A));
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].addr == a1);
    r = udp_reply(dns, make_query(2, "one.gen.test", AAAA));
    REQUIRE(r.an == 1);
    REQUIRE(r.answers.size() == 1);
    CHECK(r.answers[0].addr == DnsServer::made_up_aaaa("one.gen.test"));
    r = udp_reply(dns, make_query(3, "one.gen.test", PTR));  // NODATA
    CHECK(r.rcode == 0);
    CHECK(r.an == 0);
    r = udp_reply(dns, make_query(4, "gen.test", A));  // the suffix itself is not made up
    CHECK(r.rcode == 3);

    // A configured name under gen.test answers from the zone instead.
    dns.add_a("fixed.gen.test", "10.9.9.9");
    r = udp_reply(dns, make_query(5, "fixed.gen.test", A));
    CHECK(addrs(r) == std::vector<std::string>{"10.9.9.9"});
    r = udp_reply(dns, make_query(6, "fixed.gen.test", AAAA));
    CHECK(r.an == 0);
}

TEST_CASE_FIXTURE(LeakCheck, "behaviours: rcodes, truncation, malformed, drop; over UDP and TCP") {
    DnsServer dns;
    for (auto n : {"nx.test", "fail.test", "no.test", "tc.test", "bad.test", "quiet.test"})
        dns.add_a(n, "192.0.2.7");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("fail.test", DnsBehavior::servfail);
    dns.set_behavior("no.test", DnsBehavior::refused);
    dns.set_behavior("tc.test", DnsBehavior::truncate);
    dns.set_behavior("bad.test", DnsBehavior::malformed);
    dns.set_behavior("quiet.test", DnsBehavior::drop);

    for (bool tcp : {false, true}) {
        CAPTURE(tcp);
        auto ask = [&](const std::string& name, std::uint16_t id) {
            std::string q = make_query(id, name, A);
            return tcp ? tcp_reply(dns, q) : udp_reply(dns, q);
        };
        Reply r = ask("nx.test", 11);
        CHECK(r.rcode == 3);
        CHECK(r.an == 0);
        CHECK(r.id == 11);
        r = ask("fail.test", 12);
        CHECK(r.rcode == 2);
        CHECK(r.an == 0);
        r = ask("no.test", 13);
        CHECK(r.rcode == 5);
        CHECK(r.complete);

        r = ask("tc.test", 14);
        if (tcp) {  // the full answer: what a resolver retrying over TCP gets
            CHECK_FALSE(r.tc);
            CHECK(addrs(r) == std::vector<std::string>{"192.0.2.7"});
        } else {
            CHECK(r.tc);
            CHECK(r.an == 0);
            CHECK(r.qname == "tc.test");
        }

        r = ask("bad.test", 15);
        CHECK(r.id == 15);
        CHECK(r.qr);
        CHECK(r.an == 1);
        CHECK(r.answers.empty());
        CHECK_FALSE(r.complete);
    }

    // drop over UDP: nothing comes back.
    CHECK_FALSE(udp_ask(dns, make_query(16, "quiet.test", A), 200ms).has_value());
    // drop over TCP: the connection stays open and silent, and keeps serving other queries.
    Fd s(connect_to(dns, SOCK_STREAM));
    tcp_send(s.fd, make_query(17, "quiet.test", A));
    CHECK_FALSE(tcp_recv(s.fd, 200ms).has_value());
    tcp_send(s.fd, make_query(18, "nx.test", A));
    auto raw = tcp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 18);

    CHECK(dns.queries_for("quiet.test") == 2);
    CHECK(dns.queries_for("tc.test") == 2);

    // Behaviours may change while serving.
    dns.set_behavior("quiet.test", DnsBehavior::answer);
    CHECK(udp_reply(dns, make_query(19, "quiet.test", A)).an == 1);

    // Per type: AAAA fails while A answers (and overrides the per-name behaviour).
    dns.add_aaaa("quiet.test", "2001:db8::7");
    dns.set_behavior("quiet.test", AAAA, DnsBehavior::servfail);
    CHECK(udp_reply(dns, make_query(20, "quiet.test", A)).an == 1);
    CHECK(udp_reply(dns, make_query(21, "quiet.test", AAAA)).rcode == 2);
    dns.set_behavior("quiet.test", DnsBehavior::refused);
    CHECK(udp_reply(dns, make_query(22, "quiet.test", A)).rcode == 5);
    CHECK(udp_reply(dns, make_query(23, "quiet.test", AAAA)).rcode == 2);
}

TEST_CASE_FIXTURE(LeakCheck, "a UDP reply over 512 bytes is truncated; TCP carries it whole") {
    DnsServer dns;
    for (int i = 1; i <= 40; ++i) dns.add_a("many.test", "10.0.0." + std::to_string(i));
    Reply r = udp_reply(dns, make_query(1, "many.test", A));
    CHECK(r.tc);
    CHECK(r.an == 0);
    r = tcp_reply(dns, make_query(2, "many.test", A));
    CHECK_FALSE(r.tc);
    CHECK(r.an == 40);
    CHECK(r.complete);
}

TEST_CASE_FIXTURE(LeakCheck, "TCP: several queries per connection, split writes, overlapping") {
    DnsServer dns;
    dns.add_a("a.test", "192.0.2.1");
    dns.add_a("slow.test", "192.0.2.2");
    dns.set_delay("slow.test", 150ms);
    Fd s(connect_to(dns, SOCK_STREAM));

    // One message written a byte at a time, then two in one write.
    std::string framed;
    put16(framed, std::uint16_t(make_query(1, "a.test", A).size()));
    framed += make_query(1, "a.test", A);
    for (char c : framed) {
        send_all(s.fd, std::string(1, c));
        usleep(1000);
    }
    auto raw = tcp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(addrs(*parse_reply(*raw)) == std::vector<std::string>{"192.0.2.1"});

    // A slow query then a fast one on the same connection: the fast answer does not wait.
    auto t0 = Clock::now();
    std::string both;
    for (auto [id, name] : {std::pair{2, "slow.test"}, std::pair{3, "a.test"}}) {
        std::string q = make_query(std::uint16_t(id), name, A);
        put16(both, std::uint16_t(q.size()));
        both += q;
    }
    send_all(s.fd, both);
    raw = tcp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 3);
    raw = tcp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 2);
    CHECK(ms_since(t0) >= 140);
    CHECK(dns.tcp_connections() == 1);
    CHECK(dns.tcp_queries() == 3);
    CHECK(dns.udp_queries() == 0);
}

TEST_CASE_FIXTURE(LeakCheck, "delays overlap: 200 queries delayed 100 ms all answer at ~100 ms") {
    DnsServer dns;
    dns.set_delay(100ms);
    dns.set_delay("fast.gen.test", 0ms);  // a per-name delay overrides the global one
    // Longer than this thread could plausibly be held up between its two sends below.
    dns.set_delay("slow.gen.test", 1s);
    Fd s(connect_to(dns, SOCK_DGRAM));
    int rcvbuf = 1 << 20;
    setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

    // A delayed query then an undelayed one: the undelayed answer comes first.
    auto t0 = Clock::now();
    send_all(s.fd, make_query(9998, "slow.gen.test", A));
    send_all(s.fd, make_query(9999, "fast.gen.test", A));
    auto raw = udp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 9999);
    raw = udp_recv(s.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 9998);
    CHECK(ms_since(t0) >= 995);

    constexpr int N = 200;
    t0 = Clock::now();
    for (int i = 0; i < N; ++i)
        send_all(s.fd, make_query(std::uint16_t(i), "n" + std::to_string(i) + ".gen.test", A));
    std::set<int> ids;
    double first = -1, last = 0;
    for (int i = 0; i < N; ++i) {
        auto raw = udp_recv(s.fd);
        if (!raw) break;
        if (first < 0) first = ms_since(t0);
        last = ms_since(t0);
        auto r = parse_reply(*raw);
        REQUIRE(r.has_value());
        REQUIRE(r->an == 1);
        REQUIRE(r->answers.size() == 1);
        CHECK(r->answers[0].addr ==
              DnsServer::made_up_a("n" + std::to_string(r->id) + ".gen.test"));
        ids.insert(r->id);
    }
    CHECK(ids.size() == std::size_t(N));
    MESSAGE("200 delayed answers: first after " << first << " ms, last after " << last << " ms");
    CHECK(first >= 95);
    CHECK(last < 10000);  // one after another they would take 20 s
    CHECK(dns.udp_queries() == std::size_t(N) + 2);
    CHECK(dns.replies_sent() == std::size_t(N) + 2);
}

TEST_CASE_FIXTURE(LeakCheck, "garbage is ignored and counted; EDNS OPT in a query is ignored") {
    DnsServer dns;
    dns.add_a("ok.test", "192.0.2.1");
    Fd s(connect_to(dns, SOCK_DGRAM));

    std::string good = make_query(42, "ok.test", A);
    std::string response = good;
    response[2] = char(response[2] | 0x80);  // QR set: a response, not a query
    std::string two_questions = good;
    two_questions[5] = 2;
    std::string notify = good;
    notify[2] = char(4 << 3);  // opcode NOTIFY
    std::string pointer = good.substr(0, 12) + std::string("\xc0\x0c\x00\x01\x00\x01", 6);
    std::string long_label = good.substr(0, 12) + std::string(1, char(64)) + std::string(64, 'x');
    const std::vector<std::string> garbage = {"",
                                              "x",
                                              std::string(11, '\0'),
                                              good.substr(0, good.size() - 1),
                                              response,
                                              two_questions,
                                              notify,
                                              pointer,
                                              long_label + std::string("\0\0\x01\0\x01", 5)};
    for (auto& g : garbage) send_all(s.fd, g.empty() ? std::string(1, '\0') : g);
    CHECK_FALSE(udp_recv(s.fd, 150ms).has_value());

    // Still serving; an EDNS OPT additional record does not disturb the answer.
    send_all(s.fd, make_query(43, "ok.test", A, true, true));
    auto raw = udp_recv(s.fd);
    REQUIRE(raw.has_value());
    Reply r = *parse_reply(*raw);
    CHECK(r.id == 43);
    CHECK(r.ar == 0);
    CHECK(addrs(r) == std::vector<std::string>{"192.0.2.1"});
    CHECK(dns.garbage_queries() == garbage.size());
    CHECK(dns.udp_queries() == 1);

    // Over TCP: a garbage message is skipped, the connection keeps working.
    Fd t(connect_to(dns, SOCK_STREAM));
    tcp_send(t.fd, "junk");
    tcp_send(t.fd, "");
    tcp_send(t.fd, make_query(44, "ok.test", A));
    raw = tcp_recv(t.fd);
    REQUIRE(raw.has_value());
    CHECK(parse_reply(*raw)->id == 44);
    CHECK(dns.garbage_queries() == garbage.size() + 2);
}

TEST_CASE_FIXTURE(LeakCheck, "counters and the query log") {
    DnsServer dns;
    dns.add_a("x.test", "192.0.2.1");
    udp_reply(dns, make_query(1, "X.Test", A));
    udp_reply(dns, make_query(2, "x.test", AAAA));
    tcp_reply(dns, make_query(3, "y.gen.test", AAAA));
    udp_reply(dns, make_query(4, "x.test", 99));
    CHECK(dns.udp_queries() == 3);
    CHECK(dns.tcp_queries() == 1);
    CHECK(dns.queries_for("x.TEST.") == 3);
    CHECK(dns.queries_for("y.gen.test") == 1);
    CHECK(dns.queries_for("z.test") == 0);
    CHECK(dns.query_log() == std::vector<std::string>{"udp A x.test", "udp AAAA x.test",
                                                      "tcp AAAA y.gen.test", "udp TYPE99 x.test"});
    dns.reset_counters();
    CHECK(dns.udp_queries() == 0);
    CHECK(dns.tcp_queries() == 0);
    CHECK(dns.tcp_connections() == 0);
    CHECK(dns.queries_for("x.test") == 0);
    CHECK(dns.query_log().empty());
}

TEST_CASE_FIXTURE(LeakCheck, "a reply the client has received is already counted") {
    // The server runs in its own thread: a counter it bumped only after sending could still be
    // behind when the client, woken by the reply, reads it.
    DnsServer dns;
    dns.add_a("x.test", "192.0.2.1");
    Fd u(connect_to(dns, SOCK_DGRAM));
    Fd t(connect_to(dns, SOCK_STREAM));
    std::size_t behind = 0;
    for (int i = 0; i < 200; ++i) {
        const bool tcp = i % 2 == 1;
        const std::string q = make_query(std::uint16_t(i), "x.test", A);
        if (tcp)
            tcp_send(t.fd, q);
        else
            send_all(u.fd, q);
        auto raw = tcp ? tcp_recv(t.fd) : udp_recv(u.fd);
        REQUIRE(raw.has_value());
        if (dns.replies_sent() != std::size_t(i) + 1) ++behind;
    }
    CHECK(behind == 0);
    CHECK(dns.replies_sent() == 200);
}

TEST_CASE_FIXTURE(LeakCheck, "bad arguments are rejected with a clear message") {
    DnsServer dns;
    CHECK_THROWS_WITH_AS(dns.add_a("h.test", "10.0.0"), doctest::Contains("not an IPv4 address"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(dns.add_aaaa("h.test", "10.0.0.1"),
                         doctest::Contains("not an IPv6 address"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(dns.add_a("", "10.0.0.1"), doctest::Contains("empty"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(dns.add_a("a..test", "10.0.0.1"), doctest::Contains("empty label"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(dns.add_a(std::string(64, 'a') + ".test", "10.0.0.1"),
                         doctest::Contains("63"), std::invalid_argument);
    CHECK_THROWS_AS(dns.add_cname("a.test", "."), std::invalid_argument);
    CHECK_THROWS_WITH_AS(dns.add_ptr("nope", "h.test"), doctest::Contains("'nope'"),
                         std::invalid_argument);
    CHECK_THROWS_AS(dns.set_delay(-1ms), std::invalid_argument);
    CHECK_THROWS_AS(dns.set_delay("h.test", -5ms), std::invalid_argument);
    CHECK_THROWS_AS(DnsServer("not-an-ip"), std::invalid_argument);
    // Nothing was half-added: the name is still unknown.
    CHECK(udp_reply(dns, make_query(1, "h.test", A)).rcode == 3);
}

TEST_CASE_FIXTURE(LeakCheck, "an IPv6 server on ::1") {
    std::optional<DnsServer> dns;
    try {
        dns.emplace("::1");
    } catch (const std::system_error& e) {
        COGENT_SKIP("no IPv6 loopback here: " << e.what());
    }
    CHECK(dns->server_spec() == "[::1]:" + std::to_string(dns->port()));
    dns->add_aaaa("six.test", "::1");
    Reply r = udp_reply(*dns, make_query(1, "six.test", AAAA));
    CHECK(addrs(r) == std::vector<std::string>{"::1"});
    r = tcp_reply(*dns, make_query(2, "six.test", AAAA));
    CHECK(addrs(r) == std::vector<std::string>{"::1"});
}

TEST_CASE_FIXTURE(LeakCheck, "shutdown with delayed answers and silent connections pending") {
    Clock::time_point stop_at;
    {
        DnsServer dns;
        dns.set_delay(60s);
        dns.set_behavior("quiet.test", DnsBehavior::drop);
        Fd u(connect_to(dns, SOCK_DGRAM));
        for (int i = 0; i < 20; ++i) send_all(u.fd, make_query(std::uint16_t(i), "a.gen.test", A));
        Fd t(connect_to(dns, SOCK_STREAM));
        tcp_send(t.fd, make_query(1, "quiet.test", A));
        tcp_send(t.fd, make_query(2, "b.gen.test", A));
        // Wait until the server has seen them all, then destroy it with everything pending.
        for (int i = 0; i < 2000 && dns.udp_queries() + dns.tcp_queries() < 22; ++i) usleep(5000);
        CHECK(dns.udp_queries() == 20);
        CHECK(dns.tcp_queries() == 2);
        stop_at = Clock::now();
    }
    CHECK(ms_since(stop_at) < 10000);  // the answers were 60 s away
    // Several servers one after another (and two at once) start and stop cleanly.
    for (int i = 0; i < 3; ++i) {
        DnsServer a, b;
        CHECK(a.port() != b.port());
        a.add_a("a.test", "192.0.2.1");
        CHECK(udp_reply(a, make_query(1, "a.test", A)).an == 1);
        CHECK(udp_reply(b, make_query(1, "a.test", A)).rcode == 3);
    }
}
