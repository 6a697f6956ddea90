"""cocotb 2.x testbench for one streaming stage on its own, on its emitted Verilog.

The stages are :class:`hw.window.SlidingWindowGenerator`, :class:`hw.padding.PaddingStage` and
:class:`hw.maxpool.MaxPoolUnit`.  :func:`write_stage_design` wraps one of them in
:class:`StreamStageTop` (flat AXI-Stream port names, so that cocotbext-axi drives it) and emits
it with :func:`hw.netlist.convert_flat` as the module ``fracbnn_top`` in ``fracbnn_top.v``,
next to the Verilator waiver: a directory that :func:`sim.build.build_cocotb` builds like a
generated accelerator (same flags, same cache).  Ports of the top::

    clk, rst                                    clock, synchronous active-high reset
    s_axis_tdata/tvalid/tready                  the stage's ``i`` (payload as raw bits)
    m_axis_tdata/tvalid/tready                  the stage's ``o``

A payload is the stage's raw beat: ``n`` bits for :data:`~hw.width_converter.BIT` elements
(element ``j`` at bit ``j``), ``2n`` bits for :data:`~hw.width_converter.ML_PAIR` (plane ``m``
at bits ``[0, n)``, plane ``l`` at ``[n, 2n)``).  There is no ``tlast``: images are counted.

The Python side (``tests/test_cosim_stream_stages.py``) writes a JSON configuration and names it
in the environment variable :data:`CONFIG_ENV`.  Keys:

``kind``              ``"window"``, ``"padding"`` or ``"maxpool"``.
``elem``              ``"bit"`` or ``"pair"``.
``geometry``          keyword arguments of the stage and of its timing model, e.g.
                      ``{"channels": 3, "height": 5, "width": 6, "kernel": 3, "stride": 1,
                      "simd": 1}`` (see :data:`GEOMETRY_KEYS`).
``images``            images sent back to back.
``seed``              seed of the random images (numpy) and of the traffic (``random``).
``idle_prob``         probability of an idle input cycle (``s_axis_tvalid`` low).
``stall_prob``        probability of output backpressure (``m_axis_tready`` low).
``drain_cycles``      cycles watched after the last expected output beat (default 50).
``timeout_cycles``    cycle budget for all output beats (default from the beat counts).
``report``            path of a JSON file the test writes its findings to.
``inject``            optional faults in the *checking*, to show that the test can fail:
                      ``{"flip_expected_beat": k}`` flips bit 0 of expected output beat ``k``;
                      ``{"model_drop_in_fire": k}`` hides the ``k``-th input transfer from
                      the timing-model replay.

The test (``test_stream_stage``), from a reset:

* sends ``images`` random images (``rng.integers(0, 2*planes, (N, H, W, C))``, the numpy
  references of ``tests/test_hw_window.py``, ``test_hw_padding.py``, ``test_hw_maxpool.py``)
  through an :class:`~cocotbext.axi.AxiStreamSource` with random idle cycles and receives
  through an :class:`~cocotbext.axi.AxiStreamSink` with random backpressure;
* checks every output beat against the reference, in order;
* records ``(o.valid, o.ready, i.valid, i.ready)`` in every cycle after the reset and replays
  the stage's cycle model (:class:`hw.window.WindowTiming`, :class:`hw.padding.PaddingTiming`,
  :class:`hw.maxpool.MaxPoolTiming`) with the same handshakes: ``valid()`` must equal
  ``o.valid`` and ``ready(o.ready)`` must equal ``i.ready`` in every cycle;
* checks that exactly the input beats were accepted (in order) and exactly the expected number
  of output beats left, and that nothing more leaves in the ``drain_cycles`` cycles after the
  last one with ``m_axis_tready`` held high.

"Expected" includes the beats a stage's cycle model says it emits at the start of an image
while no input is offered (:func:`eager_beats`), which it then emits after the last image: a
padding stage whose leading padding slots do not wait for the input would go on with the next
image's top padding rows (``(p*(W + 2p) + p)*G`` zero beats); they are checked too (zeros,
exactly that many).  The window generator, the max pool unit and a padding stage whose first
slot waits for ``i.valid`` emit none.

The timing models' ``step(in_fire, out_fire, cycle[, in_valid])`` gets ``i.valid`` as well
where it takes it (the padding stage's first slot waits for it).

Handshakes are sampled at the falling clock edge (all signals are stable there): a transfer
seen at falling edge ``k`` happens at the next rising edge; cycle 0 is the first cycle after
the reset, in which the stage is in its reset state (the timing model's initial state).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import shutil
from pathlib import Path

import cocotb
import numpy as np
from amaranth import Module, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from hw.generate import TOP_NAME, WAIVER_FILE
from hw.maxpool import MaxPoolTiming, MaxPoolUnit
from hw.netlist import convert_flat
from hw.padding import PaddingStage, PaddingTiming
from hw.width_converter import BIT, ML_PAIR
from hw.window import SlidingWindowGenerator, WindowTiming

__all__ = ["CONFIG_ENV", "KINDS", "GEOMETRY_KEYS", "StreamStageTop", "make_stage",
           "make_timing", "stage_images", "reference_beats", "eager_beats", "write_stage_design",
           "step_model", "TB", "replay_timing", "test_stream_stage"]

#: Environment variable naming the JSON configuration (module docstring).
CONFIG_ENV = "FRACBNN_STAGE_TB_CONFIG"
#: Stage kinds.
KINDS = ("window", "padding", "maxpool")
#: The geometry keywords each kind takes (stage and timing model alike).
GEOMETRY_KEYS = {
    "window": ("channels", "height", "width", "kernel", "stride", "simd"),
    "padding": ("channels", "height", "width", "pad", "elems_per_beat"),
    "maxpool": ("channels", "height", "width", "elems_per_beat", "kernel", "stride"),
}
_MAX_REPORTED = 20


def _elem_shape(elem: str):
    try:
        return {"bit": BIT, "pair": ML_PAIR}[elem]
    except KeyError:
        raise ValueError(f"elem must be 'bit' or 'pair', not {elem!r}") from None


def _geometry(kind: str, geometry: dict) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    keys = GEOMETRY_KEYS[kind]
    if set(geometry) != set(keys):
        raise ValueError(f"{kind} geometry needs exactly {keys}, got {sorted(geometry)}")
    return {k: int(geometry[k]) for k in keys}


def make_stage(kind: str, elem: str, geometry: dict) -> wiring.Component:
    """The Amaranth stage of ``kind`` with ``elem`` (``"bit"``/``"pair"``) elements."""
    cls = {"window": SlidingWindowGenerator, "padding": PaddingStage,
           "maxpool": MaxPoolUnit}[kind]
    return cls(_elem_shape(elem), **_geometry(kind, geometry))


def make_timing(kind: str, geometry: dict):
    """A fresh cycle model of the stage (the stage's ``timing_model()`` in reset state)."""
    cls = {"window": WindowTiming, "padding": PaddingTiming, "maxpool": MaxPoolTiming}[kind]
    return cls(**_geometry(kind, geometry))


class StreamStageTop(wiring.Component):
    """A stream stage with flat AXI-Stream port names (``s_axis_*`` = ``i``, ``m_axis_*`` =
    ``o``; ``tdata`` is the raw payload), nothing else in between."""

    def __init__(self, stage: wiring.Component):
        self._stage = stage
        width = Shape.cast(stage.i.payload.shape()).width
        if Shape.cast(stage.o.payload.shape()).width != width:
            raise ValueError("the stage's input and output beats differ in width")
        super().__init__({
            "s_axis_tdata": In(width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.stage = stage = self._stage
        m.d.comb += [
            Value.cast(stage.i.payload).eq(self.s_axis_tdata),
            stage.i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(stage.i.ready),
            self.m_axis_tdata.eq(Value.cast(stage.o.payload)),
            self.m_axis_tvalid.eq(stage.o.valid),
            stage.o.ready.eq(self.m_axis_tready),
        ]
        return m


def write_stage_design(kind: str, elem: str, geometry: dict, design_dir) -> Path:
    """Emit the stage as ``design_dir/fracbnn_top.v`` (module ``fracbnn_top``, ports in the
    module docstring) plus the Verilator waiver; return ``design_dir``."""
    design_dir = Path(design_dir)
    design_dir.mkdir(parents=True, exist_ok=True)
    text = convert_flat(StreamStageTop(make_stage(kind, elem, geometry)), TOP_NAME)
    (design_dir / f"{TOP_NAME}.v").write_text(text)
    shutil.copyfile(WAIVER_FILE, design_dir / WAIVER_FILE.name)
    return design_dir


def stage_images(cfg: dict) -> np.ndarray:
    """The random ``(N, H, W, C)`` element codes (bit, or ``q = 2*m + l``) of ``cfg``."""
    planes = 1 if cfg["elem"] == "bit" else 2
    geo = cfg["geometry"]
    rng = np.random.default_rng(int(cfg["seed"]))
    return rng.integers(0, 2 * planes,
                        size=(int(cfg["images"]), geo["height"], geo["width"], geo["channels"]))


def reference_beats(cfg: dict) -> tuple[list[int], list[int]]:
    """(input beats, expected output beats) of ``cfg`` as raw payload integers, from the numpy
    references of the stages' Amaranth-simulator tests."""
    kind, geo = cfg["kind"], _geometry(cfg["kind"], cfg["geometry"])
    _elem_shape(cfg["elem"])
    planes = 1 if cfg["elem"] == "bit" else 2
    images = stage_images(cfg)
    if kind == "window":
        from tests.test_hw_window import reference
        return reference(images, geo["kernel"], geo["stride"], geo["simd"], planes)
    n = geo["elems_per_beat"]
    if kind == "padding":
        from tests.stream_bench import to_beats
        p = geo["pad"]
        expected = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    else:
        from tests.stream_bench import to_beats
        from tests.test_hw_maxpool import reference
        expected = reference(images, geo["kernel"])
    return to_beats(images, n, planes), to_beats(expected, n, planes)


def eager_beats(cfg: dict) -> list[int]:
    """The output beats the stage of ``cfg`` emits from the start of an image (its reset state,
    the state after every image) while no input is offered and ``o`` is always ready, by its
    cycle model: zero beats (leading padding slots), or none."""
    model = make_timing(cfg["kind"], cfg["geometry"])
    count = 0
    for cycle in range(_beats_out_per_image(cfg) + 8):
        out_fire = model.valid()
        count += out_fire
        step_model(model, False, out_fire, cycle, False)
    return [0] * count


def _beats_out_per_image(cfg: dict) -> int:
    geo = _geometry(cfg["kind"], cfg["geometry"])
    h, w, c = geo["height"], geo["width"], geo["channels"]
    if cfg["kind"] == "padding":
        p = geo["pad"]
        return (h + 2 * p) * (w + 2 * p) * c // geo["elems_per_beat"]
    k, s = geo["kernel"], geo["stride"]
    positions = ((h - k) // s + 1) * ((w - k) // s + 1)
    if cfg["kind"] == "window":
        return positions * k * k * c // geo["simd"]
    return positions * c // geo["elems_per_beat"]


def step_model(model, in_fire: bool, out_fire: bool, cycle: int, in_valid: bool) -> None:
    """``model.step`` over one clock edge, with ``in_valid`` (``i.valid``) where it takes it."""
    if "in_valid" in inspect.signature(model.step).parameters:
        model.step(in_fire, out_fire, cycle, in_valid=in_valid)
    else:
        model.step(in_fire, out_fire, cycle)


# --- cocotb side -------------------------------------------------------------------------------

def _load_config() -> dict:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; run this testbench through "
                           "tests/test_cosim_stream_stages.py")
    return json.loads(Path(path).read_text())


def _pause_generator(rng: random.Random, prob: float):
    while True:
        yield rng.random() < prob


class TB:
    """Clock, reset, AXI-Stream source and sink and a per-cycle handshake monitor for one
    stage top (:class:`StreamStageTop`).

    Attributes
    ----------
    trace
        ``(o.valid, o.ready, i.valid, i.ready)`` of every cycle since the end of the reset.
    in_beats, out_beats
        Payloads of every input / output transfer seen by the monitor, in order.
    """

    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        # No tkeep: one "byte" of the full tdata width per beat (any width, 1 bit included).
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst,
                                      byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst,
                                  byte_lanes=1)
        for part in (self.source, self.sink):
            part.log.setLevel(logging.WARNING)   # one "frame" per beat: no per-beat INFO lines
        self.trace: list[tuple[bool, bool, bool, bool]] = []
        self.in_beats: list[int] = []
        self.out_beats: list[int] = []
        self.monitoring = False
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if not self.monitoring or dut.rst.value:
                continue
            ov, orr = bool(dut.m_axis_tvalid.value), bool(dut.m_axis_tready.value)
            iv, ir = bool(dut.s_axis_tvalid.value), bool(dut.s_axis_tready.value)
            self.trace.append((ov, orr, iv, ir))
            if iv and ir:
                self.in_beats.append(int(dut.s_axis_tdata.value))
            if ov and orr:
                self.out_beats.append(int(dut.m_axis_tdata.value))

    def set_traffic(self, idle_prob: float, stall_prob: float, seed: int) -> None:
        """Seeded random source idle cycles and sink backpressure (none at probability 0)."""
        if idle_prob > 0:
            self.source.set_pause_generator(_pause_generator(random.Random(seed), idle_prob))
        else:
            self.source.clear_pause_generator()
            self.source.pause = False
        if stall_prob > 0:
            self.sink.set_pause_generator(_pause_generator(random.Random(seed + 7), stall_prob))
        else:
            self.sink.clear_pause_generator()
            self.sink.pause = False

    async def reset(self, cycles: int = 4) -> None:
        """Synchronous reset for ``cycles`` cycles; the monitor starts with the first cycle
        after it (cycle 0)."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0          # after the edge: that edge still saw rst = 1
        self.trace.clear()
        self.in_beats.clear()
        self.out_beats.clear()
        self.monitoring = True

    async def send(self, beats: list[int], per_frame: int) -> None:
        """Queue ``beats`` as frames of ``per_frame`` beats (one per image; no ``tlast``, so the
        source sends them back to back)."""
        for k in range(0, len(beats), per_frame):
            await self.source.send(AxiStreamFrame(list(beats[k:k + per_frame])))

    def received(self) -> list[int]:
        """Every beat the sink has received so far (one frame per beat without ``tlast``)."""
        beats = []
        while not self.sink.empty():
            beats.extend(self.sink.recv_nowait().tdata)
        return beats


def replay_timing(model, trace, drop_in_fire: int | None = None) -> list[str]:
    """Step ``model`` through ``trace`` (``drop_in_fire``: an input transfer to hide from it,
    by number); the differences, first first."""
    errors = []
    in_fires = 0
    for cycle, (o_valid, o_ready, i_valid, i_ready) in enumerate(trace):
        if model.valid() != o_valid:
            errors.append(f"cycle {cycle}: o.valid is {int(o_valid)}, the timing model says "
                          f"{int(model.valid())}")
        if model.ready(o_ready) != i_ready:
            errors.append(f"cycle {cycle}: i.ready is {int(i_ready)}, the timing model says "
                          f"{int(model.ready(o_ready))} (o.ready {int(o_ready)})")
        in_fire = i_valid and i_ready
        if in_fire:
            in_fires += 1
            in_fire = in_fires - 1 != drop_in_fire
        step_model(model, in_fire, o_valid and o_ready, cycle, i_valid)
    return errors


def _report(cfg: dict, **facts) -> None:
    path = cfg.get("report")
    if path:
        Path(path).write_text(json.dumps(facts, indent=1))


@cocotb.test()
async def test_stream_stage(dut):
    """Random images through the stage with random idle/backpressure: every beat vs numpy,
    every cycle's handshake vs the timing model, nothing lost, duplicated or extra."""
    cfg = _load_config()
    kind, geo = cfg["kind"], cfg["geometry"]
    inject = cfg.get("inject") or {}
    beats_in, expected = reference_beats(cfg)
    per_img = len(expected) // int(cfg["images"])
    eager = eager_beats(cfg)
    expected = list(expected) + eager
    if "flip_expected_beat" in inject:
        expected[int(inject["flip_expected_beat"])] ^= 1
    n_img = int(cfg["images"])
    drain = int(cfg.get("drain_cycles", 50))
    timeout = int(cfg.get("timeout_cycles") or 20 * (len(beats_in) + len(expected)) + 1000)

    tb = TB(dut)
    tb.set_traffic(float(cfg.get("idle_prob", 0.0)), float(cfg.get("stall_prob", 0.0)),
                   int(cfg["seed"]))
    await tb.reset()
    await tb.send(beats_in, len(beats_in) // n_img)

    errors: list[str] = []
    waited = 0
    while len(tb.out_beats) < len(expected) and waited < timeout:
        await RisingEdge(dut.clk)
        waited += 1
    if len(tb.out_beats) < len(expected):
        errors.append(f"timeout: {len(tb.out_beats)} of {len(expected)} output beats and "
                      f"{len(tb.in_beats)} of {len(beats_in)} input beats after {waited} cycles")
    last_out = len(tb.trace)
    # Anything more must leave now: the sink takes every beat from here on.
    tb.sink.clear_pause_generator()
    tb.sink.pause = False
    await ClockCycles(dut.clk, drain)
    await FallingEdge(dut.clk)
    await RisingEdge(dut.clk)           # the sink has stored the last monitored transfer
    got = tb.received()

    # (c) no loss, duplication or extra beats; inputs accepted exactly once, in order.
    if len(tb.in_beats) != len(beats_in) or tb.in_beats != list(beats_in):
        errors.append(f"accepted {len(tb.in_beats)} input beats, sent {len(beats_in)}"
                      + ("" if len(tb.in_beats) != len(beats_in) else " (in another order)"))
    if len(tb.out_beats) != len(expected):
        errors.append(f"{len(tb.out_beats)} output beats, expected {len(expected)} "
                      f"({len(tb.out_beats) - len(expected):+d}, counted {drain} cycles after "
                      "the last expected one)")
    if got != tb.out_beats:
        errors.append(f"the sink received {len(got)} beats, the monitor saw "
                      f"{len(tb.out_beats)} different ones")
    # (a) every output beat against the reference.
    mismatches = [{"beat": b, "image": b // per_img, "beat_in_image": b % per_img,
                   "expected": int(e), "got": int(g)}
                  for b, (e, g) in enumerate(zip(expected, got)) if e != g]
    if mismatches:
        m = mismatches[0]
        errors.append(f"{len(mismatches)} wrong output beats; first: beat {m['beat']} (image "
                      f"{m['image']}, beat {m['beat_in_image']}): expected 0x{m['expected']:x}, "
                      f"got 0x{m['got']:x}")
    # (b) cycle exactness: replay the timing model with the recorded handshakes.
    timing = replay_timing(make_timing(kind, geo), tb.trace,
                           drop_in_fire=inject.get("model_drop_in_fire"))
    if timing:
        errors.append(f"{len(timing)} handshake differences from the timing model; first: "
                      f"{timing[0]}")

    trace = np.array(tb.trace, dtype=bool).reshape(-1, 4)
    ov, orr, iv, ir = trace.T
    _report(cfg, errors=errors, cycles=len(tb.trace), last_output_cycle=last_out - 1,
            input_beats=len(tb.in_beats), output_beats=len(tb.out_beats),
            expected_input_beats=len(beats_in), expected_output_beats=len(expected),
            eager_output_beats=len(eager),
            received=len(got), mismatch_count=len(mismatches),
            mismatches=mismatches[:_MAX_REPORTED], timing_errors=timing[:_MAX_REPORTED],
            timing_error_count=len(timing),
            # Where the traffic bit: o.valid held against o.ready low, i.valid refused, and
            # input idle cycles between the first and the last input transfer.
            output_stall_cycles=int(np.sum(ov & ~orr)),
            input_refused_cycles=int(np.sum(iv & ~ir)),
            input_idle_cycles=_idle_between_transfers(iv, iv & ir))
    assert not errors, f"{kind} {cfg['elem']} {geo}: " + "; ".join(errors)


def _idle_between_transfers(valid: np.ndarray, fire: np.ndarray) -> int:
    """Cycles with ``valid`` low between the first and the last transfer."""
    idx = np.flatnonzero(fire)
    return int(np.sum(~valid[idx[0]:idx[-1] + 1])) if idx.size else 0
