// Name resolution (dns.hpp). The c-ares resolver is per hub:
//   - c-ares tells us (sock_state_cb) which of its sockets to watch; each gets an ev_io on the
//     hub's loop whose callback calls ares_process_fd, and one ev_timer drives its timeouts
//     (re-armed from ares_timeout after every call into c-ares);
//   - a lookup is a heap Query: the greenlet issues one ares_search per address family, then
//     parks; c-ares's callbacks (always on the hub, inside ares_process_fd, or synchronously
//     inside ares_search for immediate failures) record the answer and, when the last one is
//     in, queue the greenlet's wake (waking never switches, and c-ares is never re-entered from
//     its own callback);
//   - a greenlet killed or timed out while parked abandons its Query: the wake is unlinked, and
//     the Query is freed by the last c-ares callback (which c-ares always makes: an answer, its
//     own timeout, or ARES_EDESTRUCTION when the channel goes).
// The hosts file and "localhost" are handled here, not by c-ares (its "lookups" is set to DNS
// only), so all four lookups read the hosts file the same way, and tests can point at another.
// Results are built the way glibc builds them: the same socket-type expansion, the same EAI_*
// codes, and a simplified RFC 6724 sort (see sort_addresses).
#include "cogent/dns.hpp"

#include <ares.h>
#include <ev.h>  // until the watchers here move to loop/
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "cogent/exceptions.hpp"
#include "cogent/threadpool.hpp"
#include "hub/hub.hpp"
#include "core/switch.hpp"

