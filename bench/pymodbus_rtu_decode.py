#!/usr/bin/env python3
"""Decode throughput of pymodbus 3.8.6's RTU framer (the Python gateways' codec), for comparison with
`swift run -c release ProtocolBenchmarks` ("modbus-rtu responses": the same four responses, 2,000 frames,
three garbage bytes after every tenth, fed in 64-byte chunks).

    pip install pymodbus==3.8.6     # pinned in scripts/requirements-test.txt
    python3 bench/pymodbus_rtu_decode.py [seconds]
"""
import logging
import sys
import time

import pymodbus
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse, WriteSingleRegisterResponse

assert pymodbus.__version__ == "3.8.6", pymodbus.__version__
logging.disable(logging.CRITICAL)  # pymodbus logs every skipped garbage byte

responses = [
    ReadHoldingRegistersResponse(dev_id=1, registers=list(range(10))),
    ReadInputRegistersResponse(dev_id=2, registers=[0x1234, 0x5678, 0x9ABC, 0xDEF0]),
    WriteSingleRegisterResponse(dev_id=3, address=0x0010, registers=[1]),
    ExceptionResponse(0x03, 0x02, 4),
]
framer = FramerRTU(DecodePDU(is_server=False))
frames = [framer.buildFrame(pdu) for pdu in responses]
stream = b""
for index in range(2000):
    stream += frames[index % len(frames)]
    if index % 10 == 9:
        stream += bytes([0x00, 0x13, 0x37])


def decode_all(chunk=64):
    decoder = FramerRTU(DecodePDU(is_server=False))
    buffer = b""
    found = 0
    for start in range(0, len(stream), chunk):
        buffer += stream[start:start + chunk]
        while True:
            used, pdu = decoder.processIncomingFrame(buffer)
            if not used:
                break
            buffer = buffer[used:]
            if pdu is not None:
                found += 1
    return found


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2
count = decode_all()
began = time.perf_counter()
decoded_bytes = 0
while time.perf_counter() - began < seconds:
    assert decode_all() == count
    decoded_bytes += len(stream)
elapsed = time.perf_counter() - began
print(f"pymodbus {pymodbus.__version__} FramerRTU: {decoded_bytes / elapsed / 1e6:.2f} MB/s, "
      f"{count} of 2000 frames per pass (Python {sys.version.split()[0]})")
