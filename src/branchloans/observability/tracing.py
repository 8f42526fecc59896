"""Distributed tracing with OpenTelemetry, configured only by the standard `OTEL_*` variables.

With no OTLP endpoint set (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`) tracing is
off: no provider, no instrumented middleware, and the helpers below return at their first
check. Each worker process builds its own provider (its pid in the resource) and exports its
own spans in batches over OTLP/HTTP; `flush` sends what is left at shutdown.
"""

import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.propagators import (
    ResponsePropagator,
    default_setter,
    set_global_response_propagator,
)
from opentelemetry.sdk.resources import PROCESS_PID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

DEFAULT_SERVICE_NAME = "branchloans"
# Attribute names of our own, where OpenTelemetry's semantic conventions have none.
API_KEY_NAME = "branchloans.api_key.name"
PROBLEM_TYPE = "branchloans.problem.type"
# OpenTelemetry's semantic conventions for a database client call.
DB_SYSTEM = "db.system"
DB_STATEMENT = "db.statement"
DB_OPERATION = "db.operation"
DB_ROWS = "db.response.returned_rows"

# The variables the OpenTelemetry SDK reads that the deployments set (not Settings fields).
SDK_VARIABLES = frozenset(
    {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    }
)
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def endpoint_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment names an OTLP endpoint for traces (and the SDK is not off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def _resource() -> Resource:
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; the worker's
    # pid tells the spans of one worker from another's.
    resource = Resource.create({PROCESS_PID: os.getpid()})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class _TraceparentResponse(ResponsePropagator):
    """Answers with the W3C `traceparent` of the request's server span.

    The instrumentation ships only the draft `traceresponse` header; callers and nginx's
    access log read `traceparent`.
    """

    _format = TraceContextTextMapPropagator()

    def inject(self, carrier: Any, context: Any = None, setter: Any = default_setter) -> None:
        headers: dict[str, str] = {}
        self._format.inject(headers, context=context)
        if "traceparent" in headers:
            setter.set(carrier, "traceparent", headers["traceparent"])


def start_tracing(processor: SpanProcessor | None = None) -> TracerProvider | None:
    """This process's tracer provider, made now: exporting to the OTLP endpoint, or to
    `processor` (tests); None, and tracing off, when there is neither.

    The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (the SDK reads them).
    """
    global _provider, _tracer
    stop_tracing()
    if processor is None:
        if not endpoint_configured():
            return None
        # Imported only when used: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(processor)
    set_global_response_propagator(_TraceparentResponse())  # type: ignore[no-untyped-call]
    _provider, _tracer = provider, provider.get_tracer("branchloans")
    return provider


def current_provider() -> TracerProvider | None:
    """The provider `start_tracing` made in this process, None while tracing is off."""
    return _provider


def stop_tracing() -> None:
    """Flush and shut down this process's provider; tracing is off afterwards."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None
    set_global_response_propagator(None)  # type: ignore[no-untyped-call]


def instrument(app: FastAPI, provider: TracerProvider) -> None:
    """A server span per request, named by the route template, around every middleware."""
    # receive/send spans would double the spans of every request and tell nothing new.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )


def flush(provider: TracerProvider, timeout_seconds: float) -> bool:
    """Export every span still buffered; False when `timeout_seconds` ran out first."""
    return provider.force_flush(int(timeout_seconds * 1000))


def statement_span(sql: str) -> Span | None:
    """A started client span for one SQL statement (its text carries no values), a child of
    the current span; None when no recording span is current, so untraced work costs nothing.
    """
    if _tracer is None or not trace.get_current_span().is_recording():
        return None
    operation = sql.split(None, 1)[0].upper() if sql else "SQL"
    return _tracer.start_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={DB_SYSTEM: "postgresql", DB_OPERATION: operation, DB_STATEMENT: sql},
    )


def _recording_span() -> Span | None:
    if _tracer is None:  # off: not even a context lookup
        return None
    span = trace.get_current_span()
    return span if span.is_recording() else None


def set_attribute(name: str, value: str) -> None:
    """Set an attribute on the current span, when it records."""
    if (span := _recording_span()) is not None:
        span.set_attribute(name, value)


def add_event(name: str, attributes: Mapping[str, str | int]) -> None:
    """Add an event (a moment with attributes) to the current span, when it records."""
    if (span := _recording_span()) is not None:
        span.add_event(name, dict(attributes))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, None outside a trace."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def record_problem(problem_type: str, status: int, error: BaseException | None = None) -> None:
    """Record on the current span the problem a request is answered with; 5xx mark it failed."""
    if (span := _recording_span()) is None:
        return
    span.set_attribute(PROBLEM_TYPE, problem_type)
    if error is not None:
        span.record_exception(error)
    if status >= 500:
        span.set_status(StatusCode.ERROR, problem_type)
