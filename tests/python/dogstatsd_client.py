"""Sends metrics, events and service checks with Datadog's own Python DogStatsD client.

Usage: dogstatsd_client.py HOST PORT. Prints a JSON count of the lines sent per kind.
"""
import json
import sys

from datadog.dogstatsd import DogStatsd

host, port = sys.argv[1], int(sys.argv[2])
# buffering on: the client packs several lines per datagram, as in production
client = DogStatsd(host=host, port=port, disable_telemetry=True, disable_buffering=False)
sent = {"counter": 0, "gauge": 0, "histogram": 0, "timer": 0, "set": 0, "event": 0, "status": 0, "log": 0}

for _ in range(3):
    client.increment("dd.count", tags=["env:test", "veneurglobalonly"])
    sent["counter"] += 1
client.decrement("dd.count", value=2, tags=["env:test"])
sent["counter"] += 1
client.gauge("dd.gauge", 42.5, tags=["room:a"])
client.gauge("dd.gauge", -1)
sent["gauge"] += 2
for value in (1, 2.5, 1e3):
    client.histogram("dd.hist", value, tags=["route:/api"])
    sent["histogram"] += 1
client.distribution("dd.dist", 7)
client.distribution("dd.dist", 8, tags=["a"])
sent["histogram"] += 2
client.timing("dd.timer", 250)
client.timing("dd.timer", 12.5)
sent["timer"] += 2
for member in ("alice", "bob", "alice"):
    client.set("dd.users", member)
    sent["set"] += 1
client.event("deploy", "version 2\nrolled out", alert_type="error", tags=["service:web"])
client.event("note", "all good", alert_type="info", aggregation_key="k", source_type_name="s")
sent["event"] += 2
client.service_check("db.up", 2, tags=["db:main"], message="connection refused")
client.service_check("cache.up", 0)
sent["status"] += 2
sent["log"] += 1  # the service check with a message is also a log record
client.flush()
client.close_socket()
print(json.dumps(sent))
