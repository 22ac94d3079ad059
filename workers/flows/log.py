"""Structured logging (structlog) for every Flows process.

Human-readable on a terminal, one JSON object per line otherwise or when asked
(``FLOWS_LOG_FORMAT=json``). Context such as a meter serial or command id is
bound with ``log.bind(serial=...)`` and appears on every line.
"""

import logging
import os
import sys

import structlog


def configure(level: str | None = None, json_format: bool | None = None) -> None:
    level_name = (level or os.environ.get("FLOWS_LOG_LEVEL") or "INFO").upper()
    if json_format is None:
        fmt = os.environ.get("FLOWS_LOG_FORMAT")
        json_format = fmt == "json" if fmt else not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if json_format
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level_name]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **context):
    return structlog.get_logger(name, **context)
