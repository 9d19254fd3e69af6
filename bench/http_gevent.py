#!/usr/bin/python3
"""http_gevent: the HTTP benchmark's (bench/http.py) reference server on gevent's StreamServer
(Debian package python3-gevent): the same protocol, read buffer size and write batching as
bench/http_libev.c and examples/http_hello.

    /usr/bin/python3 bench/http_gevent.py --port P

One greenlet per connection (StreamServer's default, no pool): recv into a READ_BUF buffer,
answer every complete request in it (each ends with a blank line) with one sendall of all the
responses together. A request that does not fit in the buffer closes the connection.
"""
import argparse
import sys

from gevent.server import StreamServer

READ_BUF = 8192
RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Length: 13\r\n"
            b"Content-Type: text/plain\r\n"
            b"\r\n"
            b"Hello, World!")


def handle(sock, _address):
    try:
        serve(sock)
    except ConnectionError:
        pass  # a reset by the client (wrk resets its connections when it stops) ends it too


def serve(sock):
    buf = b""
    recv = sock.recv
    sendall = sock.sendall
    while True:
        data = recv(READ_BUF - len(buf))
        if not data:
            return
        buf = buf + data if buf else data
        done = 0
        count = 0
        while True:
            end = buf.find(b"\r\n\r\n", done)
            if end < 0:
                break
            done = end + 4
            count += 1
        if done:
            buf = buf[done:]
        elif len(buf) >= READ_BUF:
            return  # request larger than the buffer
        if count:
            sendall(RESPONSE * count)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = StreamServer(("127.0.0.1", args.port), handle)
    server.init_socket()
    print(f"http_gevent listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
