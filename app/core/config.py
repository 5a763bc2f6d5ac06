"""Machine configuration: the memory map (``phys_avail``), CPU topology, NUMA affinity and
boot options of one simulated machine.

The kernel gets these from the loader, ACPI and the CPU topology probe; the simulator takes
them as data.  Everything is validated here, before anything is allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from .constants import MAXCPU, PAGE_SIZE, PQ_L2_SIZE, SIZEOF_VM_PAGE
from .errors import ConfigError
from .seams import check_policy

BootStage = Literal["early", "finished"]

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GIB": 1 << 30,
    "T": 1 << 40,
    "TIB": 1 << 40,
}
#: SI units, refused: ``256MB`` is 256 000 000 bytes to a disk maker and 256 MiB to many a
#: sysadmin, and a silent guess either way boots a machine the user did not ask for.
_SI_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$", re.ASCII)
#: More digits than any size below ``MAX_PHYS_ADDR`` needs; longer strings are refused before
#: they are converted (CPython refuses int() of > 4300 digits with a bare ValueError).
_MAX_SIZE_DIGITS = 24

#: The largest physical address the simulator accepts (x86_64 has 52 physical address bits).
MAX_PHYS_ADDR = 1 << 52
#: Default cap on ``vm_page_array`` entries (16 M pages = 64 GiB of 4 KiB pages).
DEFAULT_MAX_PAGES = 16 * 1024 * 1024


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_size(text: str | int) -> int:
    """Parse a byte size such as ``"4GiB"``, ``"512 MiB"``, ``"1.5G"`` or ``4096``.

    Units are binary: ``KiB``/``K`` = 1024 bytes, ``MiB``/``M``, ``GiB``/``G``,
    ``TiB``/``T`` (the loader's ``hw.physmem="4G"`` is binary too).  The SI spellings
    ``KB``, ``MB``, ``GB`` and ``TB`` are refused with both readings spelled out: which one
    was meant cannot be guessed.  Sizes beyond the 52-bit physical address space are
    refused, whatever their spelling.
    """
    if isinstance(text, bool):
        raise ConfigError("a size must be a number of bytes or a string like '4GiB'")
    if isinstance(text, int):
        if text < 0:
            raise ConfigError(f"size {text} is negative")
        if text > MAX_PHYS_ADDR:
            raise ConfigError(f"size {text} is larger than the 4 PiB physical address space")
        return text
    if not isinstance(text, str):
        raise ConfigError("a size must be a number of bytes or a string like '4GiB'")
    shown = text if len(text) <= 40 else text[:37] + "..."
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigError(f"cannot read {shown!r} as a size; write it like '4GiB' or '512MiB'")
    number, unit = match.group(1), match.group(2).upper()
    if unit not in _UNITS and unit not in _SI_UNITS:
        raise ConfigError(
            f"unknown size unit {match.group(2)!r} in {shown!r}; use KiB, MiB, GiB or TiB"
        )
    if len(number.partition(".")[0].lstrip("0")) > _MAX_SIZE_DIGITS:
        raise ConfigError(f"size {shown!r} is larger than the 4 PiB physical address space")
    if unit in _SI_UNITS:
        binary = unit[0] + "iB"
        scale = _SI_UNITS[unit]
        si_bytes = int(float(number) * scale if "." in number else int(number) * scale)
        bin_bytes = int(
            float(number) * _UNITS[binary.upper()]
            if "." in number
            else int(number) * _UNITS[binary.upper()]
        )
        raise ConfigError(
            f"{shown!r} is ambiguous: {match.group(2)} means {si_bytes} bytes in SI units but "
            f"{bin_bytes} to many (binary); write {number}{binary} (or {number}{unit[0]}, as "
            f"the kernel's loader reads it) for {bin_bytes} bytes, or {si_bytes} for the SI size"
        )
    value = float(number) * _UNITS[unit] if "." in number else int(number) * _UNITS[unit]
    if value > MAX_PHYS_ADDR:
        raise ConfigError(f"size {shown!r} is larger than the 4 PiB physical address space")
    return int(value)


#: The largest ACPI physical (socket) id a NUMA range may name: a 32-bit value.
MAX_PHYSID = 0xFFFFFFFF


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
    """One ACPI memory affinity range: ``size`` bytes from ``base`` belong to ``socket``,
    the ACPI physical id.  It may be >= the number of sockets: ``vm_numa_organize`` takes
    ``physid % cpu_topology_phys_ids`` (spec §3.1)."""

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
    pagedaemon: bool = False
    name: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    #: the named seams' choices, (seam, choice) pairs (``seams.SEAMS``; none: the kernel's)
    policy: tuple[tuple[str, str], ...] = ()

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
        pagedaemon: bool = False,
        policy: dict[str, str] | None = None,
    ) -> MachineConfig:
        """A machine with ``size`` bytes of RAM in one range starting at 4 KiB (page 0 is
        kept by the BIOS, as on a PC)."""
        nbytes = parse_size(size)
        if nbytes <= 2 * PAGE_SIZE:
            raise ConfigError(f"{size!r} is too little memory to boot; give at least 1MiB")
        topology = None
        if sockets is not None or cores is not None or threads is not None:
            # an omitted level is 1; an explicit 0 is kept so that validate() refuses it
            topology = Topology(
                1 if sockets is None else sockets,
                1 if cores is None else cores,
                1 if threads is None else threads,
            )
        if cpus is not None:
            ncpus = cpus  # validate() refuses a count that disagrees with the topology
        else:
            ncpus = topology.ncpus if topology else 1
        cfg = cls(
            phys_avail=((PAGE_SIZE, nbytes),),
            cpus=ncpus,
            topology=topology,
            seed=seed,
            boot_stage=boot_stage,
            dma_reserved=dma_reserved,
            max_pages=max_pages,
            pagedaemon=pagedaemon,
            policy=check_policy((policy or {}).items()),
        )
        cfg.validate()
        return cfg

    # ---- validation ------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a configuration that cannot boot, before anything is allocated."""
        for name in ("cpus", "hz", "dma_reserved", "max_pages", "seed"):
            if not _is_int(getattr(self, name)):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.max_pages < 1:
            raise ConfigError("max_pages must be at least 1")
        if self.topology is not None and not all(
            _is_int(v) for v in (self.topology.sockets, self.topology.cores, self.topology.threads)
        ):
            raise ConfigError("sockets, cores and threads must be integers")
        for r in self.numa:
            if not isinstance(r, NumaRange) or not all(
                _is_int(v) for v in (r.base, r.size, r.socket)
            ):
                raise ConfigError("each NUMA range needs integer base, size and socket")
        if not isinstance(self.phys_avail, tuple | list):
            raise ConfigError("phys_avail must be a list of (begin, end) pairs")
        if not self.phys_avail:
            raise ConfigError("phys_avail is empty: give at least one memory range")
        if len(self.phys_avail) > 64:
            raise ConfigError("phys_avail has more than 64 ranges (the kernel's array is smaller)")
        prev_end = -1
        for i, rng in enumerate(self.phys_avail):
            if not isinstance(rng, tuple | list) or len(rng) != 2:
                raise ConfigError(f"phys_avail[{i}] must be a (begin, end) pair")
            beg, end = rng
            if not _is_int(beg) or not _is_int(end):
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
        # vm_page_startup's own arithmetic (spec §2.2 steps 1, 2 and 6), done here so that a
        # map that cannot boot is refused before the page array is allocated
        ranges = self.rounded_phys_avail()
        first_page = ranges[0][0] // PAGE_SIZE
        page_range = ranges[-1][1] // PAGE_SIZE - first_page
        if page_range > self.max_pages:
            raise ConfigError(
                f"this memory map needs {page_range} page structures; the limit is "
                f"{self.max_pages} (= {self.max_pages * PAGE_SIZE >> 30} GiB)"
            )
        if page_range <= 0:
            raise ConfigError("the memory map holds no whole page")
        total = sum(end - beg for beg, end in ranges)
        if total - page_range * SIZEOF_VM_PAGE < PAGE_SIZE:
            raise ConfigError(
                f"the page array ({page_range} page structures of {SIZEOF_VM_PAGE} bytes, "
                f"holes included) does not leave a page of the {total} usable bytes for the "
                "VM; give more memory or a map with smaller holes"
            )
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
        if not isinstance(self.policy, tuple | list):
            raise ConfigError("policy must be a list of (seam, choice) pairs")
        check_policy(self.policy)
        sockets = self.topology.sockets if self.topology else 1
        prev = -1
        for r in sorted(self.numa, key=lambda r: r.base):
            if r.size <= 0 or r.base < 0:
                raise ConfigError("each NUMA range needs base >= 0 and size > 0")
            if r.base < prev:
                raise ConfigError("NUMA ranges must not overlap")
            if not 0 <= r.socket <= MAX_PHYSID:
                raise ConfigError(
                    f"a NUMA range's socket is an ACPI physical id from 0 to {MAX_PHYSID} "
                    f"(the kernel uses it modulo the {sockets} socket(s)), not {r.socket}"
                )
            prev = r.base + r.size

    # ---- derived ---------------------------------------------------------------------
    @cached_property
    def color_slices(self) -> tuple[tuple[int, int], ...]:
        """Per CPU, the page colours ``vm_get_pg_color`` keeps it in (spec §6.1), as (first
        colour, how many): with a probed topology the 1024 colours split by socket, then
        core, then hyper-thread; without one an equal share per CPU."""
        topo = self.topology
        out = []
        for cpuid in range(self.cpus):
            if topo is not None:
                phys_id, core_id, ht_id = topo.ids_of(cpuid)
                physcale = PQ_L2_SIZE // topo.sockets
                grpscale = physcale // topo.cores
                share = grpscale // topo.threads
                out.append((phys_id * physcale + core_id * grpscale + ht_id * share, share))
            else:
                share = PQ_L2_SIZE // self.cpus
                out.append((cpuid * share, share))
        return tuple(out)

    def rounded_phys_avail(self) -> tuple[tuple[int, int], ...]:
        """``phys_avail`` as ``vm_page_startup`` rewrites it (spec §2.2 step 1): each begin
        rounded up and each end truncated to a page boundary; a range left with
        ``end < begin`` becomes the empty range ``(begin, begin)``."""
        out = []
        for beg, end in self.phys_avail:
            b = (beg + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            e = end & ~(PAGE_SIZE - 1)
            out.append((b, max(b, e)))
        return tuple(out)

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
