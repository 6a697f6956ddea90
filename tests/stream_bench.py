"""Amaranth-simulator helpers for driving and draining ``lib.stream`` ports in tests.

Payloads are handled as raw integers (``Value.cast(payload)``), so struct/array layouts are
packed by the caller.  Cycle numbers count clock edges from the start of the testbench
(edge 0 is the first ``ctx.tick()``); a handshake "at cycle c" fires on edge c.
"""

from __future__ import annotations

import random

from amaranth.hdl import Value

__all__ = ["stream_send", "stream_recv", "raw"]


def raw(payload):
    """The payload as a plain :class:`Value` (views are unwrapped)."""
    return Value.cast(payload)


async def stream_send(ctx, port, beats, *, rng: random.Random | None = None,
                      idle: float = 0.0, times: list | None = None, extra=None):
    """Offer ``beats`` (ints) on ``port``; optionally random idle cycles between beats.

    ``times`` receives the cycle of each accepted beat.  ``extra`` is an optional list of
    ``(signal, values)`` pairs driven alongside each beat (e.g. a ``last`` flag).
    """
    cycle = 0
    for n, beat in enumerate(beats):
        while rng is not None and rng.random() < idle:
            ctx.set(port.valid, 0)
            await ctx.tick()
            cycle += 1
        ctx.set(port.valid, 1)
        ctx.set(raw(port.payload), beat)
        for sig, values in (extra or ()):
            ctx.set(sig, values[n])
        while True:
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready and times is not None:
                times.append(cycle)
            cycle += 1
            if ready:
                break
    ctx.set(port.valid, 0)


async def stream_recv(ctx, port, count: int, *, rng: random.Random | None = None,
                      stall: float = 0.0, times: list | None = None, timeout: int = 100000,
                      extra=()):
    """Accept ``count`` beats from ``port`` (ready held high unless randomly stalled).

    Returns the payloads as ints (or tuples ``(payload, *extra)`` when ``extra`` signals are
    given).  ``times`` receives the cycle of each accepted beat.
    """
    got = []
    cycle = 0
    while len(got) < count:
        if cycle > timeout:
            raise TimeoutError(f"only {len(got)} of {count} beats after {timeout} cycles")
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(port.ready, int(ready))
        _, _, valid, payload, *rest = await ctx.tick().sample(port.valid, raw(port.payload),
                                                              *extra)
        if valid and ready:
            got.append((payload, *rest) if extra else payload)
            if times is not None:
                times.append(cycle)
        cycle += 1
    ctx.set(port.ready, 0)
    return got
