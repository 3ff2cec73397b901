"""The checks every calculator shares: periods, prices and the values read back from a state.

Each raises :class:`ValueError` naming the parameter or the state key and the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "check_period",
    "check_value",
    "state_float",
    "state_floats",
    "state_optional_float",
    "state_value",
    "value_problem",
]


def check_period(name: str, value: int, minimum: int = 2) -> int:
    """``value`` if it is an ``int`` of at least ``minimum``; :class:`ValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def value_problem(value: object) -> str | None:
    """Why ``value`` cannot be a price or volume, or ``None`` when it can."""
    # bool is an int: refuse it so that a flag passed by mistake is not read as a price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    if not math.isfinite(value):
        return "is not a finite number"
    return None


def check_value(name: str, value: float) -> float:
    """``value`` as a float if it can be a price or volume; :class:`ValueError` naming ``name`` otherwise."""
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(f"{name} {value!r} {problem}")
    return float(value)


def state_value(state: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``state[key]`` if it is there and of ``kind`` (never a ``bool``); :class:`ValueError` otherwise."""
    try:
        value = state[key]
    except (KeyError, TypeError):
        raise ValueError(f"indicator state lacks {key!r}: {state!r}") from None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"indicator state {key!r} has a bad value {value!r}")
    return value


def state_float(state: Mapping[str, Any], key: str) -> float:
    """``state[key]`` as a finite float."""
    return _as_float(key, state_value(state, key, (int, float)))


def _as_float(key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"indicator state {key!r} has a bad value {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"indicator state {key!r} is not finite: {value!r}")
    return value


def state_optional_float(state: Mapping[str, Any], key: str) -> float | None:
    """``state[key]`` as a finite float, or ``None`` when it is stored as ``None``."""
    if key in state and state[key] is None:
        return None
    return state_float(state, key)


def state_floats(state: Mapping[str, Any], key: str, max_len: int) -> list[float]:
    """``state[key]`` as a list of at most ``max_len`` finite floats."""
    values = state_value(state, key, list)
    if len(values) > max_len:
        raise ValueError(f"indicator state {key!r} holds {len(values)} values, at most {max_len}")
    return [_as_float(key, v) for v in values]
