"""``python -m hw.fold EXPORTDIR (--target-fps N | --budget lut=..,bram=..,ff=.. | --board NAME)
--clock MHZ [--pixels-per-beat 8] [--out FOLD.json]``: choose PE / SIMD for every layer.

Contract
--------
* **Target FPS** (``--target-fps N``): the folding with the fewest modelled LUTs
  (:mod:`hw.resource_model`; with ``--board`` also within the part's LUT / FF / BRAM) whose
  exact steady-state initiation interval (:func:`hw.cycle_model.exact_steady_state_ii`, the
  model the RTL is checked against) is at most ``floor(clock * 1e6 / N)`` cycles per image.
* **Budget** (``--budget lut=..,ff=..,bram=..`` and/or ``--board NAME``): the folding with the
  smallest exact II whose modelled resources fit (the board's part unless ``--budget`` narrows
  it), the cheapest among those.
* Infeasible requests raise :class:`sw.errors.UserError` with the best achievable number: the
  highest FPS the fastest folding holds at that clock, or the smallest budget any folding
  needs.
* The folding file (``--out``) is ``{"layers": [{"pe", "simd", "pad"}, ...], "summary": ..}``,
  accepted by ``python -m hw.generate --fold`` and ``python -m sim.run --fold``; it is written
  atomically (complete or not at all) and never replaces a file that is not a folding file.

Search
------
Per layer, :func:`layer_options` lists every valid ``(PE, SIMD)`` (PE divides MH, SIMD divides
MW or, for a convolution, its input channels; with ``pad`` any value on a dense first layer's
inputs and the last layer's outputs) with the cycles per image of the layer's own stages
(engine, padding, window generator, pool; the serializer for the last layer) from
:func:`hw.cycle_model.stage_cycles_per_image`, and its modelled resources.  The width converter
in front of a layer depends on the previous layer's PE as well, so for a given II the cheapest
folding is a shortest path over the chain of layers (dynamic programming over (layer, option)
with the converter as the edge cost and its cycles as an edge constraint): exact for the
additive model, not a greedy "raise the slowest layer" loop.  Target mode solves it once at
the target II; budget mode bisects over the distinct cycle counts.  Resource limits enter as
Lagrange weights on BRAM and FF (a few weights tried, the cheapest fitting answer kept).  The
chosen folding is then checked with the exact cycle model; if stalls between stages push the
II above the target, the search is repeated with a tighter II.

Frac layers (2-bit inputs, precision gating) take data-dependent cycles: by default the worst
case (every gate open) is used; ``--gating-stats`` uses the gate decisions of the export's test
vectors instead (mean cycles per image over them), and says so.

Early exits: the main layers are folded for the worst case, every image taking no exit (the
cycle model of the main chain, :func:`main_chain`); the exit classifiers keep the export's
folding, and their resources count in the budget (:func:`hw.resource_model.exit_part`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sw.compiled_net import CompiledNetwork, Folding, divisors, refold, validate_folding
from sw.network_io import load_compiled_network
from sw.atomic_dir import atomic_write_text
from sw.errors import UserError, cli_main

__all__ = ["Option", "FoldResult", "layer_options", "converter_stage", "stage_cycles",
           "solve_chain", "fold_for_ii", "block_lane_choices", "gated_mean_ii", "main_chain", "gate_stats", "fold_for_target", "fold_for_budget", "parse_budget",
           "folding_json", "write_folding", "format_result", "main"]

_RESOURCES = ("lut", "ff", "bram")
# Lagrange weights (per unit of budget) tried to fit BRAM / FF.
_WEIGHTS = (0.0, 0.25, 1.0, 4.0, 16.0, 64.0, 256.0, 4096.0)


@dataclass(frozen=True)
class Option:
    """One valid folding of one layer with the cycles and modelled cost of its own stages.

    ``cycles``: the largest cycles per image among the layer's engine, padding, window, pool
    (and, for the last layer, serializer) stages; ``engine``: the engine's alone.
    ``cost``: modelled ``{"lut", "ff", "bram"}`` of those stages (and of the fixed parts for
    the last layer).  The width converter in front of the layer is costed separately (it
    depends on the previous layer's PE too).
    """

    pe: int
    simd: int
    pad: bool
    cycles: float
    engine: float
    cost: dict
    block_lanes: int | None = None

    @property
    def folding(self) -> Folding:
        return Folding(self.pe, self.simd, self.pad, self.block_lanes)


@dataclass
class FoldResult:
    """A chosen folding with its modelled resources and timing."""

    folding: list[Folding]
    net: CompiledNetwork
    ii: float                    # exact steady-state II (cycle model), or the mean (gating stats)
    ii_bound: float              # the largest stage cycles per image (lower bound of ii)
    stages: dict                 # stage_cycles_per_image
    resources: dict              # ResourceModel.estimate
    clock_mhz: float
    gating: str                  # "none", "worst case (every gate open)", "test vectors (N)"
    pixels_per_beat: int = 8
    target_ii: float | None = None
    budget: dict | None = None

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii


def _pad_values(n: int) -> list[int]:
    """With padding, the smallest ``v`` giving each distinct fold count ``ceil(n / v)`` (a
    larger ``v`` with the same count costs more and is no faster)."""
    return sorted({-(-n // k) for k in range(1, n + 1)})


def _layer_copy(layer, folding: Folding):
    """``layer`` with another folding, without re-validating its arrays (the caller checks the
    folding with :func:`validate_folding`)."""
    out = copy.copy(layer)
    out.folding = folding
    return out


def _proxy(net: CompiledNetwork, i: int, folding: Folding) -> CompiledNetwork:
    """``net`` with layer ``i`` refolded (shallow; for the stage planners and models)."""
    out = copy.copy(net)
    out.layers = list(net.layers)
    out.layers[i] = _layer_copy(net.layers[i], folding)
    return out


def _valid_foldings(net: CompiledNetwork, i: int) -> list[Folding]:
    """Every folding of layer ``i`` that :func:`validate_folding` accepts, ``pad`` only where
    needed: PE from the divisors of MH (last layer: every padding), SIMD from the divisors of
    MW (dense first layer: every padding) or of a convolution's input channels."""
    layer = net.layers[i]
    n = len(net.layers)
    mw, mh = layer.in_features, layer.out_features
    if layer.conv is not None:
        simds = divisors(layer.conv.in_channels)
    elif i == 0:
        simds = _pad_values(mw)
    else:
        simds = divisors(mw)
    pes = _pad_values(mh) if i == n - 1 else divisors(mh)
    out = []
    for pe in pes:
        for simd in simds:
            f = Folding(pe, simd, bool(mw % simd or mh % pe))
            # Only layer i matters (PE = SIMD = 1 fits every other layer).
            validate_folding([f if k == i else Folding(1, 1) for k in range(n)], net.fold_shapes)
            out.append(f)
    return out


def gate_stats(net: CompiledNetwork, export_dir) -> list:
    """Per layer the gate decisions ``(N, V*MH)`` of the export's test images (``None`` for
    1-bit layers)."""
    from sw.network_io import load_test_vectors
    from sw.golden import GoldenModel

    vectors = load_test_vectors(export_dir, net)
    return GoldenModel(net).run(np.asarray(vectors.images)).gates


def layer_options(net: CompiledNetwork, i: int, *, pixels_per_beat: int = 8, model=None,
                  gates=None) -> list[Option]:
    """Every valid folding of layer ``i`` with its stages' cycles and modelled cost.

    ``model``: a :class:`hw.resource_model.ResourceModel` (default: the shipped calibration);
    ``gates``: every layer's recorded gate decisions (``GoldenModel.run(...).gates``) for the
    mean engine cycles of a frac layer (:func:`hw.cycle_model.gating_savings`); default: the
    worst case, every gate open.
    """
    from .accelerator import plan_stages
    from .cycle_model import gating_savings, stage_cycles_per_image
    from .resource_model import fixed_part, layer_part, load_model

    model = load_model() if model is None else model
    layer = net.layers[i]
    last = i == len(net.layers) - 1
    own = {f"pad{i}", f"window{i}", f"mvtu{i}", f"pool{i}"} | ({"serializer"} if last else set())
    out = []
    for f in _valid_foldings(net, i):
        proxy = _proxy(net, i, f)
        stages = plan_stages(proxy, pixels_per_beat)
        cycles = stage_cycles_per_image(proxy, pixels_per_beat, worst=True)
        mine = {k: v for k, v in cycles.items() if k in own}
        if gates is not None and layer.gated:
            saved = next(e for e in gating_savings(proxy, gates) if e["layer"] == i)
            mine[f"mvtu{i}"] = saved["cycles_per_image"]
        local = [s for s in stages if s.kind in ("pad", "window", "pool")
                 and s.params.get("layer") == i]
        fixed = model.part(fixed_part(proxy, pixels_per_beat)) if last else None
        for k in block_lane_choices(proxy.layers[i]):
            placed = replace(f, block_lanes=k)
            cost = model.part(layer_part(_layer_copy(layer, placed), local))
            if fixed is not None:
                cost = {r: cost[r] + fixed[r] for r in _RESOURCES}
            out.append(Option(f.pe, f.simd, f.pad, max(mine.values()), mine[f"mvtu{i}"],
                              {r: cost[r] for r in _RESOURCES}, k))
    return out


#: Fractions of the PE lanes whose weights the search tries in block RAM (the rest in LUT ROM).
BLOCK_LANE_EIGHTHS = (0, 2, 4, 6)


def block_lane_choices(layer) -> list[int | None]:
    """The weight placements the search tries for ``layer``: ``None`` (the generator's
    ``auto`` rule, :func:`hw.memory_style.auto_style`: block RAM for a deep memory) and,
    where that rule puts the weight ROM in block RAM, ``block_lanes`` = 0, PE/4, PE/2 and
    3PE/4 (rounded down, distinct): lanes ``0..K-1`` in block RAM and the others in
    distributed ROM, trading LUTs for BRAM36 (:attr:`sw.compiled_net.Folding.block_lanes`)."""
    from .memory_style import auto_style

    pe, simd = layer.folding.pe, layer.folding.simd
    depth = layer.neuron_folds * layer.synapse_folds
    if auto_style(pe * simd, depth) == "distributed":
        return [None]
    return [None] + sorted({pe * e // 8 for e in BLOCK_LANE_EIGHTHS} - {pe})


def converter_stage(net: CompiledNetwork, i: int, count_in: int, option: Option):
    """The width converter in front of layer ``i`` (a :class:`hw.accelerator.StageInfo`, as
    :func:`hw.accelerator.plan_stages` builds it) when ``count_in`` elements per beat arrive,
    or ``None`` where none is needed."""
    from .accelerator import StageInfo

    layer = net.layers[i]
    prev = net.layers[i - 1] if i else None
    planes = 2 if prev is not None and prev.out_bits == 2 else 1
    size = net.input.bits if prev is None else prev.out_size
    pad = (-(-layer.in_features // option.simd) * option.simd - layer.in_features
           if option.pad and layer.conv is None else 0)
    if count_in == option.simd and not pad:
        return None
    return StageInfo("convert", f"convert{i}", layer=i, planes=planes, in_count=count_in,
                     out_count=option.simd, vector_elems=layer.in_features if pad else None,
                     pad_elems=pad, elems_per_image=size)


def stage_cycles(info) -> int:
    """Cycles per image of a width converter (as :func:`hw.cycle_model.stage_cycles_per_image`)."""
    p = info.params
    elems_in = p["elems_per_image"]
    vectors = elems_in // p["vector_elems"] if p["vector_elems"] else 1
    elems_out = elems_in + vectors * p["pad_elems"]
    return max(-(-elems_in // p["in_count"]), elems_out // p["out_count"])


class _Chain:
    """Options and converter costs of every layer of one network (built once per search)."""

    def __init__(self, net: CompiledNetwork, pixels_per_beat: int, model, gates=None,
                 progress=None):
        from .cycle_model import stage_cycles_per_image
        from .resource_model import PartShape, _converter_features

        self.net, self.ppb, self.model = net, pixels_per_beat, model
        self.options = []
        for i in range(len(net.layers)):
            self.options.append(layer_options(net, i, pixels_per_beat=pixels_per_beat,
                                              model=model, gates=gates))
            if progress:
                progress(f"layer {i}: {len(self.options[-1])} foldings")
        self.therm = stage_cycles_per_image(net, pixels_per_beat)["thermometer"]
        self._conv = {}
        self._PartShape, self._features = PartShape, _converter_features

    def converter(self, i: int, count_in: int, option: Option) -> tuple[int, dict]:
        """``(cycles, cost)`` of the converter in front of layer ``i`` (0 and zero cost when
        there is none)."""
        info = converter_stage(self.net, i, count_in, option)
        if info is None:
            return 0, {k: 0.0 for k in _RESOURCES}
        p = info.params
        key = (i, p["planes"], p["in_count"], p["out_count"], p["pad_elems"])
        if key not in self._conv:
            part = self._PartShape(f"convert{i}")
            self._features(part, p["planes"], p["in_count"], p["out_count"], p["pad_elems"])
            cost = self.model.part(part)
            self._conv[key] = (stage_cycles(info), {k: cost[k] for k in _RESOURCES})
        return self._conv[key]

    def cycle_values(self) -> list[float]:
        """Every distinct II at which the set of feasible foldings can change."""
        vals = {o.cycles for opts in self.options for o in opts}
        counts = {self.ppb * self.net.input.levels}
        for i, opts in enumerate(self.options):
            for o in opts:
                for c in counts:
                    vals.add(self.converter(i, c, o)[0])
            counts = {o.pe for o in opts}
        return sorted(v for v in vals if v >= self.lower_bound())

    def lower_bound(self) -> float:
        """No folding beats this II: the thermometer and each layer's fastest option."""
        return max([self.therm] + [min(o.cycles for o in opts) for opts in self.options])


def solve_chain(chain: _Chain, ii: float, weights: dict, bram_cap: float | None = None
                ) -> tuple[float, list[int]] | None:
    """The cheapest options (index per layer) with every stage within ``ii`` cycles per image,
    minimising ``sum(weights[r] * cost[r])``; ``None`` if no folding holds ``ii``.

    With ``bram_cap`` the modelled BRAM36 of the whole folding is a hard limit (exact: the
    dynamic programme carries the BRAM used so far, in RAMB18 halves, as part of its state),
    else ``None`` is returned when nothing within ``ii`` fits it."""
    def scalar(cost):
        return sum(weights[r] * cost[r] for r in _RESOURCES)

    cap = None if bram_cap is None else int(math.floor(bram_cap * 2 + 1e-9))
    count0 = chain.ppb * chain.net.input.levels
    if cap is None:
        prev = {count0: (0.0, [])}       # count_in -> (best cost, path)
    else:
        start = np.full(cap + 1, np.inf)
        start[0] = 0.0
        prev = {count0: start}           # count_in -> best cost per BRAM halves used
        back = []                        # per layer: pe -> (option, count_in, BRAM used before)
    for i, opts in enumerate(chain.options):
        best = {}
        for k, o in enumerate(opts):
            if o.cycles > ii:
                continue
            own = scalar(o.cost)
            if cap is None:
                cand = None
                for count_in, (c_prev, path) in prev.items():
                    cyc, conv = chain.converter(i, count_in, o)
                    if cyc > ii:
                        continue
                    total = c_prev + own + scalar(conv)
                    if cand is None or total < cand[0]:
                        cand = (total, path + [k])
                if cand is not None and (o.pe not in best or cand[0] < best[o.pe][0]):
                    best[o.pe] = cand
                continue
            for count_in, c_prev in prev.items():
                cyc, conv = chain.converter(i, count_in, o)
                if cyc > ii:
                    continue
                used = math.ceil((o.cost["bram"] + conv["bram"]) * 2 - 1e-9)
                if used > cap:
                    continue
                if o.pe not in best:
                    best[o.pe] = (np.full(cap + 1, np.inf), np.zeros(cap + 1, np.int64),
                                  np.zeros(cap + 1, np.int64))
                cost, opt, src = best[o.pe]
                total = c_prev[:cap + 1 - used] + (own + scalar(conv))
                better = total < cost[used:]
                if better.any():
                    cost[used:][better] = total[better]
                    opt[used:][better] = k
                    src[used:][better] = count_in
        if not best:
            return None
        if cap is not None:
            back.append({pe: (opt, src) for pe, (_, opt, src) in best.items()})
            prev = {pe: t[0] for pe, t in best.items()}
        else:
            prev = best
    if cap is None:
        return min(prev.values(), key=lambda t: t[0])
    pe, b = min(((pe, int(np.argmin(c))) for pe, c in prev.items()),
                key=lambda t: prev[t[0]][t[1]])
    total = float(prev[pe][b])
    if not math.isfinite(total):
        return None
    path = []
    for i in range(len(chain.options) - 1, -1, -1):
        opt, src = back[i][pe]
        k = int(opt[b])
        o = chain.options[i][k]
        count_in = int(src[b])
        _, conv = chain.converter(i, count_in, o)
        b -= math.ceil((o.cost["bram"] + conv["bram"]) * 2 - 1e-9)
        path.append(k)
        pe = count_in
    return total, path[::-1]


def _totals(chain: _Chain, path: list[int]) -> dict:
    count = chain.ppb * chain.net.input.levels
    total = {r: 0.0 for r in _RESOURCES}
    for i, k in enumerate(path):
        o = chain.options[i][k]
        _, conv = chain.converter(i, count, o)
        for r in _RESOURCES:
            total[r] += o.cost[r] + conv[r]
        count = o.pe
    return total


def _fits(total: dict, budget: dict | None) -> bool:
    return budget is None or all(total[r] <= budget[r] for r in _RESOURCES if r in budget)


def fold_for_ii(chain: _Chain, ii: float, budget: dict | None = None) -> list[int] | None:
    """The cheapest folding (fewest modelled LUTs) holding ``ii`` that fits ``budget``."""
    best = None
    # Per unit of budget (LUTs always count; ties go to fewer BRAM, then fewer FF).
    scale = {r: 1.0 / budget[r] if budget and budget.get(r) else 0.0 for r in _RESOURCES}
    lut = scale["lut"] or 1e-5
    cap = budget.get("bram") if budget else None
    cap = cap if cap is not None and math.isfinite(cap) else None
    for w in (_WEIGHTS if budget else (0.0,)):
        weights = {"lut": lut, "ff": w * scale["ff"] + 1e-6 * lut,
                   "bram": (0.0 if cap else w * scale["bram"]) + 1e-3 * lut}
        sol = solve_chain(chain, ii, weights, cap)
        if sol is None:
            return None
        total = _totals(chain, sol[1])
        if _fits(total, budget) and (best is None or total["lut"] < best[0]["lut"]):
            best = (total, sol[1])
        if best is not None and w == 0.0:
            break                # the fewest LUTs already fit: no FF weight can do better
    return None if best is None else best[1]


def _folding_of(chain: _Chain, path: list[int]) -> list[Folding]:
    return [chain.options[i][k].folding for i, k in enumerate(path)]


def _check(chain: _Chain, path, gates) -> tuple[CompiledNetwork, float, dict]:
    """The refolded network, its II per the cycle model and its stage cycles per image (frac
    engines: worst case, or the mean under the recorded gate decisions)."""
    from .cycle_model import (exact_steady_state_ii, gating_savings, simulate_pipeline,
                              stage_cycles_per_image)

    net = refold(chain.net, _folding_of(chain, path))
    stages = stage_cycles_per_image(net, chain.ppb, worst=True)
    if gates is not None and any(l.gated for l in net.layers):
        for entry in gating_savings(net, gates):
            stages[f"mvtu{entry['layer']}"] = entry["cycles_per_image"]
        return net, gated_mean_ii(net, gates, chain.ppb), stages
    ii = exact_steady_state_ii(main_chain(net), chain.ppb, gates="open")
    if ii is None:                     # no period within 64 images: the mean interval
        res = simulate_pipeline(main_chain(net), 64, pixels_per_beat=chain.ppb, gates="open")
        starts = res.input_start[32:]
        ii = (starts[-1] - starts[0]) / (len(starts) - 1)
    return net, float(ii), stages


def main_chain(net: CompiledNetwork) -> CompiledNetwork:
    """``net`` without its early exits: the timing of the main chain when no image takes an
    exit (the worst case the folding is chosen for)."""
    return replace(net, exits=[]) if net.exits else net


def gated_mean_ii(net: CompiledNetwork, gates, pixels_per_beat: int = 8) -> float:
    """Mean cycles between images (cycle model) while the recorded gate decisions repeat,
    measured once the buffers are full; with early exits, of the main chain when no image
    takes an exit (:func:`main_chain`)."""
    from .cycle_model import simulate_pipeline

    net = main_chain(net)
    n = gates_count(gates)
    reps = max(1, -(-64 // n))
    tiled = [None if g is None else np.tile(np.asarray(g), (reps, 1)) for g in gates]
    res = simulate_pipeline(net, n * reps, pixels_per_beat=pixels_per_beat, gates=tiled)
    starts = res.input_start[len(res.input_start) // 2:]
    return float((starts[-1] - starts[0]) / (len(starts) - 1))


def gates_count(gates) -> int:
    """Images behind recorded gate decisions (``GoldenModel.run(...).gates``)."""
    return next(np.asarray(g).shape[0] for g in gates if g is not None)


def _result(chain, path, gates, clock_mhz, target_ii=None, budget=None) -> FoldResult:
    net, ii, stages = _check(chain, path, gates)
    gating = "none"
    if any(l.gated for l in net.layers):
        gating = ("worst case (every gate open)" if gates is None else
                  f"mean over the export's {gates_count(gates)} test images")
    return FoldResult(_folding_of(chain, path), net, ii, max(stages.values()), stages,
                      chain.model.estimate(net, chain.ppb), clock_mhz, gating, chain.ppb,
                      target_ii, budget)


def _fastest(chain: _Chain, budget: dict | None, gates, clock_mhz, progress=None):
    """The folding with the smallest II per the cycle model that fits ``budget``."""
    values = chain.cycle_values()
    lo, hi = 0, len(values) - 1
    if fold_for_ii(chain, values[hi], budget) is None:
        return None
    while lo < hi:                        # smallest index whose II has a fitting folding
        mid = (lo + hi) // 2
        if fold_for_ii(chain, values[mid], budget) is not None:
            hi = mid
        else:
            lo = mid + 1
    if progress:
        progress(f"fastest fitting bound: II {values[lo]:g}")
    # The cycle model can add stalls: keep the best exact II among the next few candidates.
    best = None
    for v in values[lo:lo + 4]:
        path = fold_for_ii(chain, v, budget)
        if path is None:
            continue
        res = _result(chain, path, gates, clock_mhz, budget=budget)
        if best is None or (res.ii, res.resources["lut"]) < (best.ii, best.resources["lut"]):
            best = res
        if res.ii <= v:
            break
    return best


def fold_for_target(net: CompiledNetwork, fps: float, clock_mhz: float, *,
                    pixels_per_beat: int = 8, budget: dict | None = None, model=None,
                    gates=None, progress=None, what_budget: str = "the budget") -> FoldResult:
    """The cheapest folding holding ``fps`` images per second at ``clock_mhz``."""
    chain = _make_chain(net, pixels_per_beat, model, gates, progress)
    target = clock_mhz * 1e6 / fps               # cycles per image, at most
    fastest = fold_for_ii(chain, chain.cycle_values()[0], None)
    if target < chain.lower_bound():
        res = _result(chain, fastest, gates, clock_mhz)
        raise UserError(
            f"{fps:g} FPS at {clock_mhz:g} MHz needs at most {target:.6g} cycles per image; the "
            f"fastest folding holds {res.ii:g} cycles ({res.fps:,.0f} FPS at {clock_mhz:g} MHz)"
            f"{_why_bound(chain)}; lower --target-fps or raise --clock")
    # The cycle model's IIs are the chain's cycle values (fractional where frac layers count
    # their mean cycles under recorded gates), so the search runs on those, not on integers.
    values = chain.cycle_values()
    ii = target
    for _ in range(32):
        path = fold_for_ii(chain, ii, budget)
        if path is None:
            if budget is not None and fold_for_ii(chain, ii, None) is not None:
                best = _fastest(chain, budget, gates, clock_mhz)
                # The fastest fitting folding's exact II (cycle model) can be below the
                # chain's estimate that excluded it here: then it holds the target.
                if best is not None and best.ii <= target:
                    return best
                more = ("" if best is None else f"; the fastest folding that fits holds "
                        f"{best.ii:g} cycles ({best.fps:,.0f} FPS at {clock_mhz:g} MHz)")
                raise UserError(f"no folding holding {fps:g} FPS at {clock_mhz:g} MHz fits "
                                f"{what_budget}{more}; lower --target-fps or raise the budget")
            break
        res = _result(chain, path, gates, clock_mhz, target_ii=target, budget=budget)
        if res.ii <= target:
            return res
        if progress:
            progress(f"II {res.ii:g} > {target:.6g} with stalls between stages; tightening")
        below = [v for v in values if v < ii and v <= ii - (res.ii - target)]
        if not below:
            break
        ii = below[-1]
    res = _result(chain, fastest, gates, clock_mhz)
    if res.ii <= target and (budget is None or _fits(res.resources, budget)):
        return res
    raise UserError(f"{fps:g} FPS at {clock_mhz:g} MHz needs at most {target:.6g} cycles per "
                    f"image; the fastest folding holds {res.ii:g} cycles ({res.fps:,.0f} FPS "
                    f"at {clock_mhz:g} MHz); lower --target-fps or raise --clock")


def fold_for_budget(net: CompiledNetwork, budget: dict, clock_mhz: float, *,
                    pixels_per_beat: int = 8, model=None, gates=None, progress=None,
                    what_budget: str = "the budget") -> FoldResult:
    """The fastest folding whose modelled resources fit ``budget``."""
    chain = _make_chain(net, pixels_per_beat, model, gates, progress)
    best = _fastest(chain, budget, gates, clock_mhz, progress)
    if best is None:
        values = chain.cycle_values()
        path = fold_for_ii(chain, values[-1], None)
        need = _totals(chain, path)
        over = ", ".join(f"{r.upper()} {need[r]:,.0f} > {budget[r]:,.0f}" for r in _RESOURCES
                         if r in budget and need[r] > budget[r])
        raise UserError(f"no folding fits {what_budget}: the smallest one needs {over}; raise "
                        f"the budget or use a larger board")
    return best


def _make_chain(net, pixels_per_beat, model, gates, progress):
    from .resource_model import load_model
    return _Chain(net, pixels_per_beat, load_model() if model is None else model, gates,
                  progress)


def _why_bound(chain: _Chain) -> str:
    bound = chain.lower_bound()
    if chain.therm >= bound:
        return (f" (the thermometer input takes {chain.therm} beats per image: raise "
                f"--pixels-per-beat)")
    for i, opts in enumerate(chain.options):
        if min(o.cycles for o in opts) >= bound:
            return f" (layer {i} fully unfolded)"
    return ""


def parse_budget(text: str) -> dict:
    """``"lut=70000,bram=216,ff=140000"`` -> ``{"lut": 70000.0, ...}`` (any subset)."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _RESOURCES:
            raise UserError(f"--budget must be like lut=70000,bram=216,ff=140000, not {text!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise UserError(f"--budget {key} must be a number, not {value!r}") from None
        if out[key] <= 0:
            raise UserError(f"--budget {key} must be positive, not {value!r}")
    return out


def folding_json(res: FoldResult) -> dict:
    """The folding file: ``layers`` (what hw.generate / sim.run read) and a ``summary``."""
    return {
        "layers": [f.to_json() for f in res.folding],
        "summary": {
            "network": res.net.name, "clock_mhz": res.clock_mhz, "ii": res.ii,
            "fps": round(res.fps, 1), "target_ii": res.target_ii, "budget": res.budget,
            "gating": res.gating,
            "resources": {k: res.resources[k] for k in _RESOURCES},
            "stage_cycles_per_image": res.stages,
        },
    }


def write_folding(path, doc: dict) -> Path:
    """Write the folding file atomically; refuse to replace a file that is not one."""
    path = Path(path)
    if path.exists():
        try:
            old = json.loads(path.read_text())
            ok = isinstance(old, dict) and isinstance(old.get("layers"), list)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            ok = False
        if not ok or not path.is_file():
            raise UserError(f"{path} exists and is not a folding file; remove it or choose "
                            f"another --out")
    try:
        return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from None


def _bottleneck(res: FoldResult) -> str:
    """The stage that sets the II and why."""
    from .cycle_model import bottleneck_notes

    name, cycles = max(res.stages.items(), key=lambda kv: kv[1])
    net = res.net
    if name.startswith("mvtu"):
        l = net.layers[int(name[4:])]
        v = l.vectors_per_image
        why = (f"engine of layer {l.index}: NF {l.neuron_folds} x SF {l.synapse_folds}"
               + (f" x {v} positions" if v > 1 else ""))
        if not l.gated:
            why += f" = {cycles:g} cycles per image"
        elif res.gating.startswith("worst"):
            why += (f" x 2 passes (every gate open; + the gate wait with the lane schedule)"
                    f" = {cycles:g} cycles per image")
        else:
            why += (f" MSB passes + the LSB passes the recorded gates open = {cycles:.6g} "
                    f"cycles per image on average")
    elif name == "thermometer":
        why = (f"thermometer input: {net.input.pixels} pixels / {res.pixels_per_beat} per beat"
               f" = {cycles} beats per image; raise --pixels-per-beat")
    else:
        notes = bottleneck_notes(net, res.pixels_per_beat)
        why = next((n for n in notes if name in n), f"{name}: {cycles:g} cycles per image")
    extra = f"; stalls between stages add {res.ii - cycles:g} cycles" if res.ii > cycles else ""
    return f"{name} ({why}){extra}"


def _layer_cycles(res: FoldResult, i: int) -> tuple[float, str]:
    """The slowest of layer ``i``'s stages (converter, padding, window, engine, pool)."""
    mine = {k: v for k, v in res.stages.items()
            if k in (f"convert{i}", f"pad{i}", f"window{i}", f"mvtu{i}", f"pool{i}")}
    name = max(mine, key=lambda k: (mine[k], k.startswith("mvtu")))
    return mine[name], "" if name.startswith("mvtu") else name.rstrip("0123456789")


def _placement(layer) -> str:
    """Where the weight ROM goes: ``auto`` (the tool's rule), ``BRAM``, ``LUT`` or ``K/PE``
    lanes in block RAM."""
    k, pe = layer.folding.block_lanes, layer.folding.pe
    return ("auto" if k is None else "LUT" if k == 0 else "BRAM" if k == pe
            else f"{k}/{pe} BRAM")


def format_result(res: FoldResult) -> str:
    """The per-layer table, totals, bottleneck and FPS."""
    parts = res.resources["parts"]
    lines = [f"{'layer':<6} {'MW x MH':>12} {'PE':>5} {'SIMD':>5} {'pad':>4} {'NF':>5} "
             f"{'SF':>5} {'weights':>10} {'cycles':>16} {'LUT':>8} {'FF':>8} {'BRAM36':>7}"]
    for l in res.net.layers:
        p = parts[f"L{l.index}"]
        cycles, stage = _layer_cycles(res, l.index)
        text = f"{cycles:g}" + (f" ({stage})" if stage else "")
        lines.append(f"L{l.index:<5} {f'{l.in_features}x{l.out_features}':>12} "
                     f"{l.folding.pe:>5} {l.folding.simd:>5} {'yes' if l.folding.pad else '':>4} "
                     f"{l.neuron_folds:>5} {l.synapse_folds:>5} {_placement(l):>10} {text:>16} "
                     f"{p['lut']:>8,} "
                     f"{p['ff']:>8,} {p['bram']:>7g}")
    for j, ex in enumerate(res.net.exits):    # early exits: the export's folding, not searched
        p, l = parts[f"X{j}"], ex.layer
        lines.append(f"X{j:<5} {f'{l.in_features}x{l.out_features}':>12} "
                     f"{l.folding.pe:>5} {l.folding.simd:>5} {'':>4} {l.neuron_folds:>5} "
                     f"{l.synapse_folds:>5} {'auto':>10} {f'exit after L{ex.after}':>16} "
                     f"{p['lut']:>8,} {p['ff']:>8,} {p['bram']:>7g}")
    f = parts["fixed"]
    lines.append(f"{'fixed':<6} {'thermometer, registers, serializer':>52} "
                 f"{max(res.stages['thermometer'], res.stages['serializer']):>16g} "
                 f"{f['lut']:>8,} {f['ff']:>8,} {f['bram']:>7g}")
    r = res.resources
    lines.append(f"{'total':<6} {'':>69} {r['lut']:>8,} {r['ff']:>8,} {r['bram']:>7g}")
    lines.append(f"II {res.ii:.6g} cycles/image (slowest stage {res.ii_bound:.6g}) -> "
                 f"{res.fps:,.0f} FPS at {res.clock_mhz:g} MHz"
                 + (f"; target <= {res.target_ii:.6g} cycles" if res.target_ii is not None
                    else ""))
    lines.append(f"bottleneck: {_bottleneck(res)}")
    if res.gating != "none":
        lines.append(f"frac layers: {res.gating}")
    lines.append("resources: modelled (hw.resource_model, calibrated on Yosys synth_xilinx "
                 "-family xcup; LUT includes LUTRAM)")
    return "\n".join(lines)


def _progress_printer():
    start = time.monotonic()
    tty = sys.stdout.isatty()

    def progress(msg):
        if not tty:
            print(f"[{time.monotonic() - start:6.1f} s] {msg}", flush=True)
    return progress


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.fold",
        description="Choose PE/SIMD per layer for a target FPS or a resource budget.")
    parser.add_argument("export_dir", metavar="EXPORTDIR", help="compiled-network directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--target-fps", type=float, metavar="N",
                      help="cheapest folding holding N images per second")
    mode.add_argument("--budget", metavar="lut=..,bram=..,ff=..",
                      help="fastest folding within these modelled resources")
    parser.add_argument("--board", metavar="NAME",
                        help="fit the board's part (budget mode alone; a limit with "
                             "--target-fps); its default clock unless --clock")
    parser.add_argument("--clock", type=float, metavar="MHZ", help="clock frequency in MHz")
    parser.add_argument("--pixels-per-beat", type=int, default=8, metavar="N",
                        help="pixels per input AXI-Stream beat (default 8)")
    parser.add_argument("--out", type=Path, metavar="FOLD.json",
                        help="write the folding file (atomically)")
    parser.add_argument("--gating-stats", action="store_true",
                        help="frac layers: cycles from the export's test vectors' gate "
                             "decisions instead of the worst case")
    parser.add_argument("--calibration", type=Path, metavar="JSON",
                        help="resource-model calibration data (default: the shipped one)")
    args = parser.parse_args(argv)

    board = None
    if args.board is not None:
        from boards import get_board
        board = get_board(args.board)
        if board.kind != "zynq":
            raise UserError(f"the resource model is calibrated for Xilinx LUT6 parts; "
                            f"{board.name} is an ECP5 board: use --budget instead")
    if args.target_fps is None and args.budget is None and board is None:
        raise UserError("give --target-fps N, --budget lut=..,bram=..,ff=.. or --board NAME")
    clock = args.clock if args.clock is not None else (board.default_clock_mhz if board else None)
    if clock is None:
        raise UserError("--clock MHZ is required (or --board NAME for its default clock)")
    if not clock > 0:
        raise UserError(f"--clock must be positive, not {args.clock!r}")
    if args.target_fps is not None and not args.target_fps > 0:
        raise UserError(f"--target-fps must be positive, not {args.target_fps!r}")
    budget, what = None, "the budget"
    if board is not None:
        budget = {"lut": board.resources.lut, "ff": board.resources.ff,
                  "bram": board.resources.bram}
        what = f"the {board.part} ({board.resources.lut:,} LUT, {board.resources.bram} BRAM36)"
    if args.budget is not None:
        budget = {**(budget or {}), **parse_budget(args.budget)}
        what = "the budget " + ", ".join(f"{k}={v:g}" for k, v in budget.items())

    from .resource_model import load_model
    model = load_model(args.calibration)
    net = load_compiled_network(args.export_dir)
    from .generate import check_pixels_per_beat
    check_pixels_per_beat(net, args.pixels_per_beat)
    progress = _progress_printer()
    gates = None
    if args.gating_stats and any(l.gated for l in net.layers):
        gates = gate_stats(net, args.export_dir)
        progress(f"gate decisions of {gates_count(gates)} test images")
    progress(f"{net.name}: {len(net.layers)} layers")
    if args.target_fps is not None:
        res = fold_for_target(net, args.target_fps, clock, pixels_per_beat=args.pixels_per_beat,
                              budget=budget, model=model, gates=gates, progress=progress,
                              what_budget=what)
    else:
        res = fold_for_budget(net, budget, clock, pixels_per_beat=args.pixels_per_beat,
                              model=model, gates=gates, progress=progress, what_budget=what)
    print(format_result(res))
    if args.out is not None:
        write_folding(args.out, folding_json(res))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
