"""The DMA reserve's block allocator: DragonFly's ``subr_alist.c`` as a radix tree (spec §7.6).

Leaves manage 32 blocks with one bit each (1 = free). Meta nodes have 16 children and keep
two bits per child: ``00`` all allocated, ``01`` partially free, ``11`` all free (``10`` is
reserved and never produced). Every node also carries a hint: the size of the biggest
naturally aligned power-of-two block that is entirely free inside it. That is the largest
request the subtree could satisfy, which is what the kernel's ``bm_bighint`` bounds from
above; here it is kept exact (so it is never too small and never stale) and a search only
descends into children whose hint admits the request.

The tree is stored level by level in flat lists (level 0 = leaves, the last level = the
root): node ``i`` of level ``l`` covers blocks ``[i * R_l, (i + 1) * R_l)`` with
``R_l = 32 * 16**l``, and its children are nodes ``16 * i .. 16 * i + 15`` of level ``l - 1``.
Only nodes that start below ``blocks`` exist, as in the kernel's records; a child slot past
the end is the kernel's terminator and reads as all allocated. Every node's contents are
always current: ranges that cover whole nodes are written with list-slice assignments, so a
free of the whole reserve touches a few thousand words in C rather than looping per block.
"""

from __future__ import annotations

import struct
from typing import Final

from app.core.constants import ALIST_BLOCK_NONE
from app.core.errors import InvalidArgument, KernelPanic

ALIST_BMAP_RADIX: Final = 32  # blocks per leaf
ALIST_META_RADIX: Final = 16  # children per meta node

_ALL: Final = 0xFFFFFFFF  # a leaf with every block free, or a meta node with every child all-free
_PARTIAL: Final = 0b01
_FREE: Final = 0b11
_META_FREE_BITS: Final = 0x55555555  # the low bit of every 2-bit child state

# _ALIGNED[k]: the bits of a 32-bit word whose position is a multiple of k.
_ALIGNED = {2: 0x55555555, 4: 0x11111111, 8: 0x01010101, 16: 0x00010001, 32: 0x00000001}


def _aligned_runs(slots: int, step: int, width: int) -> int:
    """Narrow ``slots`` (one bit per slot, ``step`` bits apart, 1 = free) to the slots that
    start a free run of ``width`` slots aligned to ``width`` (a power of two)."""
    run = 1
    while run < width and slots:
        # a run of 2*run is two free runs of `run`, the first aligned to 2*run
        slots &= slots >> (run * step)
        slots &= _ALIGNED[2 * run * step]
        run *= 2
    return slots


def _biggest_aligned(slots: int, step: int) -> int:
    """The widest naturally aligned power-of-two run of free slots, in slots (0 if none)."""
    best = 0
    run = 1
    while slots:
        best = run
        if run * step == 32:
            break
        slots &= slots >> (run * step)
        slots &= _ALIGNED[2 * run * step]
        run *= 2
    return best


def _lowest_bit(word: int) -> int:
    return (word & -word).bit_length() - 1


