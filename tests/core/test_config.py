"""Tests for app.core.config: size parsing, the memory map as ``vm_page_startup`` rounds
it (spec §2.2 step 1), and the refusals that keep an unbootable or absurd machine from ever
allocating its page array."""

from __future__ import annotations

from typing import Any

import pytest

import app.core.boot
from app.core.config import MachineConfig, NumaRange, Topology, parse_size
from app.core.errors import ConfigError
from app.core.machine import Machine

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.fixture
def no_page_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make allocating a page array fail loudly: a refusal must come first."""

    def refuse(size: int) -> None:
        raise AssertionError(f"a page array of {size} entries was allocated")

    monkeypatch.setattr(app.core.boot, "PageArray", refuse)


# ---------------------------------------------------------------------------------------
# parse_size
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("4GiB", 4 * GiB),
        ("512 MiB", 512 * MiB),
        ("512mib", 512 * MiB),
        ("  8 M ", 8 * MiB),
        ("64k", 64 * KiB),
        ("2T", 2 * TiB),  # single letters are binary, as the loader reads hw.physmem
        ("1.5G", 1536 * MiB),
        ("0.5KiB", 512),
        ("4096", 4096),
        ("4096B", 4096),
        (4096, 4096),
        (0, 0),
        ("4096TiB", 1 << 52),  # exactly the 52-bit physical address space
        ("000000000000000000000000000001GiB", GiB),  # leading zeros are not magnitude
    ],
)
def test_parse_size(text: str | int, nbytes: int) -> None:
    assert parse_size(text) == nbytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot read"),
        ("GiB", "cannot read"),
        ("-5MiB", "cannot read"),
        ("1e9", "cannot read"),  # no exponents
        ("5 XB", "unknown size unit"),
        ("1PiB", "unknown size unit"),
        ("4097TiB", "larger than"),  # 4097 * 2^40 > 2^52
        ("9" * 5000, "larger than"),  # refused before CPython's int() digit limit bites
        ("1" + "0" * 400 + ".5", "larger than"),
        ("\u0663MiB", "cannot read"),  # an Arabic-Indic digit three is not a size
        (-1, "negative"),
        (2**60, "larger than"),
        (True, "number of bytes"),
    ],
)
def test_parse_size_refusals(text: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "si", "binary", "fix"),
    [
        ("256MB", 256_000_000, 256 * MiB, "256MiB"),
        ("2TB", 2 * 10**12, 2 * TiB, "2TiB"),
        ("1.5gb", 1_500_000_000, 1536 * MiB, "1.5GiB"),
        ("64KB", 64_000, 64 * KiB, "64KiB"),
    ],
)
def test_parse_size_refuses_si_units_with_both_readings(
    text: str, si: int, binary: int, fix: str
) -> None:
    """ "256MB" is never silently read as MiB (issue 11): refused, naming both byte counts
    and how to write each."""
    with pytest.raises(ConfigError) as info:
        parse_size(text)
    message = str(info.value)
    assert "ambiguous" in message
    assert f"{si} bytes in SI units" in message
    assert f"{binary} to many (binary)" in message
    assert f"write {fix}" in message and f"or {si} for the SI size" in message


def test_parse_size_messages_do_not_echo_huge_input() -> None:
    with pytest.raises(ConfigError) as info:
        parse_size("9" * 5000 + "MiB")
    assert len(str(info.value)) < 200


# ---------------------------------------------------------------------------------------
# from_size
# ---------------------------------------------------------------------------------------


def test_from_size_builds_one_range_above_the_first_page() -> None:
    cfg = MachineConfig.from_size("64MiB", cpus=4)
    assert cfg.phys_avail == ((4096, 64 * MiB),)
    assert cfg.cpus == 4 and cfg.topology is None
    cfg = MachineConfig.from_size("64MiB", sockets=2, cores=2)
    assert cfg.topology == Topology(2, 2, 1)
    assert cfg.cpus == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sockets": 0}, "at least 1"),  # an explicit 0 is not "omitted"
        ({"cores": 0, "sockets": 2}, "at least 1"),
        ({"cpus": 8, "sockets": 2, "cores": 2}, "must equal"),  # 8 != 2 x 2 x 1
        ({"cpus": 0}, "between 1 and 256"),
        ({"cpus": 257}, "between 1 and 256"),
    ],
)
def test_from_size_refuses_inconsistent_cpus(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MachineConfig.from_size("64MiB", **kwargs)  # type: ignore[arg-type]


def test_from_size_refuses_too_little_and_absurd_memory(no_page_array: None) -> None:
    with pytest.raises(ConfigError, match="too little"):
        MachineConfig.from_size("8KiB")
    with pytest.raises(ConfigError, match="larger than"):
        MachineConfig.from_size(2**60)
    with pytest.raises(ConfigError, match="larger than"):
        MachineConfig.from_size("1000000TiB")
    # 1 TiB is a legal size but needs 2^28 page structures, over the 16 M default limit
    with pytest.raises(ConfigError, match="268435455 page structures"):
        MachineConfig.from_size("1TiB")


# ---------------------------------------------------------------------------------------
# the memory map
# ---------------------------------------------------------------------------------------


def test_rounded_phys_avail() -> None:
    cfg = MachineConfig(phys_avail=((0x1800, 0x100800), (0x200000, 0x600000), (0xC00800, 0xC00C00)))
    # begins round up, ends truncate; (0xC01000, 0xC00000) becomes empty at its begin
    assert cfg.rounded_phys_avail() == (
        (0x2000, 0x100000),
        (0x200000, 0x600000),
        (0xC01000, 0xC01000),
    )


@pytest.mark.parametrize(
    ("phys_avail", "message"),
    [
        ((), "empty"),
        (((0x2000, 0x1000),), "ends .* before it begins"),
        (((0x1000, 0),), "end > 0"),
        (((-4096, 0x100000),), "begin must be >= 0"),
        (((0x1000, 0x200000), (0x100000, 0x300000)), "ascending and disjoint"),  # overlap
        (((0x200000, 0x300000), (0x1000, 0x100000)), "ascending and disjoint"),  # descending
        (((0x1000, 2**60),), "52-bit"),
        (((0x1000, 0x1800),), "no whole page"),  # rounds to (0x1000, 0x1000)
        (tuple((k * 0x10000, k * 0x10000 + 0x8000) for k in range(65)), "more than 64"),
    ],
)
def test_memory_map_refusals(
    phys_avail: tuple[tuple[int, int], ...], message: str, no_page_array: None
) -> None:
    cfg = MachineConfig(phys_avail=phys_avail)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()
    with pytest.raises(ConfigError, match=message):
        Machine.boot(cfg)


def test_touching_ranges_are_accepted() -> None:
    MachineConfig(phys_avail=((0x1000, 0x100000), (0x100000, 0x200000))).validate()


def test_too_many_pages_for_max_pages(no_page_array: None) -> None:
    # [4 KiB, 16 MiB): page_range = 4096 - 1 = 4095 > 1000
    cfg = MachineConfig(phys_avail=((0x1000, 16 * MiB),), max_pages=1000)
    with pytest.raises(ConfigError, match="needs 4095 page structures; the limit is 1000"):
        Machine.boot(cfg)
    # a hole counts: [4 KiB, 4 MiB) + [4 GiB, 4 GiB + 4 MiB) needs 0x100400 - 1 = 1049599
    holes = MachineConfig(
        phys_avail=((0x1000, 4 * MiB), (4 * GiB, 4 * GiB + 4 * MiB)), max_pages=1 << 20
    )
    with pytest.raises(ConfigError, match="needs 1049599 page structures"):
        holes.validate()


def test_an_empty_last_range_counts_in_the_page_limit() -> None:
    # last range rounds to (0x2001000, 0x2001000): page_range = 0x2001 - 1 = 8192, which is
    # what vm_page_startup allocates -- one more than the unrounded end would suggest
    ok = MachineConfig(phys_avail=((0x1000, 0x2000000), (0x2000800, 0x2000C00)), max_pages=8192)
    ok.validate()
    tight = MachineConfig(phys_avail=((0x1000, 0x2000000), (0x2000800, 0x2000C00)), max_pages=8191)
    with pytest.raises(ConfigError, match="needs 8192 page structures"):
        tight.validate()


def test_a_map_whose_page_array_outweighs_its_memory_is_refused_before_allocating(
    no_page_array: None,
) -> None:
    # [4 KiB, 4 MiB) + [4 GiB, 4 GiB + 4 MiB): total 1023 + 1024 = 2047 pages = 8384512
    # bytes, page_range 1049599 -> array 1049599 * 128 = 134348672 bytes > total:
    # npages = (8384512 - 134348672) / 4096 < 0
    cfg = MachineConfig(phys_avail=((0x1000, 4 * MiB), (4 * GiB, 4 * GiB + 4 * MiB)))
    with pytest.raises(ConfigError, match="page array"):
        Machine.boot(cfg)
    # npages = 0 exactly: 2 pages of memory, page_range 64 -> 8192 - 64 * 128 = 0
    zero = MachineConfig(phys_avail=((0x1000, 0x2000), (0x40000, 0x41000)))
    with pytest.raises(ConfigError, match="page array"):
        zero.validate()


# ---------------------------------------------------------------------------------------
# CPUs, topology, NUMA and the rest
# ---------------------------------------------------------------------------------------

MAP = ((0x1000, 16 * MiB),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpus": 0}, "between 1 and 256"),
        ({"cpus": 257}, "between 1 and 256"),
        ({"cpus": 4, "topology": Topology(2, 2, 2)}, r"cpus \(4\) must equal .* \(8\)"),
        ({"cpus": 0, "topology": Topology(0, 1, 1)}, "at least 1"),
        (
            {
                "cpus": 2,
                "topology": Topology(2, 1, 1),
                "numa": (NumaRange(0x1000, MiB, 1 << 32),),
            },
            "ACPI physical id from 0 to 4294967295",
        ),
        ({"numa": (NumaRange(0x1000, MiB, -1),)}, "not -1"),
        (
            {
                "cpus": 2,
                "topology": Topology(2, 1, 1),
                "numa": (NumaRange(0x1000, 2 * MiB, 0), NumaRange(MiB, MiB, 1)),
            },
            "overlap",
        ),
        ({"numa": (NumaRange(0x1000, 0, 0),)}, "size > 0"),
        ({"hz": 0}, "hz"),
        ({"dma_reserved": -1}, "dma_reserved"),
        ({"boot_stage": "late"}, "boot_stage"),
    ],
)
def test_machine_refusals(kwargs: dict[str, Any], message: str, no_page_array: None) -> None:
    cfg = MachineConfig(phys_avail=MAP, **kwargs)
    with pytest.raises(ConfigError, match=message):
        Machine.boot(cfg)


def test_largest_machine_shape_is_accepted() -> None:
    MachineConfig(phys_avail=MAP, cpus=256, topology=Topology(4, 32, 2)).validate()
    # 3 sockets x 85 cores: 1024 / 3 / 85 = 4 colours per core, still fine
    MachineConfig(phys_avail=MAP, cpus=255, topology=Topology(3, 85, 1)).validate()


def test_even_numa_split_for_three_sockets() -> None:
    # [4 KiB, 12 MiB + 4 KiB): span = 12 MiB = 12582912
    # socket 1 starts at 4096 + (12582912 // 3 // 4096) * 4096 = 4096 + 4 MiB
    # socket 2 starts at 4096 + (12582912 * 2 // 3 // 4096) * 4096 = 4096 + 8 MiB
    cfg = MachineConfig(
        phys_avail=((0x1000, 12 * MiB + 0x1000),), cpus=3, topology=Topology(3, 1, 1)
    )
    assert cfg.numa_ranges() == (
        NumaRange(0x1000, 4 * MiB, 0),
        NumaRange(0x1000 + 4 * MiB, 4 * MiB, 1),
        NumaRange(0x1000 + 8 * MiB, 4 * MiB, 2),
    )
    # one socket, or no topology: no affinity ranges at all
    assert MachineConfig(phys_avail=MAP).numa_ranges() == ()
    assert MachineConfig(phys_avail=MAP, cpus=2, topology=Topology(1, 2, 1)).numa_ranges() == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpus": "4"}, "cpus must be an integer"),
        ({"cpus": True}, "cpus must be an integer"),
        ({"hz": 100.0}, "hz must be an integer"),
        ({"max_pages": 0}, "max_pages must be at least 1"),
        ({"phys_avail": ((0x1000, 1048576.0),)}, "must hold integers"),
        ({"phys_avail": ((0x1000, True),)}, "must hold integers"),
        ({"phys_avail": (0x1000,)}, r"phys_avail\[0\] must be a \(begin, end\) pair"),
        ({"phys_avail": ((0x1000, 0x2000, 0x3000),)}, "pair"),
        ({"cpus": 2, "topology": Topology(2.0, 1, 1)}, "must be integers"),  # type: ignore[arg-type]
        ({"numa": (NumaRange(0x1000, MiB, 0.0),)}, "integer base, size and socket"),  # type: ignore[arg-type]
    ],
)
def test_wrongly_typed_fields_are_refused_with_a_config_error(
    kwargs: dict[str, Any], message: str, no_page_array: None
) -> None:
    fields: dict[str, Any] = {"phys_avail": MAP, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Machine.boot(MachineConfig(**fields))
