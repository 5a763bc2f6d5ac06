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


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Send every log line of the process, structlog's and the standard library's, to
    ``stream`` (stdout) in one format, at ``level`` and above."""
    out = stream if stream is not None else sys.stdout
    as_json = wants_json(log_format, out)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            # first: a line below the level (or of a disabled logger, as the access
            # log under --no-access-log) costs no more processing
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # loggers made at import time (module globals) follow a later configure_logging
        cache_logger_on_first_use=False,
    )
    renderer: Processor
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final.append(structlog.processors.format_exc_info)
        # msgspec (a dependency already) encodes a line ~8x faster than json.dumps;
        # values it does not know are written as their str()
        encoder = msgspec.json.Encoder(enc_hook=str)
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda event, **_: encoder.encode(event).decode()
        )
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=final,
    )
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
