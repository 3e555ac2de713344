"""Sends a two-service trace with span events, logs and a cumulative counter to ssfd
through the OpenTelemetry Python SDK and its real OTLP/gRPC exporters (the backend's
spans gzip-compressed).

Usage: otel_client.py GRPC_ADDRESS HTTP_ADDRESS. Prints JSON: the trace id (32 hex
digits) and the span ids (16 hex digits) of the frontend and backend spans, and the
trace id of one more span sent with the OTLP/HTTP protobuf exporter.
"""
import json
import logging
import sys

import grpc

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint = "http://" + sys.argv[1]


def tracer_provider(service, compression=None):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=compression)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


frontend = tracer_provider("frontend")
# gzip, as the OpenTelemetry Collector's otlp exporter sends by default
backend = tracer_provider("backend", compression=grpc.Compression.Gzip)

logs = LoggerProvider(resource=Resource.create({"service.name": "backend"}))
logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
logger = logging.getLogger("payments")
logger.setLevel(logging.INFO)
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                       export_interval_millis=60_000)
meters = MeterProvider(resource=Resource.create({"service.name": "frontend"}), metric_readers=[reader])
items = meters.get_meter("shop").create_counter("checkout.items", description="items checked out")
latency = meters.get_meter("shop").create_histogram("checkout.latency", unit="ms")

with frontend.get_tracer("web").start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
    root.set_attribute("http.method", "POST")
    items.add(5, {"tier": "gold"})
    for value in (3, 7, 120):
        latency.record(value)
    with backend.get_tracer("pay").start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
        child.add_event("card validated", {"card.brand": "visa"})
        logger.warning("charge declined by issuer")
        child.set_status(Status(StatusCode.ERROR, "declined"))
        child_context = child.get_span_context()
    root_context = root.get_span_context()

reader.force_flush()
items.add(2, {"tier": "gold"})
reader.force_flush()
for provider in (frontend, backend):
    provider.force_flush()
logs.force_flush()

edge = TracerProvider(resource=Resource.create({"service.name": "edge"}))
edge.add_span_processor(SimpleSpanProcessor(HttpSpanExporter(endpoint=f"http://{sys.argv[2]}/v1/traces")))
with edge.get_tracer("lb").start_as_current_span("health check") as probe:
    probe_context = probe.get_span_context()
edge.force_flush()

print(json.dumps({
    "http_trace_id": format(probe_context.trace_id, "032x"),
    "trace_id": format(root_context.trace_id, "032x"),
    "frontend": format(root_context.span_id, "016x"),
    "backend": format(child_context.span_id, "016x"),
}))
meters.shutdown()
frontend.shutdown()
backend.shutdown()
logs.shutdown()