namespace cogent {

using namespace detail;

namespace {

// ---- errors -------------------------------------------------------------------------------------

const char* eai_name(int code) {
    switch (code) {
        case EAI_BADFLAGS:
            return "EAI_BADFLAGS";
        case EAI_NONAME:
            return "EAI_NONAME";
        case EAI_AGAIN:
            return "EAI_AGAIN";
        case EAI_FAIL:
            return "EAI_FAIL";
        case EAI_FAMILY:
            return "EAI_FAMILY";
        case EAI_SOCKTYPE:
            return "EAI_SOCKTYPE";
        case EAI_SERVICE:
            return "EAI_SERVICE";
        case EAI_MEMORY:
            return "EAI_MEMORY";
        case EAI_SYSTEM:
            return "EAI_SYSTEM";
        case EAI_OVERFLOW:
            return "EAI_OVERFLOW";
        case EAI_NODATA:
            return "EAI_NODATA";
        case EAI_ADDRFAMILY:
            return "EAI_ADDRFAMILY";
        case EAI_CANCELED:
            return "EAI_CANCELED";
        default:
            return "EAI_?";
    }
}

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// `call` is e.g. `getaddrinfo("x", "80")`; detail (may be empty) says why.
[[noreturn, gnu::cold]] void fail(int code, std::string_view host, const std::string& call,
                                  const std::string& detail = {}) {
    std::string msg = "cogent: " + call + ": " + gai_strerror(code) + " (" + eai_name(code);
    if (!detail.empty()) msg += "; " + detail;
    msg += ")";
    throw DnsError(code, std::string(host), msg);
}

// c-ares status -> the EAI_* code glibc gives for the same DNS outcome.
int eai_from_ares(int status) {
    switch (status) {
        case ARES_ENOTFOUND:
        case ARES_EBADNAME:
            return EAI_NONAME;
        case ARES_ENODATA:
            return EAI_NODATA;
        case ARES_ESERVFAIL:
        case ARES_ETIMEOUT:
        case ARES_ECONNREFUSED:  // every server refused (REFUSED): glibc says TRY_AGAIN
        case ARES_EREFUSED:
        case ARES_EDESTRUCTION:
            return EAI_AGAIN;
        case ARES_ENOMEM:
            return EAI_MEMORY;
        case ARES_ECANCELLED:
            return EAI_CANCELED;
        case ARES_EBADFAMILY:
            return EAI_FAMILY;
        default:
            return EAI_FAIL;  // EBADRESP, EFORMERR, EREFUSED, ENOTIMP...
    }
}

std::string ares_detail(int status) {
    if (status == ARES_EDESTRUCTION) return "the resolver was reset (fork or hub exit)";
    // c-ares treats SERVFAIL and REFUSED as a broken server, tries the next, and reports this.
    if (status == ARES_ECONNREFUSED)
        return "DNS: no server answered (SERVFAIL, REFUSED or connection refused)";
    return std::string("DNS: ") + ares_strerror(status);
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// "host." and "HOST" name the same host in the hosts file and for "localhost".
std::string normalize_name(std::string_view s) {
    if (s.size() > 1 && s.back() == '.') s.remove_suffix(1);
    return lower(s);
}

// ---- raw addresses ------------------------------------------------------------------------------

struct RawAddr {
    int family = 0;
    unsigned char bytes[16]{};
    std::uint32_t scope = 0;
    std::string text() const {
        char buf[INET6_ADDRSTRLEN] = "";
        inet_ntop(family, bytes, buf, sizeof buf);
        return buf;
    }
    friend bool operator==(const RawAddr& a, const RawAddr& b) {
        return a.family == b.family && a.scope == b.scope &&
               std::memcmp(a.bytes, b.bytes, a.family == AF_INET ? 4 : 16) == 0;
    }
};

RawAddr v4(const void* p) {
    RawAddr r;
    r.family = AF_INET;
    std::memcpy(r.bytes, p, 4);
    return r;
}
RawAddr v6(const void* p, std::uint32_t scope = 0) {
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

// A numeric host as getaddrinfo takes it: inet_aton's forms for IPv4 ("127.1" is 127.0.0.1,
// as glibc accepts), inet_pton for IPv6 with an optional "%scope" (index or interface name).
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

// ---- which address families this machine has (AI_ADDRCONFIG, sorting) ---------------------------

struct Families {
    bool v4 = false;  // a configured IPv4 address other than 127.0.0.1 (glibc's __check_pf)
    bool v6 = false;  // a configured IPv6 address other than ::1
};

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

// ---- the hosts file -----------------------------------------------------------------------------

struct HostsLine {
    RawAddr addr;
    std::vector<std::string> names;  // as written; names[0] is the canonical name
    std::vector<std::string> lowered;
};

// /etc/hosts, parsed, re-read when its inode, size or mtime changes (glibc re-reads it on every
// lookup). Shared by the resolvers of every thread.
class HostsFile {
public:
    std::vector<HostsLine> lines(const std::string& path) {
        struct stat st {};
        std::lock_guard<std::mutex> lk(mu_);
        Cached& c = files_[path];
        if (::stat(path.c_str(), &st) != 0) {
            c = Cached{};
            return {};
        }
        if (c.loaded && c.ino == st.st_ino && c.size == st.st_size &&
            c.mtime.tv_sec == st.st_mtim.tv_sec && c.mtime.tv_nsec == st.st_mtim.tv_nsec)
            return c.lines;
        c = Cached{};
        c.loaded = true;
        c.ino = st.st_ino;
        c.size = st.st_size;
        c.mtime = st.st_mtim;
        std::ifstream in(path);
        std::string line;
        while (std::getline(in, line)) {
            if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
            std::istringstream ss(line);
            std::string addr, name;
            if (!(ss >> addr)) continue;
            auto raw = parse_numeric(addr);
            if (!raw) continue;
            HostsLine hl;
            hl.addr = *raw;
            while (ss >> name) {
                hl.lowered.push_back(lower(name));
                hl.names.push_back(std::move(name));
            }
            if (!hl.names.empty()) c.lines.push_back(std::move(hl));
        }
        return c.lines;
    }

private:
    struct Cached {
        bool loaded = false;
        ino_t ino = 0;
        off_t size = 0;
        timespec mtime{};
        std::vector<HostsLine> lines;
    };
    std::mutex mu_;
    std::unordered_map<std::string, Cached> files_;
};

HostsFile& hosts_file() {
    static HostsFile* h = new HostsFile;  // never destroyed: usable from any thread at exit
    return *h;
}

// A forward answer: addresses, canonical name, aliases.
struct Answer {
    std::vector<RawAddr> addrs;
    std::string canon;
    std::vector<std::string> aliases;
    bool found = false;  // the name exists (maybe without addresses of the asked family)
};

// Hosts file lookup for `name` (normalized): every line naming it, in file order (glibc's
// "multi on"), addresses of the wanted families; canonical name from the first matching line.
Answer hosts_lookup(const std::string& path, const std::string& name, bool want4, bool want6) {
    Answer ans;
    if (path == "-") return ans;
    for (const HostsLine& hl : hosts_file().lines(path)) {
        auto it = std::find(hl.lowered.begin(), hl.lowered.end(), name);
        if (it == hl.lowered.end()) continue;
        if (!ans.found) {
            ans.found = true;
            ans.canon = hl.names[0];
            for (std::size_t i = 1; i < hl.names.size(); ++i) ans.aliases.push_back(hl.names[i]);
        }
        if ((hl.addr.family == AF_INET && want4) || (hl.addr.family == AF_INET6 && want6))
            if (std::find(ans.addrs.begin(), ans.addrs.end(), hl.addr) == ans.addrs.end())
                ans.addrs.push_back(hl.addr);
    }
    return ans;
}

// RFC 6761: "localhost" and "*.localhost" are loopback, whatever DNS says.
bool is_localhost(const std::string& name) {
    return name == "localhost" ||
           (name.size() > 10 && name.compare(name.size() - 10, 10, ".localhost") == 0);
}

Answer localhost_answer(const std::string& name, bool want4, bool want6) {
    Answer ans;
    ans.found = true;
    ans.canon = name;
    static const unsigned char l4[4] = {127, 0, 0, 1};
    static const unsigned char l6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (want6) ans.addrs.push_back(v6(l6));
    if (want4) ans.addrs.push_back(v4(l4));
    return ans;
}

// ---- services -----------------------------------------------------------------------------------

struct TypeProto {
    int socktype;
    int protocol;
    std::uint16_t port;
};

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

std::string gai_call(std::string_view host, std::string_view service) {
    std::string call = "getaddrinfo(" + (host.empty() ? std::string("NULL") : quote(host));
    if (!service.empty()) call += ", " + quote(service);
    return call + ")";
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

// ---- settings -----------------------------------------------------------------------------------

// "ip", "ip:port", "[v6]:port", "[v6]" or a bare IPv6 address -> "ip:port" / "[v6]:port" for
// ares_set_servers_ports_csv. std::invalid_argument naming `what` otherwise.
std::string server_csv_entry(const std::string& s, const std::string& what) {
    auto bad = [&](const char* why) -> std::invalid_argument {
        return std::invalid_argument("cogent: " + what + ": " + quote(s) + " " + why +
                                     " (expected ip, ip:port or [ipv6]:port)");
    };
    std::string host = s, port;
    if (!s.empty() && s[0] == '[') {
        auto close = s.find(']');
        if (close == std::string::npos) throw bad("has no closing ']'");
        host = s.substr(1, close - 1);
        std::string rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':' || rest.size() == 1) throw bad("has junk after ']'");
            port = rest.substr(1);
        }
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
        auto c = s.find(':');
        host = s.substr(0, c);
        port = s.substr(c + 1);
    }
    unsigned char buf[16];
    bool is6 = host.find(':') != std::string::npos;
    if (inet_pton(is6 ? AF_INET6 : AF_INET, host.c_str(), buf) != 1)
        throw bad("is not a numeric IP address");
    if (!port.empty()) {
        char* end = nullptr;
        long v = std::strtol(port.c_str(), &end, 10);
        if (!std::isdigit(static_cast<unsigned char>(port[0])) || *end || v < 1 || v > 65535)
            throw bad("has a port that is not 1-65535");
    }
    std::string out = is6 ? "[" + host + "]" : host;
    return out + ":" + (port.empty() ? std::string("53") : port);
}

void validate(const Resolver::Options& o) {
    for (const auto& s : o.servers) server_csv_entry(s, "Resolver::Options::servers");
    if (o.tries && (*o.tries < 1 || *o.tries > 100))
        throw std::invalid_argument("cogent: Resolver::Options::tries must be 1..100 (got " +
                                    std::to_string(*o.tries) + ")");
    if (o.timeout && (*o.timeout <= Duration::zero() || *o.timeout > std::chrono::hours(1)))
        throw std::invalid_argument(
            "cogent: Resolver::Options::timeout must be positive and at most an hour");
}

}  // namespace

namespace detail {
void dns_after_fork() noexcept;
}
namespace {
void register_fork_hook() {
    static std::once_flag once;
    std::call_once(once, [] { add_fork_child_hook(&detail::dns_after_fork); });
}
}  // namespace

// ---- the per-hub registry -----------------------------------------------------------------------

namespace detail {
struct DnsHub {
    std::shared_ptr<Resolver> current;
    std::vector<Resolver::Impl*> impls;  // every live c-ares resolver on this hub
};
}  // namespace detail

// ---- queries ------------------------------------------------------------------------------------

namespace {

// One lookup in flight: up to two ares calls (A and AAAA). Owned jointly by the waiting
// greenlet (until waiter_gone) and the outstanding c-ares callbacks; the last one frees it.
struct Query {
    Resolver::Impl* impl = nullptr;
    GreenletImpl* g = nullptr;
    WakeCallback wake;
    int outstanding = 0;
    bool parked = false;
    bool waiter_gone = false;
    // Per ares call: 0 = A (or a reverse lookup), 1 = AAAA.
    int status[2] = {ARES_SUCCESS, ARES_SUCCESS};
    Answer ans[2];
};

}  // namespace

struct Resolver::Impl {
    Options opts;
    ThreadState* owner = nullptr;
    HubImpl* hub = nullptr;
    ares_channel channel = nullptr;
    std::unordered_map<int, ev_io*> socks;
    ev_timer timer{};
    int in_ares = 0;  // ares calls outstanding (abandoned ones included)
    pid_t pid = 0;    // the process the channel was made in

