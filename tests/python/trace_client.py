"""Sends part of a three-service trace with logs over gRPC SendSpan, through `grpcio`
and stubs generated from our proto/ at run time.

Usage: trace_client.py ADDRESS TRACE_ID BASE_NS PART, where PART is `children` (the
grandchild first, then its parent) or `root`. Prints the span ids it sent.
"""
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

proto_dir = os.environ["SSFD_PROTO_DIR"]
out = tempfile.mkdtemp()
files = ["ssfd/v1/attribute.proto", "ssf/sample.proto", "ssf/grpc.proto"]
assert protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}"] + files) == 0
sys.path.insert(0, out)
sample_pb2 = importlib.import_module("ssf.sample_pb2")
ssf_grpc = importlib.import_module("ssf.grpc_pb2_grpc")

address, trace_id, base, part = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
MS = 1_000_000


def log(name, message, status, at_ms):
    return sample_pb2.SSFSample(metric=sample_pb2.SSFSample.COUNTER, name=name, message=message,
                                status=status, timestamp=base + at_ms * MS, tags={"logger": name})


def span(span_id, parent, service, name, start_ms, end_ms, **extra):
    return sample_pb2.SSFSpan(trace_id=trace_id, id=span_id, parent_id=parent, service=service, name=name,
                              start_timestamp=base + start_ms * MS, end_timestamp=base + end_ms * MS, **extra)


with grpc.insecure_channel(address) as channel:
    stub = ssf_grpc.SSFGRPCStub(channel)
    if part == "children":
        db = span(trace_id + 3, trace_id + 2, "db", "SELECT orders", 30, 42, error=True,
                  metrics=[log("sql", "deadlock detected, retrying", sample_pb2.SSFSample.CRITICAL, 35),
                           sample_pb2.SSFSample(metric=sample_pb2.SSFSample.GAUGE, name="db.rows", value=3)])
        api = span(trace_id + 2, trace_id, "api", "charge card", 20, 60, tags={"card": "visa"},
                   metrics=[log("payments", "charging card ending 4242", sample_pb2.SSFSample.OK, 21)])
        stub.SendSpan(db)
        stub.SendSpan(api)
        print(db.id, api.id)
    else:
        root = span(trace_id, 0, "web", "POST /checkout", 0, 100,
                    metrics=[log("http", "checkout requested", sample_pb2.SSFSample.OK, 1)])
        stub.SendSpan(root)
        print(root.id)
