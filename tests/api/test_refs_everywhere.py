"""Wherever an instance id is accepted, its name is too (issue 11), checked against the
API's own schema rather than a hand list, so that a new route cannot forget it:

* every path parameter and body field that names an instance is declared as a reference
  (a string: ``42``, ``box`` or ``ann:box``), never as an integer;
* every GET route under ``/instances/{instance_id}`` answers the same, status and body,
  for the default instance's id and for its name.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.lab.settings import Settings
from app.main import create_app
from tests.api.conftest import API, FIRST_ALLOC_PFN

#: Sample values for the other path parameters of the GET routes.
SAMPLES = {
    "pfn": str(FIRST_ALLOC_PFN),
    "queue": "PQ_FREE",
    "color": "0",
    "object_id": "1",
    "name": "vm.v_free_min",
    "command": "show pageq",
    "seq": "1",
    "workload_id": "1",
}


def spec() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(
        Settings(default_preset="tiny-16m", database_url="")
    ).openapi()
    return schema


def test_every_instance_parameter_and_field_is_a_reference() -> None:
    schema = spec()
    params = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["name"] in ("instance_id", "instance"):
                    params += 1
                    assert p["schema"]["type"] == "string", (method, path)
                    assert "name" in p["schema"]["description"], (method, path)
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            props = schema["components"]["schemas"].get(ref.rpartition("/")[2], {})
            for field, value in props.get("properties", {}).items():
                if re.fullmatch(r"(from_)?instance(_id)?", field):
                    types = {v.get("type") for v in value.get("anyOf", [value])}
                    assert "integer" not in types and "string" in types, (path, field)
    assert params >= 39  # every route under /instances/{instance_id}, each method


@pytest.mark.anyio
async def test_every_get_answers_alike_by_id_and_by_name(client: httpx.AsyncClient) -> None:
    # an object, a page, a journal entry and a workload for the routes that need one
    await client.post(
        f"{API}/instances/1/calls/vm_object_allocate",
        json={"args": {"type": "OBJT_DEFAULT", "size": 4}},
    )
    r = await client.post(
        f"{API}/instances/1/workloads", json={"kind": "churn", "steps": 2, "rate": 1}
    )
    assert r.status_code == 201, r.text
    checked = []
    for path, ops in spec()["paths"].items():
        if "get" not in ops or not path.startswith(f"{API}/instances/{{instance_id}}"):
            continue
        filled = path
        for name in re.findall(r"\{(\w+)\}", path):
            if name != "instance_id":
                filled = filled.replace(f"{{{name}}}", SAMPLES[name])
        by_id = await client.get(filled.replace("{instance_id}", "1"))
        by_name = await client.get(filled.replace("{instance_id}", "default"))
        assert by_id.status_code == by_name.status_code == 200, (path, by_name.text)
        assert by_id.content == by_name.content or _same_but_time(by_id, by_name), path
        checked.append(path)
    assert len(checked) >= 20


def _same_but_time(a: httpx.Response, b: httpx.Response) -> bool:
    """Bodies equal but for wall-clock fields (a workload's elapsed time, last use)."""
    if not a.headers.get("content-type", "").startswith("application/json"):
        return False

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if not re.search(r"elapsed|last_used|_s$|rate|time", k)
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    same: bool = strip(a.json()) == strip(b.json())
    return same
