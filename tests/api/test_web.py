"""The page and /docs, served from the page's build (``app/api/web.py``): a build found at
request time, a short "not built" page without one, and no third-party host anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty place for the build, named by PAGELAB_WEB_DIST."""
    d = tmp_path / "dist"
    monkeypatch.setenv("PAGELAB_WEB_DIST", str(d))
    return d


def build(d: Path) -> None:
    (d / "assets").mkdir(parents=True)
    (d / "swagger").mkdir()
    (d / "index.html").write_text(
        "<!doctype html><title>PageLab</title><script src='/assets/app.js'></script>"
    )
    (d / "assets" / "app.js").write_text("console.log('hi')")
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        (d / "swagger" / name).write_text("/* swagger */")


async def test_without_a_build_the_page_says_how_to_build_and_the_api_works(dist: Path) -> None:
    async with serve() as c:
        r = await c.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "not built" in r.text and "Node.js 20" in r.text and "make run" in r.text
        docs = await c.get("/docs")
        assert docs.status_code == 200 and "Swagger UI" in docs.text and "not built" in docs.text
        missing = await c.get("/assets/app.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert (await c.get("/api/v1/instances")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200


async def test_a_build_made_while_serving_is_served_at_once(dist: Path) -> None:
    async with serve() as c:
        assert "not built" in (await c.get("/")).text
        build(dist)
        r = await c.get("/")
        assert r.status_code == 200 and "<title>PageLab</title>" in r.text
        assert r.headers["cache-control"] == "no-cache"
        js = await c.get("/assets/app.js")
        assert js.status_code == 200 and "hi" in js.text
        assert (await c.get("/assets/../index.html")).status_code == 404


async def test_docs_load_swagger_ui_from_this_server_only(dist: Path) -> None:
    build(dist)
    async with serve() as c:
        r = await c.get("/docs")
        assert r.status_code == 200
        assert "/swagger/swagger-ui-bundle.js" in r.text
        assert "/swagger/swagger-ui.css" in r.text
        assert "'/openapi.json'" in r.text
        assert '"validatorUrl": null' in r.text
        assert "http://" not in r.text and "https://" not in r.text
        assert (await c.get("/swagger/swagger-ui.css")).status_code == 200
        assert (await c.get("/redoc")).status_code == 404


async def test_the_page_routes_stay_out_of_the_schema_and_errors(dist: Path) -> None:
    async with serve() as c:
        paths = (await c.get("/openapi.json")).json()["paths"]
        assert "/" not in paths and "/docs" not in paths
        # a wrong method on an API path still names the API's own methods
        r = await c.delete("/api/v1/functions")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET"
        r = await c.get("/api/v1/no-such-thing")
        assert r.status_code == 404 and r.headers["content-type"].startswith(
            "application/problem+json"
        )


async def test_the_default_build_folder_is_web_dist(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api import web

    monkeypatch.delenv("PAGELAB_WEB_DIST", raising=False)
    assert web.web_dist() == Path(web.__file__).resolve().parents[2] / "web" / "dist"


async def test_the_model_document_is_served_and_linked_from_the_api_description(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.api import routes

    doc = Path(routes.__file__).resolve().parents[2] / "docs" / "model.md"
    async with serve() as c:
        r = await c.get("/model")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
        assert r.text == doc.read_text(encoding="utf-8")
        assert r.text.startswith("# The model: what PageLab simulates")
        spec = (await c.get("/openapi.json")).json()
        assert "[/model](/model)" in spec["info"]["description"]
        listing = spec["paths"]["/api/v1/functions"]["get"]
        assert "[/model](/model)" in listing["description"]
        assert "Link" in listing["responses"]["200"]["headers"]
        functions = await c.get("/api/v1/functions")
        assert functions.status_code == 200 and functions.json()
        assert functions.headers["link"] == '</model>; rel="describedby"'
        # a server without the docs folder says so as a problem, not a crash
        monkeypatch.setattr(routes, "MODEL_DOC", tmp_path / "model.md")
        missing = await c.get("/model")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert "model document is not installed" in missing.json()["detail"]
