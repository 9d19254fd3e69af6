// tls::Context (an SSL_CTX and its settings), Certificate and Session: everything of tls.hpp
// that does not wait.
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>

#include "tls/tls_internal.hpp"

namespace cogent::tls {

namespace detail {

ContextImpl::~ContextImpl() {
    if (ctx) SSL_CTX_free(ctx);
}

std::string take_ssl_reason(unsigned long* code) {
    unsigned long first = ERR_get_error();
    if (code) *code = first;
    std::string out;
    if (first) {
        const char* r = ERR_reason_error_string(first);
        if (r) {
            out = r;
        } else {
            char buf[256];
            ERR_error_string_n(first, buf, sizeof buf);
            out = buf;
        }
    }
    ERR_clear_error();
    return out;
}

void throw_ssl(const std::string& what) {
    unsigned long code = 0;
    std::string reason = take_ssl_reason(&code);
    if (reason.empty()) reason = "unknown OpenSSL error";
    throw Error(what + ": " + reason, reason, code);
}

}  // namespace detail

namespace {

using detail::ContextImpl;
using detail::throw_ssl;

struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr mem_bio(std::string_view pem) {
    if (pem.size() > std::size_t(INT32_MAX)) throw std::invalid_argument("tls: PEM text too large");
    BioPtr b(BIO_new_mem_buf(pem.data(), int(pem.size())));
    if (!b) throw std::bad_alloc();
    return b;
}

BioPtr file_bio(const std::string& path, const char* what) {
    BioPtr b(BIO_new_file(path.c_str(), "r"));
    if (!b) throw_ssl(std::string("tls::Context::") + what + ": cannot read '" + path + "'");
    return b;
}

// The password callback of PEM_read_bio_PrivateKey: userdata is the password (std::string).
int password_cb(char* buf, int size, int, void* userdata) {
    const auto* pw = static_cast<const std::string*>(userdata);
    if (!pw || pw->empty() || size <= 0) return -1;  // encrypted and no password: fail
    const int n = int(std::min<std::size_t>(pw->size(), std::size_t(size)));
    std::memcpy(buf, pw->data(), std::size_t(n));
    return n;
}

int version_number(Version v) {
    switch (v) {
        case Version::tls1_0:
            return TLS1_VERSION;
        case Version::tls1_1:
            return TLS1_1_VERSION;
        case Version::tls1_2:
            return TLS1_2_VERSION;
        case Version::tls1_3:
            return TLS1_3_VERSION;
    }
    throw std::invalid_argument("tls::Context: unknown protocol version");
}

// Servers: pick our first ALPN protocol that the client offers; none in common: no ALPN.
int alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
    const auto* impl = static_cast<const ContextImpl*>(arg);
    const auto& ours = impl->alpn;
    for (std::size_t i = 0; i < ours.size(); i += 1 + ours[i]) {
        for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen) break;
            if (in[j] == ours[i] && std::memcmp(in + j + 1, &ours[i + 1], ours[i]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

// The SNI callback lives in socket.cpp (it hands the chosen context to the socket, which keeps
// it alive); the new-session callback too (it needs the socket's cache key).
namespace detail {
int sni_callback(SSL* ssl, int* alert, void* arg);
int new_session_callback(SSL* ssl, SSL_SESSION* sess);
}  // namespace detail

Context::Context(Role role) : impl_(std::make_shared<ContextImpl>()) {
    auto& c = *impl_;
    c.role = role;
    c.ctx = SSL_CTX_new(role == Role::client ? TLS_client_method() : TLS_server_method());
    if (!c.ctx) throw_ssl("tls::Context: SSL_CTX_new");
    SSL_CTX_set_app_data(c.ctx, &c);
    SSL_CTX_set_min_proto_version(c.ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c.ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // Partial writes: send() returns after a record; sendall and retries may pass a moved
    // buffer. Release buffers: an idle connection holds no 34 KiB of record buffers (nginx does
    // the same). No read-ahead in OpenSSL: the BIO reads ahead instead (socket.cpp), so that
    // bytes after a close_notify are not lost to unwrap().
    SSL_CTX_set_mode(c.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
    if (role == Role::client) {
        c.verify = Verify::required;
        c.check_hostname = true;
        c.session_cache = true;
        SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_session_cache_mode(c.ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c.ctx, detail::new_session_callback);
    } else {
        c.verify = Verify::none;
        SSL_CTX_set_verify(c.ctx, SSL_VERIFY_NONE, nullptr);
        // Tickets carry the sessions (stateless); nothing is stored on the server.
        SSL_CTX_set_session_cache_mode(c.ctx,
                                       SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        static const unsigned char sid[] = "cogent";
        SSL_CTX_set_session_id_context(c.ctx, sid, sizeof sid - 1);
        SSL_CTX_set_tlsext_servername_callback(c.ctx, detail::sni_callback);
        SSL_CTX_set_tlsext_servername_arg(c.ctx, &c);
        SSL_CTX_set_alpn_select_cb(c.ctx, alpn_select, &c);
    }
}

Context Context::client() {
    Context c(Role::client);
    c.load_default_verify_paths();
    return c;
}

Context Context::server() { return Context(Role::server); }

Context::Role Context::role() const noexcept { return impl_->role; }
ssl_ctx_st* Context::native_handle() const noexcept { return impl_->ctx; }

void Context::load_cert_chain(const std::string& certfile, const std::string& keyfile,
                              const std::string& password) {
    if (certfile.empty()) throw std::invalid_argument("tls::Context::load_cert_chain: no certfile");
    SSL_CTX* ctx = impl_->ctx;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, certfile.c_str()) != 1)
        throw_ssl("tls::Context::load_cert_chain: certificate file '" + certfile + "'");
    const std::string& kf = keyfile.empty() ? certfile : keyfile;
    BioPtr b = file_bio(kf, "load_cert_chain: key file");
    EVP_PKEY* key =
        PEM_read_bio_PrivateKey(b.get(), nullptr, password_cb, const_cast<std::string*>(&password));
    if (!key) throw_ssl("tls::Context::load_cert_chain: private key in '" + kf + "'");
    const int ok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (ok != 1) throw_ssl("tls::Context::load_cert_chain: key in '" + kf + "'");
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw_ssl("tls::Context::load_cert_chain: the key in '" + kf +
                  "' does not match the certificate in '" + certfile + "'");
}

void Context::use_cert_chain_pem(std::string_view cert_chain_pem, std::string_view key_pem,
                                 const std::string& password) {
    SSL_CTX* ctx = impl_->ctx;
    ERR_clear_error();
    BioPtr b = mem_bio(cert_chain_pem);
    X509* leaf = PEM_read_bio_X509_AUX(b.get(), nullptr, nullptr, nullptr);
    if (!leaf) throw_ssl("tls::Context::use_cert_chain_pem: no certificate in the PEM text");
    const int ok = SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    if (ok != 1) throw_ssl("tls::Context::use_cert_chain_pem: certificate");
    SSL_CTX_clear_chain_certs(ctx);
    while (X509* ca = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            throw_ssl("tls::Context::use_cert_chain_pem: chain certificate");
        }
    }
    ERR_clear_error();  // the end of the PEM text
    BioPtr kb = mem_bio(key_pem);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb.get(), nullptr, password_cb,
                                            const_cast<std::string*>(&password));
    if (!key) throw_ssl("tls::Context::use_cert_chain_pem: private key");
    const int kok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (kok != 1) throw_ssl("tls::Context::use_cert_chain_pem: private key");
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw_ssl("tls::Context::use_cert_chain_pem: the key does not match the certificate");
}

void Context::load_verify_locations(const std::string& cafile, const std::string& capath) {
    if (cafile.empty() && capath.empty())
        throw std::invalid_argument("tls::Context::load_verify_locations: no cafile or capath");
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(impl_->ctx, cafile.empty() ? nullptr : cafile.c_str(),
                                      capath.empty() ? nullptr : capath.c_str()) != 1)
        throw_ssl("tls::Context::load_verify_locations: '" + (cafile.empty() ? capath : cafile) +
                  "'");
}

void Context::load_verify_pem(std::string_view ca_pem) {
    ERR_clear_error();
    BioPtr b = mem_bio(ca_pem);
    X509_STORE* store = SSL_CTX_get_cert_store(impl_->ctx);
    int n = 0;
    while (X509* ca = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) {
        const int ok = X509_STORE_add_cert(store, ca);
        X509_free(ca);
        if (ok != 1) throw_ssl("tls::Context::load_verify_pem: adding a CA");
        ++n;
    }
    if (n == 0) throw_ssl("tls::Context::load_verify_pem: no certificate in the PEM text");
    ERR_clear_error();
}

void Context::load_default_verify_paths() {
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(impl_->ctx) != 1)
        throw_ssl("tls::Context::load_default_verify_paths");
}

void Context::set_verify(Verify mode) {
    auto& c = *impl_;
    if (mode == Verify::none && c.check_hostname)
        throw std::invalid_argument(
            "tls::Context::set_verify: Verify::none while host names are checked "
            "(set_check_hostname(false) first)");
    int flags = SSL_VERIFY_NONE;
    if (mode != Verify::none) flags = SSL_VERIFY_PEER;
    if (mode == Verify::required && c.role == Role::server)
        flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c.ctx, flags, nullptr);
    c.verify = mode;
}

