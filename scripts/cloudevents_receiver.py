#!/usr/bin/env python3
"""A real CloudEvents batch receiver for the HTTP sink's tests and benchmark.

POST <path> (default /events) with `application/cloudevents-batch+json` and `Authorization: Bearer <token>`:
every event of the batch is read with the CloudEvents Python SDK 2.x (`cloudevents.core`), and the batch is
stored in a SQLite file keyed (source, id) with INSERT OR IGNORE, so replays change nothing. Answers:
200 stored; 400 an invalid event (the reason in the body); 401 no or a wrong token; 404 another path;
415 another content type. `GET /stats` answers {"rows", "batches", "invalid"}.

On start it prints `PORT <n>` on stdout (`--port 0` picks a free port). `--tls-cert/--tls-key` serve HTTPS,
`--tls-client-ca` also asks clients for a certificate issued by that CA. `--reject-id TEXT` refuses (400)
any event whose id contains TEXT, as a store refusing one event for good would. `--no-validate` stores
without the SDK, to tell the SDK's cost from the gateway's in the benchmark.
"""
import argparse
import json
import signal
import sqlite3
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

BATCH_TYPE = "application/cloudevents-batch+json"


class Store:
    """The events table and the counters, behind one lock (the server answers on many threads)."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS events (
                               source TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, time TEXT,
                               sequence TEXT, json TEXT NOT NULL, PRIMARY KEY (source, id))""")
        self.batches = 0
        self.invalid = 0

    def insert(self, rows):
        with self.lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.db.execute("COMMIT")
            self.batches += 1

    def refused(self):
        with self.lock:
            self.invalid += 1

    def stats(self):
        with self.lock:
            rows = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
            return {"rows": rows, "batches": self.batches, "invalid": self.invalid}


def validated(element, reject_id):
    """Reads one batch member with the SDK; returns its row or raises ValueError with the reason."""
    if not isinstance(element, dict):
        raise ValueError("a batch member is not a JSON object")
    try:
        event = JSONFormat().read(CloudEvent, json.dumps(element))
    except Exception as error:  # the SDK raises several exception types for invalid events
        raise ValueError(f"event {element.get('id')!r}: {error}") from None
    problems = []
    if event.get_specversion() != "1.0":
        problems.append(f"specversion {event.get_specversion()!r}")
    if event.get_time() is None or event.get_time().utcoffset() is None:
        problems.append("time missing or without zone")
    if event.get_datacontenttype() != "application/json" or not isinstance(event.get_data(), dict):
        problems.append("data is not a JSON object")
    if reject_id and reject_id in event.get_id():
        problems.append(f"id contains {reject_id!r}, refused by this store")
    if problems:
        raise ValueError(f"event {event.get_id()!r} of {event.get_source()!r}: " + "; ".join(problems))
    return (event.get_source(), event.get_id(), event.get_type(), element.get("time"),
            str(element.get("sequence", "")), json.dumps(element, ensure_ascii=False, sort_keys=True))


def unvalidated(element, reject_id):
    if reject_id and reject_id in str(element.get("id")):
        raise ValueError(f"event {element.get('id')!r}: id contains {reject_id!r}, refused by this store")
    return (element["source"], element["id"], element["type"], element.get("time"),
            str(element.get("sequence", "")), json.dumps(element, ensure_ascii=False, sort_keys=True))


def make_handler(args, store):
    read_event = unvalidated if args.no_validate else validated

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real store
        disable_nagle_algorithm = True  # head and body are two writes: no delayed-ACK stall between them
        server_version = "cloudevents-receiver"

        def setup(self):
            super().setup()
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()  # here, on the connection's own thread

        def answer(self, status, body, content_type="text/plain; charset=utf-8", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/stats":
                self.answer(200, json.dumps(store.stats()), "application/json")
            else:
                self.answer(404, f"no {self.path} here\n")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)  # read before any answer, so the connection stays usable
            if self.path != args.path:
                return self.answer(404, f"no {self.path} here; batches go to {args.path}\n")
            if self.headers.get("Authorization") != f"Bearer {args.token}":
                return self.answer(401, "missing or wrong bearer token\n", headers=[("WWW-Authenticate", "Bearer")])
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type != BATCH_TYPE:
                return self.answer(415, f"expected {BATCH_TYPE}, got {content_type or 'no content type'}\n")
            try:
                batch = json.loads(body)
                if not isinstance(batch, list):
                    raise ValueError("the body is not a JSON array of events")
                rows = [read_event(element, args.reject_id) for element in batch]
            except ValueError as error:  # json.JSONDecodeError is a ValueError too
                store.refused()
                return self.answer(400, f"invalid batch: {error}\n")
            store.insert(rows)
            self.answer(200, json.dumps({"stored": len(rows)}), "application/json")

        def log_message(self, format, *arguments):
            if args.verbose:
                super().log_message(format, *arguments)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, tls):
        super().__init__(address, handler)
        self.tls = tls

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        # The handshake runs on the connection's thread, so a client that never finishes it blocks nobody.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        print(f"cloudevents-receiver: connection from {client_address[0]}: {error}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/events")
    parser.add_argument("--db", required=True, help="SQLite file the events go into")
    parser.add_argument("--token", required=True, help="the bearer token clients must send")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca", help="require client certificates issued by this CA")
    parser.add_argument("--reject-id", help="refuse (400) events whose id contains this text")
    parser.add_argument("--no-validate", action="store_true", help="store without reading events with the SDK")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args()

    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            tls.load_verify_locations(args.tls_client_ca)
            tls.verify_mode = ssl.CERT_REQUIRED
    store = Store(args.db)
    server = Server((args.host, args.port), make_handler(args, store), tls)
    # Explicit handlers, unblocked: a child may inherit SIGINT ignored (started in the background) or
    # blocked (started from a test runner's thread, as the Swift tests do).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown).start())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
