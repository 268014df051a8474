#ifndef HALL_GATEWAY_CMOSQUITTO_SHIM_H
#define HALL_GATEWAY_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static inline int cmosquitto_errno(void) { return errno; }

/* The log levels worth keeping for an error message: (1<<n) macros are not imported. */
static const int cmosquitto_log_problems = MOSQ_LOG_ERR | MOSQ_LOG_WARNING;

/* getaddrinfo's message for the code libmosquitto leaves in errno after MOSQ_ERR_EAI. */
static inline const char *cmosquitto_gai_strerror(int code) { return gai_strerror(code); }

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
