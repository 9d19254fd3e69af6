// The name-resolving half of sockets (socket.hpp): create_connection and Socket::connect to a
// host name. They need the resolver (dns.hpp), which sits above the io layer that Socket lives
// in, so they live here.
#include <sys/socket.h>

#include <cerrno>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

#include "cogent/dns.hpp"
#include "cogent/socket.hpp"

namespace cogent {

Socket create_connection(std::string_view host, std::uint16_t port, TimeoutArg timeout,
                         std::optional<Address> source) {
    // Numeric hosts directly, names through the hub's resolver; each address in turn (as
    // Python's create_connection), the last failure thrown when none connects.
    std::vector<Address> targets =
        resolve_addresses(host, port, source ? source->family() : AF_UNSPEC, SOCK_STREAM);
    std::exception_ptr last;
    for (const Address& target : targets) {
        try {
            Socket s(target.family(), SOCK_STREAM);
            s.set_timeout(timeout);
            if (source) s.bind(*source);
            s.connect(target);
            return s;
        } catch (const std::system_error&) {
            last = std::current_exception();
        }
    }
    if (last) std::rethrow_exception(last);
    throw std::system_error(
        EADDRNOTAVAIL, std::generic_category(),
        "cogent: create_connection: " + std::string(host) + " has no address to connect to");
}

void Socket::connect(std::string_view host, std::uint16_t port) {
    fd_check("connect");
    const int type = type_ == SOCK_DGRAM ? SOCK_DGRAM : SOCK_STREAM;
    std::vector<Address> targets = resolve_addresses(host, port, family_, type);
    connect(targets.at(0));
}

}  // namespace cogent
