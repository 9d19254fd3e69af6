// Resolver errors: the EAI_* codes and the messages DnsError carries, as glibc's getaddrinfo
// would report the same outcome.
#include <ares.h>
#include <netdb.h>

#include <cstdio>

#include "cogent/exceptions.hpp"
#include "services/dns_internal.hpp"

namespace cogent::detail::dns {

namespace {

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

}  // namespace

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

void fail(int code, std::string_view host, const std::string& call, const std::string& detail) {
    std::string msg = "cogent: " + call + ": " + gai_strerror(code) + " (" + eai_name(code);
    if (!detail.empty()) msg += "; " + detail;
    msg += ")";
    throw DnsError(code, std::string(host), msg);
}

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

std::string gai_call(std::string_view host, std::string_view service) {
    std::string call = "getaddrinfo(" + (host.empty() ? std::string("NULL") : quote(host));
    if (!service.empty()) call += ", " + quote(service);
    return call + ")";
}

}  // namespace cogent::detail::dns
