"""How ``v2-edges.plsnap`` was made: run from a checkout of 3ea05c6 (snapshot format
version 2, page fields in numpy arrays, before they became vecs),
``python make_v2_edges.py v2-edges.plsnap v2-edges.json``.  The machine holds the page
fields' edge values: a flags word with bit 31 set, busy_count with PBUSY_LOCKED (and a
soft-busy count), a wire count above one and a pindex of 2^64-1.  The JSON holds the
snapshot's digest, those pages' fields as the canonical arrays held them, and what the
calls of ``future`` returned after it (the last entry: the digest after them);
``test_pages.py`` replays them on the loaded snapshot.  Kept for the record."""

import json
import sys
from pathlib import Path

from app.core import snapshot
from app.core.config import MachineConfig
from app.core.machine import Machine
from app.core.pages import PAGE_FIELDS

TOP = (1 << 64) - 1


def edges() -> tuple[Machine, dict[str, int]]:
    m = Machine.boot(MachineConfig.from_size("8MiB", cpus=2, seed=11))
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64}).result
    pages = {}
    # bit 31 of flags (any 32-bit word is accepted), on a wired page
    p = m.call("vm_page_alloc", {"object": obj, "pindex": 1, "page_req": "NORMAL"}).result
    m.call("vm_page_flag_set", {"m": p, "bits": 0x80000000 | 0x400})
    m.call("vm_page_wire", {"m": p})
    m.call("vm_page_wire", {"m": p})
    m.call("vm_page_wire", {"m": p})
    pages["flags31_wired"] = p
    # hard-busied (PBUSY_LOCKED) and left so
    p = m.call("vm_page_alloc", {"object": obj, "pindex": 2, "page_req": "NORMAL"}).result
    pages["locked"] = p
    # soft-busied twice
    p = m.call("vm_page_alloc", {"object": obj, "pindex": 3, "page_req": "NORMAL"}).result
    m.call("vm_page_wakeup", {"m": p})
    m.call("vm_page_sbusy_try", {"m": p})
    m.call("vm_page_sbusy_try", {"m": p})
    pages["soft2"] = p
    # pindex 2^64-1
    p = m.call("vm_page_alloc", {"page_req": "NORMAL"}).result
    m.call("vm_page_insert", {"m": p, "object": obj, "pindex": TOP})
    m.call("vm_page_wakeup", {"m": p})
    m.call("vm_page_hash_enter", {"m": p})
    pages["top_pindex"] = p
    return m, pages


def future(m: Machine, obj: int) -> list:
    out = []
    out.append(m.call("vm_page_lookup", {"object": obj, "pindex": TOP}).result)
    out.append(m.call("vm_page_hash_get", {"object": obj, "pindex": TOP}).result)
    out.append(m.call("vm_page_flag_clear", {"m": out[0], "bits": 0x400}).result)
    out.append(
        m.call("vm_page_alloc", {"object": obj, "pindex": TOP - 1, "page_req": "NORMAL"}).result
    )
    out.append(m.state_digest())
    return out


if __name__ == "__main__":
    m, pages = edges()
    data = snapshot.dump(m)
    arrays = m.pg.arrays
    fields = {
        name: {f: int(arrays[f][p - m.first_page]) for f in PAGE_FIELDS}
        for name, p in pages.items()
    }
    info = {"digest": m.state_digest(), "pages": pages, "fields": fields}
    info["future"] = future(m, 1)
    Path(sys.argv[1]).write_bytes(data)
    Path(sys.argv[2]).write_text(json.dumps(info, indent=1) + "\n")
