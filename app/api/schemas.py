"""Request and response bodies of the HTTP API.

Request scalars are strict (``StrictInt``, ``StrictBool``...): the API takes exactly the
JSON types its schema documents, never ``"5"`` for 5 or ``0`` for false.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

MAX_ADDR = 1 << 52


class TopologyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sockets: StrictInt = Field(default=1, ge=1, le=64)
    cores: StrictInt = Field(default=1, ge=1, le=256)
    threads: StrictInt = Field(default=1, ge=1, le=8)


class NumaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: StrictInt = Field(ge=0, le=MAX_ADDR, description="first byte of the range")
    size: StrictInt = Field(gt=0, le=MAX_ADDR, description="bytes in the range")
    socket: StrictInt = Field(
        ge=0,
        le=0xFFFFFFFF,
        description="the ACPI physical id; the kernel uses it modulo the number of sockets",
    )


class InstanceCreate(BaseModel):
    """A new machine: a ``preset``, or ``memory`` (e.g. "4GiB"), or explicit ``phys_avail``
    ranges; CPUs as a count or a topology."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "lab1", "preset": "teaching-1g"},
                {"name": "box", "memory": "4GiB", "cpus": 4, "seed": 7},
                {
                    "name": "numa",
                    "memory": "8GiB",
                    "topology": {"sockets": 2, "cores": 2, "threads": 1},
                },
            ]
        },
    )
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    preset: str | None = Field(default=None, max_length=64)
    memory: str | StrictInt | None = Field(
        default=None, description="RAM size, e.g. '4GiB' or bytes"
    )
    phys_avail: list[tuple[StrictInt, StrictInt]] | None = Field(default=None, max_length=64)
    cpus: StrictInt | None = Field(default=None, ge=1, le=256)
    topology: TopologyIn | None = None
    numa: list[NumaIn] = Field(default_factory=list, max_length=64)
    boot_stage: Literal["early", "finished"] = "finished"
    seed: StrictInt = Field(default=0, ge=0, le=(1 << 63) - 1)
    pagedaemon: StrictBool = True
    dma_reserved: StrictInt = Field(default=0, ge=0, le=MAX_ADDR)
    policy: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description='choices for the named seams, e.g. {"page_color": "object"} '
        "(GET /api/v1/seams lists them; default: the kernel's everywhere)",
    )

    @model_validator(mode="after")
    def one_memory_source(self) -> InstanceCreate:
        given = [x for x in (self.preset, self.memory, self.phys_avail) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of preset, memory or phys_avail")
        return self


class CtxIn(BaseModel):
    """Where the call runs."""

    model_config = ConfigDict(extra="forbid")
    cpu: StrictInt = Field(default=0, ge=0, le=255)
    thread: StrictInt | None = Field(
        default=None, ge=0, le=4095, description="default: the CPU's own thread"
    )
    nice: StrictInt = Field(default=0, ge=-20, le=20)
    lowmemkill: StrictBool = False
    systhread: StrictBool = False


class CallRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"args": {"page_req": "VM_ALLOC_NORMAL"}},
                {"args": {"m": 4242}, "ctx": {"cpu": 1}},
            ]
        },
    )
    args: dict[str, Any] = Field(default_factory=dict)
    ctx: CtxIn = Field(default_factory=CtxIn)
    wait: StrictBool = Field(
        default=False, description="if the call sleeps, wait until it is woken"
    )
    timeout_s: StrictFloat | None = Field(default=None, gt=0, le=3600)
    record: StrictBool = True


class CallResponse(BaseModel):
    fn: str
    seq: int = Field(description="the call's sequence number on its instance (see the stream)")
    result: Any = None
    blocked: dict[str, Any] | None = Field(
        default=None,
        description="set when the call put its thread to sleep: thread, channel, wmesg, timo "
        "and why (what it waits for, a self-deadlock said plainly, and what ends the sleep); "
        "on a page channel also holder: {pfn, thread, seq, fn} of the call that took the "
        "page's hard busy, null when the lab does not know it",
    )
    completed: dict[str, Any] | None = Field(
        default=None,
        description="the outcome after waiting: thread, fn, result or error, and timed_out "
        "(the sleep ended by its own timeout, not a wakeup)",
    )
    timed_out: bool | None = Field(
        default=None,
        description="with wait: true and a call that slept: true when the wait ended with the "
        "thread still asleep (completed is then null), false when it saw the thread finish; "
        "null when there was nothing to wait for",
    )
    wait_note: str | None = Field(
        default=None, description="when timed_out: how long the wait lasted and what still sleeps"
    )
    record: dict[str, Any] | None = None


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fn: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    ctx: CtxIn | None = None


MAX_BATCH_CALLS = 200_000


def _short_enough(value: Any) -> Any:
    """Refuse an oversized list before validating a single item of it."""
    if isinstance(value, list) and len(value) > MAX_BATCH_CALLS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_CALLS} calls, not {len(value)}")
    return value


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "calls": [{"fn": "vm_page_alloc", "args": {}}, {"fn": "vmstats_rollup"}],
                    "stop_on_error": True,
                }
            ]
        },
    )
    calls: Annotated[list[BatchCall], BeforeValidator(_short_enough)] = Field(
        max_length=MAX_BATCH_CALLS, description="at most 200 000 (PAGELAB_MAX_BATCH may lower it)"
    )
    stop_on_error: StrictBool = False
    record: StrictBool = False


class BatchResponse(BaseModel):
    results: list[dict[str, Any]]
    completed: int
    errors: int
    state_digest: str


class SysctlWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: StrictInt