    ~Impl() {
        close_channel();
        unregister();
    }

    void unregister() {
        if (!hub || !hub->dns) return;
        auto& v = hub->dns->impls;
        v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }

    void check_thread(const char* what) const {
        if (thread_state_fast() != owner)
            throw std::logic_error(std::string("cogent: ") + what +
                                   ": this Resolver belongs to another thread (each thread's "
                                   "hub has its own; use get_resolver() there)");
        if (!hub)
            throw std::logic_error(std::string("cogent: ") + what +
                                   ": this Resolver's hub has ended");
    }

    // Destroy the channel: c-ares calls every outstanding callback with ARES_EDESTRUCTION
    // (waking their greenlets with EAI_AGAIN), and closes its sockets after telling us to stop
    // watching them.
    void close_channel() noexcept {
        if (!channel) return;
        ares_channel c = channel;
        channel = nullptr;
        ares_destroy(c);
        for (auto& [fd, io] : socks) {
            if (hub) ev_io_stop(hub->loop().raw(), io);
            delete io;
        }
        socks.clear();
        if (hub) ev_timer_stop(hub->loop().raw(), &timer);
    }

    // The runtime's own socket calls go straight to the kernel, never through an interposed
    // libc function (DESIGN invariant 6: the patch shim must not see c-ares's sockets).
    static ares_socket_t sys_socket(int domain, int type, int protocol, void*) {
        long fd = ::syscall(SYS_socket, domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
        if (fd >= 0 && type == SOCK_DGRAM) {
            // One UDP socket carries every query to a server. A thousand answers arriving at
            // once overflow the default 208 KiB buffer (the kernel drops the rest, and those
            // lookups wait for c-ares's retry), so ask for more; the kernel caps it at
            // net.core.rmem_max.
            int bytes = 4 << 20;
            ::syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
        }
        return ares_socket_t(fd);
    }
    static int sys_close(ares_socket_t fd, void*) { return int(::syscall(SYS_close, fd)); }
    static int sys_connect(ares_socket_t fd, const sockaddr* sa, ares_socklen_t len, void*) {
        return int(::syscall(SYS_connect, fd, sa, len));
    }
    static ares_ssize_t sys_recvfrom(ares_socket_t fd, void* buf, size_t n, int flags,
                                     sockaddr* from, ares_socklen_t* fromlen, void*) {
        return ares_ssize_t(::syscall(SYS_recvfrom, fd, buf, n, flags, from, fromlen));
    }
    static ares_ssize_t sys_sendv(ares_socket_t fd, const iovec* iov, int n, void*) {
        return ares_ssize_t(::syscall(SYS_writev, fd, iov, n));
    }

    void ensure_channel(std::string_view host, const std::string& call) {
        if (channel && pid == ::getpid()) return;
        static std::once_flag lib_once;
        static int lib_status = ARES_SUCCESS;
        std::call_once(lib_once, [] { lib_status = ares_library_init(ARES_LIB_INIT_ALL); });
        if (lib_status != ARES_SUCCESS)
            fail(EAI_SYSTEM, host, call,
                 std::string("ares_library_init: ") + ares_strerror(lib_status));
        ares_options o{};
        int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
        o.sock_state_cb = &Impl::on_sock_state;
        o.sock_state_cb_data = this;
        char lookups[] = "b";  // DNS only: the hosts file is ours (see the file comment)
        o.lookups = lookups;
        if (opts.timeout) {
            mask |= ARES_OPT_TIMEOUTMS;
            // c-ares takes an int of ms: clamp (a huge timeout is the longest it can express).
            auto ms = std::chrono::ceil<std::chrono::milliseconds>(*opts.timeout);
            o.timeout = int(std::clamp<long long>(ms.count(), 1, INT_MAX));
        }
        if (opts.tries) {
            mask |= ARES_OPT_TRIES;
            o.tries = *opts.tries;
        }
        std::string conf = opts.resolv_conf;
        if (!conf.empty()) {
            mask |= ARES_OPT_RESOLVCONF;
            o.resolvconf_path = conf.data();
        }
        ares_channel c = nullptr;
        int st = ares_init_options(&c, &o, mask);
        if (st != ARES_SUCCESS)
            fail(st == ARES_ENOMEM ? EAI_MEMORY : EAI_SYSTEM, host, call,
                 "cannot set up the c-ares channel: " + std::string(ares_strerror(st)));
        static const ares_socket_functions funcs = {sys_socket, sys_close, sys_connect,
                                                    sys_recvfrom, sys_sendv};
        ares_set_socket_functions(c, &funcs, this);
        if (!opts.servers.empty()) {
            std::string csv;
            for (const auto& s : opts.servers) {
                if (!csv.empty()) csv += ',';
                csv += server_csv_entry(s, "servers");
            }
            st = ares_set_servers_ports_csv(c, csv.c_str());
            if (st != ARES_SUCCESS) {
                ares_destroy(c);
                fail(EAI_SYSTEM, host, call,
                     "c-ares rejected the servers " + quote(csv) + ": " + ares_strerror(st));
            }
        }
        ev_init(&timer, &Impl::on_timer);
        timer.data = this;
        channel = c;
        pid = ::getpid();
    }

    static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
        auto* self = static_cast<Impl*>(data);
        if (!self->hub) return;
        struct ev_loop* loop = self->hub->loop().raw();
        auto it = self->socks.find(fd);
        const int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
        if (!events) {
            if (it != self->socks.end()) {
                ev_io_stop(loop, it->second);
                delete it->second;
                self->socks.erase(it);
            }
            return;
        }
        ev_io* io;
        if (it == self->socks.end()) {
            io = new ev_io;
            ev_io_init(io, &Impl::on_io, fd, events);
            io->data = self;
            self->socks.emplace(fd, io);
        } else {
            io = it->second;
            if (io->events == events && ev_is_active(io)) return;
            ev_io_stop(loop, io);
            ev_io_set(io, fd, events);
        }
        ev_io_start(loop, io);
    }

