"""``python -m app.serve`` as a subprocess, as an admin runs it: its own interpreter, a
port of its choosing on 127.0.0.1 (``--port 0``), JSON log lines on a pipe, read by a
thread so that a test can wait for a given line (bounded) without polling or sleeping."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: longest a test waits for one log line (a start boots a machine and runs migrations)
PATIENCE_S = 60.0


class Served:
    """One server process and the log lines it wrote so far."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        full = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PAGELAB_LOG_FORMAT": "json",
            "PAGELAB_ACCESS_LOG": "1",
            "PAGELAB_DEFAULT_PRESET": "tiny-16m",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = {"event": line.rstrip("\n"), "not_json": True}
            self._queue.put(parsed)
        self._queue.put(None)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The next log line whose event is ``event`` (AssertionError if the process ends
        or stays silent for ``PATIENCE_S`` first)."""
        while True:
            try:
                line = self._queue.get(timeout=PATIENCE_S)
            except queue.Empty:
                raise AssertionError(f"no {event!r} line within {PATIENCE_S} s") from None
            if line is None:
                raise AssertionError(f"the server ended before {event!r}:\n{''.join(self.raw)}")
            self.lines.append(line)
            if line.get("event") == event:
                return line

    def start(self) -> Served:
        """Wait until the server listens and its lab is up; ``url`` is then set."""
        self.url = self.wait_for("PageLab serving")["url"].rstrip("/")
        self.wait_for("Application startup complete.")
        return self

    def terminate(self) -> int:
        """SIGTERM, then the exit code (and every line is read)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def finish(self) -> int:
        code = self.proc.wait(timeout=PATIENCE_S)
        self._reader.join(PATIENCE_S)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        return code

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=PATIENCE_S)