class Alist:
    """``struct alist``: a power-of-two block allocator over ``blocks`` blocks.

    ``alist_init(bl, blocks, records, nrecords)``: the radix is the smallest ``32 * 16**k``
    that covers ``blocks``; every block starts allocated and ``bl_free`` is 0.
    """

    def __init__(self, blocks: int) -> None:
        if blocks < 1:
            raise InvalidArgument(f"alist needs at least one block, not {blocks}")
        radix = ALIST_BMAP_RADIX
        node_radix = [radix]
        while radix < blocks:
            radix *= ALIST_META_RADIX
            node_radix.append(radix)
        self.blocks = blocks
        self.radix = radix
        self.bl_free = 0
        self._root = len(node_radix) - 1  # level of the root node
        self._node_radix = node_radix
        counts = [-(-blocks // r) for r in node_radix]
        self._word = [[0] * n for n in counts]  # leaf bitmaps / meta 2-bit child states
        self._hint = [[0] * n for n in counts]

    @property
    def records(self) -> int:
        """``bl_rootblks``: the kernel's record count (root + 16 slots per meta node, with
        terminators); 2193 for the 65536-block DMA alist (``ALIST_RECORDS_65536``)."""
        return 1 + ALIST_META_RADIX * sum(len(level) for level in self._word[1:])

    # --- alist_alloc ------------------------------------------------------------------

    def alloc(self, start: int, count: int) -> int:
        """``alist_alloc(bl, start, count)``: the lowest block ``b >= start`` that is a
        multiple of ``count`` with ``[b, b + count)`` free, or ``ALIST_BLOCK_NONE``.

        A count that is not a power of two is rounded up the kernel's way (from 1 below 256,
        from 256 otherwise, doubling), allocated, and the tail beyond ``count`` is freed at
        once, so the caller gets ``count`` blocks with the larger block's alignment.
        """
        if count <= 0:
            raise InvalidArgument(f"alist_alloc: count must be positive, not {count}")
        if start < 0:
            raise InvalidArgument(f"alist_alloc: start must not be negative, not {start}")
        if count & (count - 1):
            rounded = 1 if count < 256 else 256
            while rounded < count:
                rounded <<= 1
            blk = self._alloc_pow2(start, rounded)
            if blk != ALIST_BLOCK_NONE:
                self.free(blk + count, rounded - count)
            return blk
        return self._alloc_pow2(start, count)

    def _alloc_pow2(self, start: int, count: int) -> int:
        # The kernel refuses the whole tree (count == radix) as well as anything larger.
        if count >= self.radix or start >= self.blocks or self._hint[self._root][0] < count:
            return ALIST_BLOCK_NONE
        blk = self._find(self._root, 0, 0, start, count)
        if blk != ALIST_BLOCK_NONE:
            self._set_range(blk, blk + count, free=False)
            self.bl_free -= count
        return blk

    def _find(self, level: int, node: int, base: int, start: int, count: int) -> int:
        """``alst_leaf_alloc`` / ``alst_meta_alloc`` without the marking: the lowest free
        aligned block of ``count`` at or after ``start`` inside this node, whose hint the
        caller has already found big enough (``count`` is always below the node's radix)."""
        if level == 0:
            slots = self._word[0][node]
            if start > base:
                slots &= _ALL << (start - base)
            runs = _aligned_runs(slots, 1, count)
            return base + _lowest_bit(runs) if runs else ALIST_BLOCK_NONE

        child_radix = self._node_radix[level - 1]
        if count >= child_radix:
            # The request spans whole children: only the 2-bit states matter.
            word = self._word[level][node]
            slots = word & (word >> 1) & _META_FREE_BITS
            if start > base:
                first = -(-(start - base) // child_radix)
                slots &= _ALL << (2 * first)
            runs = _aligned_runs(slots, 2, count // child_radix)
            if not runs:
                return ALIST_BLOCK_NONE
            return base + (_lowest_bit(runs) // 2) * child_radix

        hints = self._hint[level - 1]
        first_child = ALIST_META_RADIX * node
        first = (start - base) // child_radix if start > base else 0
        # Hints are exact, so only the child holding `start` can be entered and still fail.
        for j in range(first, min(ALIST_META_RADIX, len(hints) - first_child)):
            child = first_child + j
            if hints[child] >= count:
                blk = self._find(level - 1, child, base + j * child_radix, start, count)
                if blk != ALIST_BLOCK_NONE:
                    return blk
        return ALIST_BLOCK_NONE

    # --- alist_free -------------------------------------------------------------------

    def free(self, blk: int, count: int) -> None:
        """``alist_free(bl, blkno, count)``: free any range, aligned or not.

        Freeing a block that is already free panics, as does a range past ``blocks``; both
        are checked before anything changes.
        """
        if count <= 0:
            raise InvalidArgument(f"alist_free: count must be positive, not {count}")
        if blk < 0 or blk + count > self.blocks:
            raise KernelPanic("alist_free", "freeing unexpected range")
        if self._any_free(self._root, 0, 0, blk, blk + count):
            raise KernelPanic("alist_free", "freeing free block")
        self._set_range(blk, blk + count, free=True)
        self.bl_free += count

    def _any_free(self, level: int, node: int, base: int, lo: int, hi: int) -> bool:
        """Whether any block of ``[lo, hi)`` inside this node is free."""
        word = self._word[level][node]
        if word == 0:
            return False
        radix = self._node_radix[level]
        if lo <= base and base + radix <= hi:
            return True
        if level == 0:
            first = max(lo, base) - base
            end = min(hi, base + radix) - base
            return bool((word >> first) & ((1 << (end - first)) - 1))
        child_radix = self._node_radix[level - 1]
        first = max(lo - base, 0) // child_radix
        last = (min(hi, base + radix) - 1 - base) // child_radix
        last = min(last, len(self._word[level - 1]) - 1 - ALIST_META_RADIX * node)
        return any(
            self._any_free(level - 1, ALIST_META_RADIX * node + j, base + j * child_radix, lo, hi)
            for j in range(first, last + 1)
        )

    def _set_range(self, blk: int, end: int, *, free: bool) -> None:
        """Mark ``[blk, end)`` free or allocated, then bring every ancestor's 2-bit states
        and hint up to date. Nodes the range covers entirely are written in bulk; only the
        (at most two) boundary nodes per level are recomputed from their children."""
        leaves, leaf_hints = self._word[0], self._hint[0]
        first, last = blk // ALIST_BMAP_RADIX, (end - 1) // ALIST_BMAP_RADIX
        for leaf in (first,) if first == last else (first, last):
            base = leaf * ALIST_BMAP_RADIX
            lo = max(blk, base) - base
            hi = min(end, base + ALIST_BMAP_RADIX) - base
            mask = ((1 << (hi - lo)) - 1) << lo
            word = leaves[leaf] | mask if free else leaves[leaf] & ~mask
            leaves[leaf] = word
            leaf_hints[leaf] = _biggest_aligned(word, 1)
        if last - first > 1:
            inner = last - first - 1
            leaves[first + 1 : last] = [_ALL if free else 0] * inner
            leaf_hints[first + 1 : last] = [ALIST_BMAP_RADIX if free else 0] * inner

        for level in range(1, self._root + 1):
            first //= ALIST_META_RADIX
            last //= ALIST_META_RADIX
            radix = self._node_radix[level]
            covered_lo, covered_hi = -(-blk // radix), end // radix
            if covered_hi > covered_lo:
                inner = covered_hi - covered_lo
                self._word[level][covered_lo:covered_hi] = [_ALL if free else 0] * inner
                self._hint[level][covered_lo:covered_hi] = [radix if free else 0] * inner
            for node in (first,) if first == last else (first, last):
                if not covered_lo <= node < covered_hi:
                    self._word[level][node], self._hint[level][node] = self._summarise(level, node)

    def _summarise(self, level: int, node: int) -> tuple[int, int]:
        """A meta node's 2-bit child states and exact hint, computed from its children."""
        child_words, child_hints = self._word[level - 1], self._hint[level - 1]
        first_child = ALIST_META_RADIX * node
        word = 0
        partial_hint = 0
        for j, child in enumerate(range(first_child, min(first_child + 16, len(child_words)))):
            child_word = child_words[child]
            if child_word == _ALL:
                word |= _FREE << (2 * j)
            elif child_word:
                word |= _PARTIAL << (2 * j)
                partial_hint = max(partial_hint, child_hints[child])
        free_children = word & (word >> 1) & _META_FREE_BITS
        if free_children:
            # a partially free child can never beat one whole free child
            return word, _biggest_aligned(free_children, 2) * self._node_radix[level - 1]
        return word, partial_hint

    # --- alist_free_info --------------------------------------------------------------

    def free_info(self) -> tuple[int, int, int]:
        """``alist_free_info(bl, &start, &count)``: ``(bl_free, blk, count)`` where
        ``[blk, blk + count)`` is the highest free chunk the kernel finds from the top.

        At each meta level it takes the highest child that is not all allocated: an
        all-free child is returned whole (its full radix), a partially free one is entered.
        At a leaf it returns the single highest free block. Nothing free gives ``(0, 0, 0)``.
        """
        level, node, base = self._root, 0, 0
        while level > 0:
            word = self._word[level][node]
            child_radix = self._node_radix[level - 1]
            for j in range(ALIST_META_RADIX - 1, -1, -1):
                state = (word >> (2 * j)) & 0b11
                if state == _FREE:
                    return self.bl_free, base + j * child_radix, child_radix
                if state == _PARTIAL:
                    node = ALIST_META_RADIX * node + j
                    base += j * child_radix
                    level -= 1
                    break
            else:
                return self.bl_free, 0, 0
        word = self._word[0][node]
        if word == 0:
            return self.bl_free, 0, 0
        return self.bl_free, base + word.bit_length() - 1, 1

    # --- inspection -------------------------------------------------------------------

    def is_free(self, blk: int) -> bool:
        """Whether block ``blk`` is free (its leaf bit is set)."""
        if not 0 <= blk < self.blocks:
            raise InvalidArgument(f"block {blk} outside the alist's {self.blocks} blocks")
        leaf, bit = divmod(blk, ALIST_BMAP_RADIX)
        return bool((self._word[0][leaf] >> bit) & 1)

    def free_runs(self) -> list[tuple[int, int]]:
        """Maximal runs of free blocks as ``(start, count)``, ascending. Whole free or whole
        allocated subtrees are taken from the meta states without visiting their leaves."""
        runs: list[tuple[int, int]] = []

        def emit(start: int, count: int) -> None:
            if runs and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + count)
            else:
                runs.append((start, count))

        def walk(level: int, node: int, base: int) -> None:
            word = self._word[level][node]
            if word == 0:
                return
            if word == _ALL:
                emit(base, self._node_radix[level])
                return
            if level == 0:
                offset = 0
                while word:
                    skip = _lowest_bit(word)
                    word >>= skip
                    length = (word ^ (word + 1)).bit_length() - 1  # trailing ones
                    emit(base + offset + skip, length)
                    word >>= length
                    offset += skip + length
                return
            child_radix = self._node_radix[level - 1]
            first_child = ALIST_META_RADIX * node
            for j in range(min(ALIST_META_RADIX, len(self._word[level - 1]) - first_child)):
                walk(level - 1, first_child + j, base + j * child_radix)

        walk(self._root, 0, 0)
        return runs

    def state_bytes(self) -> bytes:
        """A deterministic serialisation of the whole tree (every node's word and hint,
        root level first) plus ``blocks``, ``radix`` and ``bl_free``, for state digests."""
        parts = [struct.pack("<QQQ", self.blocks, self.radix, self.bl_free)]
        for level in range(self._root, -1, -1):
            words, hints = self._word[level], self._hint[level]
            parts.append(struct.pack(f"<{len(words)}I", *words))
            parts.append(struct.pack(f"<{len(hints)}Q", *hints))
        return b"".join(parts)

    def check(self) -> None:
        """Verify the tree: leaf bits past ``blocks`` are never free, every hint equals the
        biggest free aligned block below it (so it is never too small), every meta 2-bit
        state matches its child and ``bl_free`` equals a recount. Raises AssertionError."""
        leaves = self._word[0]
        valid_in_last = self.blocks - (len(leaves) - 1) * ALIST_BMAP_RADIX
        if leaves[-1] >> valid_in_last:
            raise AssertionError(f"blocks past {self.blocks} (terminators) are marked free")
        for leaf, word in enumerate(leaves):
            if not 0 <= word <= _ALL:
                raise AssertionError(f"leaf {leaf}: bitmap {word:#x} is not 32 bits")
            hint = _biggest_aligned(word, 1)
            if self._hint[0][leaf] != hint:
                raise AssertionError(
                    f"leaf {leaf}: hint {self._hint[0][leaf]}, biggest free block {hint}"
                )
        for level in range(1, self._root + 1):
            for node, word in enumerate(self._word[level]):
                for j in range(ALIST_META_RADIX):
                    if (word >> (2 * j)) & 0b11 == 0b10:
                        raise AssertionError(f"level {level} node {node}: reserved state 10")
                expected_word, expected_hint = self._summarise(level, node)
                if word != expected_word:
                    raise AssertionError(
                        f"level {level} node {node}: states {word:#010x}, "
                        f"children say {expected_word:#010x}"
                    )
                if self._hint[level][node] != expected_hint:
                    raise AssertionError(
                        f"level {level} node {node}: hint {self._hint[level][node]}, "
                        f"biggest free block {expected_hint}"
                    )
        recount = sum(word.bit_count() for word in leaves)
        if recount != self.bl_free:
            raise AssertionError(f"bl_free {self.bl_free}, but {recount} blocks are free")
