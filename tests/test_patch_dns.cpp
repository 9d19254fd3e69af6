// The DNS family of the monkey patch (patch/hooks_dns.cpp), linked in: the plain libc names
// (::getaddrinfo, ::gethostbyname...) called on greenlets are answered by the thread's resolver
// (here always pointed at the test DNS server, hosts file off), with glibc's contract; off a
// greenlet they are glibc's own. No name is ever sent to a real nameserver: names go to the
// test server, and whatever reaches glibc is numeric or "localhost".
#include <arpa/inet.h>
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <atomic>
#include <cerrno>
#include <cogent/cogent.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using cogent::Resolver;
using cogent_test::DnsBehavior;
using cogent_test::DnsServer;

namespace {

// libc's own definition of `name`, bypassing the shim: what an unpatched program calls.
template <class F>
F real(const char* name) {
    static void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    REQUIRE(libc != nullptr);
    void* p = dlsym(libc, name);
    REQUIRE(p != nullptr);
    return reinterpret_cast<F>(p);
}
using GaiFn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
using FreeFn = void (*)(addrinfo*);
using GniFn = int (*)(const sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int);
using GhbnFn = hostent* (*)(const char*);

// A test with the test DNS server as the thread's resolver (hosts file off: only it answers).
struct PatchDns : cogent_test::LeakCheck {
    DnsServer dns;
    PatchDns() {
        // Without the shim's dns family these names would go to glibc, and on to a real
        // nameserver: stop before that.
        REQUIRE(cogent::patch::is_patched(cogent::patch::dns));
        use(Resolver::Kind::ares);
    }
    ~PatchDns() { cogent::set_resolver(nullptr); }
    void use(Resolver::Kind kind) {
        Resolver::Options o;
        o.kind = kind;
        o.servers = {dns.server_spec()};
        o.timeout = 5s;  // no test here waits for it: only a lost reply (a loaded machine) would
        o.tries = 1;
        o.hosts_file = "-";
        cogent::set_resolver(std::make_shared<Resolver>(o));
    }
    std::size_t queries() const { return dns.udp_queries() + dns.tcp_queries(); }
};

// A list as "family/socktype/protocol address canon=..." lines.
std::vector<std::string> describe(const addrinfo* res) {
    std::vector<std::string> out;
    for (const addrinfo* p = res; p; p = p->ai_next) {
        auto a = cogent::Address::from_sockaddr(p->ai_addr, p->ai_addrlen);
        out.push_back(std::to_string(p->ai_family) + "/" + std::to_string(p->ai_socktype) + "/" +
                      std::to_string(p->ai_protocol) + " " + a.to_string() +
                      (p->ai_canonname ? std::string(" canon=") + p->ai_canonname : ""));
    }
    return out;
}

std::vector<std::string> describe(const std::vector<cogent::AddrInfo>& v) {
    std::vector<std::string> out;
    for (auto& ai : v)
        out.push_back(std::to_string(ai.family) + "/" + std::to_string(ai.socktype) + "/" +
                      std::to_string(ai.protocol) + " " + ai.address.to_string() +
                      (ai.canonname.empty() ? "" : " canon=" + ai.canonname));
    return out;
}

struct Gai {
    int rc = 0;
    std::vector<std::string> list;
};

// getaddrinfo through `fn` (the shim's ::getaddrinfo, or glibc's), freed with ::freeaddrinfo.
Gai gai_with(GaiFn fn, const char* host, const char* service, int family, int socktype, int flags,
             bool null_hints = false) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    Gai g;
    g.rc = fn(host, service, null_hints ? nullptr : &hints, &res);
    g.list = describe(res);
    if (g.rc == 0) ::freeaddrinfo(res);
    return g;
}
Gai gai(const char* host, const char* service, int family = AF_UNSPEC, int socktype = 0,
        int flags = 0) {
    return gai_with(&::getaddrinfo, host, service, family, socktype, flags);
}

// The resolver's own answer (or its error code), for comparison.
Gai ours(const char* host, const char* service, int family, int socktype, int flags) {
    Gai g;
    try {
        g.list = describe(cogent::getaddrinfo(host ? host : "", service ? service : "",
                                              {family, socktype, 0, flags}));
    } catch (const cogent::DnsError& e) {
        g.rc = e.code();
    }
    return g;
}

cogent::Address addr(const char* host, std::uint16_t port) { return cogent::Address(host, port); }

std::vector<std::string> addresses_of(const hostent* he) {
    std::vector<std::string> out;
    for (char** p = he->h_addr_list; *p; ++p) {
        char buf[INET6_ADDRSTRLEN] = "";
        inet_ntop(he->h_addrtype, *p, buf, sizeof buf);
        out.emplace_back(buf);
    }
    return out;
}

std::vector<std::string> aliases_of(const hostent* he) {
    std::vector<std::string> out;
    for (char** p = he->h_aliases; *p; ++p) out.emplace_back(*p);
    return out;
}

}  // namespace

