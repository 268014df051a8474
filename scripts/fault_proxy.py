#!/usr/bin/env python3
"""A TCP proxy between the gateway and a store that misbehaves on command, for the sinks' fault tests.

Modes, set with `POST /mode` on the control port (the body is the mode, e.g. `status 429 retry-after 7`):
  pass                        forward both ways (any protocol)
  hang                        accept and read, never answer (any protocol)
  reset                       accept, read the first bytes, then reset the connection (RST; any protocol)
  slow                        forward, but drip the store's answer back at 1 byte/s (any protocol)
  drop-after-answer           forward the first request and the store's answer, then close the connection when
                              the client sends more: a broker that accepts a client and drops it at its first
                              publish (EMQX or AWS IoT on a denied publish, a second client under its id) (any protocol)
  status N [retry-after S]    answer every HTTP request with status N (and `Retry-After: S`) (HTTP only)
  cut                         read an HTTP request, begin a 200 answer and close the connection halfway (HTTP only)
A new mode applies to new connections; connections opened under the old mode are closed when it changes.
`GET /mode` answers the mode, `GET /stats` {"mode", "counts"}: connections per TCP mode, requests per
`status` mode. On start it prints `LISTEN <port>` and `CONTROL <port>` on stdout.

Usage: scripts/fault_proxy.py --target HOST:PORT [--listen-port 0] [--control-port 0]
"""
import argparse
import asyncio
import json
import re
import signal
import socket
import struct
import sys

MODE = re.compile(r"^(pass|hang|reset|slow|drop-after-answer|cut|status (\d{3})( retry-after (.+))?)$")
REASONS = {400: "Bad Request", 408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class Proxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.counts = {}
        self.open = set()  # tasks serving client connections, closed on a mode change

    def count(self, mode):
        self.counts[mode] = self.counts.get(mode, 0) + 1

    async def client(self, reader, writer):
        task = asyncio.current_task()
        self.open.add(task)
        mode = self.mode
        try:
            if mode in ("pass", "slow", "drop-after-answer"):
                self.count(mode)
                await self.forward(reader, writer, slow=mode == "slow", drop_after_answer=mode == "drop-after-answer")
            elif mode == "hang":
                self.count(mode)
                while await reader.read(65536):
                    pass
            elif mode == "reset":
                self.count(mode)
                try:
                    await asyncio.wait_for(reader.read(65536), timeout=1)
                except asyncio.TimeoutError:
                    pass
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            elif mode == "cut":
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                self.count(mode)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                return
            else:
                await self.answer_http(reader, writer, mode)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def forward(self, reader, writer, slow, drop_after_answer=False):
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        answered = False

        async def pipe(source, destination, drip, from_client):
            nonlocal answered
            try:
                while data := await source.read(65536):
                    if from_client and drop_after_answer and answered:
                        break
                    if not from_client:
                        answered = True
                    if drip:
                        for index in range(len(data)):
                            destination.write(data[index:index + 1])
                            await destination.drain()
                            await asyncio.sleep(1)
                    else:
                        destination.write(data)
                        await destination.drain()
            finally:
                destination.transport.abort()

        try:
            await asyncio.gather(pipe(reader, upstream_writer, False, True), pipe(upstream_reader, writer, slow, False))
        finally:
            upstream_writer.transport.abort()

    async def answer_http(self, reader, writer, mode):
        match = MODE.match(mode)
        status, retry_after = int(match.group(2)), match.group(4)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            self.count(mode)
            body = f"fault proxy: {mode}\n".encode()
            lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Fault')}", "Content-Type: text/plain",
                     f"Content-Length: {len(body)}"]
            if retry_after:
                lines.append(f"Retry-After: {retry_after}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()

    async def control(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode()
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            body = (await reader.readexactly(int(length.group(1)))).decode().strip() if length else ""
            method, path = request_line.split(" ")[:2]
            if method == "POST" and path == "/mode":
                if not MODE.match(body):
                    status, answer = 400, f"unknown mode {body!r}\n"
                else:
                    self.mode = body
                    for task in list(self.open):
                        task.cancel()
                    status, answer = 200, f"mode {body}\n"
            elif method == "GET" and path == "/mode":
                status, answer = 200, self.mode + "\n"
            elif method == "GET" and path == "/stats":
                status, answer = 200, json.dumps({"mode": self.mode, "counts": self.counts})
            else:
                status, answer = 404, "use POST /mode, GET /mode or GET /stats\n"
            data = answer.encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT of the store")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = Proxy(host, int(port))
    listener = await asyncio.start_server(proxy.client, args.listen_host, args.listen_port)
    controller = await asyncio.start_server(proxy.control, "127.0.0.1", args.control_port)
    print(f"LISTEN {listener.sockets[0].getsockname()[1]}", flush=True)
    print(f"CONTROL {controller.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    # A child started from a test runner's thread may inherit these signals blocked.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
