"""The API documents itself offline: /docs and /redoc load only local assets,
and the OpenAPI document covers every route and every submit option."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(gw: RunningGateway, page: str) -> None:
    async with httpx.AsyncClient(base_url=gw.base, timeout=10) as anonymous:
        response = await anonymous.get(page)
        assert response.status_code == 200, response.text
        urls = _asset_urls(response.text)
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert assets, response.text
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert "cdn" not in response.text.lower()
        for url in assets:
            asset = await anonymous.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
        assert (await anonymous.get("/docs-assets/nothing.js")).status_code == 404
        traversal = await anonymous.get("/docs-assets/../api/v1/tasks")
        assert traversal.status_code in (401, 404)
