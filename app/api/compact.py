"""The compact batch format (``application/vnd.pagelab.batch+json``): the same calls as a
readable batch, written as a table of call forms and two columns, and answered in columns.

    {"forms": [{"fn": "vm_page_alloc", "args": ["object", "pindex"]},
               {"fn": "vm_page_lookup", "args": ["object", "pindex"]}],
     "fn":    [0, 1, 0, 1],
     "args":  [[7, 0], [7, 0], [7, 1], [7, 1]]}

A call form names a function, the arguments its calls give (in the order of their
values) and optionally a context; call ``k`` is form ``fn[k]`` with the values
``args[k]``.  Bodies are read and answers written with msgspec, which checks the shapes
and bounds below while it parses: a 100 000-call body takes milliseconds, where
validating the readable format's 100 000 objects takes most of a second.  What a call
does, its refusals, seq, journal entry and record are those of the readable format
(``docs/batch-format.md``).
"""

from __future__ import annotations

import asyncio
import operator
import re
from typing import Annotated, Any

import msgspec
from fastapi.exceptions import RequestValidationError

from app.lab.service import BatchColumns, Ctx

from .schemas import MAX_BATCH_CALLS

#: The media type of a compact batch and of its answer.
MEDIA_TYPE = "application/vnd.pagelab.batch+json"
#: Most call forms one compact batch may declare.
MAX_FORMS = 4096
#: Most arguments one call form may name.
MAX_FORM_ARGS = 32


class CompactCtx(msgspec.Struct, forbid_unknown_fields=True):
    """Where a form's calls run (the readable format's ``ctx``)."""

    cpu: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    thread: Annotated[int, msgspec.Meta(ge=0, le=4095)] | None = None
    nice: Annotated[int, msgspec.Meta(ge=-20, le=20)] = 0
    lowmemkill: bool = False
    systhread: bool = False


class CompactForm(msgspec.Struct, forbid_unknown_fields=True):
    """A kind of call: the function, the names of the values each call gives, where it
    runs (default: CPU 0 on its own thread)."""

    fn: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(max_length=MAX_FORM_ARGS),
    ] = []
    ctx: CompactCtx | None = None


class CompactBatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A compact batch: call ``k`` is ``forms[fn[k]]`` with the values ``args[k]`` (one per
    name the form gives; ``args`` may be left out when no form names any)."""

    forms: Annotated[list[CompactForm], msgspec.Meta(min_length=1, max_length=MAX_FORMS)]
    fn: Annotated[
        list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=MAX_BATCH_CALLS)
    ]
    args: Annotated[list[list[Any]], msgspec.Meta(max_length=MAX_BATCH_CALLS)] | None = None
    stop_on_error: bool = False
    record: bool = False


class CompactError(msgspec.Struct, omit_defaults=True):
    """A refused call: its index, function, seq (absent when it was refused before it got
    one: an unknown function, a parked thread) and the problem."""

    index: int
    fn: str
    error: dict[str, Any]
    seq: int | None = None


class CompactBlocked(msgspec.Struct):
    """A call that put its thread to sleep (its result is null until it is woken)."""

    index: int
    blocked: dict[str, Any]


class CompactBatchResponse(msgspec.Struct, omit_defaults=True):
    """A compact batch's answer.  ``results[k]`` is call ``k``'s value (null for a refused
    call); ``seq`` lists runs ``[index, first_seq, count]``: calls ``index`` to
    ``index + count - 1`` got seqs ``first_seq`` onwards (a call in no run was refused
    before it got a seq); ``errors`` and ``blocked`` list only the calls they concern."""

    ran: int
    completed: int
    failed: int
    results: list[Any]
    seq: list[tuple[int, int, int]]
    errors: list[CompactError]
    blocked: list[CompactBlocked]
    state_digest: str
    records: list[dict[str, Any] | None] | None = None


class _ReadableCall(msgspec.Struct, forbid_unknown_fields=True):
    """``schemas.BatchCall``, for msgspec."""

    fn: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: dict[str, Any] = {}
    ctx: CompactCtx | None = None


class _ReadableBatch(msgspec.Struct, forbid_unknown_fields=True):
    """``schemas.BatchRequest``, for msgspec: the same fields, types and bounds (the
    calls are read in chunks, ``_chunks``)."""

    calls: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_BATCH_CALLS)]
    stop_on_error: bool = False
    record: bool = False


class _CompactOuter(msgspec.Struct, forbid_unknown_fields=True):
    """``CompactBatchRequest`` with its rows left unread (read in chunks, ``_chunks``)."""

    forms: Annotated[list[CompactForm], msgspec.Meta(min_length=1, max_length=MAX_FORMS)]
    fn: Annotated[
        list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=MAX_BATCH_CALLS)
    ]
    args: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_BATCH_CALLS)] | None = None
    stop_on_error: bool = False
    record: bool = False


#: Calls read (or written) in one go: a 200 000-call body is read in slices of a few
#: milliseconds, between which the event loop serves other requests (msgspec, like any
#: parser, holds the interpreter while it runs).
CHUNK_CALLS = 4096

_decoder = msgspec.json.Decoder(_CompactOuter)
_rows_decoder = msgspec.json.Decoder(list[list[Any]])
_readable_decoder = msgspec.json.Decoder(_ReadableBatch)
_calls_decoder = msgspec.json.Decoder(list[_ReadableCall])
_encoder = msgspec.json.Encoder(enc_hook=str)
_PATH = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]")
_AT = re.compile(r" - at `\$([^`]*)`$")


def _invalid(message: str, loc: tuple[str | int, ...] = ()) -> RequestValidationError:
    """A 422 problem, built like FastAPI's own (``loc`` under ``body``)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": None}]
    )