Verify Context::verify() const noexcept { return impl_->verify; }

void Context::set_check_hostname(bool on) {
    if (on && impl_->verify == Verify::none) set_verify(Verify::required);
    impl_->check_hostname = on;
}

bool Context::check_hostname() const noexcept { return impl_->check_hostname; }

void Context::set_min_version(Version v) {
    if (SSL_CTX_set_min_proto_version(impl_->ctx, version_number(v)) != 1)
        throw_ssl("tls::Context::set_min_version");
}

void Context::set_max_version(Version v) {
    if (SSL_CTX_set_max_proto_version(impl_->ctx, version_number(v)) != 1)
        throw_ssl("tls::Context::set_max_version");
}

void Context::set_ciphers(const std::string& list) {
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(impl_->ctx, list.c_str()) != 1)
        throw_ssl("tls::Context::set_ciphers: '" + list + "'");
}

void Context::set_ciphersuites(const std::string& list) {
    ERR_clear_error();
    if (SSL_CTX_set_ciphersuites(impl_->ctx, list.c_str()) != 1)
        throw_ssl("tls::Context::set_ciphersuites: '" + list + "'");
}

void Context::set_alpn_protocols(const std::vector<std::string>& protocols) {
    std::vector<unsigned char> wire;
    for (const auto& p : protocols) {
        if (p.empty() || p.size() > 255)
            throw std::invalid_argument("tls::Context::set_alpn_protocols: protocol name '" + p +
                                        "' must be 1 to 255 bytes");
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
    }
    if (impl_->role == Role::client) {
        // SSL_CTX_set_alpn_protos returns 0 on success.
        if (SSL_CTX_set_alpn_protos(impl_->ctx, wire.empty() ? nullptr : wire.data(),
                                    unsigned(wire.size())) != 0)
            throw_ssl("tls::Context::set_alpn_protocols");
    }
    impl_->alpn = std::move(wire);
}

