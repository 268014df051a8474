#!/usr/bin/env python3
"""Validates CloudEvents read from stdin (one JSON event per line) with the CloudEvents Python SDK.

An independent check of the gateway's event format: `gatewayd events --json | scripts/check-cloudevents.py`.
Exit status 0 when every line is a valid CloudEvent 1.0 of the hall's types, 1 otherwise.
"""
import argparse
import sys

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--require-type", action="append", default=[], help="fail unless this type occurs")
args = parser.parse_args()

counts = {}
failures = 0
for number, line in enumerate(sys.stdin.buffer, start=1):
    line = line.strip()
    if not line:
        continue
    try:
        event = JSONFormat().read(CloudEvent, line)
        problems = []
        if event.get_specversion() != "1.0":
            problems.append(f"specversion {event.get_specversion()!r}")
        if not event.get_type().startswith("hall."):
            problems.append(f"type {event.get_type()!r} is not a hall event")
        if event.get_time() is None or event.get_time().utcoffset() is None:
            problems.append("time missing or without zone")
        if event.get_datacontenttype() != "application/json" or not isinstance(event.get_data(), dict):
            problems.append("data is not a JSON object")
        if problems:
            raise ValueError("; ".join(problems))
        counts[event.get_type()] = counts.get(event.get_type(), 0) + 1
    except Exception as error:  # the SDK raises several exception types for invalid events
        failures += 1
        print(f"line {number}: not a valid CloudEvent: {error}", file=sys.stderr)

missing = [t for t in args.require_type if t not in counts]
for event_type in missing:
    print(f"no event of type {event_type}", file=sys.stderr)
summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "no events"
print(f"{sum(counts.values())} valid CloudEvents ({summary}); {failures} invalid")
sys.exit(1 if failures or missing or not counts else 0)
