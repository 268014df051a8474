#ifndef HALL_GATEWAY_CSYSTEMCLOCK_SHIM_H
#define HALL_GATEWAY_CSYSTEMCLOCK_SHIM_H
// adjtimex(2): whether NTP keeps the system clock right (not in Swift's Glibc module).
#include <sys/timex.h>
#endif
