"""Sends metrics with the `statsd` package's UDP and TCP clients.

Usage: statsd_client.py HOST UDP_PORT TCP_PORT. Prints the lines sent per transport.
"""
import json
import sys

import statsd

host, udp_port, tcp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
udp = statsd.StatsClient(host, udp_port, prefix="app")
udp.incr("requests")
udp.incr("requests", 5)
udp.decr("requests")
udp.gauge("queue", 12)
udp.gauge("queue", 0.5)
udp.timing("latency", 320)
udp.timing("latency", 1.5)
udp.set("visitors", "alice")
udp.set("visitors", "bob")
with udp.pipeline() as pipe:  # several lines in one datagram
    pipe.incr("batched")
    pipe.incr("batched")
    pipe.timing("batched.latency", 3)
tcp = statsd.TCPStatsClient(host, tcp_port, prefix="app")
tcp.incr("tcp.requests")
tcp.incr("tcp.requests")
tcp.timing("tcp.latency", 9)
tcp.close()
print(json.dumps({"udp": 12, "tcp": 3, "udp_counter": 5, "gauge": 2, "udp_timer": 3, "set": 2}))
