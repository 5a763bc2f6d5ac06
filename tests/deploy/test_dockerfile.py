"""The image without a Docker engine (issue 10 §1): this machine has none, so the
Dockerfile is read here and its runtime stage's exact commands run outside Docker.

* Its ``CMD`` starts as a subprocess with the image's ``ENV`` applied, a temporary folder
  standing in for the ``/data`` volume and the repository's root for the ``WORKDIR``.  Two
  substitutions, both said where they happen: the CMD listens on ``0.0.0.0``, which this
  machine must not serve beyond loopback, so it is given ``127.0.0.1``; its port 8000 is
  replaced by a free one (and ``PORT`` with it, as ``docker run -e PORT`` would).
* Its ``HEALTHCHECK`` command exits 0 against that server, and not 0 before the server
  listens and after it stopped.
* Everything the Dockerfile copies from the build context exists and is not left out by
  ``.dockerignore``; its stages are what the issue asks (node builds the page, Python
  builds the environment, a slim runtime that is not root and keeps its data in a volume).
"""

from __future__ import annotations

import fnmatch
import http.server
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.healthcheck import main as healthcheck_main
from app.healthcheck import probe
from tools.requirements import requirements

from .dockerfile import (
    DOCKERFILE,
    ROOT,
    Stage,
    exec_form,
    flags_and_rest,
    healthcheck,
    seconds,
    stages,
)

#: Bound on the server's start-up (it boots the default 1 GiB instance): not a timing
#: assertion, only how long to wait before calling the start a failure.
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def all_stages() -> list[Stage]:
    return stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(all_stages: list[Stage]) -> Stage:
    return all_stages[-1]


def test_stages(all_stages: list[Stage], runtime: Stage) -> None:
    by_name = {s.name: s for s in all_stages}
    web = by_name["web"]
    assert web.image.startswith("node:20")
    assert any("npm ci" in r.args for r in web.all("RUN"))
    assert any("npm run build" in r.args for r in web.all("RUN"))
    assert any("package-lock.json" in c.args for c in web.all("COPY"))
    assert any("pip install" in r.args for r in by_name["python-env"].all("RUN"))
    assert any("tools/build_core.py" in r.args for r in by_name["core-compiled"].all("RUN"))
    assert runtime.image == "python:3.11-slim"
    # pinned by tag, never latest (hadolint checks it too, in make lint)
    for stage in all_stages:
        if stage.image not in by_name:
            assert ":" in stage.image and not stage.image.endswith(":latest"), stage.image
    # the runtime has neither a compiler nor node: it only copies what the others built
    runtime_runs = " ".join(r.args for r in runtime.all("RUN"))
    assert "apt-get" not in runtime_runs and "npm" not in runtime_runs
    copied = {flags_and_rest(c.args)[0].get("from") for c in runtime.all("COPY")}
    assert {"python-env", "web", "core-compiled"} <= copied


def test_runtime_is_not_root_and_keeps_its_data_in_a_volume(runtime: Stage) -> None:
    user = runtime.one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), user  # numeric: runAsNonRoot
    assert runtime.one("VOLUME").args in ('["/data"]', "/data")
    env = runtime.env()
    assert env["PAGELAB_DATABASE_URL"] == "sqlite:////data/pagelab.db"
    # the user owns the volume's mount point (a new named volume copies its ownership)
    assert any(f"chown {'pagelab:pagelab'} /data" in r.args for r in runtime.all("RUN"))
    assert f"--uid {uid}" in " ".join(r.args for r in runtime.all("RUN"))


