"""A real OTLP/HTTP trace receiver for the tests: the SDK's exporter posts protobuf to
``/v1/traces`` here, decoded with opentelemetry-proto's own message (imported only by
tests that found the ``otel`` extra installed)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
             "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME")


class Receiver:
    """An OTLP/HTTP trace receiver on a free port: every span it was sent, as dicts."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value
                               for a in resource.resource.attributes}["service.name"]
                    for scope in resource.scope_spans:
                        receiver.spans += [_span(s, service) for s in scope.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def named(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["kind"] == kind]


def _value(v: Any) -> Any:
    field = v.WhichOneof("value")
    if field == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, field)


def _span(span: Any, service: str) -> dict[str, Any]:
    kinds = {2: "server", 3: "client"}
    return {"name": span.name, "kind": kinds.get(span.kind, str(span.kind)),
            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
            "parent": span.parent_span_id.hex(), "service": service,
            "status": span.status.code, "events": [e.name for e in span.events],
            "attributes": {a.key: _value(a.value) for a in span.attributes}}
