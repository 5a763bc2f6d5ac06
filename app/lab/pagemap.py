"""The physical memory map: what every page frame of a machine is doing, by address.

A view for humans (the heatmap of the browser page), not a kernel function: it reads
``vm_page_array``, the ``managed`` runs that ``vm_page_startup`` handed to the VM and the
DMA reserve alist, and sorts every pfn of ``[lo, hi)`` into one **state**, then counts the
states in at most ``width`` equal buckets of consecutive pfns.

The states, and the one a page gets when several apply (first match wins):

1. ``unmanaged``   -- not a page the VM manages: a hole in ``phys_avail``, the page array
   and the minidump bitmap carved from the biggest range, or a page beyond ``npages``.
   Their records exist (the array spans the holes) but the kernel never looks at them.
2. ``dma_reserve`` -- free in the DMA reserve (``vm_contig_alist``).  Such a page sits
   wired once, FICTITIOUS|UNQUEUED, on PQ_NONE -- exactly as a page that
   ``vm_page_alloc_contig`` handed out -- so only the alist tells the two apart.  A page
   handed out of the reserve is no longer in the alist and shows as ``wired``.
3. ``busy``        -- hard-busied (``PBUSY_LOCKED``) or soft-busied (``busy_count &
   PBUSY_MASK``): someone is working on it right now.  A fresh ``vm_page_alloc`` page is
   here (hard-busied, on no queue) until it is unbusied.  ``PBUSY_WANTED`` or
   ``PBUSY_SWAPINPROG`` alone do not count.
4. ``wired``       -- ``wire_count > 0`` (wired pages are off the paging queues).
5. ``hold``        -- ``hold_count > 0`` or on PQ_HOLD.  A hold pins a page against reuse
   wherever it sits, so a held active page is shown as held; PQ_HOLD (a page freed while
   held) is included even with ``hold_count`` 0, the race ``vm_pageout_scan_hold`` repairs.
6. the page's queue type: ``free`` (PQ_FREE), ``cache`` (PQ_CACHE), ``inactive``
   (PQ_INACTIVE), ``active`` (PQ_ACTIVE), or ``none`` (PQ_NONE: allocated, idle, unwired,
   unheld -- e.g. an unbusied page that nobody queued).

Against vmstats (after a rollup), when no page is both queued and busied or held:
``free`` = v_free_count (the reserve is not in it), ``cache`` = v_cache_count,
``inactive`` = v_inactive_count, ``active`` + the PQ_HOLD pages = v_active_count (PQ_HOLD
feeds it), ``wired`` + ``dma_reserve`` = v_wire_count (reserve pages are wired once).

The whole range is classified without a Python loop over pages: each condition becomes a
packed bit plane (one bit per page, 64 pages per ``uint64`` word, built chunk by chunk so
that the temporaries stay in cache), the precedence is applied with word-wide boolean
algebra, and per-bucket counts come from popcount prefix sums read at the bucket edges.
"""

from __future__ import annotations

import operator
from typing import Any, Final

import numpy as np

from app.core.constants import PBUSY_LOCKED, PBUSY_MASK
from app.core.errors import InvalidArgument
from app.core.machine import Machine

NDArray = np.ndarray[Any, Any]

#: The states, in the fixed order of the answer's ``states`` list.
STATES: Final = (
    "free",
    "cache",
    "inactive",
    "active",
    "hold",
    "wired",
    "busy",
    "dma_reserve",
    "none",
    "unmanaged",
)
MAX_WIDTH: Final = 4096
DEFAULT_WIDTH: Final = 1024

#: Pages per pass of the plane builder: a multiple of 64 so that each chunk's bits start on
#: a word boundary.  Its temporaries (9 bytes a page, about 2 MiB) stay in cache between the
#: steps, and 64 passes over 16 M pages keep the per-call overhead small (measured: 2^14
#: pages per pass took twice as long at 16 M pages, 2^18 .. 2^20 the same).
_CHUNK: Final = 1 << 18

_U64 = np.dtype("<u8")  # packbits(bitorder="little") bytes read as little-endian words
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_BUSY_BITS = np.uint32(PBUSY_LOCKED | PBUSY_MASK)

# Rows of the packed plane array.  (queue - 1) >> 10 in 16 bits is the queue type: 0 free,
# 1 inactive, 2 active, 3 cache, 4 hold; PQ_NONE (0) wraps to 63, whose low three bits
# (7) no queue type uses -- so three bit planes tell all six apart.
_Q0, _Q1, _Q2, _WIRED, _HELD, _BUSY = range(6)
_NPLANES = 6


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgument(f"{name} must be an integer, got {value!r}") from None


