"""Service limits and defaults, from the environment (``PAGELAB_*``) via pydantic-settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Caps that keep one user from starving the others; all configurable."""

    model_config = SettingsConfigDict(env_prefix="PAGELAB_")

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
        "machine needs 262 144); unset: half the host's physical memory at 80 bytes each "
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
