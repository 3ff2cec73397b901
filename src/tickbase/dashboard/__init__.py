"""The web dashboard: static files the gateway serves, and nothing else.

Overview
    The dashboard is a single-page application in plain ES modules
    (``static/``): Preact components written with ``htm`` tagged templates,
    so it needs no build step and ships inside the wheel. It reads and
    changes everything through the gateway's public API (``/api/v1`` and the
    ``/ws`` protocol), as any other client does: the page holds no privilege
    of its own, and the server refuses what a viewer may not do whatever the
    page shows.

Serving
    :func:`install_dashboard` mounts the assets under :data:`ASSETS` and
    answers every page path (:data:`PAGES`) with the same shell, so a link
    to ``/tasks?status=failed`` opens that view. The shell and the assets
    carry no data and are public; every data request is authenticated.
    Responses carry a strict Content-Security-Policy (scripts and styles
    from this origin only, no inline script, no framing).

Sign-in
    The user pastes an API token once; the page exchanges it for a signed
    session (``POST /api/v1/auth/session``), keeps only the session (in the
    browser's storage, never in a URL), renews it before it expires and sends
    it as ``Authorization: Bearer <session>``; the WebSocket, which cannot
    carry headers from a browser, gets it as ``?session=`` on its handshake
    (not a URL the browser keeps in its history; the gateway logs no query
    strings).
"""

from tickbase.dashboard.serving import (
    ASSETS,
    PAGES,
    install_dashboard,
    is_dashboard_path,
    static_dir,
)

__all__ = ["ASSETS", "PAGES", "install_dashboard", "is_dashboard_path", "static_dir"]
