"""``python -m app.healthcheck [--port P] [--timeout S]``: exit 0 when the server on this
machine answers ``GET /healthz`` (the container's ``HEALTHCHECK``; the image has no curl).

It asks ``http://127.0.0.1:$PORT/healthz`` (``PORT``, default 8000, the port
``python -m app.serve`` listens on) with a short timeout.  Exit status: 0 when the answer is
200 ``{"status": "alive"}``, 1 otherwise, with the reason on stderr (Docker keeps it in
the container's health log).  Only the standard library: it starts fast and imports
nothing of the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def probe(port: int, timeout: float) -> str | None:
    """Why the server on 127.0.0.1:``port`` is not alive, or None when it is."""
    url = f"http://127.0.0.1:{port}/healthz"
    # never through a proxy named by HTTP_PROXY: this asks the machine itself
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = json.loads(response.read(1024))
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (OSError, ValueError) as e:  # refused, timed out, reset; not JSON
        return f"{url}: {getattr(e, 'reason', None) or e}"
    if not isinstance(body, dict) or body.get("status") != "alive":
        return f"{url} answered {body!r}, not status alive"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.healthcheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    ns = parser.parse_args(argv)
    why = probe(ns.port, ns.timeout)
    if why is not None:
        print(f"unhealthy: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
