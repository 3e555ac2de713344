"""An app instrumented with the OpenTelemetry Python SDK, as issue 19 tried it: spans
and, inside them, `logging` records through the SDK's `LoggingHandler`, exported
separately (the records as they are written, the spans in one batch at the end, so the
records arrive first), with resource attributes and typed span attributes.

It sends two traces whose trace ids have equal low 64 bits (a custom id generator),
and one record with the first trace's id under a span that is never exported.

Usage: otel_joined.py grpc|http ADDRESS [LOGS_ADDRESS]: the log records go to
LOGS_ADDRESS when given (another ssfd of the fleet). Prints JSON: the two trace ids (32 hex
digits, as the app's own log line prints them), the span ids (16 hex digits) of the
first trace's root and child, and the id of the span that is never exported.
"""
import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

mode, address = sys.argv[1], sys.argv[2]
logs_address = sys.argv[3] if len(sys.argv) > 3 else address
if mode == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    span_exporter = OTLPSpanExporter(endpoint="http://" + address, insecure=True)
    log_exporter = OTLPLogExporter(endpoint="http://" + logs_address, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    span_exporter = OTLPSpanExporter(endpoint=f"http://{address}/v1/traces")
    log_exporter = OTLPLogExporter(endpoint=f"http://{logs_address}/v1/logs")

LOW = 0x975FBD3EF288210B
FIRST = (0x94568BC249D55603 << 64) | LOW
SECOND = (0x1111222233334444 << 64) | LOW


class TwinIds(RandomIdGenerator):
    """Trace ids FIRST, then SECOND: equal low halves."""

    def __init__(self):
        self.next = [FIRST, SECOND]

    def generate_trace_id(self):
        return self.next.pop(0) if self.next else super().generate_trace_id()


resource = Resource.create({
    "service.name": f"checkout-{mode}",
    "host.name": "ip-10-0-0-7",
    "deployment.environment": "prod",
    "k8s.pod.name": "checkout-7f9c-x2",
})
tracer_provider = TracerProvider(resource=resource, id_generator=TwinIds())
tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=60_000))
tracer = tracer_provider.get_tracer("shop")

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
logger = logging.getLogger(f"payments-{mode}")
logger.setLevel(logging.INFO)
logger.propagate = False
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))

with tracer.start_as_current_span("POST /checkout") as root:
    root.set_attribute("http.status_code", 502)
    root.set_attribute("retry.ratio", 0.25)
    root.set_attribute("cache.hit", False)
    root.set_attribute("items", ["sku-1", "sku-2"])
    logger.info("checkout started")
    with tracer.start_as_current_span("charge card") as child:
        logger.warning("payment declined by issuer")
        child.set_status(Status(StatusCode.ERROR, "declined"))
        child_context = child.get_span_context()
    root_context = root.get_span_context()
    # a record with this trace's id under a span that is never exported
    ghost = SpanContext(trace_id=FIRST, span_id=0x0DDBA11C0FFEE001, is_remote=False,
                        trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(ghost)):
        logger.error("retry queue overflowed")

with tracer.start_as_current_span("GET /twin") as twin:
    twin_context = twin.get_span_context()

logs.force_flush()
tracer_provider.force_flush()

print(json.dumps({
    "trace_id": format(root_context.trace_id, "032x"),
    "twin_trace_id": format(twin_context.trace_id, "032x"),
    "root": format(root_context.span_id, "016x"),
    "child": format(child_context.span_id, "016x"),
    "ghost": format(ghost.span_id, "016x"),
}))
tracer_provider.shutdown()
logs.shutdown()