void Context::set_sni_callback(SniCallback cb) {
    if (impl_->role != Role::server)
        throw std::invalid_argument("tls::Context::set_sni_callback: a server context's setting");
    impl_->sni = std::move(cb);
}

void Context::set_session_tickets(bool on) {
    if (on)
        SSL_CTX_clear_options(impl_->ctx, SSL_OP_NO_TICKET);
    else
        SSL_CTX_set_options(impl_->ctx, SSL_OP_NO_TICKET);
    if (impl_->role == Role::server) SSL_CTX_set_num_tickets(impl_->ctx, on ? 2 : 0);
}

void Context::set_num_tickets(std::size_t n) {
    if (impl_->role != Role::server)
        throw std::invalid_argument("tls::Context::set_num_tickets: a server context's setting");
    if (SSL_CTX_set_num_tickets(impl_->ctx, n) != 1) throw_ssl("tls::Context::set_num_tickets");
}

void Context::set_session_cache(bool on) {
    impl_->session_cache = on;
    if (!on) clear_session_cache();
}

void Context::clear_session_cache() {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->sessions.clear();
}

// --- Certificate ---

Certificate::Certificate(x509_st* cert) {
    if (!cert) return;
    X509_up_ref(cert);
    x509_.reset(cert, X509_free);
}

