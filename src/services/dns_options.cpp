// Resolver::Options: what a Resolver accepts, and the options the COGENT_RESOLVER* settings
// give (core/config.cpp reads the variables; their meaning is the resolver's).
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "core/config.hpp"
#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

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

namespace {

// COGENT_RESOLVER's value, any case.
Resolver::Kind parse_kind(const std::string& setting) {
    std::string v = lower(setting);
    if (v == "ares") return Resolver::Kind::ares;
    if (v == "thread") return Resolver::Kind::thread;
    if (v == "block") return Resolver::Kind::block;
    throw std::invalid_argument("cogent: COGENT_RESOLVER='" + setting +
                                "' is not one of ares, thread, block");
}

}  // namespace

}  // namespace cogent::detail::dns

namespace cogent {

using namespace detail;
using namespace detail::dns;

Resolver::Options Resolver::options_from_environment() {
    ResolverSettings env = resolver_settings();  // config.cpp reads the variables
    Options o;
    if (!env.kind.empty()) o.kind = parse_kind(env.kind);
    for (const auto& item : env.servers) server_csv_entry(item, "COGENT_RESOLVER_SERVERS");
    o.servers = std::move(env.servers);
    if (env.timeout_s)
        o.timeout = detail::saturate(std::chrono::duration<double>(*env.timeout_s),
                                     "COGENT_RESOLVER_TIMEOUT");
    o.tries = env.tries;
    return o;
}

}  // namespace cogent
