"""Constants of DragonFly's physical page layer (``vm_page.h``, ``vm_param.h``,
``vm_page2.h``, ``subr_alist.c``), x86_64 values. Spec §1."""

from __future__ import annotations

from typing import Final

# --- geometry (spec §1.1) -------------------------------------------------------------
PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 4096
PAGE_MASK: Final = 4095
DEV_BSHIFT: Final = 9  # [I] standard sys/param.h value
DEV_BSIZE: Final = 512
DEV_BMASK: Final = 511
VM_PAGE_BITS_ALL: Final = 0xFF
SIZEOF_VM_PAGE: Final = 128  # used only by the boot arithmetic (spec §2)
PQ_L2_SIZE: Final = 1024
PQ_L2_MASK: Final = 1023
PQ_PRIME1: Final = 31
PQ_PRIME2: Final = 23
ACT_DECLINE: Final = 1
ACT_ADVANCE: Final = 3
ACT_INIT: Final = 5
ACT_MAX: Final = 64

# --- busy_count word (spec §1.3) ------------------------------------------------------
PBUSY_LOCKED: Final = 0x80000000
PBUSY_WANTED: Final = 0x40000000
PBUSY_SWAPINPROG: Final = 0x20000000
PBUSY_MASK: Final = 0x1FFFFFFF

# --- page flags (spec §1.4) -----------------------------------------------------------
PG_UNUSED0001: Final = 0x00000001
PG_UNUSED0002: Final = 0x00000002
PG_WINATCFLS: Final = 0x00000004
PG_FICTITIOUS: Final = 0x00000008
PG_WRITEABLE: Final = 0x00000010
PG_MAPPED: Final = 0x00000020
PG_MAPPEDMULTI: Final = 0x00000040
PG_REFERENCED: Final = 0x00000080
PG_CLEANCHK: Final = 0x00000100
PG_UNUSED0200: Final = 0x00000200
PG_NOSYNC: Final = 0x00000400
PG_UNQUEUED: Final = 0x00000800
PG_MARKER: Final = 0x00001000
PG_RAM: Final = 0x00002000
PG_SWAPPED: Final = 0x00004000
PG_NOTMETA: Final = 0x00008000
PG_UNUSED10000: Final = 0x00010000
PG_UNUSED20000: Final = 0x00020000
PG_NEED_COMMIT: Final = 0x00040000
PG_KEEP_NEWPAGE_MASK: Final = 0

PG_FLAG_NAMES: Final[dict[int, str]] = {
    PG_UNUSED0001: "PG_UNUSED0001",
    PG_UNUSED0002: "PG_UNUSED0002",
    PG_WINATCFLS: "PG_WINATCFLS",
    PG_FICTITIOUS: "PG_FICTITIOUS",
    PG_WRITEABLE: "PG_WRITEABLE",
    PG_MAPPED: "PG_MAPPED",
    PG_MAPPEDMULTI: "PG_MAPPEDMULTI",
    PG_REFERENCED: "PG_REFERENCED",
    PG_CLEANCHK: "PG_CLEANCHK",
    PG_UNUSED0200: "PG_UNUSED0200",
    PG_NOSYNC: "PG_NOSYNC",
    PG_UNQUEUED: "PG_UNQUEUED",
    PG_MARKER: "PG_MARKER",
    PG_RAM: "PG_RAM",
    PG_SWAPPED: "PG_SWAPPED",
    PG_NOTMETA: "PG_NOTMETA",
    PG_UNUSED10000: "PG_UNUSED10000",
    PG_UNUSED20000: "PG_UNUSED20000",
    PG_NEED_COMMIT: "PG_NEED_COMMIT",
}

# --- page queues (spec §1.5) ----------------------------------------------------------
PQ_NONE: Final = 0
PQ_FREE: Final = 1
PQ_INACTIVE: Final = 1 + 1 * PQ_L2_SIZE  # 1025
PQ_ACTIVE: Final = 1 + 2 * PQ_L2_SIZE  # 2049
PQ_CACHE: Final = 1 + 3 * PQ_L2_SIZE  # 3073
PQ_HOLD: Final = 1 + 4 * PQ_L2_SIZE  # 4097
PQ_COUNT: Final = 1 + 5 * PQ_L2_SIZE  # 5121
PQ_BASES: Final = (PQ_FREE, PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE, PQ_HOLD)
PQ_NAMES: Final[dict[int, str]] = {
    PQ_NONE: "PQ_NONE",
    PQ_FREE: "PQ_FREE",
    PQ_INACTIVE: "PQ_INACTIVE",
    PQ_ACTIVE: "PQ_ACTIVE",
    PQ_CACHE: "PQ_CACHE",
    PQ_HOLD: "PQ_HOLD",
}

