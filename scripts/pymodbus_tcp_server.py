#!/usr/bin/env python3
"""A pymodbus (3.8.6, scripts/requirements-test.txt) Modbus TCP server on loopback, for the gateway's tests.

    pymodbus_tcp_server.py UNITS_JSON

UNITS_JSON maps unit ids to their holding registers from address 0: {"1": [0, 3, ...], "2": [...]}. Prints
`port N` once the server accepts connections, and serves until interrupted.
"""
import asyncio
import json
import signal
import socket
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import ModbusTcpServer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def main() -> None:
    units = json.loads(sys.argv[1])
    # Without zero_mode pymodbus adds 1 to every address: the block starts at 1 so that address 0 is registers[0].
    slaves = {
        int(unit): ModbusSlaveContext(hr=ModbusSequentialDataBlock(1, registers))
        for unit, registers in units.items()
    }
    port = free_port()
    server = ModbusTcpServer(ModbusServerContext(slaves=slaves, single=False), address=("127.0.0.1", port))
    serving = asyncio.create_task(server.serve_forever())
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    print("port", port, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    # A child started from a test runner's thread may inherit these signals blocked: it would outlive the tests.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    await stop.wait()
    await server.shutdown()
    serving.cancel()


if __name__ == "__main__":
    asyncio.run(main())
