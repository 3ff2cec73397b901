"""``/docs`` (Swagger UI) and ``/redoc`` served from the installed package, not a CDN.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so offline (an
air-gapped cluster, a laptop on a train) they are blank. The assets come from
the ``fastapi-offline`` distribution, which ships ``swagger-ui-bundle.js``,
``swagger-ui.css`` and ``redoc.standalone.js``; the gateway serves them under
:data:`DOCS_ASSETS` (a public path of the request guard, like ``/docs``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

DOCS_ASSETS = "/docs-assets"
"""URL prefix of the documentation pages' JavaScript, CSS and icon."""


def assets_dir() -> Path:
    """The directory holding the Swagger UI and ReDoc assets."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(api: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets on ``api`` (built with
    ``docs_url=None, redoc_url=None``)."""
    api.mount(DOCS_ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = api.title

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @api.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
