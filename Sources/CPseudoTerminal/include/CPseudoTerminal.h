#ifndef HALL_GATEWAY_CPSEUDOTERMINAL_H
#define HALL_GATEWAY_CPSEUDOTERMINAL_H
#include <stddef.h>

/// Opens a new pseudo-terminal controller, unlocked; writes the device path into `path`.
/// Returns the controller fd, or -1 with errno set. (Glibc's Swift module hides posix_openpt.)
int hall_open_pseudo_terminal(char *path, size_t path_size);

/// Waits up to `nanoseconds` for `fd` to be readable: 1 if it is, 0 if the time passed, -1 with errno set.
/// (poll(2) counts in milliseconds; Glibc's Swift module hides ppoll.)
int hall_wait_readable(int fd, long long nanoseconds);

#endif
