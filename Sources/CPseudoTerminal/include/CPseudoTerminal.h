#ifndef HALL_GATEWAY_CPSEUDOTERMINAL_H
#define HALL_GATEWAY_CPSEUDOTERMINAL_H
#include <stddef.h>

/// Opens a new pseudo-terminal controller, unlocked; writes the device path into `path`.
/// Returns the controller fd, or -1 with errno set. (Glibc's Swift module hides posix_openpt.)
int hall_open_pseudo_terminal(char *path, size_t path_size);

#endif
