#!/usr/bin/env python3
"""Golden Modbus vectors from an independent implementation: pymodbus (pinned in requirements-test.txt).

Writes Tests/ProtocolTests/Fixtures/modbus/frames.json (RTU and TCP ADUs built by pymodbus's own framers
and PDU classes) and registers.json (register encodings from ModbusClientMixin.convert_to_registers /
convert_from_registers). Every frame is also parsed back through pymodbus to make sure it is one.

With mbpoll and socat installed it also writes mbpoll.json: the RTU requests mbpoll (libmodbus) puts on a
pseudo-terminal pair, read from the other end. Nothing answers, so mbpoll times out after sending.

    pip install -r scripts/requirements-test.txt && python3 scripts/modbus-fixtures.py
"""
import json
import logging
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pymodbus
import pymodbus.pdu.bit_message as bits
import pymodbus.pdu.register_message as registers
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse

assert pymodbus.__version__ == "3.8.6", f"pinned pymodbus 3.8.6, found {pymodbus.__version__}"
logging.disable(logging.CRITICAL)  # ExceptionResponse logs at error level on construction

OUT = Path(__file__).resolve().parent.parent / "Tests" / "ProtocolTests" / "Fixtures" / "modbus"
DATATYPE = ModbusClientMixin.DATATYPE


def pdus(dev_id, tid):
    """(name, direction, pdu) for every message the fixtures cover."""
    ids = {"dev_id": dev_id, "transaction_id": tid}
    return [
        ("read_holding_registers_request", "request",
         registers.ReadHoldingRegistersRequest(address=0x006B, count=3, **ids)),
        ("read_holding_registers_response", "response",
         registers.ReadHoldingRegistersResponse(registers=[555, 0, 100], **ids)),
        ("read_input_registers_request", "request",
         registers.ReadInputRegistersRequest(address=0x0200, count=2, **ids)),
        ("read_input_registers_response", "response",
         registers.ReadInputRegistersResponse(registers=[0x1234, 0xFFFF], **ids)),
        ("write_single_register_request", "request",
         registers.WriteSingleRegisterRequest(address=0x0001, registers=[0x0003], **ids)),
        ("write_single_register_response", "response",
         registers.WriteSingleRegisterResponse(address=0x0001, registers=[0x0003], **ids)),
        ("write_multiple_registers_request", "request",
         registers.WriteMultipleRegistersRequest(address=0x0001, registers=[0x000A, 0x0102], **ids)),
        ("write_multiple_registers_response", "response",
         registers.WriteMultipleRegistersResponse(address=0x0001, count=2, **ids)),
        ("read_coils_request", "request", bits.ReadCoilsRequest(address=0x0013, count=0x13, **ids)),
        ("read_coils_response", "response",
         bits.ReadCoilsResponse(bits=[True, False, True, True, False, False, True, True,
                                      True, True, False, True, False, True, True, False,
                                      True, False, True, False, False, False, False, False], **ids)),
        ("read_discrete_inputs_request", "request",
         bits.ReadDiscreteInputsRequest(address=0x00C4, count=0x16, **ids)),
        ("write_single_coil_request", "request", bits.WriteSingleCoilRequest(address=0x00AC, bits=[True], **ids)),
        ("write_single_coil_response", "response",
         bits.WriteSingleCoilResponse(address=0x00AC, bits=[False], **ids)),
        ("exception_response", "response", ExceptionResponse(0x03, ExceptionResponse.ILLEGAL_ADDRESS, dev_id, tid)),
    ]


def frames():
    result = []
    for framer_name, framer_class, dev_id, tid in [("rtu", FramerRTU, 0x11, 0), ("tcp", FramerSocket, 0x11, 0x1501)]:
        for name, direction, pdu in pdus(dev_id, tid):
            adu = framer_class(DecodePDU(is_server=False)).buildFrame(pdu)
            # Parse it back with the decoder of the side that receives it.
            receiver = framer_class(DecodePDU(is_server=direction == "request"))
            used, parsed = receiver.processIncomingFrame(adu)
            assert used == len(adu) and parsed is not None and parsed.function_code == pdu.function_code, name
            result.append({"name": name, "framer": framer_name, "direction": direction,
                           "unit": dev_id, "transaction": tid, "hex": adu.hex()})
    return result


