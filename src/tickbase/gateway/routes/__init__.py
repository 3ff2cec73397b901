"""The HTTP routes of the gateway: one router per resource.

Shared dependencies live in :mod:`tickbase.gateway.routes.deps`;
:func:`tickbase.gateway.app.create_gateway` includes the routers.

Viewers read; only admins create, change, trigger or cancel (``Admin`` on
every mutating route). JSON is camelCase (see ``schemas``); every error has
the one shape of ``errors``. Listings page with an opaque ``cursor`` (the
``nextCursor`` of the previous page).
"""
