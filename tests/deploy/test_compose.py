"""compose.yml's structure (issue 10 §1), read with PyYAML since no Docker engine is here:
the single node by default with SQLite in a named volume; the cluster profile with API
nodes on Postgres and Ray behind a load balancer, each service with a health check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .dockerfile import ROOT

COMPOSE = ROOT / "compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _volume_names(service: dict[str, Any]) -> dict[str, str]:
    """Named volumes a service mounts (bind mounts, which start with . or /, left out)."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        if not source.startswith((".", "/")):
            mounts[source] = target
    return mounts


def _built_here(service: dict[str, Any]) -> bool:
    return service.get("build", {}).get("context") == "."


def test_the_default_is_one_node_on_sqlite_in_a_named_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    default = [name for name, s in services.items() if "profiles" not in s]
    assert default == ["pagelab"]
    node = services["pagelab"]
    assert _built_here(node) and (ROOT / "Dockerfile").is_file()
    assert _volume_names(node) == {"pagelab-data": "/data"}
    url = node["environment"]["PAGELAB_DATABASE_URL"]
    assert url == "sqlite:////data/pagelab.db"
    assert any(p.endswith(":8000") for p in node["ports"])
    # no healthcheck override: the image's HEALTHCHECK (python -m app.healthcheck) applies
    assert "healthcheck" not in node


def test_the_cluster_profile(services: dict[str, dict[str, Any]]) -> None:
    cluster = {name for name, s in services.items() if s.get("profiles") == ["cluster"]}
    assert cluster == {"postgres", "init", "ray-head", "ray-worker", "api", "lb"}

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and not postgres["image"].endswith("latest")
    assert "/var/lib/postgresql/data" in _volume_names(postgres).values()
    assert "pg_isready" in postgres["healthcheck"]["test"]

    api = services["api"]
    assert _built_here(api) and api["image"] == services["pagelab"]["image"]
    env = api["environment"]
    assert env["PAGELAB_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["PAGELAB_DATABASE_URL"]  # the service postgres
    assert env["PAGELAB_PLACEMENT"] == "ray"
    assert env["PAGELAB_RAY_ADDRESS"].split(":")[0] == "ray-head"
    assert env["PAGELAB_CLUSTER"] == "1"  # several nodes: the instances held through Postgres
    assert api["deploy"]["replicas"] >= 2
    assert "ports" not in api  # reached through the load balancer only
    assert not _volume_names(api)  # stateless: everything is in Postgres
    assert api["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["ray-head"]["condition"] == "service_healthy"

    init = services["init"]
    assert init["command"] == ["pagelab", "admin", "bootstrap"]  # migrations and the admin
    assert init["environment"]["PAGELAB_DATABASE_URL"] == env["PAGELAB_DATABASE_URL"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"

    head = services["ray-head"]
    assert _built_here(head)  # the same image: same Python, same Ray, the actors' code
    assert head["command"][:3] == ["ray", "start", "--head"]
    assert "--port=6379" in head["command"] and env["PAGELAB_RAY_ADDRESS"].endswith(":6379")
    assert "ray" in head["healthcheck"]["test"]
    worker = services["ray-worker"]
    assert "--address=ray-head:6379" in worker["command"]

    lb = services["lb"]
    assert lb["image"].startswith("caddy:")
    config = next(v for v in lb["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro"))
    caddyfile = (ROOT / config.split(":")[0]).read_text(encoding="utf-8")
    assert "dynamic a api 8000" in caddyfile  # every replica of api, found by DNS
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    # the cluster answers where the single node would (the two cannot run at once)
    assert lb["ports"] == [services["pagelab"]["ports"][0].replace(":8000", ":80")]


def test_every_service_has_a_health_check_or_says_why_not(
    services: dict[str, dict[str, Any]],
) -> None:
    """Ours inherit the image's HEALTHCHECK unless they run something else (Ray, the
    one-shot init); the others declare theirs."""
    for name, service in services.items():
        check = service.get("healthcheck")
        if check is None:
            assert _built_here(service) and "command" not in service, name
        elif check.get("disable"):
            assert name in ("init", "ray-worker"), name
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {v for s in services.values() for v in _volume_names(s)}
    assert used == set(compose["volumes"]) == {"pagelab-data", "pagelab-pg", "caddy-data"}


def test_every_file_it_names_exists(services: dict[str, dict[str, Any]]) -> None:
    for service in services.values():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source
        if _built_here(service):
            assert Path(ROOT / service["build"].get("dockerfile", "Dockerfile")).is_file()
