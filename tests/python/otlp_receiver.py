"""An OTLP/gRPC receiver written with `grpcio` and the `opentelemetry-proto` package:
it accepts TraceService and MetricsService exports and appends each request, as
JSON (protobuf's JSON mapping, ids in hex), to OUT_FILE, one line per request.

Usage: otlp_receiver.py PORT_FILE OUT_FILE. Binds 127.0.0.1:0, writes the port to
PORT_FILE, serves until killed.
"""
import base64
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

port_file, out_file = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def hex_ids(value):
    """MessageToDict writes bytes as base64; OTLP ids read better as hex."""
    if isinstance(value, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                    else hex_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


def record(kind, request):
    line = json.dumps({"kind": kind, "request": hex_ids(MessageToDict(request))})
    with lock, open(out_file, "a") as out:
        out.write(line + "\n")


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        record("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        record("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with open(port_file, "w") as out:
    out.write(str(port))
server.wait_for_termination()
