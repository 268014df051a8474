#ifndef HALL_GATEWAY_CSERIALPORT_SHIM_H
#define HALL_GATEWAY_CSERIALPORT_SHIM_H
#include <libserialport.h>
#endif
