"""Numbers in CLI tables: rounded for reading, prices at their instrument's precision."""

from __future__ import annotations

import pytest

from tickbase.cli.render import format_number, format_price, price_decimals


@pytest.mark.parametrize(
    ("prices", "decimals"),
    [
        ([1.08345, 1.0831, 1.08], 5),  # EUR/USD
        ([5912.25, 5912.5, 5913.0], 2),  # ES futures
        ([93381.5, 93400.0], 2),  # BTCUSDT, at least 2
        ([0.000012345], 8),  # capped
        ([1e-9], 8),
        ([None, float("nan")], 2),
    ],
)
def test_price_decimals_follow_the_instrument(prices: list[float | None], decimals: int) -> None:
    assert price_decimals(prices) == decimals


def test_prices_keep_their_decimals() -> None:
    assert format_price(1.0831, 5) == "1.08310"
    assert format_price(93381.5, 2) == "93,381.50"
    assert format_price(None, 5) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (22351900.0, "22,351,900"),
        (1234.5678, "1,234.57"),
        (12.3456, "12.346"),
        (12.5, "12.5"),
        (0.000123456, "0.0001235"),
        (0.5, "0.5"),
        (-3.0, "-3"),
        (float("inf"), "inf"),
    ],
)
def test_numbers_are_rounded_for_reading(value: float, text: str) -> None:
    assert format_number(value) == text
