// The resolver (dns.hpp) against the test DNS server (dns_server.hpp) on 127.0.0.1: answers,
// every failure mode, concurrency, cancellation, hosts file, search/ndots, fork, settings, and
// glibc's own getaddrinfo as the reference for what needs no DNS.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string_view>
#include <thread>

#include "dns_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using cogent::AddrInfoHints;
using cogent::DnsError;
using cogent::Resolver;
using cogent_test::DnsBehavior;
using cogent_test::DnsServer;

namespace {

// The default timeout is one that only a dropped query reaches, even on a loaded machine.
Resolver::Options opts_for(const DnsServer& dns, cogent::Duration timeout = 2s, int tries = 2) {
    Resolver::Options o;
    o.servers = {dns.server_spec()};
    o.timeout = timeout;
    o.tries = tries;
    o.hosts_file = "-";  // only the test server answers
    return o;
}

std::vector<std::string> hosts_of(const std::vector<cogent::AddrInfo>& v) {
    std::vector<std::string> out;
    for (auto& ai : v)
        if (std::find(out.begin(), out.end(), ai.address.host()) == out.end())
            out.push_back(ai.address.host());
    return out;
}

// The code a lookup fails with (0 when it does not fail).
template <class F>
int eai_of(F&& f) {
    try {
        f();
    } catch (const DnsError& e) {
        return e.code();
    }
    return 0;
}

// A temporary file with `text`, removed at scope end.
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& text) {
        char tmpl[] = "/tmp/cogent_dns_XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = tmpl;
        write(text);
    }
    void write(const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }
    ~TempFile() { std::remove(path.c_str()); }
};

// glibc's own getaddrinfo, as (family, socktype, protocol, "host port") tuples.
std::vector<std::string> libc_gai(const char* host, const char* service, const AddrInfoHints& h,
                                  int* rc_out = nullptr) {
    addrinfo hints{};
    hints.ai_family = h.family;
    hints.ai_socktype = h.socktype;
    hints.ai_protocol = h.protocol;
    hints.ai_flags = h.flags;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host, service, &hints, &res);
    if (rc_out) *rc_out = rc;
    std::vector<std::string> out;
    for (addrinfo* p = res; p; p = p->ai_next) {
        auto a = cogent::Address::from_sockaddr(p->ai_addr, p->ai_addrlen);
        out.push_back(std::to_string(p->ai_family) + "/" + std::to_string(p->ai_socktype) + "/" +
                      std::to_string(p->ai_protocol) + " " + a.to_string() +
                      (p->ai_canonname ? std::string(" canon=") + p->ai_canonname : ""));
    }
    if (res) freeaddrinfo(res);
    return out;
}

