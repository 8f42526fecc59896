"""Structured logging: one renderer for structlog and the standard library alike.

JSON lines (`LOG_FORMAT=json`) or readable console lines, written to standard output,
each carrying the request id bound for the request being served (and its trace's ids).
"""

import logging
import os
import sys
import threading
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from branchloans.config import Settings
from branchloans.observability.tracing import current_ids

_LEVEL_NAMES = {"exception": "ERROR", "warn": "WARNING", "fatal": "CRITICAL"}
_LEADING_KEYS = ("timestamp", "level", "message")
_write_lock = threading.Lock()


def _write_line(line: str) -> None:
    # sys.stdout is looked up on every write, so a replaced stdout (a test's capture) is honoured.
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class _StdoutLogger:
    """The logger structlog renders into: one line on standard output per event."""

    def msg(self, message: str) -> None:
        _write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stdout_logger(*args: Any) -> _StdoutLogger:
    return _StdoutLogger()


class _StdoutHandler(logging.Handler):
    """Writes standard-library records, formatted by structlog, where structlog writes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record))
        except Exception:
            self.handleError(record)


def _add_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name.upper())
    return event_dict


def _add_pid(pid: int) -> Processor:
    # Which worker wrote the line, fixed when the worker configures its logging.
    def add_pid(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["pid"] = pid
        return event_dict

    return add_pid


def _add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Next to the request id, so a log line leads to its trace and back.
    ids = current_ids()
    if ids is not None:
        event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict


def _dumps(event_dict: EventDict, **kwargs: Any) -> str:
    # The seed's order: when, how bad, what; then the details.
    line = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    line.update(event_dict)
    return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _renderers(log_format: str) -> list[Processor]:
    if log_format == "json":
        return [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    return [structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())]


def configure_logging(settings: Settings) -> None:
    """Route structlog and every standard-library logger (uvicorn's too) to one renderer.

    Process-wide: the latest call wins. Safe to call again; it replaces its own handler.
    """
    level = logging.getLevelNamesMapping()[settings.log_level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_pid(os.getpid()),
        _add_trace_ids,
    ]
    renderers = _renderers(settings.resolved_log_format)
    structlog.configure(
        processors=[*shared, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stdout_logger,
        # Loggers built after a reconfiguration must follow it; hot paths keep their own.
        cache_logger_on_first_use=False,
    )

    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _StdoutHandler)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings would go to stderr as bare text; send them through the renderer too.
    logging.captureWarnings(True)
    # uvicorn's loggers propagate to the root; its access log stays off (the app writes its own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each plugin it registers at INFO, which is no news to an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
