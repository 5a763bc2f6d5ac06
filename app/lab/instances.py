"""The instance registry: the simulated machines this server hosts, by id.

Core engine I keeps this minimal (boot, list, get); the full service layer (locks per
instance, quotas, journal, streams) comes with the HTTP API.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.core.config import MachineConfig
from app.core.machine import Machine


@dataclass
class Instance:
    id: int
    name: str
    config: MachineConfig
    machine: Machine
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "id": self.id,
            "name": self.name,
            "config": {
                "phys_avail": [list(r) for r in cfg.phys_avail],
                "cpus": cfg.cpus,
                "seed": cfg.seed,
                "boot_stage": cfg.boot_stage,
            },
            "summary": self.machine.summary(),
            "state_digest": self.machine.state_digest(),
        }


class InstanceRegistry:
    def __init__(self) -> None:
        self._instances: dict[int, Instance] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def create(self, name: str, config: MachineConfig) -> Instance:
        machine = Machine.boot(config)
        with self._lock:
            inst = Instance(self._next_id, name, config, machine)
            self._instances[inst.id] = inst
            self._next_id += 1
        return inst

    def list(self) -> list[Instance]:
        return list(self._instances.values())

    def get(self, instance_id: int) -> Instance | None:
        return self._instances.get(instance_id)
