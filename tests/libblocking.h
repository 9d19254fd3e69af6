// libblocking: a small C library that blocks in plain libc calls, standing in for the libraries
// users patch (libzmq, libpq, ...). test_patch_linked's own code calls no hooked libc function:
// every blocking call happens in here, so the monkey patch only helps if the program loads it.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// socketpair(AF_UNIX, SOCK_STREAM) into sv, each end with SO_RCVTIMEO of timeout_ms (so that an
// unpatched recv gives up instead of hanging the thread for ever). 0, or -1 with errno.
int blocking_pair(int sv[2], int timeout_ms);
// close(fd).
int blocking_close(int fd);
// A blocking recv of one byte: the byte (0-255), or -1 (errno; EAGAIN after SO_RCVTIMEO).
int blocking_recv_byte(int fd);
// A blocking send of one byte: 1, or -1 with errno.
int blocking_send_byte(int fd, int byte);
// poll(fd, POLLIN, timeout_ms): poll's result (1 when readable, 0 on timeout).
int blocking_poll_in(int fd, int timeout_ms);
// nanosleep for ms milliseconds: 0, or -1 with errno.
int blocking_sleep_ms(int ms);

#ifdef __cplusplus
}
#endif
