"""Cycle-exact timing of the residual accelerator (:class:`hw.residual_accelerator.
ResidualAccelerator`) and the skip FIFO sizing that uses it.

:func:`simulate_residual` steps the stage timing models of :func:`hw.residual_accelerator.
plan_residual`'s plan one clock cycle at a time (a residual block is one stage,
:class:`BlockTiming`: fork, main path, shortcut, skip FIFO and add, as an early exit's branch
is in :mod:`hw.exit_branch`); :func:`skip_fifo_depths` runs it with unbounded skip FIFOs over
the gate cases of :func:`sizing_gate_patterns` (docs/hardware.md "Residual accelerator").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.residual_graph import ResidualNetwork

from .cycle_model import CycleModelResult, ImageBeats, fixed_gates
from .output_serializer import SerializerTiming, argmax_latency
from .residual_accelerator import PlanBlock, narrow_unit, plan_residual
from .residual_units import node_unit
from .stream_fork import ForkTiming
from .sync_fifo_timing import SyncFifoTiming

__all__ = ["SKIP_SIZING_IMAGES", "BlockTiming", "ResidualCycleResult", "cycle_summary",
           "simulate_residual", "sizing_gate_patterns", "skip_fifo_depths"]

#: Images streamed back to back when sizing the skip FIFOs (the first image meets the empty
#: pipeline, later ones the steady state; the occupancy pattern repeats from the second).
SKIP_SIZING_IMAGES = 6
#: Random gate patterns in the sizing runs of gated networks, and their seed.
SKIP_SIZING_RANDOM = 4
SKIP_SIZING_SEED = 2026
#: Depth of an "unbounded" skip FIFO model (sizing runs).
_UNBOUNDED = 1 << 40


class BlockTiming:
    """Cycle-exact timing of one fork/join block as one stage of the main chain (the pattern
    of :class:`hw.exit_branch.ExitBranchTiming`): the fork (:class:`ForkTiming`), the main
    path's and the shortcut's stage models, the skip FIFO (:class:`SyncFifoTiming`, depth
    ``depth``; ``None``: unbounded) and the join (:class:`hw.fixed_add.AddTiming`).
    ``max_fill`` is the skip FIFO's largest occupancy (entries, output register included) and
    ``max_inner`` the largest of its inner FIFO."""

    def __init__(self, main: list, skip: list, depth: int | None):
        from .fixed_add import AddTiming
        if not main:
            raise ValueError("a block's main path has at least one stage")
        self.main, self.skip = main, skip
        self.fork = ForkTiming(2)
        self.fifo = SyncFifoTiming(_UNBOUNDED if depth is None else depth)
        self.add = AddTiming()
        self.max_fill = self.max_inner = 0

    def valid(self) -> bool:
        return self.add.valid()

    def ready(self, down_ready: bool) -> bool:
        self._pair = self.add.port_ready(down_ready, self.main[-1].valid(), self.fifo.r_rdy())
        self._mr = _chain_readies(self.main, self._pair)
        self._sr = _chain_readies(self.skip, self.fifo.w_rdy())
        self._first = [self._mr[0], self._sr[0] if self.skip else self.fifo.w_rdy()]
        return self.fork.ready(self._first)

    def step(self, in_fire, out_fire, cycle=0, in_valid=True):
        v0 = self.fork.out_valid(0, in_valid)
        v1 = self.fork.out_valid(1, in_valid)
        _chain_step(self.main, self._mr, v0, self._pair, cycle)
        if self.skip:
            w = self.skip[-1].valid() and self.fifo.w_rdy()
            _chain_step(self.skip, self._sr, v1, w, cycle)
        else:
            w = v1 and self.fifo.w_rdy()
        self.fifo.step(w, self._pair)
        self.add.step(self._pair, out_fire, cycle)
        self.fork.step(in_valid, self._first)
        self.max_inner = max(self.max_inner, len(self.fifo.inner))
        self.max_fill = max(self.max_fill, len(self.fifo.inner) + int(self.fifo.has_out))


def _chain_readies(models: list, down: bool) -> list:
    readies = [False] * len(models)
    for k in range(len(models) - 1, -1, -1):
        readies[k] = models[k].ready(down)
        down = readies[k]
    return readies


def _chain_step(models: list, readies: list, in_valid: bool, out_fire_last: bool,
                cycle: int) -> None:
    """Step a chain whose readies were computed this cycle; ``in_valid`` the valid into the
    first stage, ``out_fire_last`` whether the last stage's output is taken."""
    valids = [mdl.valid() for mdl in models]
    in_fires = [in_valid and readies[0]] + [valids[k - 1] and readies[k]
                                             for k in range(1, len(models))]
    out_fires = in_fires[1:] + [out_fire_last]
    for k, mdl in enumerate(models):
        mdl.step(in_fires[k], out_fires[k], cycle, in_valid if k == 0 else valids[k - 1])


