// tls::handler (TLS servers on StreamServer) and tls::create_connection.
#include <openssl/ssl.h>

#include <stdexcept>
#include <utility>

#include "tls/tls_internal.hpp"

namespace cogent::tls {

StreamServer::Handler handler(const Context& ctx, Handler handler, HandlerOptions options) {
    if (ctx.role() != Context::Role::server)
        throw std::invalid_argument(
            "tls::handler: the context is a client context "
            "(use tls::Context::server())");
    if (!handler) throw std::invalid_argument("tls::handler: null handler");
    if (!SSL_CTX_get0_certificate(ctx.native_handle()))
        throw std::invalid_argument(
            "tls::handler: the server context has no certificate (load_cert_chain)");
    return [ctx, handler = std::move(handler), options = std::move(options)](cogent::Socket& raw,
                                                                             const Address& peer) {
        Socket s(std::move(raw), ctx);
        try {
            s.handshake(options.handshake_timeout);
        } catch (const std::exception& e) {
            // A failed handshake ends this connection only (Error, VerificationError, a reset,
            // a timeout). Kills and Timeout scopes (not std::exception) go on unwinding.
            if (options.on_handshake_error) options.on_handshake_error(e, peer);
            return;
        }
        handler(s, peer);
    };
}

Socket create_connection(std::string_view host, std::uint16_t port, const Context& ctx,
                         TimeoutArg timeout, std::optional<Address> source) {
    if (ctx.role() != Context::Role::client)
        throw std::invalid_argument(
            "tls::create_connection: the context is a server context "
            "(use tls::Context::client())");
    cogent::Socket raw = cogent::create_connection(host, port, timeout, std::move(source));
    SocketOptions opts;
    opts.server_hostname = std::string(host);
    Socket s(std::move(raw), ctx, std::move(opts));
    s.handshake();
    return s;
}

}  // namespace cogent::tls