TEST_CASE("patch.hpp reports the shim, with the dns family") {
    CHECK(cogent::patch::loaded());
    CHECK((cogent::patch::families() & cogent::patch::dns) != 0);
    CHECK(cogent::patch::is_patched(cogent::patch::dns));
    CHECK(cogent::patch::describe().find("dns") != std::string::npos);
}

TEST_CASE_FIXTURE(PatchDns, "200 greenlets in ::getaddrinfo against a 100 ms delay overlap") {
    dns.set_delay(100ms);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<cogent::Greenlet<std::string>> gs;
    for (int i = 0; i < 200; ++i)
        gs.push_back(cogent::spawn([i] {
            std::string name = "p" + std::to_string(i) + ".gen.test";
            addrinfo hints{};
            hints.ai_family = AF_INET;
            hints.ai_socktype = SOCK_STREAM;
            addrinfo* res = nullptr;
            int rc = ::getaddrinfo(name.c_str(), "80", &hints, &res);
            if (rc != 0) return std::string("error ") + gai_strerror(rc);
            std::string out = cogent::Address::from_sockaddr(res->ai_addr, res->ai_addrlen).host();
            ::freeaddrinfo(res);
            return out;
        }));
    for (int i = 0; i < 200; ++i)
        CHECK(gs[std::size_t(i)].get() ==
              DnsServer::made_up_a("p" + std::to_string(i) + ".gen.test"));
    const double ms = cogent_test::ms_since(t0);
    MESSAGE("200 patched getaddrinfo calls, 100 ms answer delay: " << ms << " ms");
    CHECK(ms >= 95);
    CHECK(ms < 10000);  // one after another (glibc in one thread) would take 20 s
    CHECK(dns.udp_queries() == 200);
}

TEST_CASE_FIXTURE(PatchDns, "::getaddrinfo answers what the resolver answers, in glibc's layout") {
    dns.add_a("www.test", "10.0.0.1");
    dns.add_a("www.test", "10.0.0.2");
    dns.add_aaaa("www.test", "fd00::10");
    dns.add_cname("alias.test", "www.test");
    struct Case {
        const char* host;
        const char* service;
        int family, socktype, flags;
    };
    const Case cases[] = {
        {"www.test", "80", AF_UNSPEC, 0, 0},
        {"www.test", "http", AF_INET, SOCK_STREAM, 0},
        {"www.test", nullptr, AF_INET6, SOCK_DGRAM, 0},
        {"alias.test", "443", AF_UNSPEC, SOCK_STREAM, AI_CANONNAME},
        {"alias.test", "53", AF_INET6, 0, AI_V4MAPPED | AI_ALL},
        {"www.test", "*", AF_INET, 0, AI_NUMERICSERV},
        {"10.1.2.3", "80", AF_UNSPEC, 0, AI_CANONNAME},
        {nullptr, "8080", AF_UNSPEC, SOCK_STREAM, AI_PASSIVE},
        {"*", "8080", AF_INET, SOCK_STREAM, 0},
    };
    auto g = cogent::spawn([&] {
        for (const Case& c : cases) {
            INFO("host=" << (c.host ? c.host : "NULL") << " service="
                         << (c.service ? c.service : "NULL") << " family=" << c.family
                         << " socktype=" << c.socktype << " flags=" << c.flags);
            Gai got = gai(c.host, c.service, c.family, c.socktype, c.flags);
            const char* h = c.host && std::string(c.host) == "*" ? nullptr : c.host;
            const char* s = c.service && std::string(c.service) == "*" ? nullptr : c.service;
            Gai want = ours(h, s, c.family, c.socktype, c.flags);
            CHECK(got.rc == 0);
            CHECK(got.rc == want.rc);
            CHECK(got.list == want.list);
            CHECK(!got.list.empty());
        }
        // NULL hints are glibc's defaults: AF_UNSPEC, AI_V4MAPPED | AI_ADDRCONFIG.
        Gai got = gai_with(&::getaddrinfo, "www.test", "80", 0, 0, 0, true);
        CHECK(got.rc == 0);
        CHECK(got.list == ours("www.test", "80", AF_UNSPEC, 0, AI_V4MAPPED | AI_ADDRCONFIG).list);

        // The layout glibc's freeaddrinfo expects: the sockaddr in the node's own block, right
        // after it; ai_canonname (first node only) a string of its own.
        addrinfo hints{};
        hints.ai_flags = AI_CANONNAME;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        REQUIRE(::getaddrinfo("alias.test", "80", &hints, &res) == 0);
        CHECK(res->ai_canonname != nullptr);
        CHECK(std::string(res->ai_canonname ? res->ai_canonname : "") == "www.test");
        int n = 0;
        for (addrinfo* p = res; p; p = p->ai_next, ++n) {
            CHECK(reinterpret_cast<char*>(p->ai_addr) == reinterpret_cast<char*>(p + 1));
            CHECK(p->ai_addrlen ==
                  (p->ai_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in)));
            CHECK(p->ai_addr->sa_family == p->ai_family);
            if (n > 0) CHECK(p->ai_canonname == nullptr);
        }
        CHECK(n == 3);
        // Freed by glibc's own freeaddrinfo (under ASan: any mismatch is reported).
        real<FreeFn>("freeaddrinfo")(res);
    });
    g.get();
}