def _refusal(e: msgspec.MsgspecError, prefix: tuple[str, int] | None = None) -> Exception:
    """msgspec's complaint as a 422 problem: ``Expected `int`, got `str` - at `$.fn[3]```
    becomes ``fn.3: Expected `int`, got `str```.  ``prefix`` is ``(field, offset)`` for a
    chunk of that field's items: the place within the chunk is shifted by its offset."""
    if isinstance(e, msgspec.DecodeError) and not isinstance(e, msgspec.ValidationError):
        return _invalid(f"the body is not a JSON document ({e})")
    text = str(e)
    at = _AT.search(text)
    loc: tuple[str | int, ...] = ()
    if at is not None:
        text = text[: at.start()]
        loc = tuple(name if name else int(index) for name, index in _PATH.findall(at.group(1)))
    if prefix is not None:
        field, offset = prefix
        loc = (field, offset + int(loc[0]), *loc[1:]) if loc else (field,)
    return _invalid(text, loc)


class _ChunkError(Exception):
    """A chunk refused by msgspec, and the index of its first item."""

    def __init__(self, error: msgspec.ValidationError, start: int) -> None:
        super().__init__(error, start)
        self.error = error
        self.start = start


async def _chunks(items: list[msgspec.Raw], decoder: msgspec.json.Decoder[Any]) -> list[Any]:
    """Read a list of JSON items ``CHUNK_CALLS`` at a time, letting the event loop run
    between chunks; a chunk msgspec refuses is raised as ``_ChunkError``."""
    out: list[Any] = []
    for start in range(0, len(items), CHUNK_CALLS):
        if start:
            await asyncio.sleep(0)
        part = b"[" + b",".join(items[start : start + CHUNK_CALLS]) + b"]"
        try:
            out += decoder.decode(part)
        except msgspec.ValidationError as e:
            raise _ChunkError(e, start) from None
    return out


async def parse(raw: bytes) -> CompactBatchRequest:
    """A compact batch body, checked: its shapes and bounds (msgspec, while parsing), then
    that every ``fn`` names a form and every row of ``args`` has one value per name of its
    form.  Anything wrong is one 422 problem that names the place (``fn.3``)."""
    try:
        outer = _decoder.decode(raw)
    except msgspec.MsgspecError as e:
        raise _refusal(e) from None
    rows: list[list[Any]] | None = None
    if outer.args is not None:
        try:
            rows = await _chunks(outer.args, _rows_decoder)
        except _ChunkError as e:
            raise _refusal(e.error, ("args", e.start)) from None
    body = CompactBatchRequest(
        forms=outer.forms,
        fn=outer.fn,
        args=rows,
        stop_on_error=outer.stop_on_error,
        record=outer.record,
    )
    forms, fn = body.forms, body.fn
    for i, form in enumerate(forms):
        if len(set(form.args)) != len(form.args):
            dup = next(a for a in form.args if form.args.count(a) > 1)
            raise _invalid(f"form {i} names the argument {dup!r} twice", ("forms", i, "args"))
    if fn and max(fn) >= len(forms):
        k = next(k for k, i in enumerate(fn) if i >= len(forms))
        raise _invalid(
            f"call {k} uses form {fn[k]}, but the batch declares forms 0 to {len(forms) - 1}",
            ("fn", k),
        )
    widths = [len(form.args) for form in forms]
    if body.args is None:
        if any(widths[i] for i in set(fn)):
            k = next(k for k, i in enumerate(fn) if widths[i])
            raise _invalid(
                f"call {k} (form {fn[k]}, {forms[fn[k]].fn}) needs {widths[fn[k]]} values in "
                "args, but the batch has no args",
                ("args",),
            )
    else:
        rows = body.args
        if len(rows) != len(fn):
            raise _invalid(
                f"args has {len(rows)} rows but fn has {len(fn)} calls: give one row per call",
                ("args",),
            )
        if fn:
            want = operator.itemgetter(*fn)(widths) if len(fn) > 1 else (widths[fn[0]],)
            if tuple(map(len, rows)) != want:
                k = next(k for k, row in enumerate(rows) if len(row) != widths[fn[k]])
                form = forms[fn[k]]
                raise _invalid(
                    f"call {k} (form {fn[k]}, {form.fn}) has {len(rows[k])} values but its "
                    f"form names {widths[fn[k]]} ({', '.join(form.args) or 'none'})",
                    ("args", k),
                )
    return body


