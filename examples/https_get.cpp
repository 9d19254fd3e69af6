// A TLS client: fetch several https:// URLs at once, one greenlet each, and print what each
// connection negotiated.
//
//   https_get [--cafile CA.pem] [--insecure] [--alpn P1,P2] [--timeout SECONDS] URL...
//
// URL is https://HOST[:PORT][/PATH]. Each fetch connects with tls::create_connection (the
// certificate checked against HOST, against the system's CAs or --cafile; --insecure checks
// nothing), sends "GET PATH HTTP/1.1" with "Connection: close", reads the response (Content-Length,
// else to the end) and prints
//   URL: STATUS-LINE, N bytes, TLSv1.3 TLS_AES_256_GCM_SHA384, alpn h2|-, CN=...
// or the error (a verification failure says why: "certificate has expired", "host name
// mismatch ..."). Exit status: 0 when every fetch got a response, 1 otherwise, 2 for bad usage.
#include <cogent/cogent.hpp>
#include <cogent/tls.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct Url {
    std::string host;
    std::uint16_t port = 443;
    std::string path = "/";
};

bool parse_url(std::string_view u, Url& out) {
    constexpr std::string_view scheme = "https://";
    if (u.substr(0, scheme.size()) != scheme) return false;
    u.remove_prefix(scheme.size());
    const auto slash = u.find('/');
    std::string_view hostport = u.substr(0, slash);
    if (slash != std::string_view::npos) out.path = std::string(u.substr(slash));
    // [v6]:port, host:port, host
    auto colon = hostport.rfind(':');
    if (!hostport.empty() && hostport.front() == '[') {
        const auto close = hostport.find(']');
        if (close == std::string_view::npos) return false;
        out.host = std::string(hostport.substr(1, close - 1));
        colon = hostport.size() > close + 1 && hostport[close + 1] == ':' ? close + 1
                                                                          : std::string_view::npos;
    } else {
        out.host = std::string(hostport.substr(0, colon));
    }
    if (colon != std::string_view::npos) {
        const std::string p(hostport.substr(colon + 1));
        char* end = nullptr;
        const long port = std::strtol(p.c_str(), &end, 10);
        if (p.empty() || *end || port <= 0 || port > 65535) return false;
        out.port = static_cast<std::uint16_t>(port);
    }
    return !out.host.empty();
}

int usage() {
    std::fprintf(stderr,
                 "usage: https_get [--cafile CA.pem] [--insecure] [--alpn P1,P2] "
                 "[--timeout SECONDS] https://HOST[:PORT][/PATH]...\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string cafile, alpn;
    bool insecure = false;
    double timeout = 10;
    std::vector<std::string> urls;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--insecure") {
            insecure = true;
        } else if ((a == "--cafile" || a == "--alpn" || a == "--timeout") && i + 1 < argc) {
            const char* v = argv[++i];
            if (a == "--cafile") cafile = v;
            if (a == "--alpn") alpn = v;
            if (a == "--timeout") {
                char* end = nullptr;
                timeout = std::strtod(v, &end);
                if (*end || !(timeout > 0)) return usage();
            }
        } else if (!a.empty() && a[0] != '-') {
            urls.emplace_back(a);
        } else {
            return usage();
        }
    }
    if (urls.empty()) return usage();

    try {
        auto ctx = cafile.empty() ? cogent::tls::Context::client()
                                  : cogent::tls::Context(cogent::tls::Context::Role::client);
        if (!cafile.empty()) ctx.load_verify_locations(cafile);
        if (insecure) {
            ctx.set_check_hostname(false);
            ctx.set_verify(cogent::tls::Verify::none);
        }
        if (!alpn.empty()) {
            std::vector<std::string> protos;
            for (std::size_t p = 0; p <= alpn.size();) {
                const auto q = std::min(alpn.find(',', p), alpn.size());
                protos.push_back(alpn.substr(p, q - p));
                p = q + 1;
            }
            ctx.set_alpn_protocols(protos);
        }

        int failures = 0;
        std::vector<cogent::Greenlet<void>> fetches;
        for (const auto& u : urls) {
            fetches.push_back(cogent::spawn([&, u] {
                Url url;
                if (!parse_url(u, url)) {
                    std::printf("%s: not an https://HOST[:PORT][/PATH] URL\n", u.c_str());
                    ++failures;
                    return;
                }
                try {
                    auto s = cogent::create_connection(url.host, url.port, ctx,
                                                       std::chrono::duration<double>(timeout));
                    s.sendall("GET " + url.path + " HTTP/1.1\r\nHost: " + url.host +
                              "\r\nConnection: close\r\n\r\n");
                    // The head, then Content-Length bytes (or up to the end of the stream).
                    std::string body;
                    std::size_t head_end = std::string::npos, want = std::string::npos;
                    for (std::string chunk;
                         body.size() < want && !(chunk = s.recv(65536)).empty();) {
                        body += chunk;
                        if (head_end == std::string::npos &&
                            (head_end = body.find("\r\n\r\n")) != std::string::npos) {
                            const auto cl = body.find("\r\nContent-Length:");
                            if (cl != std::string::npos && cl < head_end)
                                want = head_end + 4 +
                                       std::strtoul(body.c_str() + cl + 17, nullptr, 10);
                        }
                    }
                    const std::string status = body.substr(0, body.find("\r\n"));
                    const auto cert = s.peer_certificate();
                    const std::string alpn_got = s.alpn_protocol();
                    std::printf("%s: %s, %zu bytes, %s %s, alpn %s, %s\n", u.c_str(),
                                status.c_str(), body.size(), s.version().c_str(),
                                s.cipher().c_str(), alpn_got.empty() ? "-" : alpn_got.c_str(),
                                cert ? cert.subject().c_str() : "no certificate");
                    if (status.empty()) ++failures;
                } catch (const std::exception& e) {
                    std::printf("%s: %s\n", u.c_str(), e.what());
                    ++failures;
                }
            }));
        }
        cogent::joinall(fetches);
        return failures ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "https_get: %s\n", e.what());
        return 1;
    }
}
