"""Named machines users can pick instead of numbers."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import MachineConfig, Topology

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: MachineConfig


def _pc_holes() -> MachineConfig:
    # A PC memory map: the low 636 KiB (page 0 and the EBDA/VGA/BIOS area excluded),
    # RAM from 1 MiB up to the PCI hole at 3 GiB, and 1 GiB remapped above 4 GiB.
    return MachineConfig(
        phys_avail=((0x1000, 0x9F000), (0x100000, 0xC0000000), (0x100000000, 0x140000000)),
        cpus=4,
        topology=Topology(1, 4, 1),
        seed=1,
        pagedaemon=True,
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "teaching-1g",
            "1 GiB, one socket with 2 cores: small enough to watch every queue move",
            MachineConfig(
                phys_avail=((0x1000, GiB),),
                cpus=2,
                topology=Topology(1, 2, 1),
                seed=1,
                pagedaemon=True,
            ),
        ),
        Preset(
            "workstation-16g",
            "16 GiB, 8 CPUs (1 socket × 4 cores × 2 threads)",
            MachineConfig(
                phys_avail=((0x1000, 16 * GiB),),
                cpus=8,
                topology=Topology(1, 4, 2),
                seed=1,
                pagedaemon=True,
            ),
        ),
        Preset(
            "server-2s-64g",
            "64 GiB over 2 NUMA sockets, 16 CPUs (2 × 4 cores × 2 threads): colours split by socket",
            MachineConfig(
                phys_avail=((0x1000, 64 * GiB),),
                cpus=16,
                topology=Topology(2, 4, 2),
                seed=1,
                pagedaemon=True,
            ),
        ),
        Preset(
            "pc-holes",
            "4 GiB of RAM in a real PC layout: low 636 KiB, a hole to 1 MiB, RAM to 3 GiB, "
            "the PCI hole, then 1 GiB above 4 GiB",
            _pc_holes(),
        ),
        Preset(
            "tiny-16m",
            "16 MiB, 1 CPU: a few thousand pages, for exercises on exact numbers",
            MachineConfig(phys_avail=((0x1000, 16 * MiB),), cpus=1, seed=1, pagedaemon=True),
        ),
    )
}
