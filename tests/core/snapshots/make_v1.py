"""How ``v1-8mib.plsnap`` was made: run from a checkout of ff19a2e (snapshot format
version 1, before the per-area records), ``python make_v1.py v1-8mib.plsnap v1-8mib.json``.
The JSON holds the snapshot's digest and what the calls of ``future`` returned after it
(the last entry: the digest after them); ``test_snapshot.py`` replays them on the loaded
snapshot.  Kept for the record; it does not run against today's code."""

# records-codemod: skip (written for the flat machine of format version 1)
import json
import sys

from app.core import snapshot
from app.core.config import MachineConfig
from app.core.machine import Machine

assert snapshot.FORMAT_VERSION == 1


def busy() -> Machine:
    m = Machine.boot(MachineConfig.from_size("8MiB", cpus=2, seed=7, pagedaemon=True))
    obj = m.call("vm_object_allocate", {"type": "OBJT_VNODE", "size": 512}).result
    anon = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 4096}).result
    pfns = []
    for k in range(200):
        pfn = m.call(
            "vm_page_alloc",
            {"object": obj if k % 2 else anon, "pindex": k, "page_req": "NORMAL"},
            cpu=k % 2,
        ).result
        pfns.append(pfn)
        if k % 3 == 0:
            m.call("pmap_enter", {"m": pfn, "pmap": 1, "writeable": bool(k % 2)})
        if k % 6 == 0:
            m.call("pmap_enter", {"m": pfn, "pmap": 2, "writeable": False})  # PG_MAPPEDMULTI
        if k % 5 == 0:
            m.call("vm_page_deactivate", {"m": pfn})
        if k % 7 == 0:
            m.call("vm_page_dirty", {"m": pfn})
        m.call("vm_page_wakeup", {"m": pfn})
    for k in range(0, 200, 6):
        m.call("vm_page_hash_enter", {"m": pfns[k]})
    m.call("vm_page_lookup", {"object": anon, "pindex": 12})
    m.call("vm_page_initfake", {"slot": 1, "paddr": 0x7F000000, "memattr": 6})
    m.call(
        "vm_page_alloc_contig",
        {
            "low": 0,
            "high": 1 << 30,
            "alignment": 4096,
            "boundary": 0,
            "size": 3 * 4096,
            "memattr": 6,
        },
    )
    m.call("sysctl", {"name": "vm.anonmem_decline", "value": 3})
    m.call("vm_page_dontneed", {"m": pfns[20]})
    m.call("tick", {"n": 30})
    # pressure: let the daemon run a pass and park somewhere in its loop
    big = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 1 << 16}).result
    k = 0
    while m.vmstats.v_free_count > m.vmstats.v_free_min + 8:
        pfn = m.call("vm_page_alloc", {"object": big, "pindex": k, "page_req": "NORMAL"}).result
        if pfn is None:
            break
        m.call("vm_page_activate", {"m": pfn})
        m.call("vm_page_wakeup", {"m": pfn})
        k += 1
    m.call("tick", {"n": 3})
    return m


def future(m: Machine) -> list:
    out = []
    obj = m.call("vm_object_allocate", {"type": "OBJT_SWAP", "size": 64}).result
    out.append(obj)
    for k in range(12):
        r = m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "SYSTEM"})
        out.append(r.result)
    out.append(m.call("tick", {"n": 20}).result)
    out.append(m.call("vm_page_alloc", {"page_req": "NORMAL"}).result)
    out.append(m.call("vm_page_lookup", {"object": 2, "pindex": 12}).result)
    out.append(m.call("vm_page_hash_get", {"object": 2, "pindex": 18}).result)
    out.append(m.state_digest())
    return out


m = busy()
assert snapshot.quiescent(m), snapshot.busy_reason(m)
data = snapshot.dump(m)
header = snapshot.read_header(data)
print(
    "parked_at",
    m.pd_parked_at,
    "passes",
    m.pd_passes,
    "maps",
    m.pmap_mapping_count,
    "hash",
    m._hash_arrays is not None,
    "fake",
    len(m.fake_pages),
    "bytes",
    len(data),
    file=sys.stderr,
)
loaded = snapshot.load(data)
fut = future(m)
assert future(loaded) == fut
with open(sys.argv[1], "wb") as f:
    f.write(data)
with open(sys.argv[2], "w") as f:
    json.dump({"digest": header["digest"], "future": fut, "made_by": "ff19a2e"}, f, indent=1)
