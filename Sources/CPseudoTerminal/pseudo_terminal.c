#define _GNU_SOURCE
#include "CPseudoTerminal.h"
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int hall_open_pseudo_terminal(char *path, size_t path_size) {
    int controller = posix_openpt(O_RDWR | O_NOCTTY);
    if (controller < 0) return -1;
    if (grantpt(controller) != 0 || unlockpt(controller) != 0 || ptsname_r(controller, path, path_size) != 0) {
        close(controller);
        return -1;
    }
    return controller;
}

int hall_wait_readable(int fd, long long nanoseconds) {
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    struct timespec timeout = {.tv_sec = nanoseconds / 1000000000, .tv_nsec = nanoseconds % 1000000000};
    int ready = ppoll(&entry, 1, &timeout, NULL);
    return ready > 0 ? 1 : ready;
}
