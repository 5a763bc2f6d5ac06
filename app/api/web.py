"""The browser page and the API's interactive docs, served from the page's build.

``web/`` builds into ``web/dist`` (``make run`` does it; Node >= 20): ``index.html`` and its
hashed ``assets/``, plus Swagger UI's files copied from ``swagger-ui-dist`` into ``swagger/``
so that ``/docs`` loads nothing from another host.  Without a build the API works as
always; ``/`` and ``/docs`` then answer with a short page saying how to build.  The build is
looked up on every request, so building while the server runs needs no restart.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

#: Where the build is: ``PAGELAB_WEB_DIST``, else ``web/dist`` of this checkout.
DEFAULT_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PageLab: the page is not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em}}
code{{background:#8882;padding:0 .3em;border-radius:3px}}</style></head>
<body><h1>PageLab</h1>
<p>{what} is not built on this server. Building it needs <b>Node.js 20 or newer</b> with npm;
then <code>make run</code> builds it and serves it here (or run
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code> and reload this page).</p>
<p>The API works without it: everything is under <code>/api/v1</code>, its schema is
<a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


def web_dist(configured: str | None = None) -> Path:
    """The build's folder: ``configured`` (``PAGELAB_WEB_DIST``), else ``web/dist``."""
    return Path(configured or DEFAULT_DIST)


class _BuildFiles(StaticFiles):
    """Static files of one folder of the build; a plain 404 while it is not built."""

    def __init__(self, dist: Path, subdir: str) -> None:
        super().__init__(directory=dist / subdir, check_dir=False)
        self.dist = dist
        self.subdir = subdir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        folder = self.dist / self.subdir
        if not folder.is_dir():
            raise HTTPException(404, f"the page is not built: there is no {self.subdir}/ yet")
        self.directory = folder
        self.all_directories = [folder]
        await super().__call__(scope, receive, send)


def mount_web(app: FastAPI, configured: str | None = None) -> None:
    """Serve the page at ``/`` (with ``/assets``) and Swagger UI at ``/docs``, both from the
    build (in ``configured``, ``PAGELAB_WEB_DIST``, else ``web/dist``); ``app`` must be created
    with ``docs_url=None`` and ``redoc_url=None``."""
    dist = web_dist(configured)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = dist / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT.format(what="The browser page"))
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if not (dist / "swagger" / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(NOT_BUILT.format(what="The interactive API page (Swagger UI)"))
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/swagger/swagger-ui-bundle.js",
            swagger_css_url="/swagger/swagger-ui.css",
            swagger_favicon_url="/swagger/favicon-32x32.png",
            # no validator badge: it would ask a public validator about this schema
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.mount("/assets", _BuildFiles(dist, "assets"), name="assets")
    app.mount("/swagger", _BuildFiles(dist, "swagger"), name="swagger")