std::vector<std::string> ours(Resolver& r, const char* host, const char* service,
                              const AddrInfoHints& h, int* rc_out = nullptr) {
    std::vector<std::string> out;
    try {
        for (auto& ai : r.getaddrinfo(host ? host : "", service ? service : "", h))
            out.push_back(std::to_string(ai.family) + "/" + std::to_string(ai.socktype) + "/" +
                          std::to_string(ai.protocol) + " " + ai.address.to_string() +
                          (ai.canonname.empty() ? "" : " canon=" + ai.canonname));
        if (rc_out) *rc_out = 0;
    } catch (const DnsError& e) {
        if (rc_out) *rc_out = e.code();
    }
    return out;
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "numeric hosts and the hosts file match glibc") {
    // No DNS is involved in any of these, so glibc's getaddrinfo is the reference, result by
    // result: socket-type expansion, order, canonname, error codes.
    Resolver r;  // default settings: /etc/hosts, no query needed
    struct Case {
        const char* host;
        const char* service;
        int family, socktype, flags;
    };
    const Case cases[] = {
        {"127.0.0.1", nullptr, AF_UNSPEC, 0, 0},
        {"127.0.0.1", "80", AF_UNSPEC, 0, 0},
        {"127.0.0.1", "80", AF_INET, SOCK_STREAM, 0},
        {"127.1", "80", AF_UNSPEC, SOCK_DGRAM, 0},
        {"::1", "443", AF_UNSPEC, SOCK_STREAM, 0},
        {"::1", "443", AF_INET, SOCK_STREAM, 0},
        {"127.0.0.1", "443", AF_INET6, SOCK_STREAM, 0},
        {"127.0.0.1", "443", AF_INET6, SOCK_STREAM, AI_V4MAPPED},
        {"127.0.0.1", "http", AF_UNSPEC, 0, 0},
        {"127.0.0.1", "domain", AF_UNSPEC, 0, 0},
        {"127.0.0.1", "http", AF_UNSPEC, 0, AI_NUMERICSERV},
        {"127.0.0.1", "nosuchservice", AF_UNSPEC, 0, 0},
        {"127.0.0.1", "70000", AF_UNSPEC, 0, 0},
        {"127.0.0.1", nullptr, AF_UNSPEC, 0, AI_CANONNAME},
        {"localhost", "80", AF_UNSPEC, 0, 0},
        {"localhost", "80", AF_INET, SOCK_STREAM, AI_CANONNAME},
        {"LocalHost", "80", AF_INET, SOCK_STREAM, 0},
        {"localhost", nullptr, AF_UNSPEC, 0, AI_NUMERICHOST},
        {nullptr, "80", AF_UNSPEC, SOCK_STREAM, AI_PASSIVE},
        {nullptr, "80", AF_UNSPEC, SOCK_STREAM, 0},
        {nullptr, "80", AF_INET6, SOCK_DGRAM, AI_PASSIVE},
        {nullptr, nullptr, AF_UNSPEC, 0, 0},
        {"127.0.0.1", "80", AF_UNIX, 0, 0},
        {"127.0.0.1", "80", AF_UNSPEC, 77, 0},
        {"127.0.0.1", "80", AF_UNSPEC, 0, 0x40000},
        {nullptr, "80", AF_UNSPEC, 0, AI_CANONNAME},
    };
    for (const Case& c : cases) {
        AddrInfoHints h{c.family, c.socktype, 0, c.flags};
        int rc_libc = 0, rc_ours = 0;
        auto expect = libc_gai(c.host, c.service, h, &rc_libc);
        auto got = ours(r, c.host, c.service, h, &rc_ours);
        std::string desc = std::string("host=") + (c.host ? c.host : "NULL") +
                           " service=" + (c.service ? c.service : "NULL") +
                           " family=" + std::to_string(c.family) +
                           " socktype=" + std::to_string(c.socktype) +
                           " flags=" + std::to_string(c.flags) + "\n  glibc:";
        for (auto& e : expect) desc += " [" + e + "]";
        desc += "\n  ours: ";
        for (auto& e : got) desc += " [" + e + "]";
        INFO(desc);
        CHECK(rc_ours == rc_libc);
        CHECK(got == expect);
    }
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "numeric hosts never reach the server") {
    DnsServer dns;
    Resolver r(opts_for(dns));
    auto v = r.getaddrinfo("10.1.2.3", "80");
    CHECK(hosts_of(v) == std::vector<std::string>{"10.1.2.3"});
    CHECK(hosts_of(r.getaddrinfo("fd00::1", "80")) == std::vector<std::string>{"fd00::1"});
    CHECK(r.gethostbyname("10.1.2.3").addresses == std::vector<std::string>{"10.1.2.3"});
    CHECK(r.getnameinfo(cogent::Address("10.1.2.3", 80), NI_NUMERICHOST | NI_NUMERICSERV).host ==
          "10.1.2.3");
    CHECK(eai_of([&] {
              r.getaddrinfo("name.test", "80", {AF_UNSPEC, 0, 0, AI_NUMERICHOST});
          }) == EAI_NONAME);
    CHECK(dns.udp_queries() + dns.tcp_queries() == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "answers: A, AAAA, both, CNAME, canonname, hostent") {
    DnsServer dns;
    dns.add_a("www.test", "10.0.0.1");
    dns.add_a("www.test", "10.0.0.2");
    dns.add_aaaa("www.test", "fd00::10");
    dns.add_aaaa("six.test", "fd00::6");
    dns.add_cname("alias.test", "www.test");
    Resolver r(opts_for(dns));

    AddrInfoHints stream{AF_UNSPEC, SOCK_STREAM, 0, 0};
    // Both families; the ULA fd00::/7 sorts after IPv4 (RFC 6724 precedence 3 < 35), as glibc.
    CHECK(hosts_of(r.getaddrinfo("www.test", "80", stream)) ==
          std::vector<std::string>{"10.0.0.1", "10.0.0.2", "fd00::10"});
    CHECK(hosts_of(r.getaddrinfo("www.test", "80", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    CHECK(hosts_of(r.getaddrinfo("WWW.test.", "80", {AF_INET6, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"fd00::10"});
    auto v = r.getaddrinfo("www.test", "8080", {AF_INET, 0, 0, 0});
    REQUIRE(v.size() == 6);  // 2 addresses x (STREAM/TCP, DGRAM/UDP, RAW), as glibc
    CHECK(v[0].socktype == SOCK_STREAM);
    CHECK(v[0].protocol == IPPROTO_TCP);
    CHECK(v[1].socktype == SOCK_DGRAM);
    CHECK(v[2].socktype == SOCK_RAW);
    CHECK(v[0].address.port() == 8080);

    // A CNAME: the canonical name is the target's.
    auto c = r.getaddrinfo("alias.test", "80", {AF_INET, SOCK_STREAM, 0, AI_CANONNAME});
    REQUIRE(!c.empty());
    CHECK(c[0].canonname == "www.test");
    CHECK(hosts_of(c) == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    auto he = r.gethostbyname("alias.test");
    CHECK(he.name == "www.test");
    CHECK(std::find(he.aliases.begin(), he.aliases.end(), "alias.test") != he.aliases.end());
    CHECK(he.addresses == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    auto he6 = r.gethostbyname("www.test", AF_INET6);
    CHECK(he6.family == AF_INET6);
    CHECK(he6.addresses == std::vector<std::string>{"fd00::10"});

    // AF_INET6 + AI_V4MAPPED for a name with only A records.
    dns.add_a("four.test", "10.0.0.1");
    dns.add_a("four.test", "10.0.0.2");
    auto m = r.getaddrinfo("four.test", "80", {AF_INET6, SOCK_STREAM, 0, AI_V4MAPPED});
    CHECK(hosts_of(m) == std::vector<std::string>{"::ffff:10.0.0.1", "::ffff:10.0.0.2"});
    // A name with only AAAA: AF_INET has no data.
    CHECK(eai_of([&] {
              r.getaddrinfo("six.test", "80", {AF_INET, SOCK_STREAM, 0, 0});
          }) == EAI_NODATA);
    CHECK(hosts_of(r.getaddrinfo("six.test", "80", stream)) == std::vector<std::string>{"fd00::6"});
    // Made-up names.
    CHECK(hosts_of(r.getaddrinfo("x1.gen.test", "1", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{DnsServer::made_up_a("x1.gen.test")});
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "failures: each a clear DnsError naming the host") {
    DnsServer dns;
    dns.add_a("ok.test", "10.0.0.9");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("fail.test", DnsBehavior::servfail);
    dns.set_behavior("silent.test", DnsBehavior::drop);
    dns.set_behavior("bad.test", DnsBehavior::malformed);
    dns.set_behavior("refused.test", DnsBehavior::refused);
    Resolver r(opts_for(dns, 2s, 1));
    Resolver quick(opts_for(dns, 200ms, 1));  // for the silent server: a short timeout
    AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};

    auto check_error = [&](const char* name, int want, const char* words) {
        try {
            (std::string_view(name) == "silent.test" ? quick : r).getaddrinfo(name, "80", v4);
            FAIL("no error for " << name);
        } catch (const DnsError& e) {
            INFO(std::string(e.what()));
            CHECK(e.code() == want);
            CHECK(e.host() == name);
            CHECK(std::string(e.what()).find(name) != std::string::npos);
            CHECK(std::string(e.what()).find(words) != std::string::npos);
        }
    };
    check_error("nx.test", EAI_NONAME, "EAI_NONAME");
    check_error("unknown.test", EAI_NONAME, "Name or service not known");
    check_error("fail.test", EAI_AGAIN, "EAI_AGAIN");
    check_error("bad.test", EAI_FAIL, "EAI_FAIL");
    check_error("refused.test", EAI_AGAIN, "EAI_AGAIN");  // glibc: REFUSED is TRY_AGAIN
    auto t0 = std::chrono::steady_clock::now();
    check_error("silent.test", EAI_AGAIN, "Timeout");
    CHECK(cogent_test::ms_since(t0) < 3000);  // 200 ms x 1 try (c-ares may add a round)
    // The resolver still works afterwards.
    CHECK(hosts_of(r.getaddrinfo("ok.test", "80", v4)) == std::vector<std::string>{"10.0.0.9"});
    CHECK(eai_of([&] { r.gethostbyname("nx.test"); }) == EAI_NONAME);
    CHECK(eai_of([&] { r.gethostbyaddr("10.200.0.1"); }) == EAI_NONAME);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "failures do not disturb other lookups in flight") {
    DnsServer dns;
    dns.set_delay(100ms);
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("fail.test", DnsBehavior::servfail);
    dns.set_behavior("silent.test", DnsBehavior::drop);
    dns.set_behavior("bad.test", DnsBehavior::malformed);
    dns.set_behavior("tc.test", DnsBehavior::truncate);
    dns.add_a("tc.test", "10.7.7.7");
    Resolver r(opts_for(dns, 1s, 1));
    AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};
    std::vector<std::string> bad = {"nx.test", "fail.test", "silent.test", "bad.test"};
    std::vector<cogent::Greenlet<int>> failing;
    for (auto& n : bad)
        failing.push_back(
            cogent::spawn([&r, n, v4] { return eai_of([&] { r.getaddrinfo(n, "80", v4); }); }));
    std::vector<cogent::Greenlet<std::string>> good;
    for (int i = 0; i < 40; ++i)
        good.push_back(cogent::spawn([&r, i, v4] {
            return r.getaddrinfo("h" + std::to_string(i) + ".gen.test", "80", v4)
                .at(0)
                .address.host();
        }));
    auto tc =
        cogent::spawn([&] { return r.getaddrinfo("tc.test", "80", v4).at(0).address.host(); });
    for (int i = 0; i < 40; ++i)
        CHECK(good[std::size_t(i)].get() ==
              DnsServer::made_up_a("h" + std::to_string(i) + ".gen.test"));
    // The good ones (answered after 100 ms) did not wait for the silent one (1 s timeout).
    CHECK_FALSE(failing[2].ready());
    // Truncated over UDP: c-ares asked again over TCP and got the full answer.
    CHECK(tc.get() == "10.7.7.7");
    CHECK(dns.tcp_queries() >= 1);
    CHECK(failing[0].get() == EAI_NONAME);
    CHECK(failing[1].get() == EAI_AGAIN);
    CHECK(failing[2].get() == EAI_AGAIN);
    CHECK(failing[3].get() == EAI_FAIL);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "200 lookups with a 100 ms answer delay overlap") {
    DnsServer dns;
    dns.set_delay(100ms);
    Resolver r(opts_for(dns, 2s, 1));
    AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};
    auto t0 = std::chrono::steady_clock::now();
    std::vector<cogent::Greenlet<std::string>> gs;
    for (int i = 0; i < 200; ++i)
        gs.push_back(cogent::spawn([&r, i, v4] {
            return r.getaddrinfo("n" + std::to_string(i) + ".gen.test", "80", v4)
                .at(0)
                .address.host();
        }));
    for (int i = 0; i < 200; ++i)
        CHECK(gs[std::size_t(i)].get() ==
              DnsServer::made_up_a("n" + std::to_string(i) + ".gen.test"));
    double ms = cogent_test::ms_since(t0);
    MESSAGE("200 lookups, 100 ms each: " << ms << " ms");
    CHECK(ms >= 95);
    CHECK(ms < 10000);  // one by one would be 20 s
    CHECK(dns.udp_queries() == 200);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "killed and timed-out lookups are abandoned cleanly") {
    DnsServer dns;
    dns.set_delay("slow.test", 5s);  // answered long after the test
    dns.add_a("slow.test", "10.3.3.3");
    dns.set_delay("late.test", 300ms);
    dns.add_a("late.test", "10.3.3.4");
    dns.set_behavior("silent.test", DnsBehavior::drop);
    Resolver r(opts_for(dns, 400ms, 1));
    AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};
    // A Timeout interrupts the wait (well before the answer or the resolver's timeout).
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(cogent::with_timeout(50ms, [&] { r.getaddrinfo("slow.test", "80", v4); }),
                    cogent::Timeout);
    CHECK(cogent_test::ms_since(t0) < 3000);
    // A kill interrupts it too, and unwinds the greenlet.
    bool unwound = false, late_unwound = false;
    auto g = cogent::spawn([&] {
        cogent_test::SetOnDestroy s{&unwound};
        r.getaddrinfo("silent.test", "80", v4);
    });
    auto l = cogent::spawn([&] {
        cogent_test::SetOnDestroy s{&late_unwound};
        r.getaddrinfo("late.test", "80", v4);
    });
    cogent::sleep(20ms);
    g.kill();
    l.kill();
    CHECK(unwound);
    CHECK(late_unwound);
    // The late answer and the silent one's timeout (c-ares's own) come later and are dropped:
    // no callback into a dead greenlet. Meanwhile other lookups go on.
    auto h = r.getaddrinfo("x.gen.test", "80", v4);
    CHECK(h.at(0).address.host() == DnsServer::made_up_a("x.gen.test"));
    cogent::sleep(500ms);  // past the late answer and the silent one's timeout
    CHECK(r.getaddrinfo("late.test", "80", v4).at(0).address.host() == "10.3.3.4");
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a resolver dropped while a lookup waits") {
    DnsServer dns;
    dns.set_delay(100ms);
    auto r = std::make_shared<Resolver>(opts_for(dns));
    cogent::set_resolver(r);
    auto g = cogent::spawn([] {
        return cogent::getaddrinfo("k.gen.test", "80", {AF_INET, SOCK_STREAM, 0, 0})
            .at(0)
            .address.host();
    });
    cogent::sleep(10ms);
    cogent::set_resolver(nullptr);  // the default comes back on next use
    r.reset();                      // the lookup in flight keeps the channel
    CHECK(g.get() == DnsServer::made_up_a("k.gen.test"));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "reverse lookups: gethostbyaddr and getnameinfo") {
    DnsServer dns;
    dns.add_ptr("10.9.8.7", "named.test");
    dns.add_ptr("fd00::77", "six.named.test");
    Resolver r(opts_for(dns, 300ms, 1));
    auto he = r.gethostbyaddr("10.9.8.7");
    CHECK(he.name == "named.test");
    CHECK(he.addresses == std::vector<std::string>{"10.9.8.7"});
    CHECK(r.gethostbyaddr("fd00::77").name == "six.named.test");
    auto ni = r.getnameinfo(cogent::Address("10.9.8.7", 80));
    CHECK(ni.host == "named.test");
    CHECK(ni.service == "http");
    CHECK(r.getnameinfo(cogent::Address("10.9.8.7", 53), NI_DGRAM | NI_NUMERICHOST).service ==
          "domain");
    CHECK(r.getnameinfo(cogent::Address("10.9.8.7", 80), NI_NUMERICSERV).service == "80");
    // No PTR: the numeric host, or EAI_NONAME with NI_NAMEREQD.
    CHECK(r.getnameinfo(cogent::Address("10.9.8.6", 80)).host == "10.9.8.6");
    CHECK(eai_of([&] { r.getnameinfo(cogent::Address("10.9.8.6", 80), NI_NAMEREQD); }) ==
          EAI_NONAME);
    CHECK(eai_of([&] { r.getnameinfo(cogent::Address::unix_path("/tmp/x")); }) == EAI_FAMILY);
    // A server failure is not "no name": EAI_AGAIN, as glibc says TRY_AGAIN.
    dns.set_behavior(DnsServer::reverse_name("10.9.8.5"), DnsBehavior::servfail);
    CHECK(eai_of([&] { r.gethostbyaddr("10.9.8.5"); }) == EAI_AGAIN);
    CHECK(eai_of([&] { r.getnameinfo(cogent::Address("10.9.8.5", 80)); }) == EAI_AGAIN);
    // An IPv4-mapped address is looked up under in-addr.arpa.
    CHECK(r.gethostbyaddr("::ffff:10.9.8.7").name == "named.test");
    CHECK_THROWS_AS(r.gethostbyaddr("not-an-address"), std::invalid_argument);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "hosts file first: aliases, multi-line, reload") {
    DnsServer dns;
    dns.add_a("db.test", "10.0.0.99");  // DNS says otherwise: the hosts file wins
    TempFile hosts(
        "# test hosts\n10.1.1.1 db.test db alias-db  # comment\n"
        "fd00::1:1 db.test\n10.1.1.2 other.test db.test\n");
    Resolver::Options o = opts_for(dns);
    o.hosts_file = hosts.path;
    Resolver r(o);
    AddrInfoHints stream{AF_UNSPEC, SOCK_STREAM, 0, AI_CANONNAME};
    auto v = r.getaddrinfo("DB.test", "5432", stream);
    std::string got_hosts;
    for (auto& h : hosts_of(v)) got_hosts += h + " ";
    INFO(got_hosts);
    CHECK(hosts_of(v) == std::vector<std::string>{"10.1.1.1", "10.1.1.2", "fd00::1:1"});
    CHECK(v.at(0).canonname == "db.test");
    auto he = r.gethostbyname("alias-db");
    CHECK(he.name == "db.test");
    CHECK(he.addresses == std::vector<std::string>{"10.1.1.1"});
    CHECK(r.gethostbyaddr("10.1.1.1").name == "db.test");
    CHECK(r.getnameinfo(cogent::Address("10.1.1.2", 1)).host == "other.test");
    CHECK(dns.queries_for("db.test") == 0);
    // Changed on disk: read again.
    hosts.write("10.2.2.2 db.test\n");
    CHECK(hosts_of(r.getaddrinfo("db.test", "1", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"10.2.2.2"});
    // Not in the file: DNS.
    hosts.write("\n");
    CHECK(hosts_of(r.getaddrinfo("db.test", "1", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"10.0.0.99"});
    // localhost without a hosts-file line: loopback, never a query (RFC 6761).
    auto lh = r.getaddrinfo("localhost", "1", {AF_UNSPEC, SOCK_STREAM, 0, 0});
    CHECK(hosts_of(lh) == std::vector<std::string>{"::1", "127.0.0.1"});
    CHECK(hosts_of(r.getaddrinfo("api.localhost", "1", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"127.0.0.1"});
    CHECK(dns.queries_for("localhost") == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "resolv.conf: search domains and ndots") {
    DnsServer dns;
    dns.add_a("host1.corp.test", "10.5.0.1");
    dns.add_a("a.b.c", "10.5.0.2");
    dns.add_a("x.y.corp.test", "10.5.0.3");
    TempFile conf("search corp.test other.test\noptions ndots:2\n");
    Resolver::Options o = opts_for(dns);
    o.resolv_conf = conf.path;
    Resolver r(o);
    AddrInfoHints v4{AF_INET, SOCK_STREAM, 0, 0};
    // Fewer dots than ndots: the search list first.
    CHECK(hosts_of(r.getaddrinfo("host1", "1", v4)) == std::vector<std::string>{"10.5.0.1"});
    CHECK(hosts_of(r.getaddrinfo("x.y", "1", v4)) == std::vector<std::string>{"10.5.0.3"});
    auto log = dns.query_log();
    REQUIRE(!log.empty());
    CHECK(log.front() == "udp A host1.corp.test");
    // At least ndots dots: as is, first.
    dns.reset_counters();
    CHECK(hosts_of(r.getaddrinfo("a.b.c", "1", v4)) == std::vector<std::string>{"10.5.0.2"});
    CHECK(dns.query_log().front() == "udp A a.b.c");
    // A trailing dot: absolute, no search.
    dns.reset_counters();
    CHECK(eai_of([&] { r.getaddrinfo("host1.", "1", v4); }) == EAI_NONAME);
    CHECK(dns.queries_for("host1.corp.test") == 0);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "resolv.conf: nameserver lines") {
    // resolv.conf's nameserver lines have no port: the server must be on port 53, which only
    // root may bind (and which a local resolver may hold on 127.0.0.1). Use 127.0.0.153.
    std::unique_ptr<DnsServer> dns;
    try {
        dns = std::make_unique<DnsServer>("127.0.0.153", 53);
    } catch (const std::exception& e) {
        COGENT_SKIP("cannot serve on 127.0.0.153:53 (needs root): " << e.what());
    }
    dns->add_a("ns.test", "10.6.0.1");
    TempFile conf("# generated\nnameserver 127.0.0.153\noptions timeout:1 attempts:1\n");
    Resolver::Options o;
    o.resolv_conf = conf.path;
    o.hosts_file = "-";
    Resolver r(o);
    CHECK(hosts_of(r.getaddrinfo("ns.test", "1", {AF_INET, SOCK_STREAM, 0, 0})) ==
          std::vector<std::string>{"10.6.0.1"});
    CHECK(dns->queries_for("ns.test") == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "names in create_connection and Socket::connect") {
    DnsServer dns;
    dns.add_a("svc.test", "127.0.0.1");
    dns.add_a("multi.test", "127.0.0.1");
    auto r = std::make_shared<Resolver>(opts_for(dns));
    cogent::set_resolver(r);
    cogent::Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(cogent::Address("127.0.0.1", 0));
    listener.listen();
    const std::uint16_t port = listener.local_address().port();
    auto acceptor = cogent::spawn([&] {
        for (int i = 0; i < 2; ++i) {
            auto [c, from] = listener.accept();
            c.sendall("hi");
        }
    });
    {
        cogent::Socket s = cogent::create_connection("svc.test", port, 2s);
        char buf[2];
        CHECK(s.recv(buf, 2) == 2);
        cogent::Socket s2(AF_INET, SOCK_STREAM);
        s2.connect("multi.test", port);
        CHECK(s2.peer_address().to_string() == "127.0.0.1:" + std::to_string(port));
    }
    acceptor.join();
    try {
        cogent::create_connection("nx.test", port);
        FAIL("connected to an unknown name");
    } catch (const DnsError& e) {
        CHECK(e.code() == EAI_NONAME);
        CHECK(e.host() == "nx.test");
    }
    cogent::set_resolver(nullptr);
}

TEST_CASE("a forked child rebuilds its channel") {
    DnsServer dns;
    dns.set_delay(50ms);
    auto r = std::make_shared<Resolver>(opts_for(dns));
    cogent::set_resolver(r);
    // The parent has a channel (and a lookup in flight while it forks).
    CHECK(cogent::getaddrinfo("p.gen.test", "1").at(0).address.host() ==
          DnsServer::made_up_a("p.gen.test"));
    auto inflight = cogent::spawn([]() -> std::string {
        try {
            return cogent::getaddrinfo("q.gen.test", "1", {AF_INET, SOCK_STREAM, 0, 0})
                .at(0)
                .address.host();
        } catch (const DnsError& e) {
            // In the child, this inherited greenlet's query belonged to the parent's channel.
            return e.code() == EAI_AGAIN ? "reset" : e.what();
        }
    });
    cogent::sleep(5ms);
    cogent::Process child([] {
        auto v = cogent::getaddrinfo("c.gen.test", "1", {AF_INET, SOCK_STREAM, 0, 0});
        return v.at(0).address.host() == DnsServer::made_up_a("c.gen.test") ? 0 : 3;
    });
    CHECK(child.join(10s));
    CHECK(child.exitcode() == 0);
    CHECK(inflight.get() == DnsServer::made_up_a("q.gen.test"));
    CHECK(dns.queries_for("c.gen.test") >= 1);
    cogent::set_resolver(nullptr);
}

TEST_CASE("settings: COGENT_RESOLVER* and bad options") {
    setenv("COGENT_RESOLVER", "thread", 1);
    setenv("COGENT_RESOLVER_SERVERS", "127.0.0.1:5353, [::1]:53,10.0.0.1", 1);
    setenv("COGENT_RESOLVER_TIMEOUT", "0.25", 1);
    setenv("COGENT_RESOLVER_TRIES", "4", 1);
    auto o = Resolver::options_from_environment();
    CHECK(o.kind == Resolver::Kind::thread);
    CHECK(o.servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]:53", "10.0.0.1"});
    CHECK(o.timeout == std::chrono::milliseconds(250));
    CHECK(o.tries == 4);
    auto bad = [](const char* var, const char* value) {
        std::string old = std::getenv(var) ? std::getenv(var) : "";
        setenv(var, value, 1);
        try {
            Resolver::options_from_environment();
            FAIL(var << "=" << value << " accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find(var) != std::string::npos);
        }
        setenv(var, old.c_str(), 1);
    };
    bad("COGENT_RESOLVER", "magic");
    bad("COGENT_RESOLVER_SERVERS", "dns.google");
    bad("COGENT_RESOLVER_SERVERS", "127.0.0.1:99999");
    bad("COGENT_RESOLVER_SERVERS", " , ");
    bad("COGENT_RESOLVER_TIMEOUT", "-1");
    bad("COGENT_RESOLVER_TIMEOUT", "soon");
    bad("COGENT_RESOLVER_TRIES", "0");
    for (const char* v : {"COGENT_RESOLVER", "COGENT_RESOLVER_SERVERS", "COGENT_RESOLVER_TIMEOUT",
                          "COGENT_RESOLVER_TRIES"})
        unsetenv(v);
    Resolver::Options b;
    b.servers = {"not-an-ip"};
    CHECK_THROWS_AS(Resolver{b}, std::invalid_argument);
    b.servers = {};
    b.tries = 0;
    CHECK_THROWS_AS(Resolver{b}, std::invalid_argument);
    b.tries = {};
    b.timeout = cogent::Duration::zero();
    CHECK_THROWS_AS(Resolver{b}, std::invalid_argument);
}

TEST_CASE("the thread and block resolvers use libc") {
    for (auto kind : {Resolver::Kind::thread, Resolver::Kind::block}) {
        Resolver::Options o;
        o.kind = kind;
        Resolver r(o);
        AddrInfoHints h{AF_INET, SOCK_STREAM, 0, AI_CANONNAME};
        CHECK(ours(r, "localhost", "80", h) == libc_gai("localhost", "80", h));
        CHECK(r.gethostbyname("localhost").addresses == std::vector<std::string>{"127.0.0.1"});
        CHECK(r.gethostbyaddr("127.0.0.1").name == "localhost");
        CHECK(eai_of([&] {
                  r.getaddrinfo("x", "80", {AF_INET, SOCK_STREAM, 0, AI_NUMERICHOST});
              }) == EAI_NONAME);
    }
}

TEST_CASE("a resolver belongs to its thread") {
    DnsServer dns;
    Resolver r(opts_for(dns));
    std::string err;
    std::thread([&] {
        try {
            r.getaddrinfo("a.gen.test", "1");
        } catch (const std::logic_error& e) {
            err = e.what();
        }
    }).join();
    CHECK(err.find("another thread") != std::string::npos);
    // Each thread's get_resolver() is its own, and works.
    std::string other;
    std::thread([&] {
        auto mine = std::make_shared<Resolver>(opts_for(dns));
        cogent::set_resolver(mine);
        other = cogent::getaddrinfo("t.gen.test", "1").at(0).address.host();
    }).join();
    CHECK(other == DnsServer::made_up_a("t.gen.test"));
}

TEST_CASE("the resolve example") {
    DnsServer dns;
    dns.add_a("one.test", "10.0.0.1");
    dns.add_aaaa("v6only.test", "fd00::5");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    const std::string env =
        "env COGENT_RESOLVER_SERVERS=" + dns.server_spec() + " COGENT_RESOLVER_TIMEOUT=2 ";
    auto ok = cogent_test::run_child(env + cogent_test::child_path("COGENT_EXAMPLE_RESOLVE") +
                                     " one.test v6only.test 127.0.0.1 2>&1");
    CHECK(ok.status == 0);
    CHECK(ok.output == "one.test 10.0.0.1\nv6only.test fd00::5\n127.0.0.1 127.0.0.1\n");
    auto bad = cogent_test::run_child(env + cogent_test::child_path("COGENT_EXAMPLE_RESOLVE") +
                                      " one.test nx.test 2>&1");
    CHECK(WEXITSTATUS(bad.status) == 1);
    CHECK(bad.output.find("one.test 10.0.0.1\n") != std::string::npos);
    CHECK(bad.output.find("nx.test") != std::string::npos);
    CHECK(bad.output.find("EAI_NONAME") != std::string::npos);
}