    static void on_io(struct ev_loop*, ev_io* io, int revents) {
        auto* self = static_cast<Impl*>(io->data);
        const int fd = io->fd;  // io may be freed inside ares_process_fd
        ares_process_fd(self->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                        (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
        self->arm_timer();
    }

    static void on_timer(struct ev_loop*, ev_timer* t, int) {
        auto* self = static_cast<Impl*>(t->data);
        ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        self->arm_timer();
    }

    void arm_timer() {
        if (!hub || !channel) return;
        ev_timer_stop(hub->loop().raw(), &timer);
        if (in_ares == 0) return;
        timeval tv{};
        if (!ares_timeout(channel, nullptr, &tv)) return;
        hub->update_now();
        ev_timer_set(&timer, double(tv.tv_sec) + double(tv.tv_usec) * 1e-6, 0.);
        ev_timer_start(hub->loop().raw(), &timer);
    }

    // One ares call finished (answer, error, timeout, or channel destruction).
    static void finish(Query* q) {
        Impl* self = q->impl;
        --self->in_ares;
        if (--q->outstanding > 0) return;
        if (q->waiter_gone) {
            delete q;
            return;
        }
        if (q->parked) self->hub->schedule(&q->wake);
    }

    struct Call {
        Query* q;
        int slot;
    };

    static void on_search(void* arg, int status, int, unsigned char* abuf, int alen) {
        auto* c = static_cast<Call*>(arg);
        Query* q = c->q;
        const int slot = c->slot;
        delete c;
        if (status == ARES_SUCCESS) {
            hostent* he = nullptr;
            int st = slot == 0 ? ares_parse_a_reply(abuf, alen, &he, nullptr, nullptr)
                               : ares_parse_aaaa_reply(abuf, alen, &he, nullptr, nullptr);
            if (st == ARES_SUCCESS && he) {
                Answer& a = q->ans[slot];
                a.found = true;
                a.canon = he->h_name ? he->h_name : "";
                for (char** p = he->h_aliases; p && *p; ++p) a.aliases.emplace_back(*p);
                for (char** p = he->h_addr_list; p && *p; ++p)
                    a.addrs.push_back(slot == 0 ? v4(*p) : v6(*p));
                ares_free_hostent(he);
                if (a.addrs.empty()) st = ARES_ENODATA;
            }
            status = st;
        }
        q->status[slot] = status;
        finish(q);
    }

    struct PtrCall {
        Query* q;
        RawAddr addr;
    };

    // A PTR answer. ares_query (not ares_gethostbyaddr, which reports every failure, SERVFAIL
    // included, as "not found") so that a server failure stays EAI_AGAIN, as in glibc.
    static void on_ptr(void* arg, int status, int, unsigned char* abuf, int alen) {
        auto* c = static_cast<PtrCall*>(arg);
        Query* q = c->q;
        if (status == ARES_SUCCESS) {
            hostent* he = nullptr;
            const bool four = c->addr.family == AF_INET;
            status =
                ares_parse_ptr_reply(abuf, alen, c->addr.bytes, four ? 4 : 16, c->addr.family, &he);
            if (status == ARES_SUCCESS && he) {
                Answer& a = q->ans[0];
                a.found = true;
                a.canon = he->h_name ? he->h_name : "";
                for (char** p = he->h_aliases; p && *p; ++p) a.aliases.emplace_back(*p);
            }
            if (he) ares_free_hostent(he);
        }
        delete c;
        q->status[0] = status;
        finish(q);
    }

    // Issue the calls (via `start`, which must call add() for each), park until all are in,
    // and return the Query for reading (the caller deletes it). Killed or timed out: the Query
    // is abandoned to its callbacks.
    template <class Start>
    std::unique_ptr<Query> run(std::string_view host, const std::string& call, const char* what,
                               Start start) {
        check_thread(what);
        ensure_channel(host, call);
        ThreadState* ts = thread_state_fast();
        GreenletImpl* cur = ts->current;
        if (cur == hub->greenlet) blocking_on_hub(what);
        auto* q = new Query;
        q->impl = this;
        q->g = cur;
        q->wake.g = cur;
        q->wake.owns_ref = false;
        start(q);
        arm_timer();
        struct Abandon {
            Query* q;
            ~Abandon() {
                if (!q) return;
                q->waiter_gone = true;
                q->wake.unlink();
                if (q->outstanding == 0) delete q;
            }
        } guard{q};
        if (q->outstanding > 0) {
            q->parked = true;
            hub->switch_out(cur, what);
            if (q->outstanding > 0)
                throw InvalidSwitchError(std::string("cogent: unexpected switch into a greenlet "
                                                     "waiting in ") +
                                         what);
        }
        guard.q = nullptr;
        return std::unique_ptr<Query>(q);
    }

    void search(Query* q, const std::string& name, int slot) {
        ++q->outstanding;
        ++in_ares;
        ares_search(channel, name.c_str(), ns_c_in, slot == 0 ? ns_t_a : ns_t_aaaa,
                    &Impl::on_search, new Call{q, slot});
    }

    // "4.3.2.1.in-addr.arpa" or the nibbles under ip6.arpa; an IPv4-mapped IPv6 address is
    // looked up under in-addr.arpa, as glibc does.
    static std::string reverse_name(const RawAddr& a) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        char buf[80];
        if (a.family == AF_INET || std::memcmp(a.bytes, mapped, 12) == 0) {
            const unsigned char* b = a.family == AF_INET ? a.bytes : a.bytes + 12;
            std::snprintf(buf, sizeof buf, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
            return buf;
        }
        std::string out;
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; --i) {
            out += hex[a.bytes[i] & 0xf];
            out += '.';
            out += hex[a.bytes[i] >> 4];
            out += '.';
        }
        return out + "ip6.arpa";
    }

    void reverse(Query* q, const RawAddr& a) {
        ++q->outstanding;
        ++in_ares;
        ares_query(channel, reverse_name(a).c_str(), ns_c_in, ns_t_ptr, &Impl::on_ptr,
                   new PtrCall{q, a});
    }
};

// ---- the lookups --------------------------------------------------------------------------------

namespace {

// The most telling failure of two (A and AAAA): a server problem beats "no such name".
int worse(int a, int b) {
    auto rank = [](int s) {
        switch (s) {
            case ARES_SUCCESS:
                return 0;
            case ARES_ENODATA:
                return 1;
            case ARES_ENOTFOUND:
                return 2;
            default:
                return 3;
        }
    };
    return rank(b) > rank(a) ? b : a;
}

Answer dns_forward(Resolver::Impl& impl, const std::string& name, bool want4, bool want6,
                   std::string_view host, const std::string& call, const char* what,
                   int& status_out) {
    auto q = impl.run(host, call, what, [&](Query* qq) {
        if (want4) impl.search(qq, name, 0);
        if (want6) impl.search(qq, name, 1);
    });
    Answer out;
    int status = ARES_SUCCESS;
    bool any = false;
    for (int slot = 0; slot < 2; ++slot) {
        if (!(slot == 0 ? want4 : want6)) continue;
        if (q->status[slot] == ARES_SUCCESS) {
            any = true;
            Answer& a = q->ans[slot];
            if (out.canon.empty()) out.canon = a.canon;
            for (auto& al : a.aliases)
                if (std::find(out.aliases.begin(), out.aliases.end(), al) == out.aliases.end())
                    out.aliases.push_back(al);
            out.addrs.insert(out.addrs.end(), a.addrs.begin(), a.addrs.end());
        } else {
            status = worse(status, q->status[slot]);
        }
    }
    out.found = any;
    status_out = any ? ARES_SUCCESS : status;
    return out;
}

// The libc resolver for kinds thread and block, looked up in libc.so.6 itself: with the patch
// shim loaded, the plain names are the shim's, which would hand the call back to us.
template <class F>
F libc_fn(const char* name) {
    static void* handle = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void* p = handle ? dlsym(handle, name) : nullptr;
    if (!p) p = dlsym(RTLD_NEXT, name);
    return reinterpret_cast<F>(p);
}

// The libc resolver (kind thread or block): getaddrinfo(3) itself.
std::vector<AddrInfo> libc_getaddrinfo(const std::string& host, const std::string& service,
                                       const AddrInfoHints& hints, const std::string& call) {
    addrinfo h{};
    h.ai_family = hints.family;
    h.ai_socktype = hints.socktype;
    h.ai_protocol = hints.protocol;
    h.ai_flags = hints.flags;
    addrinfo* res = nullptr;
    static const auto real_gai =
        libc_fn<int (*)(const char*, const char*, const addrinfo*, addrinfo**)>("getaddrinfo");
    static const auto real_free = libc_fn<void (*)(addrinfo*)>("freeaddrinfo");
    int rc = real_gai(host.empty() ? nullptr : host.c_str(),
                      service.empty() ? nullptr : service.c_str(), &h, &res);
    if (rc != 0) {
        std::string detail = rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : "";
        fail(rc, host, call, detail);
    }
    std::vector<AddrInfo> out;
    for (addrinfo* p = res; p; p = p->ai_next) {
        AddrInfo ai;
        ai.family = p->ai_family;
        ai.socktype = p->ai_socktype;
        ai.protocol = p->ai_protocol;
        ai.address = Address::from_sockaddr(p->ai_addr, p->ai_addrlen);
        if (p->ai_canonname) ai.canonname = p->ai_canonname;
        out.push_back(std::move(ai));
    }
    real_free(res);
    return out;
}

template <class F>
auto run_kind(Resolver::Kind kind, F fn) -> decltype(fn()) {
    if (kind == Resolver::Kind::block) return fn();
    return get_threadpool().apply(std::move(fn));
}

HostEnt hostent_from(const hostent* he) {
    HostEnt out;
    out.name = he->h_name ? he->h_name : "";
    out.family = he->h_addrtype;
    for (char** p = he->h_aliases; p && *p; ++p) out.aliases.emplace_back(*p);
    for (char** p = he->h_addr_list; p && *p; ++p) {
        char buf[INET6_ADDRSTRLEN] = "";
        inet_ntop(he->h_addrtype, *p, buf, sizeof buf);
        out.addresses.emplace_back(buf);
    }
    return out;
}

int eai_from_herrno(int h) {
    switch (h) {
        case HOST_NOT_FOUND:
            return EAI_NONAME;
        case NO_DATA:
            return EAI_NODATA;
        case TRY_AGAIN:
            return EAI_AGAIN;
        default:
            return EAI_FAIL;
    }
}

}  // namespace

Resolver::Options Resolver::options_from_environment() {
    ResolverSettings env = resolver_settings();  // config.cpp reads the variables
    Options o;
    o.kind = env.kind == 1 ? Kind::thread : env.kind == 2 ? Kind::block : Kind::ares;
    for (const auto& item : env.servers) server_csv_entry(item, "COGENT_RESOLVER_SERVERS");
    o.servers = std::move(env.servers);
    if (env.timeout_s)
        o.timeout = detail::saturate(std::chrono::duration<double>(*env.timeout_s),
                                     "COGENT_RESOLVER_TIMEOUT");
    o.tries = env.tries;
    return o;
}

Resolver::Resolver() : Resolver(options_from_environment()) {}

Resolver::Resolver(Options options) {
    validate(options);
    register_fork_hook();
    impl_ = std::make_shared<Impl>();
    impl_->opts = std::move(options);
    impl_->owner = thread_state_fast();
    impl_->hub = hub_of(impl_->owner);
    if (!impl_->hub->dns) impl_->hub->dns = new DnsHub;
    impl_->hub->dns->impls.push_back(impl_.get());
}

Resolver::~Resolver() = default;  // lookups in flight hold impl_ and finish on it

Resolver::Kind Resolver::kind() const noexcept { return impl_->opts.kind; }
const Resolver::Options& Resolver::options() const noexcept { return impl_->opts; }

std::vector<AddrInfo> Resolver::getaddrinfo(std::string_view host, std::string_view service,
                                            const AddrInfoHints& hints_in) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string call = gai_call(host, service);
    AddrInfoHints hints = hints_in;
    check_hints(hints, host, call);
    if (host.empty() && service.empty()) fail(EAI_NONAME, host, call, "neither host nor service");
    if (host.find('\0') != std::string_view::npos)
        fail(EAI_NONAME, host, call, "the host name contains a NUL byte");

