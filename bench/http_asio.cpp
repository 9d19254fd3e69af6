// http_asio: the HTTP benchmark's (bench/http.py) server written with Boost.Asio and C++20
// coroutines: the same protocol, buffers and write batching as bench/http_libev.c and
// examples/http_hello.
//
//   http_asio --port P
//
// Single-threaded: one io_context (concurrency hint 1) run by the main thread. One coroutine
// per connection (co_spawn), reading with async_read_some into a READ_BUF-byte buffer and
// answering every complete request in it (each ends with a blank line) with one async_write of
// all the responses together. A request that does not fit in the buffer closes the connection.
// Errors are taken as error codes (redirect_error), not exceptions, so that the end of every
// connection does not cost a throw.

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>: it comes first.
// clang-format off
#include <utility>
// clang-format on

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>  // also ::memmem (GNU; g++ defines _GNU_SOURCE)
#include <memory>
#include <string>
#include <string_view>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr std::size_t READ_BUF = 8192;

constexpr std::string_view RESPONSE =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 13\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello, World!";

asio::awaitable<void> session(tcp::socket sock) {
    // Heap buffer: an array in the coroutine frame would work too, but this keeps the
    // frame small and mirrors the other servers' per-connection allocation.
    auto in = std::make_unique<char[]>(READ_BUF);
    std::size_t in_len = 0;
    std::string out;
    boost::system::error_code ec;
    for (;;) {
        std::size_t n =
            co_await sock.async_read_some(asio::buffer(in.get() + in_len, READ_BUF - in_len),
                                          asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;  // EOF or error: the socket closes with the coroutine
        in_len += n;

        // memmem, as the other servers: the search is a visible part of the cost with
        // pipelining, and the comparison is about the I/O frameworks, not string search.
        std::size_t done = 0, count = 0;
        while (const void* end = memmem(in.get() + done, in_len - done, "\r\n\r\n", 4)) {
            done = static_cast<std::size_t>(static_cast<const char*>(end) - in.get()) + 4;
            ++count;
        }
        if (done) {
            std::memmove(in.get(), in.get() + done, in_len - done);
            in_len -= done;
        } else if (in_len == READ_BUF) {
            co_return;  // request larger than the buffer
        }
        if (count) {
            out.clear();
            for (std::size_t i = 0; i < count; ++i) out.append(RESPONSE);
            co_await asio::async_write(sock, asio::buffer(out),
                                       asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
        }
    }
}

asio::awaitable<void> listener(tcp::acceptor& acceptor) {
    boost::system::error_code ec;
    for (;;) {
        tcp::socket sock =
            co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
            continue;
        }
        asio::co_spawn(acceptor.get_executor(), session(std::move(sock)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int port = -1;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: %s --port P\n", argv[0]);
            return 2;
        }
    }
    if (port < 0 || port > 65535) {
        std::fprintf(stderr, "usage: %s --port P   (0 <= P <= 65535)\n", argv[0]);
        return 2;
    }
    asio::io_context ctx(1);
    tcp::acceptor acceptor(ctx);
    tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(SOMAXCONN);
    asio::co_spawn(ctx, listener(acceptor), asio::detached);
    std::printf("http_asio listening on 127.0.0.1:%d\n", port);
    std::fflush(stdout);
    ctx.run();
    return 0;
}
