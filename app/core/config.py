"""Machine configuration: the memory map (``phys_avail``), CPU topology, NUMA affinity and
boot options of one simulated machine.

The kernel gets these from the loader, ACPI and the CPU topology probe; the simulator takes
them as data.  Everything is validated here, before anything is allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .constants import MAXCPU, PAGE_SIZE, PQ_L2_SIZE
from .errors import ConfigError

BootStage = Literal["early", "finished"]

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
    "T": 1 << 40,
    "TB": 1 << 40,
    "TIB": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

#: The largest physical address the simulator accepts (x86_64 has 52 physical address bits).
MAX_PHYS_ADDR = 1 << 52
#: Default cap on ``vm_page_array`` entries (16 M pages = 64 GiB of 4 KiB pages).
DEFAULT_MAX_PAGES = 16 * 1024 * 1024


def parse_size(text: str | int) -> int:
    """Parse a byte size such as ``"4GiB"``, ``"512 MiB"``, ``"1.5G"`` or ``4096``.

    Units are binary (KiB = 1024 bytes); ``GB`` is read as GiB, as sysadmins mean it.
    """
    if isinstance(text, bool):
        raise ConfigError("a size must be a number of bytes or a string like '4GiB'")
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"size {text} is negative")
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"cannot read {text!r} as a size; write it like '4GiB' or '512MiB'")
    number, unit = match.group(1), match.group(2).upper()
    if unit not in _UNITS:
        raise ConfigError(f"unknown size unit {match.group(2)!r} in {text!r}; use KiB, MiB, GiB or TiB")
    value = float(number) * _UNITS[unit] if "." in number else int(number) * _UNITS[unit]
    if value > MAX_PHYS_ADDR:
        raise ConfigError(f"size {text!r} is larger than the 4 PiB physical address space")
    return int(value)


@dataclass(frozen=True)
class Topology:
    """A probed CPU topology: ``sockets × cores × threads``.

    CPU ids are numbered socket-major, then core, then hyper-thread:
    ``cpuid = (socket * cores + core) * threads + thread``.
    """

    sockets: int
    cores: int
    threads: int

    @property
    def ncpus(self) -> int:
        return self.sockets * self.cores * self.threads

    def ids_of(self, cpuid: int) -> tuple[int, int, int]:
        """(phys_id, core_id, ht_id) of ``cpuid``."""
        thread = cpuid % self.threads
        core = (cpuid // self.threads) % self.cores
        socket = cpuid // (self.threads * self.cores)
        return socket, core, thread


@dataclass(frozen=True)
class NumaRange:
    """One ACPI memory affinity range: ``bytes`` bytes from ``base`` belong to ``socket``."""

    base: int
    size: int
    socket: int


@dataclass(frozen=True)
class MachineConfig:
    """Everything needed to boot one simulated machine.

    ``phys_avail`` is the loader's list of usable RAM ranges ``(begin, end)`` in bytes (any
    alignment; ``vm_page_startup`` rounds them).  ``cpus`` is ``ncpus``; ``topology`` (when
    given) makes the topology "probed" (``cpu_topology_ht_ids != 0``).  ``numa`` lists memory
    affinity ranges; when empty and the topology has several sockets, memory is split
    evenly by address across sockets.  ``dma_reserved`` is the ``vm.dma_reserved`` loader
    tunable (0 = compute at boot).  ``boot_stage`` ``early`` stops after ``vm_page_startup``
    (and NUMA organisation); ``finished`` also runs ``vm_page_startup_finish`` and the
    pageout daemon's threshold initialisation.
    """

    phys_avail: tuple[tuple[int, int], ...]
    cpus: int = 1
    topology: Topology | None = None
    numa: tuple[NumaRange, ...] = ()
    seed: int = 0
    boot_stage: BootStage = "finished"
    dma_reserved: int = 0
    hz: int = 100
    max_pages: int = DEFAULT_MAX_PAGES
    name: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    # ---- constructors ----------------------------------------------------------------
    @classmethod
    def from_size(
        cls,
        size: str | int,
        *,
        cpus: int | None = None,
        sockets: int | None = None,
        cores: int | None = None,
        threads: int | None = None,
        seed: int = 0,
        boot_stage: BootStage = "finished",
        dma_reserved: int = 0,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> MachineConfig:
        """A machine with ``size`` bytes of RAM in one range starting at 4 KiB (page 0 is
        kept by the BIOS, as on a PC)."""
        nbytes = parse_size(size)
        if nbytes <= 2 * PAGE_SIZE:
            raise ConfigError(f"{size!r} is too little memory to boot; give at least 1MiB")
        topology = None
        if sockets is not None or cores is not None or threads is not None:
            topology = Topology(sockets or 1, cores or 1, threads or 1)
        ncpus = topology.ncpus if topology else (cpus if cpus is not None else 1)
        cfg = cls(
            phys_avail=((PAGE_SIZE, nbytes),),
            cpus=ncpus,
            topology=topology,
            seed=seed,
            boot_stage=boot_stage,
            dma_reserved=dma_reserved,
            max_pages=max_pages,
        )
        cfg.validate()
        return cfg

    # ---- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a configuration that cannot boot, before anything is allocated."""
        if not self.phys_avail:
            raise ConfigError("phys_avail is empty: give at least one memory range")
        if len(self.phys_avail) > 64:
            raise ConfigError("phys_avail has more than 64 ranges (the kernel's array is smaller)")
        prev_end = -1
        for i, rng in enumerate(self.phys_avail):
            if len(rng) != 2:
                raise ConfigError(f"phys_avail[{i}] must be a (begin, end) pair")
            beg, end = rng
            if not isinstance(beg, int) or not isinstance(end, int):
                raise ConfigError(f"phys_avail[{i}] must hold integers (bytes)")
            if beg < 0 or end <= 0:
                raise ConfigError(
                    f"phys_avail[{i}] = ({beg:#x}, {end:#x}): begin must be >= 0 and end > 0 "
                    "(an end of 0 terminates the kernel's list)"
                )
            if end < beg:
                raise ConfigError(f"phys_avail[{i}] ends ({end:#x}) before it begins ({beg:#x})")
            if end > MAX_PHYS_ADDR:
                raise ConfigError(f"phys_avail[{i}] ends beyond the 52-bit physical address space")
            if beg < prev_end:
                raise ConfigError(
                    f"phys_avail[{i}] begins at {beg:#x}, inside or before the previous range "
                    f"(which ends at {prev_end:#x}); ranges must be ascending and disjoint"
                )
            prev_end = end
        first_page = (self.phys_avail[0][0] + PAGE_SIZE - 1) // PAGE_SIZE
        last_end_page = self.phys_avail[-1][1] // PAGE_SIZE
        page_range = last_end_page - first_page
        if page_range > self.max_pages:
            raise ConfigError(
                f"this memory map needs {page_range} page structures; the limit is "
                f"{self.max_pages} (= {self.max_pages * PAGE_SIZE >> 30} GiB)"
            )
        if page_range <= 0:
            raise ConfigError("the memory map holds no whole page")
        if self.topology is not None:
            t = self.topology
            if min(t.sockets, t.cores, t.threads) < 1:
                raise ConfigError("sockets, cores and threads must each be at least 1")
            if t.ncpus != self.cpus:
                raise ConfigError(
                    f"cpus ({self.cpus}) must equal sockets × cores × threads ({t.ncpus})"
                )
            if PQ_L2_SIZE // t.sockets // t.cores // t.threads < 1:
                raise ConfigError("topology too wide: fewer than one page colour per thread")
        if not 1 <= self.cpus <= MAXCPU:
            raise ConfigError(f"cpus must be between 1 and {MAXCPU} (SMP_MAXCPU)")
        if self.hz < 1 or self.hz > 10000:
            raise ConfigError("hz must be between 1 and 10000")
        if self.dma_reserved < 0 or self.dma_reserved > MAX_PHYS_ADDR:
            raise ConfigError("dma_reserved must be a byte count >= 0")
        if self.boot_stage not in ("early", "finished"):
            raise ConfigError("boot_stage must be 'early' or 'finished'")
        sockets = self.topology.sockets if self.topology else 1
        prev = -1
        for r in sorted(self.numa, key=lambda r: r.base):
            if r.size <= 0 or r.base < 0:
                raise ConfigError("each NUMA range needs base >= 0 and size > 0")
            if r.base < prev:
                raise ConfigError("NUMA ranges must not overlap")
            if not 0 <= r.socket < max(sockets, 1):
                raise ConfigError(f"NUMA range names socket {r.socket}, but there are {sockets}")
            prev = r.base + r.size

    # ---- derived ---------------------------------------------------------------------
    def numa_ranges(self) -> tuple[NumaRange, ...]:
        """The memory affinity ranges ACPI would report: the configured ones, or memory
        split evenly by address across sockets (socket k gets the k-th slice of
        ``[first byte, last byte)``, page aligned)."""
        if self.numa:
            return self.numa
        if self.topology is None or self.topology.sockets <= 1:
            return ()
        lo = self.phys_avail[0][0]
        hi = self.phys_avail[-1][1]
        n = self.topology.sockets
        span = hi - lo
        out = []
        for k in range(n):
            beg = lo + (span * k // n) // PAGE_SIZE * PAGE_SIZE if k else lo
            end = lo + (span * (k + 1) // n) // PAGE_SIZE * PAGE_SIZE if k < n - 1 else hi
            out.append(NumaRange(beg, end - beg, k))
        return tuple(out)
