// Resolver (dns.hpp): argument checks and the order of sources for each lookup (numeric, the
// hosts file and localhost, then c-ares or, for kinds thread and block, the libc resolver); the
// per-hub registry of resolvers and its default one; the free functions. Results are built the
// way glibc builds them: the same socket-type expansion, the same EAI_* codes, and a simplified
// RFC 6724 sort (dns_sort.cpp).
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "cogent/exceptions.hpp"
#include "services/dns_internal.hpp"

namespace cogent {

using namespace detail;
using namespace detail::dns;

// ---- the per-hub registry ----

namespace detail {

struct DnsHub {
    std::shared_ptr<Resolver> current;
    std::vector<Resolver::Impl*> impls;  // every live c-ares resolver on this hub
};

void dns_after_fork() noexcept;

namespace {

void register_fork_hook() {
    static std::once_flag once;
    std::call_once(once, [] { add_fork_child_hook(&detail::dns_after_fork); });
}

DnsHub& dns_of(HubImpl* hub) {
    if (!hub->dns) hub->dns = new DnsHub;
    return *hub->dns;
}

// ~HubImpl (a HubHooks::closing hook), before the loop goes: every resolver on the hub drops
// its channel (their watchers are on this loop; dropping them may queue wakes, which the hub
// then drops), and the default resolver goes.
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

[[maybe_unused]] const HubHooksRegistration g_dns_hub_hooks{{.closing = &dns_hub_teardown}};

}  // namespace

// In a forked child: the channel's sockets and queries are the parent's. Drop them (waiting
// greenlets get EAI_AGAIN) so the next lookup builds a new channel.
void dns_after_fork() noexcept {
    ThreadState* ts = tls_state;
    if (!ts || !ts->hub || !ts->hub->dns) return;
    for (Resolver::Impl* impl : ts->hub->dns->impls) impl->close_channel();
}

}  // namespace detail

Resolver::Impl::~Impl() {
    close_channel();
    unregister();
}

void Resolver::Impl::unregister() {
    if (!hub || !hub->dns) return;
    auto& v = hub->dns->impls;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
}

void Resolver::Impl::check_thread(const char* what) const {
    if (thread_state_fast() != owner)
        throw std::logic_error(std::string("cogent: ") + what +
                               ": this Resolver belongs to another thread (each thread's "
                               "hub has its own; use get_resolver() there)");
    if (!hub)
        throw std::logic_error(std::string("cogent: ") + what + ": this Resolver's hub has ended");
}

Resolver& get_resolver() {
    register_fork_hook();
    DnsHub& d = dns_of(hub_of(thread_state_fast()));
    if (!d.current) d.current = std::make_shared<Resolver>();
    return *d.current;
}

void set_resolver(std::shared_ptr<Resolver> resolver) {
    register_fork_hook();
    HubImpl* hub = hub_of(thread_state_fast());
    if (resolver && resolver->impl_->owner != thread_state_fast())
        throw std::logic_error("cogent: set_resolver: that Resolver belongs to another thread");
    dns_of(hub).current = std::move(resolver);
}

// ---- Resolver ----

Resolver::Resolver() : Resolver(options_from_environment()) {}

Resolver::Resolver(Options options) {
    validate(options);
    register_fork_hook();
    impl_ = std::make_shared<Impl>();
    impl_->opts = std::move(options);
    impl_->owner = thread_state_fast();
    impl_->hub = hub_of(impl_->owner);
    dns_of(impl_->hub).impls.push_back(impl_.get());
}

Resolver::~Resolver() = default;  // lookups in flight hold impl_ and finish on it

Resolver::Kind Resolver::kind() const noexcept { return impl_->opts.kind; }
const Resolver::Options& Resolver::options() const noexcept { return impl_->opts; }

// ---- getaddrinfo ----

namespace {

// AI_ADDRCONFIG narrows the families first, as glibc does (loopback addresses not counted).
void apply_addrconfig(AddrInfoHints& hints, std::string_view host, const std::string& call) {
    if (!(hints.flags & AI_ADDRCONFIG)) return;
    Families f = configured_families();
    if (hints.family == AF_UNSPEC && (f.v4 || f.v6) && f.v4 != f.v6)
        hints.family = f.v4 ? AF_INET : AF_INET6;
    else if ((hints.family == AF_INET && !f.v4) || (hints.family == AF_INET6 && !f.v6))
        fail(EAI_NONAME, host, call, "AI_ADDRCONFIG: no address of that family here");
}

// No host: the wildcard (AI_PASSIVE) or loopback addresses, sorted.
std::vector<RawAddr> no_host_addresses(const AddrInfoHints& hints) {
    static const unsigned char any4[4] = {}, any6[16] = {};
    static const unsigned char lo4[4] = {127, 0, 0, 1};
    static const unsigned char lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const bool passive = hints.flags & AI_PASSIVE;
    std::vector<RawAddr> addrs;
    if (hints.family != AF_INET) addrs.push_back(v6(passive ? any6 : lo6));
    if (hints.family != AF_INET6) addrs.push_back(v4(passive ? any4 : lo4));
    sort_addresses(addrs);
    return addrs;
}

// A numeric host in the asked family (an IPv4 one mapped for AF_INET6 + AI_V4MAPPED).
RawAddr numeric_in_family(RawAddr a, const AddrInfoHints& hints, bool mapped, std::string_view host,
                          const std::string& call) {
    if (hints.family == AF_INET6 && a.family == AF_INET) {
        if (!mapped) fail(EAI_ADDRFAMILY, host, call, "an IPv4 address, AF_INET6 asked");
        return v4_mapped(a);
    }
    if (hints.family == AF_INET && a.family == AF_INET6)
        fail(EAI_ADDRFAMILY, host, call, "an IPv6 address, AF_INET asked");
    return a;
}

// The hosts file, then localhost. found is false when neither names the host.
Answer hosts_answer(const Resolver::Options& opts, std::string_view host,
                    const AddrInfoHints& hints, bool mapped, bool want4, bool want6) {
    const std::string name = lower(host);  // the hosts file matches names exactly, any case
    Answer ans = hosts_lookup(hosts_path(opts), name, want4, want6);
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
    return ans;
}

// DNS through c-ares; DnsError when it has no answer.
Answer dns_answer(Resolver::Impl& impl, std::string_view host, const AddrInfoHints& hints,
                  bool mapped, bool want6, const std::string& call) {
    int status = ARES_SUCCESS;
    bool ask4 = hints.family != AF_INET6 || (mapped && (hints.flags & AI_ALL));
    Answer dns = impl.forward(std::string(host), ask4, want6, host, call, "getaddrinfo()", status);
    if (mapped && !(hints.flags & AI_ALL) && dns.addrs.empty() && status != ARES_ENOTFOUND) {
        // No AAAA: ask for A and map it (AI_V4MAPPED's fallback).
        dns = impl.forward(std::string(host), true, false, host, call, "getaddrinfo()", status);
    }
    if (status != ARES_SUCCESS) fail(eai_from_ares(status), host, call, ares_detail(status));
    if (mapped)
        for (auto& a : dns.addrs)
            if (a.family == AF_INET) a = v4_mapped(a);
    return dns;
}

}  // namespace

std::vector<AddrInfo> Resolver::getaddrinfo(std::string_view host, std::string_view service,
                                            const AddrInfoHints& hints_in) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string call = gai_call(host, service);
    AddrInfoHints hints = hints_in;
    check_hints(hints, host, call);
    if (host.empty() && service.empty()) fail(EAI_NONAME, host, call, "neither host nor service");
    if (host.find('\0') != std::string_view::npos)
        fail(EAI_NONAME, host, call, "the host name contains a NUL byte");
    apply_addrconfig(hints, host, call);
    std::vector<TypeProto> tps = resolve_service(service, hints, host, call);
    const bool want_canon = hints.flags & AI_CANONNAME;
    const bool mapped = hints.family == AF_INET6 && (hints.flags & AI_V4MAPPED);

