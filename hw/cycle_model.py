"""Cycle-exact performance model of the accelerator pipeline, composed from the stages' own
timing models.

:func:`simulate_pipeline` steps every stage of :func:`hw.accelerator.plan_stages` one clock
cycle at a time, at the level of counters rather than data.  Each stage's model lives beside
its component and follows the component's documented timing contract:

| stage | model | component |
|---|---|---|
| ``thermometer`` | :class:`hw.thermometer.ThermometerTiming` | ``ThermometerEncoder`` |
| ``convert`` | :class:`hw.width_converter.ConverterTiming` | ``StreamWidthConverter`` |
| ``pad`` | :class:`hw.padding.PaddingTiming` | ``PaddingStage`` |
| ``window`` | :class:`hw.window.WindowTiming` | ``SlidingWindowGenerator`` |
| ``mvtu`` | :class:`hw.mvtu_timing.EngineTiming` / ``LaneEngineTiming`` | ``MatrixVectorThresholdUnit`` |
| ``pool`` | :class:`hw.maxpool.MaxPoolTiming` | ``MaxPoolUnit`` |
| ``serializer`` | :class:`hw.output_serializer.SerializerTiming` | ``OutputSerializer`` |
| (early exit ``j``) | :class:`hw.exit_branch.ExitBranchTiming` | fork, exit path, hold buffer, FIFOs |
| (exit merges) | :class:`hw.exit_merge.MergeNestTiming` | ``InOrderMerge`` s |

Cycle ``c`` is the ``c``-th rising clock edge after reset; a handshake "at cycle c" fires on
that edge.  The input offers the images' beats back to back from cycle 0 and the output is
always ready.  Frac layers' timing depends on the data: pass the golden model's gate
decisions (``GoldenModel(net).run(images).gates``).  Where the timing cannot depend on the
data, the model stops stepping once the pipeline's state repeats and extends the events with
that period (exact; see :func:`simulate_pipeline`).

:func:`stage_cycles_per_image` gives each stage's busy cycles per image (the largest is a lower
bound of the initiation interval), :func:`exact_steady_state_ii` the exact interval,
:func:`bottleneck_notes` the non-engine stages that set it, and :func:`gating_savings` the
engine cycles precision gating saves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.compiled_net import CompiledNetwork

from .exit_branch import ExitBranchTiming
from .exit_decision import DecisionTiming
from .exit_merge import MergeNestTiming
from .maxpool import MaxPoolTiming
from .mvtu_timing import (EngineTiming, LaneEngineTiming, engine_timing, fold_gate_fn,
                          lane_compute_cycles, lane_rounds_fn, padded_gates, timing_of,
                          vector_gates)
from .output_serializer import SerializerTiming
from .padding import PaddingTiming
from .thermometer import ThermometerTiming
from .width_converter import ConverterTiming
from .window import WindowTiming

#: Timing models of the spatial stream stages, kept beside their components.
_STREAM_TIMING = {"pad": PaddingTiming, "window": WindowTiming, "pool": MaxPoolTiming}

__all__ = ["CycleModelResult", "simulate_pipeline", "stage_cycles_per_image", "bottleneck_notes",
           "steady_state_ii", "exact_steady_state_ii", "engine_timing", "gating_savings"]


@dataclass(frozen=True)
class CycleModelResult:
    """Per-image timing predicted by :func:`simulate_pipeline`.

    Attributes
    ----------
    input_start
        ``(N,)`` cycle at which each image's first ``s_axis`` beat is accepted.
    output_start
        ``(N,)`` cycle at which each image's first ``m_axis`` beat (the class) is accepted.
    output_end
        ``(N,)`` cycle of each image's last ``m_axis`` beat.
    """

    input_start: np.ndarray
    output_start: np.ndarray
    output_end: np.ndarray
    #: ``(images, cycles)`` of the repeating pattern once one was found (data-independent
    #: timing, see :func:`simulate_pipeline`), else ``None``.
    period: tuple[int, int] | None = None

    @property
    def steady_state_ii(self) -> float | None:
        """Exact steady-state cycles per image (from the detected period), or ``None``."""
        return None if self.period is None else self.period[1] / self.period[0]

    @property
    def latency(self) -> np.ndarray:
        """Per image: first output beat cycle minus first input beat cycle."""
        return self.output_start - self.input_start

    @property
    def intervals(self) -> np.ndarray:
        """Spacing of consecutive images' first input beats (``N-1`` values)."""
        return np.diff(self.input_start)

    @property
    def output_intervals(self) -> np.ndarray:
        """Spacing of consecutive images' first output beats (``N-1`` values)."""
        return np.diff(self.output_start)


