#ifndef HALL_GATEWAY_CMOSQUITTO_SHIM_H
#define HALL_GATEWAY_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static inline int cmosquitto_errno(void) { return errno; }

/* The log levels worth keeping for an error message: (1<<n) macros are not imported. */
static const int cmosquitto_log_problems = MOSQ_LOG_ERR | MOSQ_LOG_WARNING;

/* getaddrinfo's message for the code libmosquitto leaves in errno after MOSQ_ERR_EAI. */
static inline const char *cmosquitto_gai_strerror(int code) { return gai_strerror(code); }

/* libmosquitto 2.0 takes a TCP connect that failed under TLS (SSL_connect's SSL_ERROR_SYSCALL) for a handshake
 * still under way: it spins until the keepalive runs out and then says "Unknown error.". The socket knows better:
 * hung up while connecting means the connect failed. Returns its errno (SO_ERROR, else `seen`, the errno libmosquitto
 * left, when it is one a failed connect gives), -1 when failed for an unknown reason, 0 while it may still connect. */
static inline int cmosquitto_connect_error(int socket, int seen) {
    struct pollfd descriptor = {.fd = socket, .events = POLLOUT};
    if (socket < 0 || poll(&descriptor, 1, 0) != 1 || !(descriptor.revents & (POLLHUP | POLLERR))) return 0;
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(socket, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error != 0) return error;
    switch (seen) {
    case ECONNREFUSED: case ETIMEDOUT: case EHOSTUNREACH: case ENETUNREACH: case ECONNRESET: return seen;
    default: return -1;
    }
}

/* Acknowledges received segments at once. A broker with Nagle on (mosquitto's default) holds each PUBACK
 * until the previous one is acknowledged, and delayed ACKs make that 40 ms per batch. Linux leaves quick-ack
 * mode by itself, so this is set again after every read. */
static inline void cmosquitto_quick_ack(int socket) {
#ifdef TCP_QUICKACK
    int on = 1;
    if (socket >= 0) (void)setsockopt(socket, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
#else
    (void)socket;
#endif
}

#endif