    // AI_ADDRCONFIG narrows the families first, as glibc does (loopback addresses not counted).
    if (hints.flags & AI_ADDRCONFIG) {
        Families f = configured_families();
        if (hints.family == AF_UNSPEC && (f.v4 || f.v6) && f.v4 != f.v6)
            hints.family = f.v4 ? AF_INET : AF_INET6;
        else if ((hints.family == AF_INET && !f.v4) || (hints.family == AF_INET6 && !f.v6))
            fail(EAI_NONAME, host, call, "AI_ADDRCONFIG: no address of that family here");
    }
    std::vector<TypeProto> tps = resolve_service(service, hints, host, call);
    const bool want_canon = hints.flags & AI_CANONNAME;
    const bool mapped = hints.family == AF_INET6 && (hints.flags & AI_V4MAPPED);

    if (host.empty()) {
        // No host: the wildcard (AI_PASSIVE) or loopback addresses.
        static const unsigned char any4[4] = {}, any6[16] = {};
        static const unsigned char lo4[4] = {127, 0, 0, 1};
        static const unsigned char lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        const bool passive = hints.flags & AI_PASSIVE;
        std::vector<RawAddr> addrs;
        if (hints.family != AF_INET) addrs.push_back(v6(passive ? any6 : lo6));
        if (hints.family != AF_INET6) addrs.push_back(v4(passive ? any4 : lo4));
        sort_addresses(addrs);
        return build_results(addrs, tps, "", false);
    }