def register_encodings():
    """Values to registers and back, as pymodbus's client helpers convert them."""
    to_registers = [
        ("int16", -2, "big"), ("int16", 32767, "big"), ("uint16", 0xBEEF, "big"),
        ("uint32", 0x12345678, "big"), ("uint32", 0x12345678, "little"),
        ("int32", -123456, "big"), ("int32", -123456, "little"),
        ("float32", 3.25, "big"), ("float32", -0.1, "little"),
        ("string", "A023", "big"), ("string", "ABC", "big"),
    ]
    entries = []
    for type_name, value, word_order in to_registers:
        regs = ModbusClientMixin.convert_to_registers(value, DATATYPE[type_name.upper()], word_order=word_order)
        entries.append({"type": type_name, "wordOrder": word_order, "encoding": "ascii",
                        "value": value, "registers": regs})
    for text in ["请A023号到5号窗口", "张三"]:
        regs = ModbusClientMixin.convert_to_registers(text, DATATYPE.STRING, string_encoding="gb18030")
        entries.append({"type": "string", "wordOrder": "big", "encoding": "gb18030", "value": text,
                        "registers": regs})
    from_registers = [
        ("int16", [0xFFFF], "big"), ("int16", [0x8000], "big"), ("uint16", [0x8000], "big"),
        ("uint32", [0xFFFF, 0x0001], "big"), ("uint32", [0xFFFF, 0x0001], "little"),
        ("int32", [0xFFFE, 0x1DC0], "big"), ("int32", [0x1DC0, 0xFFFE], "little"),
        ("float32", [0x4049, 0x0FDB], "big"), ("float32", [0x0FDB, 0x4049], "little"),
        ("string", [0x3032, 0x3331, 0x0000], "big"),
    ]
    for type_name, regs, word_order in from_registers:
        value = ModbusClientMixin.convert_from_registers(list(regs), DATATYPE[type_name.upper()],
                                                         word_order=word_order)
        entries.append({"type": type_name, "wordOrder": word_order, "encoding": "ascii",
                        "value": value, "registers": regs})
    gb = ModbusClientMixin.convert_to_registers("窗口", DATATYPE.STRING, string_encoding="gb18030") + [0, 0]
    entries.append({"type": "string", "wordOrder": "big", "encoding": "gb18030", "registers": gb,
                    "value": ModbusClientMixin.convert_from_registers(list(gb), DATATYPE.STRING,
                                                                      string_encoding="gb18030")})
    return entries


def mbpoll_requests():
    """RTU requests captured from mbpoll on a socat pseudo-terminal pair (never a real serial port)."""
    # (name, options, values to write): mbpoll's references are 1-based, so -r 108 is register 0x6B.
    commands = [
        ("read_holding_registers_request", ["-t", "4", "-r", "108", "-c", "3"], []),
        ("read_input_registers_request", ["-t", "3", "-r", "513", "-c", "2"], []),
        ("write_single_register_request", ["-t", "4", "-r", "2"], ["3"]),
        ("write_multiple_registers_request", ["-t", "4", "-r", "2"], ["10", "258"]),
    ]
    socat = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                             stderr=subprocess.PIPE, text=True)
    try:
        ptys = []
        while len(ptys) < 2:
            match = re.search(r"PTY is (\S+)", socat.stderr.readline())
            if match:
                ptys.append(match.group(1))
        listener = os.open(ptys[1], os.O_RDWR | os.O_NOCTTY)
        captured = []
        for name, options, values in commands:
            base = ["mbpoll", "-m", "rtu", "-a", "17", "-b", "9600", "-P", "none", "-1", "-o", "0.2"]
            mbpoll = subprocess.Popen(base + options + [ptys[0]] + values,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            data = b""
            deadline = time.time() + 3
            while time.time() < deadline:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if ready:
                    data += os.read(listener, 256)
                elif data:
                    break
            mbpoll.kill()
            mbpoll.wait()
            assert data, f"mbpoll sent nothing for {name}"
            captured.append({"name": name, "framer": "rtu", "direction": "request", "unit": 17, "transaction": 0,
                             "command": " ".join(options + ["<pty>"] + values), "hex": data.hex()})
        os.close(listener)
        return captured
    finally:
        socat.terminate()
        socat.wait()


def write(name, payload):
    path = OUT / name
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(OUT.parents[3])}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    generator = f"pymodbus {pymodbus.__version__} (scripts/modbus-fixtures.py)"
    write("frames.json", {"generator": generator, "frames": frames()})
    write("registers.json", {"generator": generator, "encodings": register_encodings()})
    if shutil.which("mbpoll") and shutil.which("socat"):
        version = subprocess.run(["mbpoll", "-V"], capture_output=True, text=True).stdout.strip()
        write("mbpoll.json", {"generator": f"mbpoll {version} (libmodbus) via socat, scripts/modbus-fixtures.py",
                              "frames": mbpoll_requests()})
    else:
        print("mbpoll or socat not installed: mbpoll.json left as it is")


if __name__ == "__main__":
    main()