# ----------------------------------------------------------------------------- stage models
# Each stage's timing model lives beside its component; each has valid() and
# ready(ready_down) from the current state (ready may look at the downstream ready
# combinationally), then step(in_fire, out_fire, cycle, in_valid) moves to the next (in_valid:
# the upstream valid of this cycle, for stages whose state depends on it).


def _stream_timing(info):
    """The timing model of a ``pad``, ``window`` or ``pool`` stage (beside its component)."""
    p = {k: v for k, v in info.params.items() if k not in ("layer", "planes")}
    return _STREAM_TIMING[info.kind](**p)


def _stream_cycles(info) -> int:
    """Busy cycles per image of a ``pad``, ``window`` or ``pool`` stage (one beat per cycle
    on its busier side)."""
    p = info.params
    if info.kind == "pad":
        g = p["channels"] // p["elems_per_beat"]
        return (p["height"] + 2 * p["pad"]) * (p["width"] + 2 * p["pad"]) * g
    if info.kind == "pool":
        return p["height"] * p["width"] * (p["channels"] // p["elems_per_beat"])
    g = p["channels"] // p["simd"]
    k, s = p["kernel"], p["stride"]
    oh, ow = (p["height"] - k) // s + 1, (p["width"] - k) // s + 1
    return max(p["height"] * p["width"] * g, oh * ow * k * k * g)


def _state(model, cycle: int) -> tuple:
    """A stage model's state relative to ``cycle`` (hashable), for period detection."""
    if isinstance(model, EngineTiming):
        state = ("engine", tuple(model.full), model.wr_bank, model.wr_sf, model.active,
                 model.rd_bank, model.pos, model.credits, model.fifo,
                 tuple(t - cycle for t in model.pending))
        if isinstance(model, LaneEngineTiming):
            known = None if model.gates_known_at is None else model.gates_known_at - cycle
            state += (model.lsb, model.nf_pos, model.sf_pos, max(known, 0) if known is not None
                      else None, model.rounds_left, model.em_busy, model.em_nf)
        return state
    slots = getattr(type(model), "__slots__", None)
    names = slots if slots is not None else sorted(vars(model))
    return tuple(_frozen(getattr(model, name)) for name in names)


def _frozen(value):
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if hasattr(value, "timing_state"):
        return value.timing_state()  # a stage model inside another (its state, not its id)
    if hasattr(value, "__slots__") or hasattr(value, "__dict__"):
        return id(value)            # constant helper objects (geometry): identity suffices
    return value


class ImageBeats:
    """The accelerator's stream ends as a cycle model sees them: ``images`` images of
    ``beats_in`` input beats offered back to back, ``beats_out`` output beats each; records
    per image the cycle of its first input beat and of its first and last output beats."""

    def __init__(self, images: int, beats_in: int, beats_out: int):
        self.beats_in, self.beats_out = beats_in, beats_out
        self.total_in, self.total_out = images * beats_in, images * beats_out
        self.sent = self.received = 0
        self.input_start: list = []
        self.output_start: list = []
        self.output_end: list = []

    @property
    def src_valid(self) -> bool:
        """Whether an input beat is offered (images are offered back to back)."""
        return self.sent < self.total_in

    @property
    def at_image_start(self) -> bool:
        """Whether the next input beat is an image's first."""
        return self.sent % self.beats_in == 0

    @property
    def done(self) -> bool:
        return self.received >= self.total_out

    def accept_input(self, cycle: int):
        if self.at_image_start:
            self.input_start.append(cycle)
        self.sent += 1

    def accept_output(self, cycle: int):
        if self.received % self.beats_out == 0:
            self.output_start.append(cycle)
        if self.received % self.beats_out == self.beats_out - 1:
            self.output_end.append(cycle)
        self.received += 1

    def result(self) -> CycleModelResult:
        return CycleModelResult(np.array(self.input_start), np.array(self.output_start),
                                np.array(self.output_end))


def fixed_gates(net, images: int, gates):
    """``gates`` as per-layer arrays: ``"open"``/``"closed"`` become ``(images,
    vectors_per_image * out_features)`` all-open / all-closed arrays for the gated layers
    (``None`` for the others); anything else is returned as it is."""
    if isinstance(gates, str):
        if gates not in ("open", "closed"):
            raise ValueError(f"gates must be 'open', 'closed' or per-layer arrays, not {gates!r}")
        return [np.full((images, l.vectors_per_image * l.out_features), gates == "open")
                if l.gated else None for l in net.layers]
    return gates


def _extrapolate(images: int, period_images: int, period_cycles: int, start: int,
                 *events: list) -> CycleModelResult:
    """Repeat the events from cycle ``start`` on with the detected period up to ``images``."""
    out = []
    for ev in events:
        a = sum(1 for c in ev if c < start)            # events before the periodic part
        base = np.array(ev[a:a + period_images], dtype=np.int64)
        if len(base) < period_images:
            raise AssertionError("periodic extrapolation without a full period of events")
        k = np.arange(images - a)
        full = np.concatenate([np.array(ev[:a], dtype=np.int64),
                               base[k % period_images] + (k // period_images) * period_cycles])
        out.append(full[:images])
    return CycleModelResult(*out, period=(period_images, period_cycles))


def simulate_pipeline(net: CompiledNetwork, images: int, *, pixels_per_beat: int = 8,
                      gates=None, exits=None, exit_gates=None, engines=None,
                      max_cycles: int | None = None, periodic: bool = True) -> CycleModelResult:
    """Predict the timing of ``images`` images streamed back to back.

    Parameters
    ----------
    net
        The compiled network (its folding is the hardware's).
    images
        Number of images offered back to back from cycle 0 at one beat per cycle.
    pixels_per_beat
        As :class:`hw.accelerator.Accelerator`.
    gates
        Per layer ``(images, MH)`` booleans (``GoldenModel(net).run(imgs).gates``); entries
        for layers with 1-bit inputs are ignored (``None``).  ``"open"``/``"closed"`` assume
        every gate open / closed (worst / best case).
    exits
        For a network with early exits (required there): the ``(images,)`` exit each image
        takes (``GoldenModel(net).run(images).exits``; ``len(net.exits)`` = none).  Each
        exit's branch (:class:`hw.exit_branch.ExitBranchTiming`) follows its layer's engine,
        the in-order merges (:class:`hw.exit_merge.MergeNestTiming`) the serializer; the
        engines after an exit see only the images that continue.
    exit_gates
        Per exit its classifier's gate decisions ``(images, classes)`` where its input is
        2-bit (``GoldenModel(net).run(images).exit_gates``); ``"open"``/``"closed"`` as
        ``gates`` (the default follows ``gates`` when that is a string).
    engines
        Optional built engines (``Accelerator.engines``) to take the timing constants from;
        by default :func:`engine_timing` derives the same numbers from the folding.
    periodic
        When the timing cannot depend on the data (every layer has 1-bit inputs, or
        ``gates`` is ``"open"``/``"closed"``), stop stepping once the complete state of the
        pipeline at an image's first input beat (every stage model's counters, results in
        flight relative to the current cycle, the output beat position) equals the state at
        an earlier image's first beat: the system is deterministic and its input the same
        from then on, so every later event is the earlier one shifted by that period.  The
        result is the same as stepping every cycle (``periodic=False``); the co-simulation
        checks it against the RTL anyway.
    """
    from .accelerator import plan_stages

    stages = plan_stages(net, pixels_per_beat)
    gates_arg = gates
    reach = _reach(net, images, exits)
    gates = fixed_gates(net, images, gates)
    if gates is None:
        gates = [None] * len(net.layers)
    models = []
    for info in stages:
        if info.kind == "thermometer":
            models.append(ThermometerTiming())
        elif info.kind == "convert":
            models.append(_converter_timing(info.params))
        elif info.kind in _STREAM_TIMING:
            models.append(_stream_timing(info))
        elif info.kind == "mvtu":
            layer = net.layers[info.params["layer"]]
            timing = (engine_timing(layer) if engines is None
                      else timing_of(engines[layer.index]))
            models.append(_engine_model(layer, gates[layer.index], reach[layer.index], timing))
            models += [_exit_branch_timing(net, j, exits, exit_gates, gates_arg)
                       for j, ex in enumerate(net.exits) if ex.after == layer.index]
        else:
            models.append(SerializerTiming(info.params["classes"],
                                           info.params["neuron_folds"],
                                           info.params["argmax_latency"]))
    if net.exits:
        models.append(MergeNestTiming(net.classes, [m for m in models
                                                    if isinstance(m, ExitBranchTiming)]))

    beats = ImageBeats(images, stages[0].params["beats_per_image"], 1 + net.classes)
    if max_cycles is None:
        per_image = sum(stage_cycles_per_image(net, pixels_per_beat, worst=True).values())
        max_cycles = 1000 + 4 * per_image * (images + 2)
    n = len(models)
    cycle = 0
    # Data-independent timing (1-bit layers, or every gate fixed): once the whole state at an
    # image's first input beat repeats, every later event repeats with the same period.
    data_independent = (not net.exits and (not any(l.gated for l in net.layers)
                                            or isinstance(gates_arg, str)))
    seen: dict = {}
    while not beats.done:
        if cycle > max_cycles:
            raise RuntimeError(f"cycle model made no progress after {max_cycles} cycles "
                               f"({beats.received} of {beats.total_out} output beats)")
        src_valid = beats.src_valid
        valids = []
        for mdl in models:    # the merges' valid is combinational from the serializer's
            valids.append(mdl.valid_from(valids[-1]) if hasattr(mdl, "valid_from")
                          else mdl.valid())
        readies = [False] * n
        down = True                      # the output is always ready
        for k in range(n - 1, -1, -1):
            readies[k] = models[k].ready(down)
            down = readies[k]
        in_fires = [src_valid and readies[0]] + [valids[k - 1] and readies[k]
                                                  for k in range(1, n)]
        out_fires = [in_fires[k + 1] for k in range(n - 1)] + [valids[-1]]
        if in_fires[0]:
            if periodic and data_independent and beats.at_image_start:
                key = (beats.received % beats.beats_out,
                       *(_state(mdl, cycle) for mdl in models))
                started = len(beats.input_start)
                if key in seen:
                    j_img, j_cycle = seen[key]
                    return _extrapolate(images, started - j_img, cycle - j_cycle, j_cycle,
                                        beats.input_start, beats.output_start,
                                        beats.output_end)
                seen[key] = (started, cycle)
            beats.accept_input(cycle)
        if out_fires[-1]:
            beats.accept_output(cycle)
        for k, mdl in enumerate(models):
            mdl.step(in_fires[k], out_fires[k], cycle, src_valid if k == 0 else valids[k - 1])
        cycle += 1
    return beats.result()


def _reach(net: CompiledNetwork, images: int, exits) -> list:
    """Per layer: the mask of the images its engine sees (all without exits)."""
    if not net.exits:
        if exits is not None:
            raise ValueError(f"network {net.name!r} has no early exits; do not pass exits")
        return [np.ones(images, dtype=bool)] * len(net.layers)
    if exits is None:
        raise ValueError(f"network {net.name!r} has early exits: pass exits="
                         f"GoldenModel(net).run(images).exits")
    exits = np.asarray(exits)
    if exits.shape != (images,) or exits.min(initial=0) < 0 \
            or exits.max(initial=0) > len(net.exits):
        raise ValueError(f"exits must be ({images},) values in 0..{len(net.exits)}")
    stop = np.array([ex.after for ex in net.exits] + [len(net.layers)])[exits]
    return [stop >= layer.index for layer in net.layers]


def _converter_timing(p: dict) -> ConverterTiming:
    return ConverterTiming(p["in_count"], p["out_count"], vector_elems=p["vector_elems"],
                           pad_elems=p["pad_elems"])


def _engine_model(layer, gates, seen: np.ndarray, timing: dict):
    """The timing model of ``layer``'s engine fed the images ``seen`` (a mask)."""
    n = int(seen.sum())
    if gates is not None:
        gates = np.asarray(gates)[seen] if n else np.zeros((1, *np.shape(gates)[1:]), bool)
    n = max(n, 1)         # an engine that sees no image never asks for its gates
    if timing["lane"]:
        return LaneEngineTiming(layer, lane_rounds_fn(layer, gates, n), timing)
    return EngineTiming(layer, fold_gate_fn(layer, gates, n), timing)


def _exit_branch_timing(net: CompiledNetwork, j: int, exits, exit_gates, gates_arg):
    """The timing model of exit ``j``'s branch (the components
    :meth:`hw.accelerator.Accelerator._elaborate_exit` builds)."""
    from .output_serializer import argmax_latency
    ex = net.exits[j]
    src, lay = net.layers[ex.after], ex.layer
    exits = np.asarray(exits)
    seen = exits >= j
    branch = []
    if src.folding.pe != lay.folding.simd:
        branch.append(ConverterTiming(src.folding.pe, lay.folding.simd))
    if exit_gates is None and isinstance(gates_arg, str):
        exit_gates = gates_arg
    g = None
    if lay.gated:
        if isinstance(exit_gates, str):
            g = np.full((len(exits), lay.out_features), exit_gates == "open")
        elif exit_gates is None or exit_gates[j] is None:
            raise ValueError(f"exit {j} classifier has 2-bit inputs: pass exit_gates="
                             f"GoldenModel(net).run(images).exit_gates")
        else:
            g = exit_gates[j]
    branch.append(_engine_model(lay, g, seen, engine_timing(lay)))
    branch.append(SerializerTiming(net.classes, lay.neuron_folds,
                                   argmax_latency(lay.folding.pe, False)))
    takes = exits[seen] == j
    decision = DecisionTiming(net.classes, lambda i: bool(takes[min(i, len(takes) - 1)]))
    beats = src.neuron_folds * src.vectors_per_image
    return ExitBranchTiming(branch, decision, beats, net.classes)


def stage_cycles_per_image(net: CompiledNetwork, pixels_per_beat: int = 8, *,
                           gates=None, worst: bool = False, engines=None) -> dict[str, int]:
    """Cycles each stage is busy per image (the pipeline's II is the largest of these).

    Thermometer: ``P/PPB`` beats; converters: the larger of their input and output beats
    per vector; engines: ``compute_cycles`` (frac layers: with ``gates`` = per-layer ``(MH,)``
    decisions of one image, or every gate open if ``worst``, else every gate closed);
    serializer ``max(NF + 1 + argmax_latency, 1 + C)``.  ``engines``: as :func:`simulate_pipeline`.
    """
    from .accelerator import plan_stages

    out = {}
    for info in plan_stages(net, pixels_per_beat):
        p = info.params
        if info.kind == "thermometer":
            out[info.name] = p["beats_per_image"]
        elif info.kind == "convert":
            # One beat per cycle on each side: the larger beat count per image.
            elems_in = p["elems_per_image"]
            vectors = elems_in // p["vector_elems"] if p["vector_elems"] else 1
            elems_out = elems_in + vectors * p["pad_elems"]
            out[info.name] = max(-(-elems_in // p["in_count"]), elems_out // p["out_count"])
        elif info.kind in _STREAM_TIMING:
            out[info.name] = _stream_cycles(info)
        elif info.kind == "mvtu":
            layer = net.layers[p["layer"]]
            sf, nf = layer.synapse_folds, layer.neuron_folds
            if not layer.gated:
                out[info.name] = sf * nf * layer.vectors_per_image
                continue
            if layer.vectors_per_image != 1:
                # Data-dependent per window: best (all closed) or worst (all open) case.
                timing = (engine_timing(layer) if engines is None
                          else timing_of(engines[layer.index]))
                g = np.full(layer.out_features, worst)
                per_neuron = padded_gates(layer, g)[0]
                if timing["lane"]:
                    rounds = int(per_neuron.sum(axis=0).max())
                    per = lane_compute_cycles(layer, timing["gate_delay"], rounds)
                else:
                    closed = sf + min(timing["gate_delay"], sf)
                    per = sum(2 * sf if o else closed for o in per_neuron.any(axis=1))
                out[info.name] = per * layer.vectors_per_image
                continue
            timing = (engine_timing(layer) if engines is None
                      else timing_of(engines[layer.index]))
            g = None if gates is None else gates[layer.index]
            if g is None:
                per_neuron = padded_gates(layer, np.full(layer.out_features, worst))[0]
            else:
                per_neuron = padded_gates(layer, g)[0]
            if timing["lane"]:
                rounds = int(per_neuron.sum(axis=0).max())
                out[info.name] = lane_compute_cycles(layer, timing["gate_delay"], rounds)
            else:
                closed = sf + min(timing["gate_delay"], sf)
                out[info.name] = sum(2 * sf if o else closed for o in per_neuron.any(axis=1))
        else:
            out[info.name] = max(p["neuron_folds"] + 1 + p["argmax_latency"], 1 + p["classes"])
    return out


def steady_state_ii(net: CompiledNetwork, pixels_per_beat: int = 8, **kwargs) -> int:
    """The bottleneck stage's cycles per image (see :func:`stage_cycles_per_image`): a lower
    bound of the real interval, which stalls between stages can raise
    (:func:`exact_steady_state_ii`)."""
    return max(stage_cycles_per_image(net, pixels_per_beat, **kwargs).values())


def exact_steady_state_ii(net: CompiledNetwork, pixels_per_beat: int = 8, *,
                          gates: str = "closed", engines=None,
                          max_images: int = 64) -> float | None:
    """The pipeline's exact steady-state cycles per image with every gate ``"closed"`` or
    ``"open"`` (1-bit networks: the only case), from the period the cycle model finds;
    ``None`` if none shows up within ``max_images`` images."""
    images = 4
    while images <= max_images:
        res = simulate_pipeline(net, images, pixels_per_beat=pixels_per_beat, gates=gates,
                                engines=engines)
        if res.period is not None:
            return res.steady_state_ii
        images *= 2
    return None


def data_independent_ii(net: CompiledNetwork, pixels_per_beat: int = 8) -> float | None:
    """The exact steady-state II of a network whose timing does not depend on the data
    (no gated 2-bit inputs): what FPS figures use.  ``None`` for gated networks, whose
    cycles per image follow the images (measure them over a run)."""
    if any(layer.gated for layer in net.layers):
        return None
    return exact_steady_state_ii(net, pixels_per_beat)


def gating_savings(net: CompiledNetwork, gates, *, engines=None) -> list[dict]:
    """Engine cycles that precision gating saved, per layer with 2-bit inputs.

    ``gates``: the golden model's per-layer decisions (``GoldenModel(net).run(images).gates``,
    ``(N, MH)`` booleans or ``None``).  Without gating every vector would need both passes of
    every neuron fold, ``2*NF*SF`` cycles.  With it (the engine's actual ``compute_cycles``):
    lane schedule ``NF*SF + gate_delay + R*SF``; fold schedule the sum over folds of
    ``2*SF`` (some gate open) or ``SF + min(gate_delay, SF)`` (all closed).  ``engines``: as
    :func:`simulate_pipeline` (default: the engines' default schedule).

    Returns
    -------
    list of dict
        Per gated layer: ``layer``, ``images``, ``schedule`` (``"lane"``/``"fold"``),
        ``lsb_fraction`` (neurons whose gate opened), ``fold_lsb_fraction`` (neuron folds with
        some gate open), ``lsb_rounds_mean`` (mean ``R``), ``cycles`` (engine cycles with
        gating, summed over the images), ``cycles_ungated`` (``N*2*NF*SF``),
        ``lsb_cycles_ungated`` (``N*NF*SF``, the LSB passes alone), ``saved``
        (``cycles_ungated - cycles``; negative if gating costs more than it saves) and
        ``cycles_per_image`` (``cycles / N``).
    """
    out = []
    for layer in net.layers:
        if not layer.gated:
            continue
        timing = (engine_timing(layer) if engines is None
                  else timing_of(engines[layer.index]))
        images = np.asarray(gates[layer.index]).shape[0]
        g = vector_gates(layer, gates[layer.index], images)   # (vectors, MH)
        n, sf, nf = g.shape[0], layer.synapse_folds, layer.neuron_folds
        per = padded_gates(layer, g)                   # (N, NF, PE)
        open_folds = int(per.any(axis=2).sum())
        rounds = per.sum(axis=1).max(axis=1)            # (N,) R per image
        if timing["lane"]:
            cycles = int(sum(lane_compute_cycles(layer, timing["gate_delay"], int(r))
                             for r in rounds))
        else:
            closed = sf + min(timing["gate_delay"], sf)
            cycles = open_folds * 2 * sf + (n * nf - open_folds) * closed
        ungated = n * nf * 2 * sf
        out.append({"layer": layer.index, "images": images, "vectors": n,
                    "schedule": "lane" if timing["lane"] else "fold",
                    "lsb_fraction": float(g.mean()),
                    "fold_lsb_fraction": open_folds / (n * nf),
                    "lsb_rounds_mean": float(rounds.mean()), "cycles": cycles,
                    "cycles_ungated": ungated, "lsb_cycles_ungated": n * nf * sf,
                    "saved": ungated - cycles, "cycles_per_image": cycles / max(images, 1)})
    return out


_FIXES = {
    "thermometer": "raise --pixels-per-beat",
    "convert": "raise the SIMD of layer {layer} (or --pixels-per-beat before layer 0)",
    "pad": "raise the SIMD of layer {layer}",
    "window": "raise the SIMD of layer {layer} (beats per pixel = channels / SIMD)",
    "pool": "raise the PE of layer {layer}",
    "serializer": "raise the PE of the last layer",
}


def bottleneck_notes(net: CompiledNetwork, pixels_per_beat: int = 8, *,
                     worst: bool = True) -> list[str]:
    """One line per stage that is not a layer engine but sets the initiation interval.

    A folding is meant to be limited by its layer engines; if a width converter, padding
    stage, window generator, pool, the thermometer input or the serializer needs more cycles
    per image than every engine (:func:`stage_cycles_per_image`), the line names it, its
    cycles, the slowest engine's and the fix.
    """
    from .accelerator import plan_stages

    cycles = stage_cycles_per_image(net, pixels_per_beat, worst=worst)
    engines = max(v for k, v in cycles.items() if k.startswith("mvtu"))
    notes = []
    for info in plan_stages(net, pixels_per_beat):
        c = cycles[info.name]
        if info.kind != "mvtu" and c > engines:
            fix = _FIXES[info.kind].format(layer=info.params.get("layer", 0))
            notes.append(f"{info.kind} stage {info.name} needs {c} cycles per image, more than "
                         f"the slowest layer engine ({engines}), and sets the II: {fix}")
    return notes
