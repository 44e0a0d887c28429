"""The web dashboard's pages: a single-page app built by ``make`` from ``web/`` (see
``scripts/build_web.sh``) into ``web/dist/``, served by ``arsenal serve`` at ``/``. The build's
output stays out of ``src/``: it is generated, minified code, not source.

The page and its assets are public (they hold no data and do nothing); every call the page
makes goes to ``/api/v1`` with the API key the user logs in with. Nothing is fetched from
anywhere else: the built bundle holds every library, so the dashboard works with no internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

__all__ = ["ASSETS_PREFIX", "CONTENT_SECURITY_POLICY", "STATIC", "add_dashboard", "is_public_path"]



def _static_dir() -> Path:
    """``static/`` beside this file when a package build put the bundle there; otherwise the
    checkout's ``web/dist`` (Arsenal runs from its checkout: ``uv run arsenal``)."""
    packaged = Path(__file__).parent / "static"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "web" / "dist"


STATIC = _static_dir()
ASSETS_PREFIX = "/assets/"
PAGE_PATHS = frozenset({"/", "/index.html", "/favicon.svg"})
# Only this origin's own scripts, styles and sockets: an injected term rendered into the page
# cannot load or send anything elsewhere. Styles set from script (charts) need no inline allowance.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Arsenal</title>
<p>The dashboard has not been built. Run <code>make web</code> (or <code>make demo</code>),
then reload this page. The API is at <a href="/api/v1/docs">/api/v1/docs</a>.</p>"""


def is_public_path(path: str) -> bool:
    """The page and its bundled assets: no key needed, as for the OpenAPI document."""
    return path in PAGE_PATHS or path.startswith(ASSETS_PREFIX)


def add_dashboard(app: FastAPI, static: Path = STATIC) -> None:
    headers = {"content-security-policy": CONTENT_SECURITY_POLICY}

    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    async def page() -> Response:
        index = static / "index.html"
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT, status_code=503, headers=headers)
        return FileResponse(index, media_type="text/html", headers=headers)

    @app.get("/favicon.svg", include_in_schema=False)
    async def favicon() -> Response:
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    @app.get(ASSETS_PREFIX + "{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        # One flat directory: a name with a separator or a dot-dot never reaches the file system.
        path = static / "assets" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path, headers=headers)