def pagemap(
    machine: Machine, lo: int | None = None, hi: int | None = None, width: int = DEFAULT_WIDTH
) -> dict[str, Any]:
    """The memory map of pfns ``[lo, hi)`` (default: the whole ``vm_page_array``,
    ``first_page .. first_page + page_range``) in at most ``width`` buckets (1..4096).

    Buckets hold ``bucket_pages = ceil((hi - lo) / width)`` consecutive pfns each, the last
    one possibly fewer; ``width`` in the answer is the number of buckets actually used
    (``ceil((hi - lo) / bucket_pages)``, which can be below the one asked for).  Answer::

        {"lo", "hi", "width", "bucket_pages", "states": [names, in STATES order],
         "counts": {state: [pages per bucket]}, "totals": {state: pages}}
    """
    first = machine.first_page
    end = first + machine.page_range
    lo = first if lo is None else _as_int(lo, "lo")
    hi = end if hi is None else _as_int(hi, "hi")
    width = _as_int(width, "width")
    if not 1 <= width <= MAX_WIDTH:
        raise InvalidArgument(f"width must be from 1 to {MAX_WIDTH} buckets, got {width}")
    if lo >= hi:
        raise InvalidArgument(f"lo ({lo:#x}) must be below hi ({hi:#x})")
    if lo < first or hi > end:
        raise InvalidArgument(
            f"pfns {lo:#x} .. {hi:#x} are not all inside this machine's page array "
            f"({first:#x} .. {end:#x})"
        )
    n = hi - lo
    bucket_pages = -(-n // width)
    buckets = -(-n // bucket_pages)

    words = _state_words(machine, lo - first, n)
    edges = np.arange(buckets + 1, dtype=np.int64) * bucket_pages
    edges[-1] = n
    edge_word = edges >> 6
    edge_mask = np.left_shift(np.uint64(1), (edges & 63).astype(np.uint64)) - np.uint64(1)
    counts: dict[str, list[int]] = {}
    totals: dict[str, int] = {}
    for name in STATES:
        below = _pages_below(words[name], edge_word, edge_mask)
        counts[name] = np.diff(below).tolist()
        totals[name] = int(below[-1] - below[0])
    return {
        "lo": lo,
        "hi": hi,
        "width": buckets,
        "bucket_pages": bucket_pages,
        "states": list(STATES),
        "counts": counts,
        "totals": totals,
    }


def _pages_below(words: NDArray, edge_word: NDArray, edge_mask: NDArray) -> NDArray:
    """For each edge ``e``: how many set bits lie below bit ``e`` -- the whole words before
    it (a popcount prefix sum) plus the low bits of its own word."""
    prefix = np.zeros(words.size + 1, dtype=np.int64)
    np.cumsum(np.bitwise_count(words), dtype=np.int64, out=prefix[1:])
    below: NDArray = prefix[edge_word] + np.bitwise_count(words[edge_word] & edge_mask)
    return below


def _state_words(machine: Machine, base: int, n: int) -> dict[str, NDArray]:
    """One packed mask per state over page indices ``[base, base + n)``: bit ``j`` of word
    ``w`` is page ``base + 64 w + j``.  Every page is in exactly one mask; bits past ``n``
    (the tail of the last word and one guard word, read at an edge equal to ``n``) are
    never counted."""
    planes = _page_planes(machine.pg.arrays, base, n)
    nwords = planes.shape[1]
    q0, q1, q2 = planes[_Q0], planes[_Q1], planes[_Q2]
    managed = _run_words(nwords, n, [(a - base, z - base) for a, z in machine.managed])
    # alist blocks are pfns; base + first_page is the pfn of bit 0
    lo_pfn = base + machine.first_page
    reserve = _run_words(
        nwords,
        n,
        [(blk - lo_pfn, blk + count - lo_pfn) for blk, count in machine.contig.alist.free_runs()],
    )
    reserve &= managed
    live = managed & ~reserve
    busy = live & planes[_BUSY]
    idle = live & ~planes[_BUSY]
    wired = idle & planes[_WIRED]
    unwired = idle & ~planes[_WIRED]
    on_hold_queue = q2 & ~q1 & ~q0
    hold = unwired & (planes[_HELD] | on_hold_queue)
    queued = unwired & ~planes[_HELD] & ~on_hold_queue
    low = ~q2 & queued  # queue types 0..3; with q2 set only PQ_NONE is left
    return {
        "free": low & ~q1 & ~q0,
        "cache": low & q1 & q0,
        "inactive": low & ~q1 & q0,
        "active": low & q1 & ~q0,
        "hold": hold,
        "wired": wired,
        "busy": busy,
        "dma_reserve": reserve,
        "none": queued & q2,
        "unmanaged": ~managed,
    }


def _page_planes(arrays: dict[str, NDArray], base: int, n: int) -> NDArray:
    """The per-page conditions as packed bit planes, shape ``(_NPLANES, words)``."""
    nwords = (n + 63) // 64 + 1  # + a zero guard word
    packed = np.zeros((_NPLANES, nwords * 8), dtype=np.uint8)
    view = slice(base, base + n)
    queue, wire, hold, busy = (arrays[f][view] for f in ("queue", "wire", "hold", "busy"))
    size = min(_CHUNK, n)
    qtype16 = np.empty(size, dtype=np.uint16)
    qtype = np.empty(size, dtype=np.uint8)
    bit = np.empty(size, dtype=np.uint8)
    flag = np.empty(size, dtype=np.bool_)
    busy_bits = np.empty(size, dtype=np.uint32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        k = stop - start
        out = slice(start >> 3, (start >> 3) + ((k + 7) >> 3))
        np.subtract(queue[start:stop], np.uint16(1), out=qtype16[:k])
        np.right_shift(qtype16[:k], np.uint16(10), out=qtype16[:k])
        np.copyto(qtype[:k], qtype16[:k], casting="unsafe")  # values <= 63 fit
        for row in (_Q0, _Q1, _Q2):
            np.bitwise_and(qtype[:k], np.uint8(1 << row), out=bit[:k])
            packed[row, out] = np.packbits(bit[:k], bitorder="little")
        np.not_equal(wire[start:stop], 0, out=flag[:k])
        packed[_WIRED, out] = np.packbits(flag[:k], bitorder="little")
        np.not_equal(hold[start:stop], 0, out=flag[:k])
        packed[_HELD, out] = np.packbits(flag[:k], bitorder="little")
        np.bitwise_and(busy[start:stop], _BUSY_BITS, out=busy_bits[:k])
        np.not_equal(busy_bits[:k], 0, out=flag[:k])
        packed[_BUSY, out] = np.packbits(flag[:k], bitorder="little")
    planes: NDArray = packed.view(_U64)
    return planes


def _run_words(nwords: int, n: int, runs: list[tuple[int, int]]) -> NDArray:
    """A packed mask with the bits of every run ``[a, z)`` set (runs disjoint, clipped to
    ``[0, n)``), vectorised over the runs: whole words through a difference array, the
    partial words at each run's ends OR-ed in."""
    words = np.zeros(nwords, dtype=_U64)
    if not runs:
        return words
    bounds = np.clip(np.asarray(runs, dtype=np.int64).reshape(-1, 2), 0, n)
    bounds = bounds[bounds[:, 1] > bounds[:, 0]]
    if bounds.size == 0:
        return words
    a, z = bounds[:, 0], bounds[:, 1]
    whole_from = (a + 63) >> 6  # first word the run covers entirely
    whole_to = z >> 6  # one past the last such word
    one = np.uint64(1)
    inside = whole_from > whole_to  # the run lies within one word, off both its edges
    if inside.any():
        ai, zi = a[inside], z[inside]
        mask = (np.left_shift(one, (zi - ai).astype(np.uint64)) - one) << (ai & 63).astype(
            np.uint64
        )
        np.bitwise_or.at(words, ai >> 6, mask)
    spans = ~inside
    a, z, whole_from, whole_to = a[spans], z[spans], whole_from[spans], whole_to[spans]
    cover = np.zeros(nwords + 1, dtype=np.int32)
    np.add.at(cover, whole_from, 1)
    np.add.at(cover, whole_to, -1)
    words[np.cumsum(cover[:-1]) > 0] = _ALL_ONES
    head = (a & 63) != 0  # bits a%64 .. 63 of the word before the whole ones
    if head.any():
        shift = (a[head] & 63).astype(np.uint64)
        np.bitwise_or.at(words, a[head] >> 6, ~(np.left_shift(one, shift) - one))
    tail = (z & 63) != 0  # bits 0 .. z%64 - 1 of the word after them
    if tail.any():
        shift = (z[tail] & 63).astype(np.uint64)
        np.bitwise_or.at(words, z[tail] >> 6, np.left_shift(one, shift) - one)
    return words
