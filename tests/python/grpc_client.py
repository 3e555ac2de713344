"""Talks to ssfd's gRPC services with `grpcio`, through stubs generated from our
proto/ at run time by grpc_tools.

Usage: grpc_client.py ADDRESS SECOND_ADDRESS. Prints a JSON summary of the answers.
"""
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

proto_dir = os.environ["SSFD_PROTO_DIR"]
out = tempfile.mkdtemp()
files = ["ssfd/v1/attribute.proto", "ssf/sample.proto", "ssf/grpc.proto", "dogstatsd/grpc.proto",
         "ssfd/v1/ingest.proto"]
status = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}"] + files)
assert status == 0, "protoc failed"
sys.path.insert(0, out)
sample_pb2 = importlib.import_module("ssf.sample_pb2")
ssf_grpc = importlib.import_module("ssf.grpc_pb2_grpc")
dogstatsd_pb2 = importlib.import_module("dogstatsd.grpc_pb2")
dogstatsd_grpc = importlib.import_module("dogstatsd.grpc_pb2_grpc")
ingest_grpc = importlib.import_module("ssfd.v1.ingest_pb2_grpc")

address, second = sys.argv[1], sys.argv[2]
summary = {}


def span(i, name="op", **extra):
    return sample_pb2.SSFSpan(
        trace_id=1000, id=i, parent_id=0 if i == 1 else 1, start_timestamp=1_700_000_000_000_000_000,
        end_timestamp=1_700_000_000_002_000_000, service="py", name=name, **extra)


with grpc.insecure_channel(address) as channel:
    stub = ssf_grpc.SSFGRPCStub(channel)
    counter = sample_pb2.SSFSample(metric=sample_pb2.SSFSample.COUNTER, name="py.c", value=2, sample_rate=1)
    gauge = sample_pb2.SSFSample(metric=sample_pb2.SSFSample.GAUGE, name="py.g", value=1, tags={"k": "v"})
    log = sample_pb2.SSFSample(metric=sample_pb2.SSFSample.COUNTER, name="logger", message="hello from python",
                               status=sample_pb2.SSFSample.WARNING)
    stub.SendSpan(span(1, metrics=[counter, gauge]))
    stub.SendSpan(span(2, metrics=[log]))
    stub.SendSpan(span(3, tags={"http.method": "GET"}))
    try:
        stub.SendSpan(span(4, name=""))
        summary["invalid"] = "OK"
    except grpc.RpcError as error:
        summary["invalid"] = error.code().name
    raw = channel.unary_unary("/ssf.SSFGRPC/SendSpan", request_serializer=None, response_deserializer=None)
    try:
        raw(b"\xff\xff\xff\xff")
        summary["garbage"] = "OK"
    except grpc.RpcError as error:
        summary["garbage"] = error.code().name

    spans = [span(100 + i, name="" if i % 20 == 0 else "op") for i in range(100)]
    result = ingest_grpc.IngestStub(channel).SendSpans(iter(spans))
    summary["stream"] = [result.accepted, result.rejected]

    packet = dogstatsd_pb2.DogstatsdPacket(packetBytes=b"grpc.a:1|c\nnot statsd\ngrpc.b:2|g")
    dogstatsd_grpc.DogstatsdGRPCStub(channel).SendPacket(packet)
    summary["packet"] = "OK"

    health = health_pb2_grpc.HealthStub(channel)
    summary["health"] = [
        health_pb2.HealthCheckResponse.ServingStatus.Name(health.Check(health_pb2.HealthCheckRequest(service=s)).status)
        for s in ("", "veneur")]

with grpc.insecure_channel(second) as channel:
    ssf_grpc.SSFGRPCStub(channel).SendSpan(span(5))
    health = health_pb2_grpc.HealthStub(channel)
    summary["health_second"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
        health.Check(health_pb2.HealthCheckRequest(service="veneur")).status)

print(json.dumps(summary))