TEST_CASE_FIXTURE(PatchDns, "lists of either origin are freed by either freeaddrinfo") {
    dns.add_a("free.test", "10.5.5.5");
    addrinfo hints{};
    hints.ai_flags = AI_CANONNAME;
    // From a thread without a hub: glibc's own list (numeric: no lookup), freed in a greenlet.
    addrinfo* from_glibc = nullptr;
    int rc_thread = -1;
    std::thread([&] { rc_thread = ::getaddrinfo("127.0.0.1", "80", &hints, &from_glibc); }).join();
    REQUIRE(rc_thread == 0);
    addrinfo* from_real = nullptr;
    REQUIRE(real<GaiFn>("getaddrinfo")("::1", "443", &hints, &from_real) == 0);
    auto g = cogent::spawn([&] {
        ::freeaddrinfo(from_glibc);
        ::freeaddrinfo(from_real);
        addrinfo* ours1 = nullptr;
        addrinfo* ours2 = nullptr;
        REQUIRE(::getaddrinfo("free.test", "80", &hints, &ours1) == 0);
        REQUIRE(::getaddrinfo("free.test", nullptr, &hints, &ours2) == 0);
        CHECK(describe(ours1).at(0) == "2/1/6 10.5.5.5:80 canon=free.test");
        ::freeaddrinfo(ours1);
        real<FreeFn>("freeaddrinfo")(ours2);
        ::freeaddrinfo(nullptr);  // as glibc: nothing
    });
    g.get();
    CHECK(dns.queries_for("free.test") >= 2);
}

TEST_CASE_FIXTURE(PatchDns, "outside a greenlet the calls are glibc's own") {
    // A thread that never touched cogent has no hub: every call goes to glibc. Only numeric
    // names and localhost here, which glibc answers without DNS.
    std::vector<std::string> errors;
    std::thread([&] {
        auto expect_same = [&](const char* host, const char* service, int family, int flags) {
            Gai a = gai(host, service, family, 0, flags);
            Gai b = gai_with(real<GaiFn>("getaddrinfo"), host, service, family, 0, flags);
            if (a.rc != b.rc || a.list != b.list)
                errors.push_back(std::string("getaddrinfo ") + (host ? host : "NULL"));
        };
        expect_same("127.0.0.1", "80", AF_UNSPEC, 0);
        expect_same("::1", "http", AF_UNSPEC, AI_CANONNAME);
        expect_same("localhost", "80", AF_INET, AI_CANONNAME);
        expect_same(nullptr, "80", AF_UNSPEC, AI_PASSIVE);
        // gethostbyname's static entry is glibc's own (the shim's is a different one).
        hostent* a = ::gethostbyname("127.0.0.1");
        hostent* b = real<GhbnFn>("gethostbyname")("127.0.0.2");
        if (!a || a != b) errors.push_back("gethostbyname: not glibc's static entry");
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(80);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        char h1[64], s1[32], h2[64], s2[32];
        int r1 = ::getnameinfo(reinterpret_cast<sockaddr*>(&sin), sizeof sin, h1, sizeof h1, s1,
                               sizeof s1, NI_NUMERICHOST);
        int r2 = real<GniFn>("getnameinfo")(reinterpret_cast<sockaddr*>(&sin), sizeof sin, h2,
                                            sizeof h2, s2, sizeof s2, NI_NUMERICHOST);
        if (r1 != 0 || r1 != r2 || std::string(h1) != h2 || std::string(s1) != s2)
            errors.push_back("getnameinfo");
    }).join();
    CHECK(errors.empty());
    for (auto& e : errors) MESSAGE(e);
    CHECK(queries() == 0);

    // On a greenlet, the shim's static entry answers instead.
    hostent* glibc_entry = real<GhbnFn>("gethostbyname")("127.0.0.2");
    auto g = cogent::spawn([&] {
        hostent* mine = ::gethostbyname("127.0.0.1");
        REQUIRE(mine != nullptr);
        CHECK(mine != glibc_entry);
        CHECK(addresses_of(mine) == std::vector<std::string>{"127.0.0.1"});
    });
    g.get();
    CHECK(queries() == 0);  // numeric: no query either
}

