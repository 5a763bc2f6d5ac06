"""Every setting of the server, from the environment (``PAGELAB_*``) via pydantic-settings:
one class, documented in ``docs/settings.md`` (``python -m tools.settings_table`` makes
that table from the fields below).  ``load_settings`` is how the server reads them: a bad
value stops it at start with a message naming the variable, the value and what is
accepted (``SettingsError``), never a traceback."""

from __future__ import annotations

import os
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

ENV_PREFIX = "PAGELAB_"


class Settings(BaseSettings):
    """Caps that keep one user from starving the others, where the server keeps its data,
    how it logs and is observed; all configurable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, populate_by_name=True)

    max_pages: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="page structs per instance"
    )
    max_instances: int = Field(default=32, ge=1, description="instances one server hosts")
    max_batch: int = Field(default=200_000, ge=1, description="calls in one batch request")
    max_wait_s: float = Field(default=30.0, gt=0, description="longest a blocking call may wait")
    default_preset: str = Field(
        default="teaching-1g", description="preset of the instance booted at start"
    )
    boot_default: bool = Field(default=True, description="boot a default instance at start-up")
    stream_events_per_frame: int = Field(
        default=256, ge=1, le=10_000, description="calls itemised in one frame; more are summarised"
    )
    stream_buffer_frames: int = Field(
        default=32, ge=1, le=10_000, description="frames a slow viewer may have waiting"
    )
    stream_stuck_after_s: float = Field(
        default=5.0, gt=0, le=3600, description="a viewer that takes nothing this long is closed"
    )
    stream_watch_pages: int = Field(
        default=256, ge=1, le=4096, description="pages one viewer may watch"
    )
    max_workloads: int = Field(
        default=4, ge=0, le=64, description="workloads running at once on one instance"
    )
    page_budget: int | None = Field(
        default=None,
        ge=0,
        description="page structures all instances of this server may hold in all (a 1 GiB "
        "machine needs 262 144); unset: half the host's physical memory at 96 bytes each "
        "(app.lab.quota); 0: no budget",
    )
    database_url: str = Field(
        default="sqlite:///var/pagelab.db",
        description="where instances and their journals are kept (SQLAlchemy URL; "
        "empty: nowhere, nothing survives a restart)",
    )
    snapshot_every: int = Field(
        default=5000,
        ge=0,
        description="save a snapshot of an instance each time its seq passes a multiple of "
        "this (at the first quiescent point after), so that a restart replays at most about "
        "that many calls; 0: never (a restart replays every journal from the start)",
    )
    snapshot_on_shutdown: bool = Field(
        default=True,
        description="when the server stops (SIGTERM), snapshot every machine changed since "
        "its last snapshot, so that the next start replays nothing; 0: the next start "
        "replays the calls since the last periodic snapshot (never with "
        "PAGELAB_SNAPSHOT_EVERY=0)",
    )
    cull_idle_s: float = Field(
        default=1800.0,
        ge=0,
        description="park an instance nobody used for this many seconds (its machine leaves "
        "memory for a snapshot on disk; the next request brings it back); 0: never",
    )
    cull_interval_s: float = Field(
        default=60.0, gt=0, le=86_400, description="how often the idle culler looks"
    )
    max_snapshot_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="largest snapshot file an import accepts (compressed; request bodies "
        "are capped at 64 MiB as well)",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite's synchronous level for the journal (WAL mode). NORMAL: an "
        "acknowledged call survives the server being killed, but a power cut or OS crash "
        "may lose the last ones; FULL: it survives those too, each group commit waits for "
        "the disk",
    )
    history_max: int = Field(
        default=1_000_000,
        ge=0,
        description="calls of one instance's journal kept in memory when there is no database",
    )
    stream_socket_buffer: int = Field(
        default=256 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="kernel send buffer of each connection in bytes (python -m app.serve; "
        "0: the system's default); bounds how far a slow viewer can lag before it is caught",
    )
    stream_lag_s: float = Field(
        default=3.0,
        gt=0,
        le=3600,
        description="a viewer that acknowledges frames and is this many seconds of frames "
        "behind gets no new ones (a gap) until it catches up",
    )
    switch_interval_ms: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="the interpreter's thread switch interval under python -m app.serve",
    )
    gc_threshold: int = Field(
        default=100_000,
        ge=700,
        le=10_000_000,
        description="allocations between two runs of the cyclic garbage collector "
        "(python -m app.serve; CPython's default is 700)",
    )
    record_max_moves: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="a call's record in an answer lists at most this many page moves (and "
        "kernel events); a bigger one is summarised, with the path of the full record",
    )
    server_stack: Literal["auto", "stock"] = Field(
        default="auto",
        description="python -m app.serve's event loop and HTTP parser. auto: uvloop and "
        "httptools (uvicorn's standard extras) where they are installed, else stock; stock: "
        "asyncio and h11",
    )
    allow_open: bool = Field(
        default=False,
        description="serve the open mode (no accounts) on an address other than loopback",
    )
    auth: Literal["open", "token"] = Field(
        default="open",
        description="open: no accounts, everyone may do everything (the default, for a lab "
        "on loopback); token: every request needs a bearer token (needs a database)",
    )
    admin_name: str = Field(
        default="admin", description="the admin bootstrapped at start in token mode"
    )
    admin_token: str | None = Field(
        default=None,
        description="token mode: the bootstrapped admin's token (at least 32 characters); "
        "unset: a token is made when the admin is first created and logged once",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="token mode: Origins (scheme://host[:port]) allowed to open the stream "
        "besides the server's own host",
    )

    # ---- browser sessions and token guessing (token mode; app/api/cookies.py, guesses.py)
    session_secret: SecretStr | None = Field(
        default=None,
        description="token mode: the key that signs session cookies (at least 32 characters); "
        "unset: one is generated once and kept in the database, so every host sharing it agrees",
    )
    session_max_age_s: float = Field(
        default=12 * 3600.0,
        gt=0,
        le=30 * 86400,
        description="token mode: a browser session ends this long after sign-in (sooner if "
        "its token expires or is revoked, or on sign-out)",
    )
    auth_failures_per_minute: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="token mode: failed authentications (bad, revoked or expired tokens) one "
        "client address may make in a minute; beyond, token attempts answer 429",
    )

    # ---- serving, logs and metrics (python -m app.serve; docs/operations.md)
    host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("PAGELAB_HOST", "HOST"),
        description="the address python -m app.serve listens on (--host overrides; HOST is "
        "read too)",
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("PAGELAB_PORT", "PORT"),
        description="the TCP port python -m app.serve listens on (--port overrides; PORT is "
        "read too; 0: any free port)",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="how log lines are written to stdout. json: one JSON object a line; "
        "console: aligned, readable text; auto: console when stdout is a terminal, else json",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="the least severe log lines written (any case)"
    )
    access_log: bool = Field(
        default=True,
        description="one log line per request (method, route, status, duration, request id, "
        "principal); python -m app.serve --no-access-log turns it off",
    )
    metrics: Literal["on", "off", "token"] = Field(
        default="on",
        description="GET /metrics (Prometheus). on: served to anyone who can reach the "
        "server (as scrapers expect on a private network), with PAGELAB_METRICS_TOKEN set "
        "only to that bearer token; token: only with PAGELAB_METRICS_TOKEN; off: 404",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="the bearer token GET /metrics needs (Authorization: Bearer ...; at "
        "least 16 characters); unset: none (PAGELAB_METRICS=token needs one)",
    )
    web_dist: str | None = Field(
        default=None,
        description="the folder of the browser page's build; unset: web/dist of the source tree",
    )
    core: Literal["source", "compiled"] = Field(
        default="source",
        description="which build of the simulated kernel runs: the Python source or the "
        "mypyc-compiled one (docs/compiled-core.md; read by app.core itself when it is "
        "imported, checked here with the rest)",
    )
    core_build: str | None = Field(
        default=None,
        description="where the compiled core was built (read by app.core itself); unset: "
        "build/mypyc at the repository's root",
    )

    @field_validator("log_level", "core", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("core", mode="before")
    @classmethod
    def _empty_core_is_source(cls, value: Any) -> Any:
        return value or "source"

    @model_validator(mode="after")
    def _metrics_token(self) -> Settings:
        token = self.metrics_token
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError(
                "PAGELAB_METRICS_TOKEN: at least 16 characters; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.metrics == "token" and token is None:
            raise ValueError(
                "PAGELAB_METRICS=token needs PAGELAB_METRICS_TOKEN (the bearer token "
                "scrapers send); or use PAGELAB_METRICS=on on a private network"
            )
        return self

    # ---- where the machines live (app/lab/hosts, docs/placements.md)
    placement: Literal["inprocess", "workers", "ray"] = Field(
        default="inprocess",
        description="where instances' machines run: inprocess (in the server's process), "
        "workers (PAGELAB_WORKERS local processes, instances sharded by id: every core) or "
        "ray (host actors on a Ray cluster; pip install 'pagelab[ray]')",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="placement workers: worker processes; placement ray: host actors",
    )
    ray_address: str | None = Field(
        default=None,
        description="placement ray: the cluster to join (e.g. ray://head:10001, or auto); "
        "unset: a local Ray with two CPUs is started in the server's process",
    )
    ray_namespace: str = Field(
        default="pagelab",
        min_length=1,
        max_length=64,
        description="placement ray: the namespace of the named host actors",
    )

    cluster: bool = Field(
        default=False,
        description="this server is one of several API nodes sharing one Postgres "
        "(PAGELAB_DATABASE_URL) and one Ray cluster (PAGELAB_RAY_ADDRESS), behind any load "
        "balancer (docs/placements.md); needs PAGELAB_PLACEMENT=ray, a Ray address and "
        "Postgres, and the same PAGELAB_WORKERS and PAGELAB_RAY_NAMESPACE on every node",
    )

    @model_validator(mode="after")
    def _cluster_is_ray_and_postgres(self) -> Settings:
        if not self.cluster:
            return self
        if self.placement != "ray":
            raise ValueError(
                f"PAGELAB_CLUSTER=1 needs PAGELAB_PLACEMENT=ray, not {self.placement!r}: "
                "the inprocess and workers placements keep machines inside one server, "
                "which other API nodes cannot reach (run one server, or use ray)"
            )
        if not self.ray_address:
            raise ValueError(
                "PAGELAB_CLUSTER=1 needs PAGELAB_RAY_ADDRESS (the cluster every API node "
                "joins, e.g. ray://head:10001): without it each server starts a Ray of its own"
            )
        if not self.database_url.startswith("postgresql"):
            raise ValueError(
                "PAGELAB_CLUSTER=1 needs a Postgres PAGELAB_DATABASE_URL (postgresql+psycopg://"
                "...) that every API node shares: SQLite is one server's file"
            )
        return self

    @model_validator(mode="after")
    def _token_needs_database(self) -> Settings:
        if self.auth == "token" and not self.database_url:
            raise ValueError(
                "PAGELAB_AUTH=token needs a database for its accounts: set "
                "PAGELAB_DATABASE_URL (e.g. sqlite:///var/pagelab.db)"
            )
        return self

    @model_validator(mode="after")
    def _session_secret_is_long(self) -> Settings:
        secret = self.session_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError(
                "PAGELAB_SESSION_SECRET: at least 32 characters; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self


# ---------------------------------------------------------------- reading and describing
class SettingsError(Exception):
    """A setting the server cannot start with; the message says which, why and what is
    accepted."""


#: settings whose values are never repeated in a message
SECRET_FIELDS = frozenset({"admin_token", "session_secret", "metrics_token"})


def env_names(name: str) -> tuple[str, ...]:
    """The environment variables of field ``name``, the preferred one first."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (ENV_PREFIX + name.upper(),)


