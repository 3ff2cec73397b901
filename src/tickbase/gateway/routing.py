"""What the gateway's routes serve at a path (for ``OPTIONS`` and the ``Allow`` of a 405)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str] | None:
    """Every method some route serves at this scope's path (``None``: no route has the path).

    Starlette's own ``Allow`` names the methods of the first route that
    matches the path only; a path served by several routes (``GET``,
    ``PATCH`` and ``DELETE`` of one schedule) has them all here.
    """
    methods: set[str] = set()
    found = False
    for route in _leaves(routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            found = True
            methods |= set(getattr(route, "methods", ()))
    if not found:
        return None
    return sorted(methods | {"OPTIONS"})


def _leaves(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes with methods, included routers walked into.

    FastAPI keeps an included router as one entry pointing at the router
    (its routes already carry the router's prefix); the gateway includes its
    routers without a further prefix.
    """
    for route in routes:
        if getattr(route, "methods", None) is not None:
            yield route
            continue
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _leaves(included.routes)