@dataclass(frozen=True)
class ResidualCycleResult:
    """:func:`simulate_residual`'s result: per-image ``timing`` (as
    :class:`hw.cycle_model.CycleModelResult`), per block (add node name) the skip FIFO's
    largest occupancy ``skip_fill`` and largest inner-FIFO occupancy ``skip_inner``."""

    timing: CycleModelResult
    skip_fill: dict
    skip_inner: dict


def _timing_of_unit(unit):
    """The unit's timing model; the unit itself (built only for that) is never elaborated."""
    unit._MustUse__silence = True       # Amaranth's "created but never used" warning
    return unit.timing_model()


def _models(net, plan, items, gates, n, depths):
    from .cycle_model import _converter_timing, _engine_model, _stream_timing
    from .mvtu_timing import engine_timing
    from .thermometer import ThermometerTiming
    out, blocks = [], []
    for item in items:
        if isinstance(item, PlanBlock):
            main, bm = _models(net, plan, item.main, gates, n, depths)
            skip, bs = _models(net, plan, item.skip, gates, n, depths)
            blk = BlockTiming(main, skip, None if depths is None else depths[item.name])
            blocks += bm + bs + [(item.name, blk)]
            out.append(blk)
        elif item.kind == "thermometer":
            out.append(ThermometerTiming())
        elif item.kind == "convert":
            out.append(_converter_timing(item.info.params))
        elif item.kind in ("pad", "window"):
            out.append(_stream_timing(item.info))
        elif item.kind == "mvtu":
            layer = item.layer
            out.append(_engine_model(layer, gates[layer.index], np.ones(n, dtype=bool),
                                     engine_timing(layer)))
        elif item.kind == "narrow":
            out.append(_timing_of_unit(narrow_unit(net, item.layer, plan)))
        elif item.kind == "fixed":
            out.append(_timing_of_unit(node_unit(net, item.node, plan.fixed_elems)))
        else:
            out.append(SerializerTiming(net.classes, net.classes, argmax_latency(1, False)))
    return out, blocks


def simulate_residual(net: ResidualNetwork, images: int, *, pixels_per_beat: int = 1,
                      gates=None, skip_depths="default",
                      max_cycles: int | None = None) -> ResidualCycleResult:
    """Predict, cycle for cycle, ``images`` images streamed back to back into
    :class:`ResidualAccelerator` with ``m_axis_tready`` always high.

    ``gates``: per conv layer ``(images, V*MH)`` booleans or ``None``
    (``GoldenModel(net).run(imgs).gates``), or ``"open"`` / ``"closed"`` (worst / best case);
    required when a layer has 2-bit inputs.  ``skip_depths``: per block the skip FIFO depth
    (default: :func:`skip_fifo_depths`, the accelerator's), ``None`` for unbounded FIFOs."""
    plan = plan_residual(net, pixels_per_beat, check_scores=False)
    if isinstance(skip_depths, str):
        skip_depths = skip_fifo_depths(net, pixels_per_beat)
    gates = fixed_gates(net, images, gates)
    if gates is None:
        if any(l.gated for l in net.layers):
            raise ValueError("the network has gated layers: pass gates=GoldenModel(net)"
                             ".run(images).gates, 'open' or 'closed'")
        gates = [None] * len(net.layers)
    models, blocks = _models(net, plan, plan.items, gates, images, skip_depths)
    beats_in = net.input.pixels // pixels_per_beat
    beats = ImageBeats(images, beats_in, 1 + net.classes)
    if max_cycles is None:
        max_cycles = 10_000 + 200 * beats_in * (images + 4) + \
            sum(4 * l.synapse_folds * l.neuron_folds * l.vectors_per_image
                for l in net.layers) * (images + 4)
    cycle = 0
    while not beats.done:
        if cycle > max_cycles:
            raise RuntimeError(f"residual cycle model made no progress after {max_cycles} "
                               f"cycles ({beats.received} of {beats.total_out} output beats)")
        src_valid = beats.src_valid
        valids = [mdl.valid() for mdl in models]
        readies = _chain_readies(models, True)
        if src_valid and readies[0]:
            beats.accept_input(cycle)
        if valids[-1]:
            beats.accept_output(cycle)
        _chain_step(models, readies, src_valid, valids[-1], cycle)
        cycle += 1
    return ResidualCycleResult(beats.result(), {name: b.max_fill for name, b in blocks},
                               {name: b.max_inner for name, b in blocks})