Certificate Certificate::from_pem(std::string_view pem) {
    ERR_clear_error();
    BioPtr b = mem_bio(pem);
    X509* x = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr);
    if (!x) throw_ssl("tls::Certificate::from_pem");
    Certificate c(x);
    X509_free(x);
    return c;
}

namespace {

std::string bio_text(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return n > 0 ? std::string(data, std::size_t(n)) : std::string();
}

std::string name_text(const X509_NAME* name) {
    if (!name) return {};
    BioPtr b(BIO_new(BIO_s_mem()));
    if (!b) throw std::bad_alloc();
    X509_NAME_print_ex(b.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    return bio_text(b.get());
}

std::chrono::system_clock::time_point asn1_time(const ASN1_TIME* t) {
    std::tm tm{};
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return {};
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

template <class F>
void each_alt_name(X509* x, F&& f) {
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
    if (!names) return;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) f(sk_GENERAL_NAME_value(names, i));
    GENERAL_NAMES_free(names);
}

X509* need(const std::shared_ptr<x509_st>& x) {
    if (!x) throw std::logic_error("tls::Certificate: empty certificate");
    return x.get();
}

}  // namespace

std::string Certificate::subject() const { return name_text(X509_get_subject_name(need(x509_))); }
std::string Certificate::issuer() const { return name_text(X509_get_issuer_name(need(x509_))); }

std::string Certificate::common_name() const {
    X509_NAME* n = X509_get_subject_name(need(x509_));
    const int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    if (i < 0) return {};
    const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       std::size_t(ASN1_STRING_length(s)));
}

std::vector<std::string> Certificate::dns_names() const {
    std::vector<std::string> out;
    each_alt_name(need(x509_), [&](GENERAL_NAME* g) {
        if (g->type != GEN_DNS) return;
        const ASN1_STRING* s = g->d.dNSName;
        out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         std::size_t(ASN1_STRING_length(s)));
    });
    return out;
}

std::vector<std::string> Certificate::ip_addresses() const {
    std::vector<std::string> out;
    each_alt_name(need(x509_), [&](GENERAL_NAME* g) {
        if (g->type != GEN_IPADD) return;
        const ASN1_STRING* s = g->d.iPAddress;
        char buf[INET6_ADDRSTRLEN] = {};
        const int len = ASN1_STRING_length(s);
        if (len == 4 || len == 16)
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof buf);
        out.emplace_back(buf);
    });
    return out;
}

std::chrono::system_clock::time_point Certificate::not_before() const {
    return asn1_time(X509_get0_notBefore(need(x509_)));
}

std::chrono::system_clock::time_point Certificate::not_after() const {
    return asn1_time(X509_get0_notAfter(need(x509_)));
}

std::string Certificate::serial() const {
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(need(x509_)), nullptr);
    if (!bn) throw std::bad_alloc();
    char* hex = BN_bn2hex(bn);
    std::string out = hex ? hex : "";
    OPENSSL_free(hex);
    BN_free(bn);
    return out;
}

std::string Certificate::pem() const {
    BioPtr b(BIO_new(BIO_s_mem()));
    if (!b || PEM_write_bio_X509(b.get(), need(x509_)) != 1) throw std::bad_alloc();
    return bio_text(b.get());
}

std::string Certificate::der() const {
    unsigned char* buf = nullptr;
    const int n = i2d_X509(need(x509_), &buf);
    if (n < 0) throw_ssl("tls::Certificate::der");
    std::string out(reinterpret_cast<const char*>(buf), std::size_t(n));
    OPENSSL_free(buf);
    return out;
}

// --- Session ---

Session::Session(ssl_session_st* s) {
    if (!s) return;
    SSL_SESSION_up_ref(s);
    s_.reset(s, SSL_SESSION_free);
}

bool Session::resumable() const {
    if (!s_) return false;
    if (!SSL_SESSION_is_resumable(s_.get())) return false;
    const long t = SSL_SESSION_get_time(s_.get());
    const long timeout = SSL_SESSION_get_timeout(s_.get());
    return std::time(nullptr) < t + timeout;
}

}  // namespace cogent::tls
