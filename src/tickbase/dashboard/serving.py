"""Serve the dashboard's shell on its page paths and its assets (see the package)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

ASSETS = "/ui"
"""URL prefix of the dashboard's JavaScript, CSS and vendored libraries."""

PAGES = (
    "/",
    "/sign-in",
    "/tasks",
    "/tasks/{task_id}",
    "/schedules",
    "/schedules/{name}",
    "/workflows",
    "/workflows/{name}",
    "/runs/{run_id}",
    "/nodes",
    "/alerts",
    "/limits",
    "/market",
)
"""Paths answered with the shell: the page's script reads the rest of the URL."""

SECURITY_HEADERS = {
    # Scripts only from this origin and never inline: an injected string in
    # a task's payload or error cannot run. Inline styles are allowed because
    # the chart library positions its canvases with them.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def static_dir() -> Path:
    """The directory of the dashboard's files in the installed package."""
    return Path(str(files("tickbase.dashboard") / "static"))


class _Assets(StaticFiles):
    """Static files with the dashboard's security headers, revalidated on each load
    (so an upgraded gateway never serves a stale module beside a new one)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers.append((b"cache-control", b"no-cache"))
                headers.extend(
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                )
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_headers)  # type: ignore[arg-type]


def install_dashboard(api: FastAPI) -> None:
    """Serve the dashboard on ``api``: the shell on every page path, assets under
    :data:`ASSETS`. Both are public (they hold no data); the request guard
    lists them through :func:`is_dashboard_path`."""
    directory = static_dir()
    api.mount(ASSETS, _Assets(directory=directory), name="dashboard-assets")
    shell = directory / "index.html"

    async def page() -> Response:
        return FileResponse(
            shell,
            media_type="text/html",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    for path in PAGES:
        api.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def is_dashboard_path(path: str) -> bool:
    """Whether ``path`` is a dashboard page or asset (served without credentials)."""
    if path.startswith(ASSETS + "/"):
        return True
    parts = path.rstrip("/").split("/") if path != "/" else [""]
    for pattern in PAGES:
        expected = pattern.rstrip("/").split("/") if pattern != "/" else [""]
        if len(parts) == len(expected) and all(
            want.startswith("{") or want == got for want, got in zip(expected, parts, strict=True)
        ):
            return True
    return False