async def parse_readable(
    raw: bytes,
) -> tuple[list[tuple[str, dict[str, Any], Ctx]], bool, bool] | None:
    """A readable batch (``schemas.BatchRequest``) read by msgspec, as the lab's calls,
    ``stop_on_error`` and ``record``; None when msgspec refuses it, and the caller then
    lets pydantic read it (which accepts or says what is wrong in the API's own words).
    msgspec checks the same fields, types and bounds several times faster."""
    try:
        body = _readable_decoder.decode(raw)
        items: list[_ReadableCall] = await _chunks(body.calls, _calls_decoder)
    except (msgspec.MsgspecError, _ChunkError):
        return None
    default = Ctx()
    calls = [(c.fn, c.args, default if c.ctx is None else _ctx(c.ctx)) for c in items]
    return calls, body.stop_on_error, body.record


def _ctx(c: CompactCtx) -> Ctx:
    return Ctx(
        cpu=c.cpu, thread=c.thread, nice=c.nice, lowmemkill=c.lowmemkill, systhread=c.systhread
    )


def encode(value: Any) -> bytes:
    """JSON bytes of an answer (msgspec; anything it cannot encode is written as its
    ``str``, as ``json.dumps(default=str)`` would)."""
    return _encoder.encode(value)


async def encode_batch(results: list[dict[str, Any]], rest: dict[str, Any]) -> bytes:
    """A readable batch's answer, ``{"results": [...], **rest}``, its results written
    ``CHUNK_CALLS`` at a time with the event loop let in between."""
    parts: list[bytes] = []
    for start in range(0, len(results), CHUNK_CALLS):
        if start:
            await asyncio.sleep(0)
        parts.append(_encoder.encode(results[start : start + CHUNK_CALLS])[1:-1])
    tail = _encoder.encode(rest)
    return b'{"results":[' + b",".join(parts) + b"]," + tail[1:]


def forms_of(body: CompactBatchRequest) -> list[tuple[str, tuple[str, ...], Ctx]]:
    """The lab's view of the forms: function, argument names, context."""
    default = Ctx()
    return [
        (form.fn, tuple(form.args), default if form.ctx is None else _ctx(form.ctx))
        for form in body.forms
    ]


def seq_runs(seqs: list[int | None]) -> list[tuple[int, int, int]]:
    """``[index, first_seq, count]`` for each run of consecutive seqs (a batch's seqs are
    consecutive within a slice; another request's calls between two slices, or a call
    refused without a seq, start a new run).  The answer takes the runs the lab kept as
    it noted the slices (``BatchColumns.runs``), which are these."""
    runs: list[tuple[int, int, int]] = []
    start = first = prev = -1
    for k, s in enumerate(seqs):
        if s is not None and start >= 0 and s == prev + 1:
            prev = s
            continue
        if start >= 0:
            runs.append((start, first, prev - first + 1))
        if s is None:
            start = -1
        else:
            start, first, prev = k, s, s
    if start >= 0:
        runs.append((start, first, prev - first + 1))
    return runs


def answer(
    body: CompactBatchRequest,
    cols: BatchColumns,
    digest: str,
    records: list[dict[str, Any] | None] | None,
) -> bytes:
    """The compact answer's bytes."""
    forms, fn, seqs = body.forms, body.fn, cols.seqs
    errors = [CompactError(k, forms[fn[k]].fn, err, seqs[k]) for k, err in cols.errors]
    response = CompactBatchResponse(
        ran=len(cols.results),
        completed=len(cols.results) - len(errors),
        failed=len(errors),
        results=cols.results,
        seq=cols.runs,
        errors=errors,
        blocked=[CompactBlocked(k, b) for k, b in cols.blocked],
        state_digest=digest,
        records=records,
    )
    return _encoder.encode(response)


def openapi_components() -> dict[str, Any]:
    """The JSON schemas of the compact request and answer, for the OpenAPI document."""
    _, components = msgspec.json.schema_components(
        [CompactBatchRequest, CompactBatchResponse], ref_template="#/components/schemas/{name}"
    )
    return components
