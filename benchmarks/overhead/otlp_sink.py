"""An OTLP/gRPC trace receiver that accepts and drops spans: `python otlp_sink.py PORT` (run as its own
process: gRPC in the harness would not survive the harness forking wrk)."""

from __future__ import annotations

import sys
import time
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request: Any, context: Any) -> Any:
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