    if (host.empty()) return build_results(no_host_addresses(hints), tps, "", false);
    if (auto num = parse_numeric(host))
        return build_results({numeric_in_family(*num, hints, mapped, host, call)}, tps,
                             std::string(host), want_canon);
    if (hints.flags & AI_NUMERICHOST)
        fail(EAI_NONAME, host, call, "AI_NUMERICHOST and a host that is not a numeric address");

    Impl& impl = *impl_;
    if (impl.opts.kind != Kind::ares) {
        impl.check_thread("getaddrinfo()");
        return libc_getaddrinfo(impl.opts.kind, std::string(host), std::string(service), hints,
                                call);
    }
    const bool want4 = hints.family != AF_INET6 || mapped;
    const bool want6 = hints.family != AF_INET;
    Answer ans = hosts_answer(impl.opts, host, hints, mapped, want4, want6);
    if (ans.found) {
        if (ans.addrs.empty()) fail(EAI_NODATA, host, call, "hosts file");
        sort_addresses(ans.addrs);
        return build_results(ans.addrs, tps, ans.canon, want_canon);
    }
    Answer dns = dns_answer(impl, host, hints, mapped, want6, call);
    sort_addresses(dns.addrs);
    return build_results(dns.addrs, tps, dns.canon.empty() ? std::string(host) : dns.canon,
                         want_canon);
}