    if (auto num = parse_numeric(host)) {
        RawAddr a = *num;
        if (hints.family == AF_INET6 && a.family == AF_INET) {
            if (!mapped) fail(EAI_ADDRFAMILY, host, call, "an IPv4 address, AF_INET6 asked");
            a = v4_mapped(a);
        } else if (hints.family == AF_INET && a.family == AF_INET6) {
            fail(EAI_ADDRFAMILY, host, call, "an IPv6 address, AF_INET asked");
        }
        return build_results({a}, tps, std::string(host), want_canon);
    }
    if (hints.flags & AI_NUMERICHOST)
        fail(EAI_NONAME, host, call, "AI_NUMERICHOST and a host that is not a numeric address");

    Impl& impl = *impl_;
    if (impl.opts.kind != Kind::ares) {
        impl.check_thread("getaddrinfo()");
        std::string h(host), s(service);
        return run_kind(impl.opts.kind,
                        [h, s, hints, call] { return libc_getaddrinfo(h, s, hints, call); });
    }

    const std::string name = lower(host);  // the hosts file matches names exactly, any case
    const bool want4 = hints.family != AF_INET6 || mapped;
    const bool want6 = hints.family != AF_INET;
    Answer ans = hosts_lookup(impl.opts.hosts_file.empty() ? "/etc/hosts" : impl.opts.hosts_file,
                              name, want4, want6);
    if (ans.found && mapped) {
        // AF_INET6 + AI_V4MAPPED: IPv4 entries only when there is no IPv6 one (or AI_ALL).
        std::vector<RawAddr> six, four;
        for (auto& a : ans.addrs) (a.family == AF_INET6 ? six : four).push_back(a);
        if (!six.empty() && !(hints.flags & AI_ALL)) four.clear();
        for (auto& a : four) six.push_back(v4_mapped(a));
        ans.addrs = std::move(six);
    }
    if (!ans.found && is_localhost(normalize_name(host)))
        ans = localhost_answer(normalize_name(host), want4 && !mapped, want6);
    if (ans.found) {
        if (ans.addrs.empty()) fail(EAI_NODATA, host, call, "hosts file");
        sort_addresses(ans.addrs);
        return build_results(ans.addrs, tps, ans.canon, want_canon);
    }

