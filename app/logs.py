"""Logging for the whole process: structlog for PageLab's own lines, and the standard
library's loggers (uvicorn's, SQLAlchemy's, alembic's) through the same renderer, so that
every line on stdout has one format (``docs/operations.md``).

* ``json``: one JSON object a line (``timestamp``, ``level``, ``logger``, ``event`` and the
  line's own keys), what a log collector wants;
* ``console``: structlog's aligned, readable text, for a person at a terminal;
* ``auto`` (the default, ``PAGELAB_LOG_FORMAT``): console when stdout is a terminal, else
  json.

Lines logged while a request is served carry its ``request_id`` (and ``user`` once it is
known): ``app.api.observe`` binds them in structlog's context variables, which follow the
request into the worker threads it uses.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import Processor

#: the levels by name, as the standard library numbers them
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
#: loggers of the standard library whose own handlers give way to the root's
THIRD_PARTY = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "sqlalchemy", "alembic")


def _drop_color_message(
    logger: Any, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """uvicorn passes a copy of some messages with terminal colours as an extra: not a
    field of the line."""
    event.pop("color_message", None)
    return event


def wants_json(log_format: str, stream: TextIO) -> bool:
    """Whether ``log_format`` (auto, json, console) means JSON on ``stream``."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (callable(isatty) and isatty())
    return log_format == "json"


class NamedWriter(structlog.WriteLogger):
    """structlog's plain line writer, with the name it was asked for (the ``logger`` key
    of a line, as the standard library's loggers have)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class NamedWriterFactory:
    """``structlog.get_logger(name)`` -> a ``NamedWriter`` on one stream."""

    def __init__(self, file: TextIO) -> None:
        self.file = file

    def __call__(self, *args: Any) -> NamedWriter:
        name = args[0] if args and isinstance(args[0], str) else ""
        return NamedWriter(self.file, name)


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Send every log line of the process, structlog's and the standard library's, to
    ``stream`` (stdout) in one format, at ``level`` and above.

    structlog's lines are rendered and written by structlog itself (a line below the
    level costs one no-op method call; one above it no ``LogRecord``); the standard
    library's go through a handler whose formatter runs the same processors and
    renderer (``ProcessorFormatter``)."""
    out = stream if stream is not None else sys.stdout
    as_json = wants_json(log_format, out)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        # msgspec (a dependency already) encodes a line ~8x faster than json.dumps;
        # values it does not know are written as their str()
        encoder = msgspec.json.Encoder(enc_hook=str)
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda event, **_: encoder.encode(event).decode()
        )
        rendering: list[Processor] = [structlog.processors.format_exc_info, renderer]
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        rendering = [renderer]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *rendering],
        logger_factory=NamedWriterFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level.lower()]),
        # loggers made at import time (module globals) follow a later configure_logging
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    # the standard library looks up each line's caller (a walk up the stack) and names
    # its thread and process: nothing our renderer writes (its "Optimization" notes)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # uvicorn's own access lines are replaced by ours (app.api.observe): one format
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True


def reset_logging() -> None:
    """Back to structlog's defaults and no root handler (tests)."""
    structlog.reset_defaults()
    logging.getLogger().handlers = []
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = False
