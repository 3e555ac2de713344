#!/usr/bin/env python3
"""One sending core as a Python service sends DogStatsD: the real `datadog` client
(PyPI), buffered about `--lines` lines per datagram (`max_buffer_len` set from the mix's
mean line length), client-side aggregation and telemetry off so that every call is one
line sent, called as fast as one interpreter goes for `--seconds`. Prints the lines
sent. Driven by `loadgen client --sender`, which starts ssfd and checks that it took
every line. The client's socket does not block and, with telemetry off, reports no
failed send, so a datagram lost on the sender's side still counts as sent: it can
only count against ssfd."""
import argparse
import time

from datadog.dogstatsd.base import DogStatsd

# the mix of `loadgen client`, values changing, at rate 1; ~39 bytes a line with its '\n'
MEAN_LINE = 39


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8125")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--lines", type=int, default=20)
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    client = DogStatsd(
        host=host,
        port=int(port),
        disable_buffering=False,
        disable_aggregation=True,
        disable_telemetry=True,
        max_buffer_len=args.lines * MEAN_LINE,
        flush_interval=0.1,
    )
    routes = [["service:web", "env:prod", f"route:/v{i}"] for i in range(50)]
    queues = [[f"queue:q{i}"] for i in range(20)]
    web = ["service:web", "env:prod"]
    ingest = ["service:ingest", "env:prod", "region:us-east-1"]
    prod = ["env:prod"]
    deadline = time.monotonic() + args.seconds
    sent = 0
    i = 0
    while True:
        if i % 1024 == 0 and time.monotonic() >= deadline:
            break
        k = i % 6
        if k == 0:
            client.increment("api.requests", tags=routes[i % 50])
        elif k == 1:
            client.timing("api.latency", (i % 997) + (i % 10) / 10, tags=web)
        elif k == 2:
            client.gauge("queue.depth", i % 1000, tags=queues[i % 20])
        elif k == 3:
            client.histogram("payload.bytes", i % 65536, tags=ingest)
        elif k == 4:
            client.set("users.active", f"user-{i % 10000}", tags=prod)
        else:
            client.increment("cache.hits", i % 7)
        sent += 1
        i += 1
    client.flush()
    client.close_socket()
    print(sent)


if __name__ == "__main__":
    main()