def test_the_container_starts_like_make_run(runtime: Stage) -> None:
    """The CMD is ``make run``'s command; it listens beyond loopback, so the image is in
    token mode (app.serve refuses the open mode there: tests/test_serve.py)."""
    cmd = exec_form(runtime.one("CMD").args)
    assert cmd == ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8000"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "$(PY) -m app.serve --host $(HOST) --port $(PORT)" in makefile
    env = runtime.env()
    assert env["PAGELAB_AUTH"] == "token"
    assert env["PORT"] == cmd[cmd.index("--port") + 1]  # the healthcheck asks that port
    assert runtime.one("EXPOSE").args == env["PORT"]
    options, command = healthcheck(runtime)
    assert command == ["python", "-m", "app.healthcheck"]
    # the check's own timeout (3 s) fits in Docker's
    assert seconds(options["timeout"]) > 3 and seconds(options["start-period"]) >= 60


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` leaves ``path`` (or a folder above it) out."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not read here"
    return patterns


def test_everything_copied_exists_and_is_sent(all_stages: list[Stage]) -> None:
    patterns = _ignore_patterns()
    names = {s.name for s in all_stages}
    checked = 0
    for stage in all_stages:
        for copy in stage.all("COPY"):
            flags, rest = flags_and_rest(copy.args)
            if "from" in flags:
                assert flags["from"] in names, copy.args  # another stage's output
                continue
            *sources, _dest = rest.split(" ")
            for source in sources:
                matches = sorted(ROOT.glob(source))
                assert matches, f"COPY {source}: nothing in the repository"
                for match in matches:
                    files = [match] if match.is_file() else [p for p in match.rglob("*.py")]
                    for f in files or [match]:
                        rel = f.relative_to(ROOT).as_posix()
                        assert not _ignored(rel, patterns), f"{rel} is in .dockerignore"
                checked += 1
    assert checked >= 8
    # and the context leaves out what each stage builds itself, and the environments
    for left_out in (".venv", ".git", "web/node_modules", "web/dist", "build", "var"):
        assert _ignored(left_out, patterns), left_out


def test_the_compiler_pins_are_the_dev_extras(all_stages: list[Stage]) -> None:
    """The compiled core's stage installs mypy and setuptools at the dev extra's versions
    (the ones ``make core-compiled`` builds with)."""
    core = next(s for s in all_stages if s.name == "core-compiled")
    pins = dict(
        re.findall(r"([A-Za-z0-9_.-]+)==([^\s]+)", " ".join(r.args for r in core.all("RUN")))
    )
    assert set(pins) == {"mypy", "setuptools"}
    dev = dict(r.split("==", 1) for r in _dev_extra())
    assert pins == {name: dev[name] for name in pins}


def _dev_extra() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev: list[str] = project["optional-dependencies"]["dev"]
    return dev


def test_requirements_tool_reads_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirements() == project["dependencies"]
    assert requirements("dev") == project["dependencies"] + _dev_extra()
    with pytest.raises(ValueError, match="no extra 'nope'"):
        requirements("nope")


# ---------------------------------------------------------------- the commands themselves


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def image_environment(runtime: Stage, data: Path, port: int) -> dict[str, str]:
    """This process's environment with the image's ENV applied: ``/data`` is ``data``,
    ``PORT`` the free port, and ``PATH`` stays ours (``python`` is this interpreter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELAB_")}
    for key, value in runtime.env().items():
        if key == "PATH":
            continue
        env[key] = value.replace("/data/", f"{data}/")
    env["PORT"] = str(port)
    return env


def command(argv: list[str], port: int) -> list[str]:
    """The image's command as run here: ``python`` is this interpreter, and a server
    listens on 127.0.0.1 (not the image's 0.0.0.0: see the module's docstring) at
    ``port`` (not 8000)."""
    out = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out


def lines_of(stream: object) -> queue.Queue[str | None]:
    """The lines of a pipe, read by a thread (None once it closes)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.fixture
def served(runtime: Stage, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, dict]]:
    """The image's CMD running as a subprocess (see ``command``)."""
    data = tmp_path / "data"  # the volume's mount point, made by the image's RUN
    data.mkdir()
    port = free_port()
    env = image_environment(runtime, data, port)
    # the WORKDIR /srv/pagelab holds the source tree: here the repository's root
    assert runtime.one("WORKDIR").args == "/srv/pagelab"
    proc = subprocess.Popen(
        command(exec_form(runtime.one("CMD").args), port),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the logs, as `docker logs` shows both
        text=True,
    )
    try:
        yield proc, port, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_the_cmd_serves_and_the_healthcheck_sees_it(
    served: tuple[subprocess.Popen[str], int, dict], runtime: Stage, tmp_path: Path
) -> None:
    proc, port, env = served
    _, check = healthcheck(runtime)
    check_argv = command(check, port)

    def healthcheck_status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            check_argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    log = lines_of(proc.stdout)
    seen: list[str] = []
    while True:
        line = log.get(timeout=START_TIMEOUT_S)
        assert line is not None, "the server exited during start-up:\n" + "".join(seen)
        seen.append(line)
        if "Application startup complete" in line:
            break
    text = "".join(seen)
    # token mode: the admin was bootstrapped and its token logged once
    assert "admin bootstrapped" in text and re.search(r"pl_[\w-]{20,}", text), text

    up = healthcheck_status()
    assert up.returncode == 0, up.stderr
    r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10, trust_env=False)
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text
    # the database is in the volume
    assert (tmp_path / "data" / "pagelab.db").is_file()

    proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
    # uvicorn shuts down (the lifespan's end runs), then re-raises the signal it caught
    assert proc.wait(60) in (0, -signal.SIGTERM)
    rest = []
    while (line := log.get(timeout=60)) is not None:
        rest.append(line)
    assert "Application shutdown complete" in "".join(rest), "".join(rest)
    down = healthcheck_status()
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_the_healthcheck_fails_when_nothing_listens(runtime: Stage) -> None:
    port = free_port()
    _, check = healthcheck(runtime)
    env = {**os.environ, "PORT": str(port)}
    done = subprocess.run(
        command(check, port), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}/healthz" in done.stderr and "unhealthy" in done.stderr


class _Answers(http.server.BaseHTTPRequestHandler):
    """A server that is up but not PageLab's alive: what the check must not accept."""

    status = 503
    body = b'{"status": "alive"}'

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (503, b'{"status": "alive"}', "answered 503"),
        (200, b'{"status": "ok"}', "not status alive"),
        (200, b"<html>", "Expecting value"),
    ],
)
def test_the_healthcheck_wants_alive(status: int, body: bytes, why: str) -> None:
    handler = type("Handler", (_Answers,), {"status": status, "body": body})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert healthcheck_main(["--port", str(server.server_address[1])]) == 1
            assert why in probe(server.server_address[1], 5.0)  # type: ignore[operator]
        finally:
            server.shutdown()
