"""Sends known values with Datadog's DogStatsD client for the Prometheus test.

Usage: dogstatsd_values.py HOST PORT. Prints the exact expectations as JSON.
"""
import json
import sys

from datadog.dogstatsd import DogStatsd

host, port = sys.argv[1], int(sys.argv[2])
client = DogStatsd(host=host, port=port, disable_telemetry=True, disable_buffering=True)
for _ in range(25):
    client.increment("prom.requests", 2, tags=["env:test"])
client.gauge("prom.temperature", 21.5, tags=["room:lab"])
for member in range(300):
    client.set("prom.users", f"user-{member}")
values = list(range(1, 1001))
for value in values:
    client.timing("prom.latency", value)
client.close_socket()
values.sort()
print(json.dumps({"counter": 50, "gauge": 21.5, "set": 300, "p99": values[int(0.99 * len(values)) - 1]}))
