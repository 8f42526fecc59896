"""Tracing over the wire: the real server, two workers, exporting OTLP/HTTP to this test."""

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support import live_server

REQUESTS = 12
SERVER_KIND = Span.SpanKind.SPAN_KIND_SERVER


class _Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: keeps each decoded export request with the path it came to."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.exports: list[tuple[str, ExportTraceServiceRequest]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ExportHandler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.exports.append((self.path, ExportTraceServiceRequest.FromString(body)))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reports what it received."""


@pytest.fixture
def collector() -> Iterator[_Collector]:
    receiver = _Collector()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def _spans(collector: _Collector) -> list[tuple[dict[str, Any], Any]]:
    """(resource attributes, span) of every span received."""
    received = []
    for _, export in collector.exports:
        for resource_spans in export.resource_spans:
            resource = {
                item.key: getattr(item.value, item.value.WhichOneof("value"))
                for item in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                received.extend((resource, span) for span in scope_spans.spans)
    return received


def test_two_workers_export_each_request_under_the_callers_trace_id_flushed_at_shutdown(
    collector: _Collector, committed_database_url: str
) -> None:
    env = {
        "DATABASE_URL": committed_database_url,
        "LOG_FORMAT": "json",
        "SHUTDOWN_DRAIN_SECONDS": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "branchloans-wire-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        # Nothing is sent on a schedule: what arrives was flushed when the workers stopped.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    sent: dict[str, str] = {}  # request id -> trace id
    with live_server(env, workers=2) as server:
        fresh = httpx.Limits(max_keepalive_connections=0)  # so both workers take requests
        with httpx.Client(base_url=server.url, limits=fresh, timeout=10) as http:
            for number in range(REQUESTS):
                trace_id = f"{0xABC0000 + number:032x}"
                request_id = f"wire-{number}"
                response = http.get(
                    "/api/loans",
                    headers={
                        "traceparent": f"00-{trace_id}-{number + 1:016x}-01",
                        "X-Request-ID": request_id,
                    },
                )
                assert response.status_code == 200
                assert response.headers["traceparent"].startswith(f"00-{trace_id}-")
                sent[request_id] = trace_id
        assert collector.exports == []
        assert server.stop() == 0
        parent_pid = server.process.pid
        log = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]

    received = _spans(collector)
    assert {path for path, _ in collector.exports} == {"/v1/traces"}
    servers = [(resource, span) for resource, span in received if span.kind == SERVER_KIND]
    by_trace: dict[str, list[Any]] = {}
    for _, span in received:
        by_trace.setdefault(span.trace_id.hex(), []).append(span)
    for trace_id in sent.values():
        names = sorted(span.name for span in by_trace[trace_id])
        assert "GET /api/loans" in names
        assert any(name == "SELECT" for name in names)
    # The caller's span is each request's parent (the liveness polls started traces of their own).
    assert {
        span.parent_span_id.hex() for _, span in servers if span.trace_id.hex() in sent.values()
    } == {f"{number + 1:016x}" for number in range(REQUESTS)}
    pids = {resource["process.pid"] for resource, _ in servers}
    assert parent_pid not in pids
    assert {resource["service.name"] for resource, _ in received} == {"branchloans-wire-test"}
    assert {resource["deployment.environment"] for resource, _ in received} == {"test"}

    for request_id, trace_id in sent.items():
        lines = [line for line in log if line.get("request_id") == request_id]
        assert lines
        assert {line["trace_id"] for line in lines} == {trace_id}
        assert all(len(line["span_id"]) == 16 for line in lines)
