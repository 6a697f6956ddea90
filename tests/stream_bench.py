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


# --------------------------------------------------------------------------- pixel streams
# Shared by the tests of the spatial stream stages (padding, window generator, max-pool).


def pack_elems(elems, planes: int) -> int:
    """Elements (ints: a bit, or a 2-bit code q = 2*m + l) -> one raw beat (element k at bit
    k; pairs as StructLayout({"m": n, "l": n}): the m plane first)."""
    n = len(elems)
    if planes == 1:
        return sum(int(e) << k for k, e in enumerate(elems))
    m = sum((int(e) >> 1) << k for k, e in enumerate(elems))
    l = sum((int(e) & 1) << k for k, e in enumerate(elems))
    return m | l << n


def to_beats(images, n: int, planes: int) -> list[int]:
    """``(N, H, W, C)`` element codes -> raw beats in stream order (beat g = channels g*n..)."""
    import numpy as np
    codes = np.asarray(images).reshape(-1, n).astype(np.int64)
    weights = 1 << np.arange(n, dtype=np.int64)
    if planes == 1:
        return [int(v) for v in codes @ weights]
    m, l = (codes >> 1) @ weights, (codes & 1) @ weights
    return [int(a) | int(b) << n for a, b in zip(m, l)]


def from_beats(words, n: int, planes: int, shape):
    """Inverse of :func:`to_beats`."""
    import numpy as np
    w = np.array(words, dtype=np.int64)[:, None]
    bits = (w >> np.arange(planes * n)) & 1
    codes = bits if planes == 1 else 2 * bits[:, :n] + bits[:, n:]
    return codes.reshape(shape)


def simulate_stage(dut, in_beats, n_out, *, idle=0.0, stall=0.0, seed=0):
    """Run a one-input one-output stream stage in the Amaranth simulator with random input
    idle cycles and output backpressure.  Returns the output beats, the accept cycles of both
    ports and a per-cycle trace of ``(i.valid, i.ready, o.valid, o.ready)``."""
    from amaranth.sim import Simulator

    t_in, t_out, got, trace = [], [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx):
        await stream_send(ctx, dut.i, in_beats, rng=random.Random(seed), idle=idle, times=t_in)

    async def drain(ctx):
        got.extend(await stream_recv(ctx, dut.o, n_out, rng=random.Random(seed + 7),
                                     stall=stall, times=t_out))

    async def monitor(ctx):
        async for _, _, *sample in ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                     dut.o.ready):
            trace.append(tuple(bool(v) for v in sample))

    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got, t_in, t_out, trace


def replay_timing(model, trace) -> None:
    """Step a stage's timing model with the simulated handshakes: it must predict ``o.valid``
    and ``i.ready`` in every cycle."""
    for cycle, (i_valid, i_ready, o_valid, o_ready) in enumerate(trace):
        assert model.valid() == o_valid, f"o.valid differs in cycle {cycle}"
        assert model.ready(o_ready) == i_ready, f"i.ready differs in cycle {cycle}"
        model.step(i_valid and i_ready, o_valid and o_ready, cycle, i_valid)


def check_stage(dut, images, expected, n: int, planes: int, *, idle=0.0, stall=0.0, seed=0):
    """Stream ``images`` ``(N, H, W, C)`` codes through a pixel-stream stage and require every
    output beat to equal ``expected`` ``(N, OH, OW, C)`` and the stage's timing model to
    predict its handshake in every cycle.  Returns the accept cycles of both ports."""
    count = images.shape[0]
    assert expected.shape[1:3] == (dut.out_height, dut.out_width)
    assert dut.beats_in_per_image * count * n == images.size
    assert dut.beats_out_per_image * count * n == expected.size
    got, t_in, t_out, trace = simulate_stage(dut, to_beats(images, n, planes),
                                             count * dut.beats_out_per_image,
                                             idle=idle, stall=stall, seed=seed)
    import numpy as np
    np.testing.assert_array_equal(from_beats(got, n, planes, expected.shape), expected)
    replay_timing(dut.timing_model(), trace)
    return t_in, t_out
