// Internal side of tls.hpp: the context's state and the error helpers shared by src/tls/.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cogent/tls.hpp"

namespace cogent::tls::detail {

// What a Context is: the SSL_CTX (its app data points back here) and what OpenSSL does not keep
// for us. Shared by the Context handles and by every socket made from it (a socket keeps its
// context alive).
struct ContextImpl {
    SSL_CTX* ctx = nullptr;
    Context::Role role = Context::Role::client;
    Verify verify = Verify::none;
    bool check_hostname = false;
    bool session_cache = false;       // clients: resume from `sessions`
    std::vector<unsigned char> alpn;  // wire format: length-prefixed names
    Context::SniCallback sni;

    // Client session cache: the newest session per "server name|peer address".
    std::mutex mu;
    std::unordered_map<std::string, Session> sessions;
    static constexpr std::size_t kMaxSessions = 4096;

    ~ContextImpl();
};

// OpenSSL's reason for the oldest error queued on this thread ("" when none); clears the queue.
std::string take_ssl_reason(unsigned long* code = nullptr);
// Throw Error("WHAT: REASON") from this thread's OpenSSL error queue (cleared).
[[noreturn]] void throw_ssl(const std::string& what);

}  // namespace cogent::tls::detail
