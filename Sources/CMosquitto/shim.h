#ifndef HALL_GATEWAY_CMOSQUITTO_SHIM_H
#define HALL_GATEWAY_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <errno.h>
#include <netdb.h>

static inline int cmosquitto_errno(void) { return errno; }

/* The log levels worth keeping for an error message: (1<<n) macros are not imported. */
static const int cmosquitto_log_problems = MOSQ_LOG_ERR | MOSQ_LOG_WARNING;

/* getaddrinfo's message for the code libmosquitto leaves in errno after MOSQ_ERR_EAI. */
static inline const char *cmosquitto_gai_strerror(int code) { return gai_strerror(code); }

#endif
