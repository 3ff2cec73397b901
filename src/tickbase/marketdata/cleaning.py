"""Cleaning rules: what stands in for a missing value, by kind of data.

The reference document's table:

========== ======================= ==========================================
kind        missing value           why
========== ======================= ==========================================
prices      forward-filled          the last traded price is the price
on-chain    linearly interpolated   slow-moving: a straight line is a fair guess
macro       carried from last period monthly figures change slowly
sentiment   50 (neutral)            no reading means no signal
========== ======================= ==========================================

Every value these rules supply is marked ``is_filled``; the source's own values
are never changed. A close more than 20% from the previous one is not cleaned
away: the store keeps it and flags it ``is_anomaly`` (it may be a real crash).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from tickbase.marketdata.collector import Kind, Kline, Observation, interval_step

SENTIMENT_DEFAULT = 50.0
"""Fear-and-greed when nothing is known: neutral."""


def closed_bars(bars: Sequence[Kline], interval: str, now: datetime) -> list[Kline]:
    """The bars that have closed by ``now`` (an exchange's last bar is still open)."""
    step = interval_step(interval)
    # months: a bar is closed once 31 days are past
    length = timedelta(days=31) if step is None else timedelta(seconds=step)
    return [bar for bar in bars if bar.open_time + length <= now]


def forward_fill(bars: Sequence[Kline], interval: str) -> list[Kline]:
    """Bars with every missing slot of the interval grid filled from the previous close.

    A filled bar has open = high = low = close = the previous close, zero volume and
    ``is_filled``. Intervals without a fixed length (months) are returned as they are.
    """
    seconds = interval_step(interval)
    if seconds is None:
        return list(bars)
    step = timedelta(seconds=seconds)
    out: list[Kline] = []
    for bar in bars:
        if out:
            previous = out[-1]
            slot = previous.open_time + step
            while slot < bar.open_time:
                price = previous.close
                out.append(Kline(slot, price, price, price, price, 0.0, is_filled=True))
                slot += step
        out.append(bar)
    return out


def interpolate(observations: Sequence[Observation]) -> list[Observation]:
    """Missing values between two known ones on a straight line in time (on-chain rule).

    Missing values before the first or after the last known one are left out: there
    is nothing to draw the line to.
    """
    known = [i for i, o in enumerate(observations) if o.value is not None]
    out: list[Observation] = []
    for left, right in itertools.pairwise(known):
        a, b = observations[left], observations[right]
        assert a.value is not None and b.value is not None
        out.append(a)
        span = (b.observed_at - a.observed_at).total_seconds()
        for gap in observations[left + 1 : right]:
            share = (gap.observed_at - a.observed_at).total_seconds() / span
            value = a.value + (b.value - a.value) * share
            out.append(dataclasses.replace(gap, value=value, is_filled=True))
    if known:
        out.append(observations[known[-1]])
    return out


def carry_forward(observations: Sequence[Observation]) -> list[Observation]:
    """Missing values replaced by the last known one (macro rule); leading gaps left out."""
    out: list[Observation] = []
    last: float | None = None
    for observation in observations:
        if observation.value is not None:
            last = observation.value
            out.append(observation)
        elif last is not None:
            out.append(dataclasses.replace(observation, value=last, is_filled=True))
    return out


def neutral_default(observations: Sequence[Observation]) -> list[Observation]:
    """Missing sentiment readings replaced by 50, neutral."""
    return [
        o
        if o.value is not None
        else dataclasses.replace(o, value=SENTIMENT_DEFAULT, is_filled=True)
        for o in observations
    ]


def clean_observations(kind: Kind, observations: Sequence[Observation]) -> list[Observation]:
    """Apply the rule of ``kind`` to a series' observations (oldest first)."""
    if kind == "onchain":
        return interpolate(observations)
    if kind == "macro":
        return carry_forward(observations)
    if kind == "sentiment":
        return neutral_default(observations)
    raise ValueError(f"observations of kind {kind!r} have no cleaning rule")