TEST_CASE_FIXTURE(PatchDns, "getaddrinfo errors: DNS failures and bad arguments") {
    dns.add_a("v4only.test", "10.4.4.4");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("sf.test", DnsBehavior::servfail);
    dns.set_behavior("bad.test", DnsBehavior::malformed);
    auto g = cogent::spawn([&] {
        CHECK(gai("nx.test", "80").rc == EAI_NONAME);
        CHECK(gai("sf.test", "80").rc == EAI_AGAIN);
        CHECK(gai("bad.test", "80").rc == EAI_FAIL);
        CHECK(gai("v4only.test", "80", AF_INET6).rc ==
              ours("v4only.test", "80", AF_INET6, 0, 0).rc);
        CHECK(gai("v4only.test", "80", AF_INET6).rc != 0);
        // AI_V4MAPPED: the A record, mapped.
        CHECK(gai("v4only.test", "80", AF_INET6, SOCK_STREAM, AI_V4MAPPED).list ==
              std::vector<std::string>{"10/1/6 [::ffff:10.4.4.4]:80"});
        CHECK(gai("no.such.test", "80", AF_UNSPEC, 0, AI_NUMERICHOST).rc == EAI_NONAME);
        CHECK(gai("", "80").rc == EAI_NONAME);
        CHECK(gai("", "80", 99).rc == EAI_FAMILY);
        CHECK(gai("www.test", "80", AF_UNSPEC, 0, AI_CANONNAME | 0x800).rc == EAI_BADFLAGS);
    });
    g.get();

    // The argument checks need no DNS: glibc's own getaddrinfo is the reference, code by code.
    struct Case {
        const char* host;
        const char* service;
        int family, socktype, flags;
    };
    const Case cases[] = {
        {nullptr, nullptr, AF_UNSPEC, 0, 0},
        {nullptr, nullptr, 99, 0, AI_CANONNAME},  // EAI_NONAME comes first
        {"*", "*", AF_UNSPEC, 0, 0},
        {nullptr, "80", AF_UNSPEC, 0, AI_CANONNAME},
        {"*", "80", AF_UNSPEC, 0, AI_CANONNAME},
        {"127.0.0.1", "80", AF_UNSPEC, 0, 0x800},
        {"127.0.0.1", "80", AF_UNSPEC, 0, 0x10000},
        {"127.0.0.1", "80", AF_UNSPEC, 0, AI_IDN | AI_CANONIDN},
        {"127.0.0.1", "80", 99, 0, 0},
        {"127.0.0.1", "80", AF_UNSPEC, 99, 0},
        {"127.0.0.1", "nosuchservice", AF_UNSPEC, 0, 0},
        {"127.0.0.1", "http", AF_UNSPEC, 0, AI_NUMERICSERV},
        {"127.0.0.1", "", AF_INET, 0, 0},
        {"127.0.0.1", "*", AF_INET, SOCK_DGRAM, 0},
        {"::1", "80", AF_INET, 0, 0},
        {"127.0.0.1", "80", AF_INET6, 0, 0},
        {"127.0.0.1", "80", AF_INET6, SOCK_STREAM, AI_V4MAPPED},
        {"127.0.0.1", nullptr, AF_UNSPEC, 0, AI_CANONNAME},
        {"localhost", "80", AF_UNSPEC, 0, AI_NUMERICHOST},
        {nullptr, "80", AF_UNSPEC, 0, AI_PASSIVE},
        {nullptr, "http", AF_INET6, SOCK_STREAM, 0},
    };
    auto g2 = cogent::spawn([&] {
        for (const Case& c : cases) {
            Gai got = gai(c.host, c.service, c.family, c.socktype, c.flags);
            Gai want = gai_with(real<GaiFn>("getaddrinfo"), c.host, c.service, c.family, c.socktype,
                                c.flags);
            INFO("host=" << (c.host ? c.host : "NULL") << " service="
                         << (c.service ? c.service : "NULL") << " family=" << c.family
                         << " socktype=" << c.socktype << " flags=" << c.flags);
            CHECK(got.rc == want.rc);
            CHECK(got.list == want.list);
        }
        // NULL hints, numeric: the same as glibc's defaults.
        Gai got = gai_with(&::getaddrinfo, "127.0.0.1", "80", 0, 0, 0, true);
        Gai want = gai_with(real<GaiFn>("getaddrinfo"), "127.0.0.1", "80", 0, 0, 0, true);
        CHECK(got.rc == want.rc);
        CHECK(got.list == want.list);
    });
    g2.get();
    CHECK(dns.queries_for("no.such.test") == 0);
}

