"""Sends undecodable bytes to each OTLP/gRPC Export method with grpcio and prints the
status code names as JSON (SPEC 3.3: a message that does not decode answers
INVALID_ARGUMENT, as the OpenTelemetry Collector's receiver does)."""
import json
import sys

import grpc

address = sys.argv[1]
channel = grpc.insecure_channel(address)
codes = {}
for service in ("trace.v1.TraceService", "logs.v1.LogsService", "metrics.v1.MetricsService"):
    method = f"/opentelemetry.proto.collector.{service}/Export"
    raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        raw(b"\xff\xff\xff\xff", timeout=10)
        codes[service] = "OK"
    except grpc.RpcError as error:
        codes[service] = error.code().name
print(json.dumps(codes, sort_keys=True))
