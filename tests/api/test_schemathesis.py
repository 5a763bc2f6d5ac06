"""schemathesis against the app's own OpenAPI schema: generated requests (schema-valid and
schema-violating) for every operation; no 5xx, every response documented (status, content
type, body schema, Allow on a 405), and every error an RFC 9457 problem document.

Bounded for CI: 5 examples per operation, derandomized, no deadline; the app runs small
(tiny-16m default instance, at most 64 Ki page structures and 8 instances, waits capped at
50 ms so a generated ``wait: true`` never holds the run).

One check is configured rather than left at its default: ``positive_data_acceptance`` also
accepts 422.  A schema-valid body can still be semantically invalid, and the API is right to
refuse it as a validation problem: ``{"name": "x", "memory": "lots"}`` (not a size), a
memory map that cannot boot, ``args`` a kernel function does not take, a pfn this machine
does not have, a read-only sysctl.  Those rules depend on the core and the machine's state
and cannot be written into the OpenAPI schema.  Every other check runs as shipped.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import settings

from app.lab.settings import Settings
from app.main import create_app

app = create_app(
    Settings(
        default_preset="tiny-16m",
        max_pages=64 * 1024,
        max_instances=8,
        max_batch=1000,
        max_wait_s=0.05,
    )
)

config = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                # the default list (2xx, 3xx, 401, 403, 404, 409, 429, 5xx) minus 5xx, which
                # not_a_server_error refuses anyway, plus 422 (see the module docstring)
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"],
            }
        }
    }
)


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """A trace import's body: a generated string is sent as is, anything else as one
    JSON line (both are refused as traces, which is what the check wants to see)."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.serializer("application/vnd.pagelab.batch+json")
def _compact_batch(ctx: Any, value: Any) -> bytes:
    """A compact batch (docs/batch-format.md) is JSON under its own media type."""
    return json.dumps(value).encode()


schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def errors_are_problem_documents(ctx: Any, response: schemathesis.Response, case: Any) -> bool:
    """Every 4xx/5xx is ``application/problem+json`` with a ``/problems/<kind>`` type and
    the response's own status."""
    if response.status_code < 400:
        return True
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), content_type
    body = response.json()
    assert isinstance(body, dict), body
    assert str(body["type"]).startswith("/problems/"), body
    assert body["status"] == response.status_code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return True


@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True, database=None)
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(additional_checks=[errors_are_problem_documents])