TEST_CASE_FIXTURE(PatchDns, "getnameinfo: names, buffers, flags and errors") {
    dns.add_ptr("10.9.8.7", "named.test");
    dns.add_ptr("fd00::77", "six.named.test");
    auto g = cogent::spawn([&] {
        auto a = addr("10.9.8.7", 80);
        char host[NI_MAXHOST], serv[NI_MAXSERV];
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, sizeof host, serv, sizeof serv,
                            0) == 0);
        CHECK(std::string(host) == "named.test");
        CHECK(std::string(serv) == "http");
        auto a6 = addr("fd00::77", 443);
        CHECK(::getnameinfo(a6.sockaddr_ptr(), a6.length(), host, sizeof host, serv, sizeof serv,
                            NI_NUMERICSERV) == 0);
        CHECK(std::string(host) == "six.named.test");
        CHECK(std::string(serv) == "443");
        // NI_IDN is accepted (names come back as DNS has them).
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, sizeof host, nullptr, 0, NI_IDN) ==
              0);
        CHECK(std::string(host) == "named.test");

        // Buffers: exactly big enough, one byte short (EAI_OVERFLOW; the host is checked
        // first, and a service overflow leaves the host written).
        const socklen_t fit = sizeof "named.test";
        std::memset(host, 'X', sizeof host);
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, fit, nullptr, 0, 0) == 0);
        CHECK(std::string(host) == "named.test");
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, fit - 1, nullptr, 0, 0) ==
              EAI_OVERFLOW);
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, sizeof host, serv, 4, 0) ==
              EAI_OVERFLOW);
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, sizeof host, serv, 5, 0) == 0);
        CHECK(std::string(serv) == "http");

        // No host wanted (NULL, or length 0): no reverse lookup at all.
        dns.reset_counters();
        std::strcpy(host, "untouched");
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), nullptr, 0, serv, sizeof serv, 0) == 0);
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, 0, serv, sizeof serv,
                            NI_NAMEREQD) == 0);
        CHECK(std::string(host) == "untouched");
        CHECK(std::string(serv) == "http");
        CHECK(queries() == 0);

        // No PTR: the numeric host, or EAI_NONAME with NI_NAMEREQD.
        auto none = addr("10.9.8.6", 80);
        CHECK(::getnameinfo(none.sockaddr_ptr(), none.length(), host, sizeof host, nullptr, 0, 0) ==
              0);
        CHECK(std::string(host) == "10.9.8.6");
        CHECK(::getnameinfo(none.sockaddr_ptr(), none.length(), host, sizeof host, nullptr, 0,
                            NI_NAMEREQD) == EAI_NONAME);
    });
    g.get();
    CHECK(dns.queries_for(DnsServer::reverse_name("10.9.8.6")) >= 1);
    dns.reset_counters();

    // The argument checks, against glibc's own (numeric hosts only: no lookup either side).
    struct Case {
        sockaddr_storage ss;
        socklen_t salen;
        bool host, serv;
        socklen_t hostlen, servlen;
        int flags;
    };
    auto v4 = [](socklen_t len, bool host, bool serv, socklen_t hl, socklen_t sl, int flags) {
        Case c{};
        auto a = addr("192.0.2.1", 8080);
        std::memcpy(&c.ss, a.sockaddr_ptr(), a.length());
        c.salen = len;
        c.host = host;
        c.serv = serv;
        c.hostlen = hl;
        c.servlen = sl;
        c.flags = flags | NI_NUMERICHOST;
        return c;
    };
    std::vector<Case> cases = {
        v4(sizeof(sockaddr_in), true, true, 64, 32, 0),
        v4(sizeof(sockaddr_in), true, true, 64, 32, NI_NUMERICSERV | NI_DGRAM),
        v4(sizeof(sockaddr_in) + 8, true, true, 64, 32, 0),
        v4(sizeof(sockaddr_in) - 1, true, true, 64, 32, 0),
        v4(1, true, true, 64, 32, 0),
        v4(0, true, true, 64, 32, 0),
        v4(sizeof(sockaddr_in), true, true, 9, 32, 0),
        v4(sizeof(sockaddr_in), true, true, 10, 32, 0),
        v4(sizeof(sockaddr_in), true, true, 64, 4, NI_NUMERICSERV),
        v4(sizeof(sockaddr_in), false, false, 0, 0, NI_NAMEREQD),
        v4(sizeof(sockaddr_in), true, true, 0, 0, NI_NAMEREQD),
        v4(sizeof(sockaddr_in), true, true, 64, 32, 0x4000),
        v4(sizeof(sockaddr_in), true, true, 64, 32, 0x100),
        v4(sizeof(sockaddr_in), true, true, 64, 32, NI_IDN),
    };
    Case bad_family = v4(sizeof(sockaddr_in), true, true, 64, 32, 0);
    bad_family.ss.ss_family = 99;
    cases.push_back(bad_family);
    Case six{};
    auto a6 = addr("2001:db8::1", 443);
    std::memcpy(&six.ss, a6.sockaddr_ptr(), a6.length());
    six.salen = a6.length();
    six.host = six.serv = true;
    six.hostlen = 64;
    six.servlen = 32;
    six.flags = NI_NUMERICHOST;
    cases.push_back(six);
    six.salen = a6.length() - 1;
    cases.push_back(six);
    Case un{};
    auto* sun = reinterpret_cast<sockaddr_un*>(&un.ss);
    sun->sun_family = AF_UNIX;
    std::strcpy(sun->sun_path, "/tmp/patch_dns.sock");
    un.salen = sizeof(sockaddr_un);
    un.host = un.serv = true;
    un.hostlen = 64;
    un.servlen = 64;
    un.flags = NI_NUMERICHOST;
    cases.push_back(un);
    auto g2 = cogent::spawn([&] {
        for (const Case& c : cases) {
            char h1[64] = "-", s1[64] = "-", h2[64] = "-", s2[64] = "-";
            auto* sa = reinterpret_cast<const sockaddr*>(&c.ss);
            int r1 = ::getnameinfo(sa, c.salen, c.host ? h1 : nullptr, c.hostlen,
                                   c.serv ? s1 : nullptr, c.servlen, c.flags);
            int r2 = real<GniFn>("getnameinfo")(sa, c.salen, c.host ? h2 : nullptr, c.hostlen,
                                                c.serv ? s2 : nullptr, c.servlen, c.flags);
            INFO("family=" << c.ss.ss_family << " salen=" << c.salen << " hostlen=" << c.hostlen
                           << " servlen=" << c.servlen << " flags=" << c.flags);
            CHECK(r1 == r2);
            if (r1 == 0) {
                CHECK(std::string(h1) == h2);
                CHECK(std::string(s1) == s2);
            }
        }
    });
    g2.get();
    CHECK(queries() == 0);
}