# Dynamic vmstats counters fed by the queues (``cnt_offset``), by index.  PQ_HOLD feeds
# v_active_count: held-but-freed pages are counted as active (spec §1.5 quirk).
CNT_FREE: Final = 0
CNT_INACTIVE: Final = 1
CNT_ACTIVE: Final = 2
CNT_CACHE: Final = 3
CNT_WIRE: Final = 4
CNT_NAMES: Final = (
    "v_free_count",
    "v_inactive_count",
    "v_active_count",
    "v_cache_count",
    "v_wire_count",
)
QUEUE_BASE_COUNTER: Final[dict[int, int]] = {
    PQ_FREE: CNT_FREE,
    PQ_INACTIVE: CNT_INACTIVE,
    PQ_ACTIVE: CNT_ACTIVE,
    PQ_CACHE: CNT_CACHE,
    PQ_HOLD: CNT_ACTIVE,
}

# --- allocation request flags (spec §1.6) ---------------------------------------------
VM_ALLOC_NORMAL: Final = 0x0001
VM_ALLOC_SYSTEM: Final = 0x0002
VM_ALLOC_INTERRUPT: Final = 0x0004
VM_ALLOC_ZERO: Final = 0x0008
VM_ALLOC_QUICK: Final = 0x0010
VM_ALLOC_FORCE_ZERO: Final = 0x0020
VM_ALLOC_NULL_OK: Final = 0x0040
VM_ALLOC_RETRY: Final = 0x0080
VM_ALLOC_USE_GD: Final = 0x0100
VM_ALLOC_CPU_SPEC: Final = 0x0200
VM_ALLOC_CPU_SHIFT: Final = 16
VM_ALLOC_CLASS_MASK: Final = VM_ALLOC_NORMAL | VM_ALLOC_QUICK | VM_ALLOC_INTERRUPT | VM_ALLOC_SYSTEM
VM_ALLOC_FLAG_NAMES: Final[dict[int, str]] = {
    VM_ALLOC_NORMAL: "VM_ALLOC_NORMAL",
    VM_ALLOC_SYSTEM: "VM_ALLOC_SYSTEM",
    VM_ALLOC_INTERRUPT: "VM_ALLOC_INTERRUPT",
    VM_ALLOC_ZERO: "VM_ALLOC_ZERO",
    VM_ALLOC_QUICK: "VM_ALLOC_QUICK",
    VM_ALLOC_FORCE_ZERO: "VM_ALLOC_FORCE_ZERO",
    VM_ALLOC_NULL_OK: "VM_ALLOC_NULL_OK",
    VM_ALLOC_RETRY: "VM_ALLOC_RETRY",
    VM_ALLOC_USE_GD: "VM_ALLOC_USE_GD",
    VM_ALLOC_CPU_SPEC: "VM_ALLOC_CPU_SPEC",
}


def VM_ALLOC_CPU(cpu: int) -> int:  # noqa: N802 - the kernel macro's name
    """``VM_ALLOC_CPU(n)``: encode a CPU number into allocation flags."""
    return (cpu << VM_ALLOC_CPU_SHIFT) | VM_ALLOC_CPU_SPEC


# --- misc -----------------------------------------------------------------------------
PAT_WRITE_BACK: Final = 6  # x86 PAT index for write-back; boot sets every page to it
VM_MEMATTR_DEFAULT: Final = PAT_WRITE_BACK
ALIST_BLOCK_NONE: Final = -1
DMA_ALIST_BLOCKS: Final = 65536
VM_PAGE_HASH_SET: Final = 4
VM_PAGE_HASH_MAX: Final = 8 * 1024 * 1024
MAXCPU: Final = 256  # SMP_MAXCPU on x86_64
