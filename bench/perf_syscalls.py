"""The write(2) calls and read(2) returns that bench/bus.sh records with perf, read from `perf script -F
tid,time,event,trace`: writes as (seconds, tid, fd, count), reads as (seconds, tid, bytes read)."""
import re

WRITE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+syscalls:sys_enter_write:\s+fd: (0x[0-9a-f]+), buf: 0x[0-9a-f]+, "
                   r"count: (0x[0-9a-f]+)")
READ = re.compile(r"\s*(\d+)\s+([\d.]+):\s+syscalls:sys_exit_read:\s+(0x[0-9a-f]+)")


def load(lines):
    writes, reads = [], []
    for line in lines:
        m = WRITE.match(line)
        if m:
            writes.append((float(m[2]), int(m[1]), int(m[3], 16), int(m[4], 16)))
            continue
        m = READ.match(line)
        if m:
            reads.append((float(m[2]), int(m[1]), int(m[3], 16)))
    return writes, reads
