"""Tests for app.core.alist: the DMA reserve's radix-tree allocator (spec §7.6, §2.4)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.alist import Alist
from app.core.constants import ALIST_BLOCK_NONE, DMA_ALIST_BLOCKS
from app.core.errors import InvalidArgument, KernelPanic

NONE = ALIST_BLOCK_NONE


def fresh_free(blocks: int = DMA_ALIST_BLOCKS) -> Alist:
    alist = Alist(blocks)
    alist.free(0, blocks)
    return alist


# --- alist_init ------------------------------------------------------------------------


def test_radix_is_smallest_32_times_power_of_16_covering_blocks() -> None:
    assert Alist(1).radix == 32
    assert Alist(32).radix == 32
    assert Alist(33).radix == 512
    assert Alist(8192).radix == 8192
    assert Alist(8193).radix == 131072
    assert Alist(DMA_ALIST_BLOCKS).radix == 131072


def test_dma_alist_needs_the_kernels_2193_records() -> None:
    # ALIST_RECORDS_65536: root + 16 slots for each of the 137 meta nodes, terminators included
    assert Alist(DMA_ALIST_BLOCKS).records == 2193
    assert Alist(32).records == 1


def test_everything_starts_allocated() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    assert alist.bl_free == 0
    assert alist.alloc(0, 1) == NONE
    assert alist.bl_free == 0
    assert alist.free_info() == (0, 0, 0)
    assert alist.free_runs() == []
    assert not alist.is_free(0) and not alist.is_free(65535)
    alist.check()


def test_blocks_must_be_positive() -> None:
    with pytest.raises(InvalidArgument):
        Alist(0)


# --- alist_alloc ---------------------------------------------------------------------------


def test_after_freeing_everything_the_lowest_block_comes_first() -> None:
    alist = fresh_free()
    assert alist.bl_free == 65536
    assert alist.alloc(0, 1) == 0
    assert alist.alloc(0, 1) == 1
    assert alist.bl_free == 65534
    assert alist.free_runs() == [(2, 65534)]
    alist.check()


def test_odd_count_rounds_up_then_frees_the_tail() -> None:
    alist = fresh_free()
    assert alist.alloc(0, 3) == 0  # allocated as 4 at 0, block 3 handed back
    assert alist.bl_free == 65536 - 3
    assert [alist.is_free(b) for b in range(5)] == [False, False, False, True, True]
    assert alist.alloc(0, 1) == 3
    alist.check()


def test_counts_from_256_round_from_256() -> None:
    alist = fresh_free()
    assert alist.alloc(0, 300) == 0  # 512 at 0, [300, 512) handed back
    assert alist.bl_free == 65536 - 300
    assert alist.free_runs() == [(300, 65236)]
    assert alist.alloc(0, 256) == 512  # 256 itself overlaps the allocated 256..299
    assert alist.alloc(0, 128) == 384
    assert alist.alloc(0, 4) == 300
    alist.check()


def test_power_of_two_blocks_are_naturally_aligned() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(1, 8)  # blocks 1..8
    assert alist.alloc(0, 4) == 4  # not 1: a 4-block must start at a multiple of 4
    assert alist.alloc(0, 4) == NONE  # 0..3 holds allocated 0, 8..11 holds 9..11
    assert alist.alloc(0, 2) == 2
    assert alist.alloc(0, 1) == 1
    assert alist.alloc(0, 1) == 8
    assert alist.alloc(0, 1) == NONE
    assert alist.bl_free == 0
    alist.check()


def test_start_is_honoured() -> None:
    alist = fresh_free()
    assert alist.alloc(5, 4) == 8  # 4 would start below 5
    assert alist.alloc(5, 1) == 5
    assert alist.alloc(5, 1) == 6
    assert alist.alloc(8191, 8192) == 8192  # across a leaf and a meta boundary
    assert alist.alloc(1, 32768) == 32768
    assert alist.alloc(0, 2) == 0
    assert alist.alloc(32768, 1) == NONE  # 32768..65535 now all allocated
    alist.free(65535, 1)
    assert alist.alloc(60000, 1) == 65535
    assert alist.alloc(65536, 1) == NONE  # past the last block
    alist.check()


def test_start_inside_a_partially_free_leaf_falls_through_to_the_next() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(96, 2)  # 96, 97 in leaf 3
    alist.free(4000, 1)
    assert alist.alloc(97, 2) == NONE  # 96 is below start, 98 is allocated
    assert alist.alloc(97, 1) == 97
    assert alist.alloc(97, 1) == 4000
    assert alist.alloc(0, 1) == 96
    alist.check()


def test_requests_of_the_whole_tree_or_more_fail() -> None:
    alist = fresh_free()
    assert alist.alloc(0, 131072) == NONE
    assert alist.alloc(0, 65537) == NONE  # rounds up to the radix
    assert alist.alloc(0, 65536) == 0  # half the radix is fine
    assert alist.bl_free == 0

    small = fresh_free(32)  # the root is a single leaf
    assert small.alloc(0, 32) == NONE
    assert small.alloc(0, 17) == NONE
    assert small.alloc(0, 16) == 0
    small.check()


def test_terminators_are_never_free() -> None:
    alist = fresh_free(33)
    assert alist.alloc(0, 64) == NONE  # 33..63 do not exist
    assert alist.alloc(0, 32) == 0
    assert alist.alloc(0, 1) == 32
    assert alist.alloc(0, 1) == NONE
    assert alist.bl_free == 0
    with pytest.raises(KernelPanic):
        alist.free(30, 4)
    alist.check()


def test_alloc_rejects_bad_arguments() -> None:
    alist = fresh_free()
    for start, count in [(0, 0), (0, -4), (-1, 1)]:
        with pytest.raises(InvalidArgument):
            alist.alloc(start, count)
    assert alist.bl_free == 65536


def test_search_follows_the_tree_not_the_blocks() -> None:
    calls = 0

    class Counting(Alist):
        def _find(self, level: int, node: int, base: int, start: int, count: int) -> int:
            nonlocal calls
            calls += 1
            return super()._find(level, node, base, start, count)

    alist = Counting(DMA_ALIST_BLOCKS)
    alist.free(65535, 1)
    assert alist.alloc(0, 1) == 65535
    assert calls == 4  # one node per level: root, level 2, level 1, leaf 2047

    calls = 0
    alist.free(65535, 1)
    alist.free(0, 1)
    assert alist.alloc(1, 1) == 65535
    # the path holding `start` fails at leaf 0 (block 0 is below start); hints send the
    # search straight down the path to 65535 without touching the 2046 empty leaves
    assert calls == 7


# --- alist_free ----------------------------------------------------------------------------


def test_free_any_alignment_and_size() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(3, 70)
    alist.free(8190, 8195)
    assert alist.bl_free == 70 + 8195
    assert alist.free_runs() == [(3, 70), (8190, 8195)]
    alist.free(73, 8117)  # joins the two runs
    assert alist.free_runs() == [(3, 16382)]
    alist.check()


def test_double_free_panics_and_changes_nothing() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(1000, 10)
    alist.free(5000, 1)
    before = alist.state_bytes()
    for blk, count in [(990, 11), (1005, 1), (0, 65536), (4999, 3)]:
        with pytest.raises(KernelPanic) as caught:
            alist.free(blk, count)
        assert caught.value.function == "alist_free"
        assert caught.value.message == "freeing free block"
        assert alist.state_bytes() == before
        assert alist.bl_free == 11
        assert not alist.is_free(990)
        alist.check()


def test_free_out_of_range_panics_and_changes_nothing() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    before = alist.state_bytes()
    for blk, count in [(65535, 2), (-1, 2), (70000, 1)]:
        with pytest.raises(KernelPanic) as caught:
            alist.free(blk, count)
        assert caught.value.function == "alist_free"
    with pytest.raises(InvalidArgument):
        alist.free(0, 0)
    assert alist.state_bytes() == before
    assert alist.bl_free == 0


def test_freeing_the_whole_reserve_is_fast() -> None:
    best = min(_time(lambda: Alist(DMA_ALIST_BLOCKS).free(0, DMA_ALIST_BLOCKS)) for _ in range(3))
    assert best < 0.05


def _time(action: object) -> float:
    assert callable(action)
    begin = time.perf_counter()
    action()
    return time.perf_counter() - begin


# --- alist_free_info -----------------------------------------------------------------------


def test_free_info_descends_partial_nodes_to_the_highest_single_block() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(100, 100)
    # leaf 6 (192..223) holds 192..199, so it is partial: its highest free block wins,
    # even though leaves 4 and 5 below it are entirely free
    assert alist.free_info() == (100, 199, 1)


def test_free_info_returns_a_whole_free_child() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(100, 92)  # 100..191: leaf 5 (160..191) is the highest touched and all free
    assert alist.free_info() == (92, 160, 32)

    everything = fresh_free()
    # the whole tree is free, but only the root's highest existing child is returned
    assert everything.free_info() == (65536, 57344, 8192)

    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(0, 1)
    alist.free(3 * 8192, 8192)
    assert alist.free_info() == (8193, 24576, 8192)


def test_free_info_prefers_the_highest_child_even_if_smaller() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(0, 8192)
    alist.free(60000, 1)
    assert alist.free_info() == (8193, 60000, 1)


def test_free_info_on_small_trees() -> None:
    assert fresh_free(32).free_info() == (32, 31, 1)  # the root is a leaf
    assert fresh_free(100).free_info() == (100, 99, 1)  # leaf 3 holds terminators 100..127
    assert fresh_free(128).free_info() == (128, 96, 32)


def dma_startup_finish(alist: Alist, keep: int) -> tuple[list[tuple[int, int]], int]:
    """The return-the-reserve loop of ``vm_page_startup_finish`` (spec §2.4): the chunks
    handed back, in order, and the final ``vm_low_phys_reserved`` in pages."""
    chunks: list[tuple[int, int]] = []
    low_reserved = -1
    while True:
        bfree, blk, count = alist.free_info()
        if bfree <= keep or count == 0:
            break
        bfree -= keep
        if count > bfree:
            blk += count - bfree
            count = bfree
        x = 1 << (count.bit_length() - 1)
        blk += count - x
        count = x
        assert alist.alloc(blk, count) == blk
        chunks.append((blk, count))
        low_reserved = blk
    return chunks, low_reserved


def test_startup_finish_returns_the_reserve_from_the_top() -> None:
    # memory starts at 4 KiB, so the reserve is pfns 1..65535; keep 128 MiB = 32768 pages
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(1, 65535)
    chunks, low_reserved = dma_startup_finish(alist, keep=32768)
    expected = (
        [(57344, 8192), (49152, 8192), (40960, 8192)]
        # 40959 free: the 8192 at 32768 is cut to its top 8191, then to a 4096 at its top
        + [(36864, 4096)]
        + [(32768 + 512 * j, 512) for j in range(7, 0, -1)]
        + [(33024, 256)]  # 511 over: top 256 of 32769..33279
        + [(32768 + 32 * j, 32) for j in range(7, 0, -1)]
        + [(32784, 16)]  # 31 over: top 16 of 32769..32799
        + [(pfn, 1) for pfn in range(32783, 32768, -1)]  # a leaf gives one block at a time
    )
    assert chunks == expected
    assert sum(count for _, count in chunks) == 32767
    assert low_reserved == 32769
    assert alist.bl_free == 32768
    assert alist.free_runs() == [(1, 32768)]
    alist.check()


# --- inspection ----------------------------------------------------------------------------


def test_is_free_rejects_blocks_outside_the_alist() -> None:
    alist = fresh_free(33)
    assert alist.is_free(32)
    with pytest.raises(InvalidArgument):
        alist.is_free(33)


def test_state_bytes_is_deterministic_and_tracks_state() -> None:
    one, two = fresh_free(), fresh_free()
    assert one.state_bytes() == two.state_bytes()
    assert one.alloc(0, 8) == two.alloc(0, 8) == 0
    assert one.state_bytes() == two.state_bytes()
    two.free(0, 1)
    assert one.state_bytes() != two.state_bytes()


def test_check_catches_corruption() -> None:
    alist = Alist(DMA_ALIST_BLOCKS)
    alist.free(100, 100)
    alist.check()

    good_hint = alist._hint[1][0]
    assert good_hint == 64  # 128..191 is the biggest aligned free block under it
    alist._hint[1][0] = 32  # too small
    with pytest.raises(AssertionError, match="hint"):
        alist.check()
    alist._hint[1][0] = good_hint

    alist._word[1][0] |= 0b11 << 20  # leaf 10 claimed all free
    with pytest.raises(AssertionError, match="states"):
        alist.check()
    alist._word[1][0] &= ~(0b11 << 20)

    alist.bl_free += 1
    with pytest.raises(AssertionError, match="bl_free"):
        alist.check()
    alist.bl_free -= 1

    small = Alist(33)
    small._word[0][1] = 0b10  # block 33 is a terminator
    with pytest.raises(AssertionError, match="terminator"):
        small.check()


# --- against a plain bitmap model -------------------------------------------------------


class Reference:
    """The spec's semantics on a flat list of booleans, nothing clever."""

    def __init__(self, blocks: int, radix: int) -> None:
        self.free_map = [False] * blocks
        self.radix = radix

    def alloc(self, start: int, count: int) -> int:
        n = 1 if count < 256 else 256
        while n < count:
            n <<= 1
        if n >= self.radix:
            return NONE
        blk = -(-start // n) * n
        while blk + n <= len(self.free_map):
            if all(self.free_map[blk : blk + n]):
                self.free_map[blk : blk + count] = [False] * count
                return blk
            blk += n
        return NONE

    def free(self, blk: int, count: int) -> None:
        if blk < 0 or blk + count > len(self.free_map):
            raise KernelPanic("alist_free", "freeing unexpected range")
        if any(self.free_map[blk : blk + count]):
            raise KernelPanic("alist_free", "freeing free block")
        self.free_map[blk : blk + count] = [True] * count

    def runs(self) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for blk, free in enumerate(self.free_map):
            if not free:
                continue
            if runs and sum(runs[-1]) == blk:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((blk, 1))
        return runs

    def free_info(self) -> tuple[int, int, int]:
        def state(lo: int, size: int) -> str:
            chunk = self.free_map[lo : lo + size]
            if len(chunk) == size and all(chunk):
                return "free"
            return "partial" if any(chunk) else "allocated"

        base, size = 0, self.radix
        total = sum(self.free_map)
        while size > 32:
            size //= 16
            for j in range(15, -1, -1):
                found = state(base + j * size, size)
                if found == "free":
                    return total, base + j * size, size
                if found == "partial":
                    base += j * size
                    break
            else:
                return total, 0, 0
        for blk in range(min(base + 32, len(self.free_map)) - 1, base - 1, -1):
            if self.free_map[blk]:
                return total, blk, 1
        return total, 0, 0


small_or_any = st.one_of(st.integers(1, 64), st.integers(1, 20000))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.one_of(st.just(0), st.integers(0, 9000)), small_or_any),
        st.tuples(st.just("free_any"), st.integers(-2, 9000), small_or_any),
        st.tuples(st.just("free_held"), st.integers(0, 1000), st.integers(0, 1000)),
    ),
    min_size=5,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    blocks=st.sampled_from([1, 7, 32, 33, 100, 512, 513, 1000, 8192, 8193]),
    start_free=st.booleans(),
    ops=operations,
)
def test_matches_a_plain_bitmap(
    blocks: int, start_free: bool, ops: list[tuple[str, int, int]]
) -> None:
    alist = Alist(blocks)
    model = Reference(blocks, alist.radix)
    if start_free:
        alist.free(0, blocks)
        model.free(0, blocks)
    held: list[tuple[int, int]] = []  # allocations not yet given back
    for kind, a, b in ops:
        if kind == "alloc":
            start, count = a % (blocks + 3), b
            got = alist.alloc(start, count)
            assert got == model.alloc(start, count), (kind, start, count)
            if got != NONE:
                held.append((got, count))
            continue
        if kind == "free_held":
            if not held:
                continue
            blk, count = held.pop(a % len(held))
            skip = b % count  # give back a tail, keep the head held
            if skip:
                held.append((blk, skip))
            blk, count = blk + skip, count - skip
        else:
            blk, count = a % (blocks + 2) - 1, b
        expected: KernelPanic | None = None
        try:
            model.free(blk, count)
        except KernelPanic as panic:
            expected = panic
        if expected is None:
            alist.free(blk, count)
        else:
            before = alist.state_bytes()
            with pytest.raises(KernelPanic) as caught:
                alist.free(blk, count)
            assert caught.value.message == expected.message
            assert alist.state_bytes() == before
        alist.check()
        assert alist.bl_free == sum(model.free_map)
        assert alist.free_runs() == model.runs()
        assert alist.free_info() == model.free_info()
    alist.check()
    assert alist.free_runs() == model.runs()
    assert alist.free_info() == model.free_info()