TEST_CASE_FIXTURE(PatchDns, "gethostbyname, gethostbyname2: entries and h_errno") {
    dns.add_a("www.test", "10.0.0.1");
    dns.add_a("www.test", "10.0.0.2");
    dns.add_aaaa("www.test", "fd00::10");
    dns.add_cname("alias.test", "www.test");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("sf.test", DnsBehavior::servfail);
    dns.set_behavior("bad.test", DnsBehavior::malformed);
    auto g = cogent::spawn([&] {
        hostent* he = ::gethostbyname("alias.test");
        REQUIRE(he != nullptr);
        cogent::HostEnt want = cogent::gethostbyname("alias.test");
        CHECK(std::string(he->h_name) == want.name);
        CHECK(std::string(he->h_name) == "www.test");
        CHECK(aliases_of(he) == want.aliases);
        CHECK(addresses_of(he) == want.addresses);
        CHECK(addresses_of(he) == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
        CHECK(he->h_addrtype == AF_INET);
        CHECK(he->h_length == 4);

        he = ::gethostbyname2("www.test", AF_INET6);
        REQUIRE(he != nullptr);
        CHECK(he->h_addrtype == AF_INET6);
        CHECK(he->h_length == 16);
        CHECK(addresses_of(he) == std::vector<std::string>{"fd00::10"});

        // The static entry is the thread's one: the next call reuses it.
        hostent* first = ::gethostbyname("www.test");
        hostent* second = ::gethostbyname("10.1.2.3");
        CHECK(first == second);
        REQUIRE(second != nullptr);
        CHECK(std::string(second->h_name) == "10.1.2.3");
        CHECK(aliases_of(second).empty());

        auto herr_of = [](const char* name, int af) {
            h_errno = 12345;
            hostent* r = ::gethostbyname2(name, af);
            return r ? 0 : h_errno;
        };
        CHECK(herr_of("nx.test", AF_INET) == HOST_NOT_FOUND);
        CHECK(herr_of("sf.test", AF_INET) == TRY_AGAIN);
        CHECK(herr_of("bad.test", AF_INET) == NO_RECOVERY);
        dns.add_a("v4only.test", "10.4.4.4");
        CHECK(herr_of("v4only.test", AF_INET6) == NO_DATA);
        CHECK(herr_of("", AF_INET) == NO_RECOVERY);             // as glibc
        CHECK(herr_of("1.2.3.4", AF_INET6) == HOST_NOT_FOUND);  // as glibc
        CHECK(herr_of("::1", AF_INET) == HOST_NOT_FOUND);
    });
    g.get();
    CHECK(dns.queries_for("nx.test") >= 1);

    // Numeric names against glibc's own entries.
    for (const char* name : {"10.1.2.3", "1", "127.1", "::1", "fd00::5"}) {
        const int af = std::strchr(name, ':') ? AF_INET6 : AF_INET;
        std::vector<std::string> want;
        std::string want_name;
        hostent* r = real<hostent* (*)(const char*, int)>("gethostbyname2")(name, af);
        REQUIRE(r != nullptr);
        want = addresses_of(r);
        want_name = r->h_name;
        auto g2 = cogent::spawn([&] {
            hostent* mine = ::gethostbyname2(name, af);
            REQUIRE(mine != nullptr);
            CHECK(addresses_of(mine) == want);
            CHECK(std::string(mine->h_name) == want_name);
            CHECK(aliases_of(mine).empty());
        });
        g2.get();
    }
}

TEST_CASE_FIXTURE(PatchDns, "the _r functions: caller's buffer, ERANGE, return codes") {
    dns.add_a("www.test", "10.0.0.1");
    dns.add_a("www.test", "10.0.0.2");
    dns.add_cname("alias.test", "www.test");
    dns.set_behavior("nx.test", DnsBehavior::nxdomain);
    dns.set_behavior("sf.test", DnsBehavior::servfail);
    dns.add_ptr("10.9.8.7", "named.test");
    auto g = cogent::spawn([&] {
        alignas(8) char big[1024];
        hostent he{};
        hostent* result = reinterpret_cast<hostent*>(1);
        int herr = 12345;
        // Too small: ERANGE, NETDB_INTERNAL, errno ERANGE, *result NULL.
        errno = 0;
        CHECK(::gethostbyname_r("alias.test", &he, big, 16, &result, &herr) == ERANGE);
        CHECK(result == nullptr);
        CHECK(herr == NETDB_INTERNAL);
        CHECK(errno == ERANGE);
        CHECK(::gethostbyname2_r("10.1.2.3", AF_INET, &he, nullptr, 0, &result, &herr) == ERANGE);
        // Big enough, and at an odd address: the pointer arrays are aligned inside it.
        char* odd = big + 1;
        CHECK(::gethostbyname_r("alias.test", &he, odd, sizeof big - 1, &result, &herr) == 0);
        REQUIRE(result == &he);
        CHECK(std::string(he.h_name) == "www.test");
        CHECK(aliases_of(&he) == std::vector<std::string>{"alias.test"});
        CHECK(addresses_of(&he) == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
        CHECK(reinterpret_cast<std::uintptr_t>(he.h_addr_list) % alignof(char*) == 0);
        CHECK(reinterpret_cast<std::uintptr_t>(he.h_aliases) % alignof(char*) == 0);
        auto inside = [&](const void* p) { return p >= odd && p < big + sizeof big; };
        CHECK(inside(he.h_name));
        CHECK(inside(he.h_addr_list));
        CHECK(inside(he.h_addr_list[0]));
        CHECK(inside(he.h_aliases[0]));

        // The smallest buffer that works, found by growing: every smaller one is ERANGE.
        std::size_t need = 0;
        for (std::size_t n = 1; n < sizeof big && !need; ++n)
            if (::gethostbyname_r("10.1.2.3", &he, big, n, &result, &herr) == 0) need = n;
        CHECK(need > 0);
        CHECK(need <= 8 * 4 + 4 + sizeof "10.1.2.3");

        // Not found: 0 with *result NULL; TRY_AGAIN: EAGAIN.
        result = &he;
        CHECK(::gethostbyname_r("nx.test", &he, big, sizeof big, &result, &herr) == 0);
        CHECK(result == nullptr);
        CHECK(herr == HOST_NOT_FOUND);
        errno = 0;
        CHECK(::gethostbyname2_r("sf.test", AF_INET, &he, big, sizeof big, &result, &herr) ==
              EAGAIN);
        CHECK(herr == TRY_AGAIN);
        CHECK(errno == EAGAIN);
        CHECK(result == nullptr);

        // gethostbyaddr_r and gethostbyaddr.
        in_addr a{};
        inet_pton(AF_INET, "10.9.8.7", &a);
        CHECK(::gethostbyaddr_r(&a, sizeof a, AF_INET, &he, big, sizeof big, &result, &herr) == 0);
        REQUIRE(result == &he);
        CHECK(std::string(he.h_name) == "named.test");
        CHECK(addresses_of(&he) == std::vector<std::string>{"10.9.8.7"});
        CHECK(::gethostbyaddr_r(&a, sizeof a, AF_INET, &he, big, 8, &result, &herr) == ERANGE);
        CHECK(herr == NETDB_INTERNAL);
        hostent* s = ::gethostbyaddr(&a, sizeof a, AF_INET);
        REQUIRE(s != nullptr);
        CHECK(std::string(s->h_name) == "named.test");
        CHECK(s->h_length == 4);
        in_addr none{};
        inet_pton(AF_INET, "10.9.8.6", &none);
        h_errno = 0;
        CHECK(::gethostbyaddr(&none, sizeof none, AF_INET) == nullptr);
        CHECK(h_errno == HOST_NOT_FOUND);
        CHECK(::gethostbyaddr_r(&none, sizeof none, AF_INET, &he, big, sizeof big, &result,
                                &herr) == 0);
        CHECK(result == nullptr);
        CHECK(herr == HOST_NOT_FOUND);
    });
    g.get();
    CHECK(dns.queries_for(DnsServer::reverse_name("10.9.8.7")) >= 1);

    // gethostbyaddr's argument checks, against glibc's (no lookup on either side).
    auto g2 = cogent::spawn([&] {
        using AddrR =
            int (*)(const void*, socklen_t, int, hostent*, char*, size_t, hostent**, int*);
        unsigned char zero[16] = {};
        unsigned char v4[16] = {10, 1, 2, 3};
        struct Case {
            const void* addr;
            socklen_t len;
            int type;
        };
        const Case cases[] = {
            {zero, 16, AF_INET6}, {zero, 16, AF_INET}, {v4, 3, AF_INET},
            {v4, 4, AF_UNIX},     {v4, 8, AF_INET6},
        };
        for (const Case& c : cases) {
            char b1[512], b2[512];
            hostent h1{}, h2{};
            hostent *r1 = nullptr, *r2 = nullptr;
            int e1 = 0, e2 = 0;
            errno = 0;
            int rc1 = ::gethostbyaddr_r(c.addr, c.len, c.type, &h1, b1, sizeof b1, &r1, &e1);
            int errno1 = errno;
            errno = 0;
            int rc2 =
                real<AddrR>("gethostbyaddr_r")(c.addr, c.len, c.type, &h2, b2, sizeof b2, &r2, &e2);
            int errno2 = errno;
            INFO("len=" << c.len << " type=" << c.type);
            CHECK(rc1 == rc2);
            CHECK(e1 == e2);
            CHECK(errno1 == errno2);
            CHECK(r1 == nullptr);
            CHECK(r2 == nullptr);
            h_errno = 0;
            CHECK(::gethostbyaddr(c.addr, c.len, c.type) == nullptr);
            CHECK(h_errno == e2);
        }
    });
    g2.get();
}

TEST_CASE_FIXTURE(PatchDns, "a kill or a Timeout leaves a patched lookup; other greenlets run") {
    dns.set_delay("slow.test", 5000ms);  // answered after the test: never waited for
    dns.add_a("slow.test", "10.3.3.3");
    auto slow = [] {
        addrinfo* res = nullptr;
        int rc = ::getaddrinfo("slow.test", "80", nullptr, &res);
        if (rc == 0) ::freeaddrinfo(res);
        return rc;
    };
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(cogent::with_timeout(50ms, slow), cogent::Timeout);
    CHECK_THROWS_AS(cogent::with_timeout(50ms, [] { return ::gethostbyname("slow.test"); }),
                    cogent::Timeout);
    CHECK(cogent_test::ms_since(t0) < 3000);

    bool unwound = false, returned = false;
    auto g = cogent::spawn([&] {
        cogent_test::SetOnDestroy s{&unwound};
        hostent he{};
        hostent* result = nullptr;
        char buf[512];
        int herr = 0;
        ::gethostbyname_r("slow.test", &he, buf, sizeof buf, &result, &herr);
        returned = true;
    });
    int ticks = 0;
    auto ticker = cogent::spawn([&] {
        for (int i = 0; i < 5; ++i) {
            cogent::sleep(5ms);
            ++ticks;
        }
    });
    // The thread was not blocked by the lookup in flight: the ticker ran to its end meanwhile.
    ticker.join();
    CHECK(ticks == 5);
    CHECK_FALSE(returned);
    t0 = std::chrono::steady_clock::now();
    g.kill();
    CHECK(g.dead());
    CHECK(unwound);
    CHECK_FALSE(returned);
    CHECK(cogent_test::ms_since(t0) < 3000);
}

TEST_CASE_FIXTURE(PatchDns, "resolver errors become codes; block and thread kinds use libc") {
    // A std::exception from the resolver (here: a bad COGENT_RESOLVER setting when the default
    // resolver is built) never escapes into C: EAI_FAIL, NO_RECOVERY.
    cogent::set_resolver(nullptr);
    setenv("COGENT_RESOLVER", "bogus", 1);
    auto g = cogent::spawn([&] {
        CHECK(gai("x.gen.test", "80").rc == EAI_FAIL);
        h_errno = 0;
        CHECK(::gethostbyname("x.gen.test") == nullptr);
        CHECK(h_errno == NO_RECOVERY);
        char buf[256];
        hostent he{};
        hostent* result = &he;
        int herr = 0;
        CHECK(::gethostbyname_r("x.gen.test", &he, buf, sizeof buf, &result, &herr) == 0);
        CHECK(result == nullptr);
        CHECK(herr == NO_RECOVERY);
        auto a = addr("10.9.9.9", 80);
        char host[64];
        CHECK(::getnameinfo(a.sockaddr_ptr(), a.length(), host, sizeof host, nullptr, 0, 0) ==
              EAI_FAIL);
    });
    g.get();
    unsetenv("COGENT_RESOLVER");
    CHECK(queries() == 0);

    // Kind block is the libc resolver on this thread; the shim must hand the call to glibc, not
    // to the resolver (which would call the shim again). Kind thread runs glibc on the thread
    // pool, where the shim passes through. localhost and numeric names only: glibc answers
    // them without DNS.
    for (auto kind : {Resolver::Kind::block, Resolver::Kind::thread}) {
        use(kind);
        auto g2 = cogent::spawn([&] {
            INFO("kind " << int(kind));
            for (const char* host : {"localhost", "127.0.0.1"}) {
                Gai got = gai(host, "80", AF_INET, SOCK_STREAM, AI_CANONNAME);
                Gai want = gai_with(real<GaiFn>("getaddrinfo"), host, "80", AF_INET, SOCK_STREAM,
                                    AI_CANONNAME);
                CHECK(got.rc == 0);
                CHECK(got.rc == want.rc);
                CHECK(got.list == want.list);
            }
            hostent he{};
            hostent* result = nullptr;
            char buf[1024];
            int herr = 0;
            CHECK(::gethostbyname_r("localhost", &he, buf, sizeof buf, &result, &herr) == 0);
            REQUIRE(result != nullptr);
            CHECK(addresses_of(result) == addresses_of(real<GhbnFn>("gethostbyname")("localhost")));
        });
        g2.get();
    }
    CHECK(queries() == 0);
}
