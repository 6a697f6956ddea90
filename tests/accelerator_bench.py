"""A testbench for a whole accelerator (:class:`hw.accelerator.Accelerator`,
:class:`hw.residual_accelerator.ResidualAccelerator`) in the Amaranth simulator: images in
on ``s_axis`` with random idle, results out of ``m_axis`` with random backpressure, the cycle
of every image's first input beat and first and last output beat.  Cycle ``c`` counts clock
edges from the start of the run."""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

__all__ = ["AcceleratorTB", "pixel_beats"]


def pixel_beats(images, ppb: int) -> list[int]:
    """The ``s_axis`` words of ``images`` (pixel ``j`` of a beat in bits ``8j..8j+7``)."""
    return [sum(int(v) << (8 * j) for j, v in enumerate(img[b * ppb:(b + 1) * ppb]))
            for img in images for b in range(len(img) // ppb)]


class AcceleratorTB:
    """Drive ``acc`` (flat AXI-Stream ports, ``acc.net``) at ``ppb`` pixels per beat."""

    def __init__(self, acc, ppb: int):
        self.acc, self.ppb = acc, ppb
        self.classes = acc.net.classes
        self.beats_per_image = acc.net.input.pixels // ppb
        #: ``(first input beats, first output beats, last output beats)`` of the last run.
        self.timing = None

    def run(self, images, *, idle: float = 0.0, stall: float = 0.0, seed: int = 0,
            limit: int = 100_000, bad_tlast: int | None = None, taps=(), on_cycle=None,
            after=None):
        """Classes, scores (sign-extended) and ``tlast`` flags ``(N, 1 + C)`` of ``images``.

        ``bad_tlast``: an input beat whose ``tlast`` is inverted; ``taps``: signals sampled
        every cycle, their values passed to ``on_cycle``; ``after``: an async function of the
        testbench context run after the last result, with ``m_axis_tready`` low.  A run
        longer than ``limit`` cycles fails (AssertionError, "accelerator hung")."""
        acc, b, c, n = self.acc, self.beats_per_image, self.classes, len(images)
        beats = pixel_beats(images, self.ppb)
        got, t_in, t_out, t_end = [], [], [], []
        cycle = [0]

        async def feed(ctx):
            rng = random.Random(seed)
            for k, word in enumerate(beats):
                while rng.random() < idle:
                    ctx.set(acc.s_axis_tvalid, 0)
                    await ctx.tick()
                ctx.set(acc.s_axis_tdata, word)
                ctx.set(acc.s_axis_tlast, int(k % b == b - 1) ^ int(k == bad_tlast))
                ctx.set(acc.s_axis_tvalid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(acc.s_axis_tready)
                    if ready:
                        if k % b == 0:
                            t_in.append(cycle[0])
                        break
            ctx.set(acc.s_axis_tvalid, 0)

        async def drain(ctx):
            rng = random.Random(seed + 1)
            while len(got) < n * (1 + c):
                ready = rng.random() >= stall
                ctx.set(acc.m_axis_tready, int(ready))
                _, _, valid, data, last, *tap = await ctx.tick().sample(
                    acc.m_axis_tvalid, acc.m_axis_tdata, acc.m_axis_tlast, *taps)
                if valid and ready:
                    if len(got) % (1 + c) == 0:
                        t_out.append(cycle[0])
                    if last:
                        t_end.append(cycle[0])
                    got.append((data, last))
                if on_cycle is not None:
                    on_cycle(tap)
                cycle[0] += 1
                assert cycle[0] < limit, f"accelerator hung ({len(got)} output beats)"
            if after is not None:
                ctx.set(acc.m_axis_tready, 0)
                await after(ctx)

        sim = Simulator(acc)
        sim.add_clock(1e-8)
        sim.add_testbench(feed)
        sim.add_testbench(drain)
        sim.run()
        self.timing = (t_in, t_out, t_end)
        out = np.array(got, dtype=np.int64).reshape(n, 1 + c, 2)
        scores = out[:, 1:, 0]
        scores = np.where(scores >= 1 << 31, scores - (1 << 32), scores)
        return out[:, 0, 0], scores, out[:, :, 1]