_DEPTH_CACHE: dict = {}


def sizing_gate_patterns(net: ResidualNetwork, images: int = SKIP_SIZING_IMAGES) -> list:
    """The gate cases :func:`skip_fifo_depths` runs: every gate open, every gate closed, and
    for gated networks images alternating between all open and all closed (both phases) and
    :data:`SKIP_SIZING_RANDOM` seeded random patterns (per image a random share of open
    gates), since a slow image followed by a fast one lets the shortcut run further ahead
    than either alone (measured: the test net's stride-2 block needs 5 entries there, 3 with
    every image alike)."""
    if not any(l.gated for l in net.layers):
        return ["open"]
    shapes = [(images, l.vectors_per_image * l.out_features) if l.gated else None
              for l in net.layers]
    cases: list = ["open", "closed"]
    for phase in (0, 1):
        on = (np.arange(images) + phase) % 2 == 0
        cases.append([None if sh is None else np.repeat(on[:, None], sh[1], axis=1)
                      for sh in shapes])
    rng = np.random.default_rng(SKIP_SIZING_SEED)
    for _ in range(SKIP_SIZING_RANDOM):
        share = rng.random((images, 1))
        cases.append([None if sh is None else rng.random(sh) < share for sh in shapes])
    return cases


def skip_fifo_depths(net: ResidualNetwork, pixels_per_beat: int = 1) -> dict:
    """Per block (add node name) the skip FIFO depth: ``max_inner + 2`` over the cycle model
    with unbounded skip FIFOs, :data:`SKIP_SIZING_IMAGES` images back to back, for each gate
    case of :func:`sizing_gate_patterns`.  A ``SyncFIFOBuffered`` of that depth never
    refuses a write in those runs (its inner FIFO of ``depth - 1`` entries never fills), so
    the pipeline runs exactly as with an unbounded FIFO there (docs/hardware.md "Residual
    accelerator": why the depth is safe for every image and every flow, and what is only
    measured)."""
    key = (id(net), pixels_per_beat)
    if key in _DEPTH_CACHE and _DEPTH_CACHE[key][0] is net:
        return dict(_DEPTH_CACHE[key][1])
    depth: dict = {}
    for case in sizing_gate_patterns(net):
        res = simulate_residual(net, SKIP_SIZING_IMAGES, pixels_per_beat=pixels_per_beat,
                                gates=case, skip_depths=None)
        for name, inner in res.skip_inner.items():
            depth[name] = max(depth.get(name, 2), inner + 2)
    _DEPTH_CACHE[key] = (net, depth)
    return dict(depth)


def cycle_summary(net: ResidualNetwork, pixels_per_beat: int = 1, images: int = 4) -> dict:
    """Per gate case (``open``; gated networks also ``closed``) the first image's latency
    and the steady interval (the last two images' last output beats) of ``images`` images
    back to back, from :func:`simulate_residual` with the default skip FIFO depths."""
    out = {}
    cases = ["open", "closed"] if any(l.gated for l in net.layers) else ["open"]
    for case in cases:
        t = simulate_residual(net, images, pixels_per_beat=pixels_per_beat, gates=case).timing
        out[case] = {"latency": int(t.latency[0]),
                     "ii": int(t.output_end[-1] - t.output_end[-2])}
    return out