    int status = ARES_SUCCESS;
    bool ask4 = hints.family != AF_INET6 || (mapped && (hints.flags & AI_ALL));
    Answer dns =
        dns_forward(impl, std::string(host), ask4, want6, host, call, "getaddrinfo()", status);
    if (mapped && !(hints.flags & AI_ALL) && dns.addrs.empty() && status != ARES_ENOTFOUND) {
        // No AAAA: ask for A and map it (AI_V4MAPPED's fallback).
        dns =
            dns_forward(impl, std::string(host), true, false, host, call, "getaddrinfo()", status);
    }
    if (status != ARES_SUCCESS) fail(eai_from_ares(status), host, call, ares_detail(status));
    if (mapped)
        for (auto& a : dns.addrs)
            if (a.family == AF_INET) a = v4_mapped(a);
    sort_addresses(dns.addrs);
    return build_results(dns.addrs, tps, dns.canon.empty() ? std::string(host) : dns.canon,
                         want_canon);
}

HostEnt Resolver::gethostbyname(std::string_view name_in, int family) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string call =
        "gethostbyname(" + quote(name_in) + (family == AF_INET6 ? ", AF_INET6)" : ")");
    if (family != AF_INET && family != AF_INET6) fail(EAI_FAMILY, name_in, call);
    if (name_in.empty() || name_in.find('\0') != std::string_view::npos)
        fail(EAI_NONAME, name_in, call, "empty or NUL in the name");
    if (auto num = parse_numeric(name_in)) {
        if (num->family != family) fail(EAI_ADDRFAMILY, name_in, call);
        HostEnt out;
        out.name = std::string(name_in);
        out.family = family;
        out.addresses.push_back(num->text());
        return out;
    }
    Impl& impl = *impl_;
    if (impl.opts.kind != Kind::ares) {
        impl.check_thread("gethostbyname()");
        std::string n(name_in);
        return run_kind(impl.opts.kind, [n, family, call] {
            hostent he{}, *res = nullptr;
            std::vector<char> buf(8192);
            int herr = 0, rc;
            static const auto real =
                libc_fn<int (*)(const char*, int, hostent*, char*, size_t, hostent**, int*)>(
                    "gethostbyname2_r");
            while ((rc = real(n.c_str(), family, &he, buf.data(), buf.size(), &res, &herr)) ==
                       ERANGE &&
                   buf.size() < (1u << 20))
                buf.resize(buf.size() * 2);
            if (rc != 0 || !res) fail(rc ? EAI_SYSTEM : eai_from_herrno(herr), n, call);
            return hostent_from(res);
        });
    }
    const bool want4 = family == AF_INET, want6 = family == AF_INET6;
    Answer ans = hosts_lookup(impl.opts.hosts_file.empty() ? "/etc/hosts" : impl.opts.hosts_file,
                              lower(name_in), want4, want6);
    if (!ans.found && is_localhost(normalize_name(name_in)))
        ans = localhost_answer(normalize_name(name_in), want4, want6);
    int status = ARES_SUCCESS;
    if (!ans.found) {
        ans = dns_forward(impl, std::string(name_in), want4, want6, name_in, call,
                          "gethostbyname()", status);
        if (status != ARES_SUCCESS) fail(eai_from_ares(status), name_in, call, ares_detail(status));
    }
    if (ans.addrs.empty()) fail(EAI_NODATA, name_in, call);
    HostEnt out;
    out.name = ans.canon.empty() ? std::string(name_in) : ans.canon;
    out.aliases = ans.aliases;
    out.family = family;
    for (auto& a : ans.addrs) out.addresses.push_back(a.text());
    return out;
}

HostEnt Resolver::gethostbyaddr(std::string_view address) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string call = "gethostbyaddr(" + quote(address) + ")";
    auto num = parse_numeric(address);
    if (num && num->family == AF_INET) {
        // Only the dotted quad here ("1" is a number, not an address to look up).
        in_addr tmp{};
        std::string s(address);
        if (inet_pton(AF_INET, s.c_str(), &tmp) != 1) num.reset();
    }
    if (!num)
        throw std::invalid_argument("cogent: " + call +
                                    ": not a numeric IPv4 or IPv6 address (resolve names with "
                                    "gethostbyname or getaddrinfo)");
    Impl& impl = *impl_;
    if (impl.opts.kind != Kind::ares) {
        impl.check_thread("gethostbyaddr()");
        RawAddr a = *num;
        std::string text(address);
        return run_kind(impl.opts.kind, [a, text, call] {
            hostent he{}, *res = nullptr;
            std::vector<char> buf(8192);
            int herr = 0, rc;
            static const auto real = libc_fn<int (*)(const void*, socklen_t, int, hostent*, char*,
                                                     size_t, hostent**, int*)>("gethostbyaddr_r");
            while ((rc = real(a.bytes, a.family == AF_INET ? 4 : 16, a.family, &he, buf.data(),
                              buf.size(), &res, &herr)) == ERANGE &&
                   buf.size() < (1u << 20))
                buf.resize(buf.size() * 2);
            if (rc != 0 || !res) fail(rc ? EAI_SYSTEM : eai_from_herrno(herr), text, call);
            return hostent_from(res);
        });
    }
    HostEnt out;
    out.family = num->family;
    out.addresses.push_back(num->text());
    // The hosts file: the first line with this address names it; later lines add aliases.
    const std::string path = impl.opts.hosts_file.empty() ? "/etc/hosts" : impl.opts.hosts_file;
    if (path != "-") {
        for (const HostsLine& hl : hosts_file().lines(path)) {
            if (!(hl.addr == *num)) continue;
            for (const auto& n : hl.names) {
                if (out.name.empty())
                    out.name = n;
                else if (n != out.name &&
                         std::find(out.aliases.begin(), out.aliases.end(), n) == out.aliases.end())
                    out.aliases.push_back(n);
            }
        }
        if (!out.name.empty()) return out;
    }
    auto q = impl.run(address, call, "gethostbyaddr()", [&](Query* qq) { impl.reverse(qq, *num); });
    if (q->status[0] != ARES_SUCCESS)
        fail(eai_from_ares(q->status[0]), address, call, ares_detail(q->status[0]));
    out.name = q->ans[0].canon;
    out.aliases = q->ans[0].aliases;
    return out;
}