// ---- gethostbyname, gethostbyaddr ----

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
        return libc_gethostbyname(impl.opts.kind, std::string(name_in), family, call);
    }
    const bool want4 = family == AF_INET, want6 = family == AF_INET6;
    Answer ans = hosts_lookup(hosts_path(impl.opts), lower(name_in), want4, want6);
    if (!ans.found && is_localhost(normalize_name(name_in)))
        ans = localhost_answer(normalize_name(name_in), want4, want6);
    int status = ARES_SUCCESS;
    if (!ans.found) {
        ans = impl.forward(std::string(name_in), want4, want6, name_in, call, "gethostbyname()",
                           status);
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
        return libc_gethostbyaddr(impl.opts.kind, *num, std::string(address), call);
    }
    HostEnt out;
    out.family = num->family;
    out.addresses.push_back(num->text());
    if (hosts_reverse(hosts_path(impl.opts), *num, out)) return out;
    Answer ans;
    int status = impl.reverse(*num, address, call, "gethostbyaddr()", ans);
    if (status != ARES_SUCCESS) fail(eai_from_ares(status), address, call, ares_detail(status));
    out.name = ans.canon;
    out.aliases = ans.aliases;
    return out;
}

// ---- getnameinfo ----

namespace {

// The service name for `port` (/etc/services), or the number.
std::string service_name(std::uint16_t port, int flags) {
    if (!(flags & NI_NUMERICSERV)) {
        servent se{}, *res = nullptr;
        char buf[1024];
        if (getservbyport_r(htons(port), (flags & NI_DGRAM) ? "udp" : "tcp", &se, buf, sizeof buf,
                            &res) == 0 &&
            res && *res->s_name)
            return res->s_name;
    }
    return std::to_string(port);
}

RawAddr raw_of(const Address& address) {
    if (address.family() == AF_INET)
        return v4(&reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr())->sin_addr);
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(address.sockaddr_ptr());
    return v6(&s6->sin6_addr, s6->sin6_scope_id);
}

// The numeric host, with "%scope" for a scoped IPv6 address as glibc writes it.
std::string numeric_host(const RawAddr& raw) {
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
}

// NI_NOFQDN, as glibc: drop the domain when it is this host's own domain.
void drop_own_domain(std::string& name) {
    char self[256] = "";
    if (gethostname(self, sizeof self - 1) == 0) {
        const char* dot = std::strchr(self, '.');
        auto n = name.find('.');
        if (dot && n != std::string::npos && lower(name.substr(n + 1)) == lower(dot + 1))
            name.resize(n);
    }
}

}  // namespace

NameInfo Resolver::getnameinfo(const Address& address, int flags) {
    std::shared_ptr<Impl> keep = impl_;
    const std::string text = address.family() == AF_UNSPEC ? "(unspecified)" : address.to_string();
    const std::string call = "getnameinfo(" + text + ")";
    constexpr int known = NI_NUMERICHOST | NI_NUMERICSERV | NI_NAMEREQD | NI_NOFQDN | NI_DGRAM;
    if (flags & ~known) fail(EAI_BADFLAGS, text, call, "unknown flag bits");
    if (address.family() != AF_INET && address.family() != AF_INET6)
        fail(EAI_FAMILY, text, call, "only IPv4 and IPv6 addresses have names");
    NameInfo out;
    out.service = service_name(address.port(), flags);
    const RawAddr raw = raw_of(address);
    if (flags & NI_NUMERICHOST) {
        out.host = numeric_host(raw);
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
        out.host = numeric_host(raw);
        return out;
    }
    if (flags & NI_NOFQDN) drop_own_domain(name);
    out.host = name;
    return out;
}

// ---- free functions: the calling hub's resolver ----

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
