// The baseline of `GatewayBenchmarks tcp-vs-libmodbus`: a plain libmodbus client reading 32 holding registers from
// unit ids 1..UNITS in turn, on one connection, as fast as the server answers, for SECONDS.
//
//   cc -O2 -o modbus_tcp_loop bench/modbus_tcp_loop.c $(pkg-config --cflags --libs libmodbus)
//   ./modbus_tcp_loop HOST PORT UNITS SECONDS
//
// Prints: transactions N failed F seconds S cpu C   (C: user + system CPU of this process, in seconds)
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT UNITS SECONDS\n", argv[0]);
        return 2;
    }
    int units = atoi(argv[3]);
    double seconds = atof(argv[4]);
    modbus_t *ctx = modbus_new_tcp(argv[1], atoi(argv[2]));
    if (ctx == NULL || units < 1) {
        fprintf(stderr, "cannot create the libmodbus context\n");
        return 1;
    }
    modbus_set_response_timeout(ctx, 0, 300000);
    if (modbus_connect(ctx) == -1) {
        fprintf(stderr, "cannot connect to %s:%s: %s\n", argv[1], argv[2], modbus_strerror(errno));
        return 1;
    }
    uint16_t registers[32];
    long transactions = 0, failed = 0;
    double start = now(), end = start + seconds, elapsed;
    do {
        for (int unit = 1; unit <= units; unit++) {
            modbus_set_slave(ctx, unit);
            if (modbus_read_registers(ctx, 0, 32, registers) == 32) {
                transactions++;
            } else {
                failed++;
            }
        }
        elapsed = now() - start;
    } while (start + elapsed < end);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
        + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    printf("transactions %ld failed %ld seconds %.3f cpu %.3f\n", transactions, failed, elapsed, cpu);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