NameInfo Resolver::getnameinfo(const Address& address, int flags) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string text = address.family() == AF_UNSPEC ? "(unspecified)" : address.to_string();
    const std::string call = "getnameinfo(" + text + ")";
    constexpr int known = NI_NUMERICHOST | NI_NUMERICSERV | NI_NAMEREQD | NI_NOFQDN | NI_DGRAM;
    if (flags & ~known) fail(EAI_BADFLAGS, text, call, "unknown flag bits");
    if (address.family() != AF_INET && address.family() != AF_INET6)
        fail(EAI_FAMILY, text, call, "only IPv4 and IPv6 addresses have names");
    NameInfo out;
    // The service.
    const std::uint16_t port = address.port();
    if (!(flags & NI_NUMERICSERV)) {
        servent se{}, *res = nullptr;
        char buf[1024];
        if (getservbyport_r(htons(port), (flags & NI_DGRAM) ? "udp" : "tcp", &se, buf, sizeof buf,
                            &res) == 0 &&
            res)
            out.service = res->s_name;
    }
    if (out.service.empty()) out.service = std::to_string(port);
    // The numeric host, with "%scope" for a scoped IPv6 address as glibc writes it.
    RawAddr raw;
    if (address.family() == AF_INET) {
        raw = v4(&reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr())->sin_addr);
    } else {
        auto* s6 = reinterpret_cast<const sockaddr_in6*>(address.sockaddr_ptr());
        raw = v6(&s6->sin6_addr, s6->sin6_scope_id);
    }
    auto numeric = [&] {
        std::string h = raw.text();
        if (raw.family == AF_INET6 && raw.scope) {
            char ifname[IF_NAMESIZE] = "";
            const auto* a6 = reinterpret_cast<const in6_addr*>(raw.bytes);
            const bool link = IN6_IS_ADDR_LINKLOCAL(a6) || IN6_IS_ADDR_MC_LINKLOCAL(a6);
            if (link && if_indextoname(raw.scope, ifname))
                h += std::string("%") + ifname;
            else
                h += "%" + std::to_string(raw.scope);
        }
        return h;
    };
    if (flags & NI_NUMERICHOST) {
        out.host = numeric();
        return out;
    }
    RawAddr plain = raw;
    plain.scope = 0;
    std::string name;
    try {
        name = gethostbyaddr(plain.text()).name;
    } catch (const DnsError& e) {
        if (e.code() == EAI_AGAIN || e.code() == EAI_MEMORY || e.code() == EAI_SYSTEM)
            fail(e.code(), text, call, "reverse lookup");
        if (flags & NI_NAMEREQD) fail(EAI_NONAME, text, call, "NI_NAMEREQD and no name found");
    }
    if (name.empty()) {
        out.host = numeric();
        return out;
    }
    if (flags & NI_NOFQDN) {
        // glibc: drop the domain when it is this host's own domain.
        char self[256] = "";
        if (gethostname(self, sizeof self - 1) == 0) {
            const char* dot = std::strchr(self, '.');
            auto n = name.find('.');
            if (dot && n != std::string::npos && lower(name.substr(n + 1)) == lower(dot + 1))
                name.resize(n);
        }
    }
    out.host = name;
    return out;
}

// ---- free functions, per-hub default ------------------------------------------------------------

namespace detail {

// Called by ~HubImpl before the loop goes: every resolver on the hub drops its channel (their
// watchers are on this loop), and the default resolver goes.
void dns_hub_teardown(HubImpl* hub) noexcept {
    DnsHub* d = hub->dns;
    if (!d) return;
    d->current.reset();
    for (Resolver::Impl* impl : d->impls) {
        impl->close_channel();
        impl->hub = nullptr;
    }
    hub->dns = nullptr;
    delete d;
}

// In a forked child: the channel's sockets and queries are the parent's. Drop them (waiting
// greenlets get EAI_AGAIN) so the next lookup builds a new channel.
void dns_after_fork() noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || !ts->hub->dns) return;
    for (Resolver::Impl* impl : ts->hub->dns->impls) impl->close_channel();
}

}  // namespace detail

Resolver& get_resolver() {
    register_fork_hook();
    HubImpl* hub = hub_of(thread_state_fast());
    if (!hub->dns) hub->dns = new DnsHub;
    if (!hub->dns->current) hub->dns->current = std::make_shared<Resolver>();
    return *hub->dns->current;
}

void set_resolver(std::shared_ptr<Resolver> resolver) {
    register_fork_hook();
    HubImpl* hub = hub_of(thread_state_fast());
    if (resolver && resolver->impl_->owner != thread_state_fast())
        throw std::logic_error("cogent: set_resolver: that Resolver belongs to another thread");
    if (!hub->dns) hub->dns = new DnsHub;
    hub->dns->current = std::move(resolver);
}

std::vector<AddrInfo> getaddrinfo(std::string_view host, std::string_view service,
                                  const AddrInfoHints& hints) {
    return get_resolver().getaddrinfo(host, service, hints);
}
NameInfo getnameinfo(const Address& address, int flags) {
    return get_resolver().getnameinfo(address, flags);
}
HostEnt gethostbyname(std::string_view name, int family) {
    return get_resolver().gethostbyname(name, family);
}
HostEnt gethostbyaddr(std::string_view address) { return get_resolver().gethostbyaddr(address); }

std::vector<Address> resolve_addresses(std::string_view host, std::uint16_t port, int family,
                                       int socktype) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);  // "[::1]", as Address takes it
    if (auto num = parse_numeric(host)) {
        if (family != AF_UNSPEC && num->family != family)
            fail(EAI_ADDRFAMILY, host, gai_call(host, std::to_string(port)));
        return {to_address(*num, port)};
    }
    AddrInfoHints h;
    h.family = family;
    h.socktype = socktype;
    std::vector<Address> out;
    for (auto& ai : get_resolver().getaddrinfo(host, std::to_string(port), h))
        out.push_back(ai.address);
    return out;
}

}  // namespace cogent
