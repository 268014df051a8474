#ifndef HALL_GATEWAY_CMOSQUITTO_SHIM_H
#define HALL_GATEWAY_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <errno.h>

static inline int cmosquitto_errno(void) { return errno; }

#endif