def env_name_set(name: str) -> str:
    """The variable that set field ``name`` (the preferred one if none is set)."""
    names = env_names(name)
    return next((n for n in names if n in os.environ), names[0])


def field_of(key: str) -> str | None:
    """The field a name in an error's location means (its own name or one of its
    environment variables), if any."""
    if key in Settings.model_fields:
        return key
    for name in Settings.model_fields:
        if key.upper() in env_names(name):
            return name
    return None


def _bounds(info: FieldInfo) -> str:
    """`` from 1 to 64``, `` above 0``, `` of at least 1024`` ... (the field's range)."""
    parts: dict[str, Any] = {}
    for m in info.metadata:  # annotated-types' Ge, Gt, Le, Lt: one attribute each
        for bound in ("ge", "gt", "le", "lt"):
            value = getattr(m, bound, None)
            if value is not None and type(m).__name__ == bound.capitalize():
                parts[bound] = value
    if "ge" in parts and "le" in parts:
        return f" from {parts['ge']} to {parts['le']}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    said = [f"{words[b]} {v}" for b, v in parts.items()]
    return (", " + " and ".join(said)) if said else ""


def accepted(name: str) -> str:
    """What field ``name`` accepts, in words (for messages and the settings table)."""
    info = Settings.model_fields[name]
    kind: Any = info.annotation
    optional = False
    if get_origin(kind) in (Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        optional = len(args) < len(get_args(kind))
        kind = args[0] if len(args) == 1 else kind
    if get_origin(kind) is Literal:
        choices = [repr(str(v)) for v in get_args(kind)]
        words = ", ".join(choices[:-1]) + " or " + choices[-1]
    elif kind is bool:
        words = "a boolean (1, true, yes, on or 0, false, no, off)"
    elif kind is int:
        words = "an integer" + _bounds(info)
    elif kind is float:
        words = "a number" + _bounds(info)
    elif get_origin(kind) is list:
        words = 'a JSON list of strings (e.g. ["https://lab.example.org"])'
    elif kind is SecretStr:
        words = "a secret string"
    else:
        words = "a string"
    return words + (" (or unset)" if optional else "")


def _shown(name: str, value: Any) -> str:
    if name in SECRET_FIELDS:
        return "(hidden)"
    return repr(value)


def describe(error: ValidationError) -> str:
    """One line per bad setting: the variable, the value, what is wrong, what is accepted."""
    lines = []
    for e in error.errors(include_url=False):
        loc = e.get("loc") or ()
        name = next((field_of(str(part)) for part in loc if field_of(str(part))), None)
        if name is None:  # a rule between settings: its message names them
            message = str(e.get("msg", "")).removeprefix("Value error, ")
            lines.append(message)
            continue
        lines.append(
            f"{env_name_set(name)}={_shown(name, e.get('input'))}: "
            f"{str(e.get('msg', 'not accepted')).removeprefix('Value error, ')}; "
            f"accepted: {accepted(name)}"
        )
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``), or ``SettingsError`` with a
    message a person can act on."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise SettingsError(describe(e)) from None
    except SourceError as e:  # a value the environment source could not even parse (JSON)
        found = re.search(r'field "(\w+)"', str(e))
        name = found.group(1) if found else None
        if name is None or name not in Settings.model_fields:
            raise SettingsError(str(e)) from None
        raw = os.environ.get(env_names(name)[0], "")
        raise SettingsError(
            f"{env_names(name)[0]}={_shown(name, raw)}: cannot be parsed; accepted: "
            f"{accepted(name)}"
        ) from None
