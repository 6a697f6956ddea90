"""cocotb 2.x testbench for a generated ``fracbnn_top`` (run through sim.cosim).

The Python side (:mod:`sim.cosim`) writes a JSON configuration and an ``.npz``
of arrays and names the JSON in the ``FRACBNN_TB_CONFIG`` environment
variable.  Configuration keys:

``arrays``            path of the ``.npz``: ``images`` uint8 (N, P), ``classes``
                      int64 (N,), ``scores`` int64 (N, C); optional
                      ``pred_accept``/``pred_output`` int64 (N,): predicted cycle of
                      each image's first accepted input beat / first output beat
                      (any origin; compared relative to image 0's accept cycle).
``pixels_per_beat``, ``pixels``, ``classes``
``seed``              seed of the random idle cycles / backpressure.
``idle_prob``         probability of an idle input cycle (``test_images``).
``stall_prob``        probability of ``m_axis_tready`` low (``test_images``).
``registers``         ``{"0x00": value, ...}`` expected read-only register values.
``report``            path of a JSON file the tests write their findings to; the
                      results each test received go next to it as
                      ``<test>_outputs.npz`` (``classes``, ``scores``).
``waves``             path of the waveform file, or null (quoted in failures).
``timeout_cycles``    per-test cycle budget.
``exit_counts``       optional (networks with early exits): per exit the images whose
                      result leaves through it; ``test_images`` compares EXITS and the
                      EXITj_TAKEN registers with it, and checks that CTRL clears them.
``taps``              optional per-layer taps: ``{"layer", "instance", "consumer", "out",
                      "pe", "neuron_folds", "out_features", "acc_width"}``; the
                      monitor records the beats of ``<instance>.o`` (valid/payload)
                      accepted by ``<consumer>.i__ready`` and ``test_images`` /
                      ``test_cycles`` compare them with the arrays ``layer<i>``
                      (the golden model's per-layer outputs: bits, codes q, scores).

Tests (each starts from a reset):

* ``test_registers``: ID/VERSION/CONFIG/layer registers equal the expected
  values; STATUS idle and error-free after reset.
* ``test_images``: all N images back to back with seeded random input idle
  cycles and output backpressure; every class and score compared exactly;
  every tapped layer's outputs compared with the golden model's per-layer
  outputs of the images that reach the layer (a mismatch names image, layer and neuron); then IMAGES_DONE == N,
  CYCLES within the cycles counted since reset, STATUS
  clean, the exit counters (``exit_counts``) exact, and CTRL bit 0 clears the
  counters.
* ``test_cycles``: the images with no idle cycles and the output always
  ready; per-image first-input-accept and first-output cycles must equal the
  predictions exactly (when given); outputs compared too.
* ``test_reset_mid_image``: reset asserted in the middle of an image, then all
  images again: exact outputs, nothing stale.
* ``test_framing_error``: an image whose TLAST comes early sets STATUS bit 1
  (sticky); CTRL bit 0 clears it; after a reset the next image is exact.
* ``test_load_parameters`` (designs with writable parameters; config ``param_writes``
  and arrays ``load_classes``/``load_scores``): the images give the design's own network's
  results, then network B's memories are written through PARAM_SELECT/PARAM_DATA and the
  images give B's results.

Handshakes are sampled at the falling clock edge (all signals are stable
there), so a transfer seen at falling edge k happens at rising edge k.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from sim.taps import compare_tap, decode_tap, tap_wires

__all__ = ["TB", "test_registers", "test_images", "test_cycles", "test_reset_mid_image",
           "test_framing_error", "test_load_parameters"]

#: Register addresses (docs/hardware.md, "Register map").
REG_ID, REG_VERSION, REG_CONFIG, REG_STATUS = 0x00, 0x04, 0x08, 0x0C
REG_IMAGES_DONE, REG_CYCLES_LO, REG_CYCLES_HI, REG_CTRL = 0x10, 0x14, 0x18, 0x1C
REG_EXITS, REG_EXIT_BASE = 0xD0, 0xD4        # EXITj_TAKEN at REG_EXIT_BASE + 4j
STATUS_BUSY, STATUS_FRAMING_ERROR = 1, 2
ID_VALUE = 0x464E4231

_MAX_REPORTED = 20  # mismatches listed in the report


def _load_config() -> dict:
    path = os.environ.get("FRACBNN_TB_CONFIG")
    if not path:
        raise RuntimeError("FRACBNN_TB_CONFIG is not set; run this testbench through sim.cosim")
    cfg = json.loads(Path(path).read_text())
    with np.load(cfg["arrays"]) as arrays:
        cfg["_arrays"] = {k: arrays[k] for k in arrays.files}
    return cfg


def _report(cfg: dict, test: str, **facts) -> None:
    """Merge ``facts`` into the report file under ``test``."""
    path = Path(cfg["report"])
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(test, {}).update(facts)
    path.write_text(json.dumps(data, indent=1))


def _pause_generator(rng: random.Random, prob: float):
    while True:
        yield rng.random() < prob


class TB:
    """Clock, reset, AXI-Stream source/sink, AXI-Lite master and a cycle monitor.

    Parameters
    ----------
    dut
        The ``fracbnn_top`` handle.
    cfg
        The testbench configuration (module docstring).
    """

    def __init__(self, dut, cfg: dict):
        self.dut, self.cfg = dut, cfg
        self.classes = int(cfg["classes"])
        self.pixels = int(cfg["pixels"])
        self.ppb = int(cfg["pixels_per_beat"])
        self.beats = self.pixels // self.ppb
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.cycle = 0               # rising edges since the end of the last reset
        self.in_beats: list[int] = []   # cycle of every accepted input beat
        self.out_beats: list[int] = []  # cycle of every output beat
        self.taps, self.tap_note = self._find_taps(cfg.get("taps") or [])
        cocotb.start_soon(self._monitor())

    def _signal(self, instance: str, name: str, flat: dict):
        """``instance.name`` as a submodule port, or as the flattened escaped identifier
        ``\\instance.name`` that Amaranth/Yosys emit when the hierarchy is flattened."""
        try:
            return getattr(self.dut, instance)[name]
        except (AttributeError, KeyError):
            pass
        for key in (f"\\{instance}.{name} ", f"{instance}.{name}"):
            if key in flat:
                return flat[key]
        raise LookupError(f"no signal {instance}.{name} in {self.dut._name}")

    def _find_taps(self, specs: list[dict]):
        """Handles of each layer engine's output stream, or none (with the reason)."""
        taps = []
        flat = {h._name: h for h in self.dut} if specs else {}  # escaped names only list
        for spec in specs:
            try:
                handles = tuple(self._signal(*wire.rsplit(".", 1), flat)
                                for wire in tap_wires(spec))
            except LookupError as exc:
                return [], f"layer taps unavailable ({exc})"
            taps.append({**spec, "handles": handles, "beats": []})
        return taps, f"{len(taps)} layer taps" if taps else "no layer taps configured"

    async def _monitor(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if dut.rst.value:
                self.cycle = 0
                continue
            self.cycle += 1  # the coming rising edge is cycle number self.cycle
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                self.in_beats.append(self.cycle)
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                self.out_beats.append(self.cycle)
            for tap in self.taps:
                valid, payload, ready = tap["handles"]
                if valid.value and ready.value:
                    tap["beats"].append(int(payload.value))

    def set_traffic(self, idle_prob: float, stall_prob: float, seed: int) -> None:
        """Random input idle cycles and output backpressure (0 = none)."""
        rng = random.Random(seed)
        if idle_prob > 0:
            self.source.set_pause_generator(_pause_generator(rng, idle_prob))
        else:
            self.source.clear_pause_generator()
        if stall_prob > 0:
            self.sink.set_pause_generator(_pause_generator(rng, stall_prob))
        else:
            self.sink.clear_pause_generator()

    async def reset(self, cycles: int = 4) -> None:
        """Synchronous active-high reset for ``cycles`` cycles; clears the monitor."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.sink.clear()
        self.in_beats.clear()
        self.out_beats.clear()
        for tap in self.taps:
            tap["beats"].clear()
        await RisingEdge(self.dut.clk)

    def image_frame(self, image: np.ndarray) -> AxiStreamFrame:
        """One image as an AXI-Stream frame (pixel j of a beat at bits [8j, 8j+8))."""
        return AxiStreamFrame(bytes(np.asarray(image, dtype=np.uint8)))

    async def read(self, addr: int) -> int:
        return await self.axil.read_dword(addr)

    async def write(self, addr: int, value: int) -> None:
        await self.axil.write_dword(addr, value)

    async def receive(self, timeout_cycles: int) -> list[tuple[int, np.ndarray] | str]:
        """Receive one result frame: (class, scores) or a string describing bad framing."""
        words_expected = 1 + self.classes
        frame = await _with_timeout(self.sink.recv(), self.dut.clk, timeout_cycles)
        data = bytes(frame.tdata)
        if len(data) != 4 * words_expected:
            return f"result frame has {len(data) // 4} beats, expected {words_expected} (TLAST misplaced)"
        words = np.frombuffer(data, dtype="<u4").astype(np.int64)
        scores = np.where(words[1:] >= 2**31, words[1:] - 2**32, words[1:])
        return int(words[0]), scores


async def _with_timeout(coro, clk, cycles: int):
    from cocotb.triggers import with_timeout
    return await with_timeout(coro, 10 * cycles, "ns")


def _compare(cfg: dict, index: int, got, expected_class: int, expected_scores: np.ndarray,
             mismatches: list) -> None:
    """Append a description of every difference for image ``index``."""
    if isinstance(got, str):
        mismatches.append({"image": index, "what": "framing", "detail": got})
        return
    cls, scores = got
    if cls != expected_class:
        mismatches.append({"image": index, "what": "class", "expected": int(expected_class),
                           "got": cls})
    for c in np.flatnonzero(scores != expected_scores):
        mismatches.append({"image": index, "what": "score", "layer": "last", "neuron": int(c),
                           "expected": int(expected_scores[c]), "got": int(scores[c])})


def _fail_message(cfg: dict, test: str, mismatches: list) -> str:
    first = mismatches[0]
    where = f"image {first['image']}"
    if first["what"] == "score":
        where += f", last layer neuron (score index) {first['neuron']}"
    elif first["what"] == "layer output":
        where += f", layer {first['layer']} neuron {first['neuron']}"
    detail = (first.get("detail") or
              f"{first['what']}: expected {first['expected']}, got {first['got']}")
    waves = cfg.get("waves") or "none (rebuild with waves='fst' to trace)"
    return f"{test}: {len(mismatches)} mismatches; first at {where}: {detail}; waveform: {waves}"


def _check_taps(tb: TB, cfg: dict, count: int, mismatches: list) -> dict:
    """Compare every tapped layer's outputs with the golden model's per-layer outputs."""
    arrays = cfg["_arrays"]
    checked = []
    for tap in tb.taps:
        key = f"layer{tap['layer']}"
        if key not in arrays:
            continue
        # With early exits a later engine sees fewer images: the golden rows are those it saw.
        expected = arrays[key][:count]
        got = decode_tap(tap, tap["beats"], count)
        _, problems = compare_tap(tap, got, expected, limit=None)
        mismatches += problems
        if got.shape == expected.shape:
            checked.append(tap["layer"])
    return {"taps": tb.tap_note, "layers_checked": checked}


async def _send_and_check(tb: TB, cfg: dict, test: str, images, classes, scores,
                          taps: bool = False) -> list:
    """Queue all images back to back, receive and compare every result."""
    timeout = int(cfg.get("timeout_cycles", 200_000))
    for image in images:
        await tb.source.send(tb.image_frame(image))
    mismatches: list = []
    got_classes = np.full(len(images), -1, dtype=np.int64)
    got_scores = np.zeros((len(images), tb.classes), dtype=np.int64)
    for i in range(len(images)):
        got = await tb.receive(timeout)
        _compare(cfg, i, got, int(classes[i]), scores[i], mismatches)
        if not isinstance(got, str):
            got_classes[i], got_scores[i] = got
    tap_mismatches: list = []
    tap_facts = _check_taps(tb, cfg, len(images), tap_mismatches) if taps else {}
    mismatches[:0] = tap_mismatches  # inner layers first: they locate the divergence
    # Everything received, for callers that compare themselves (class -1: bad framing).
    outputs = Path(cfg["report"]).with_name(f"{test}_outputs.npz")
    np.savez(outputs, classes=got_classes, scores=got_scores)
    _report(cfg, test, images=len(images), mismatches=mismatches[:_MAX_REPORTED],
            mismatch_count=len(mismatches), outputs=str(outputs), **tap_facts)
    return mismatches


@cocotb.test()
async def test_registers(dut):
    """Identification and configuration registers after reset."""
    cfg = _load_config()
    tb = TB(dut, cfg)
    await tb.reset()
    errors = []
    expected = {int(k, 0): int(v) for k, v in cfg.get("registers", {}).items()}
    expected.setdefault(REG_ID, ID_VALUE)
    read = {}
    for addr, value in sorted(expected.items()):
        read[addr] = await tb.read(addr)
        if read[addr] != value:
            errors.append(f"register 0x{addr:02X}: expected 0x{value:08X}, got 0x{read[addr]:08X}")
    status = await tb.read(REG_STATUS)
    if status & (STATUS_BUSY | STATUS_FRAMING_ERROR):
        errors.append(f"STATUS after reset is 0x{status:08X}, expected busy=0 error=0")
    done = await tb.read(REG_IMAGES_DONE)
    if done != 0:
        errors.append(f"IMAGES_DONE after reset is {done}, expected 0")
    _report(cfg, "test_registers", read={f"0x{a:02X}": v for a, v in read.items()}, errors=errors)
    assert not errors, "; ".join(errors)


@cocotb.test()
async def test_images(dut):
    """All images with random idle cycles and backpressure; counters afterwards."""
    cfg = _load_config()
    arrays = cfg["_arrays"]
    tb = TB(dut, cfg)
    tb.set_traffic(float(cfg.get("idle_prob", 0.0)), float(cfg.get("stall_prob", 0.0)),
                   int(cfg.get("seed", 1)))
    await tb.reset()
    start = cocotb.utils.get_sim_time("ns")
    mismatches = await _send_and_check(tb, cfg, "test_images", arrays["images"],
                                       arrays["classes"], arrays["scores"], taps=True)
    sim_ns = cocotb.utils.get_sim_time("ns") - start
    assert not mismatches, _fail_message(cfg, "test_images", mismatches)
    n = len(arrays["images"])
    errors = []
    await FallingEdge(dut.clk)
    done = await tb.read(REG_IMAGES_DONE)
    # CYCLES counts clock cycles since reset: it must lie within the cycles the
    # monitor counted before and after the read (+-2 for where counting starts).
    before = tb.cycle
    lo = await tb.read(REG_CYCLES_LO)
    after = tb.cycle
    hi = await tb.read(REG_CYCLES_HI)
    status = await tb.read(REG_STATUS)
    if done != n:
        errors.append(f"IMAGES_DONE is {done}, expected {n}")
    counted = (hi << 32) | lo
    if not before - 2 <= counted <= after + 2:
        errors.append(f"CYCLES is {counted}, expected {before}..{after} cycles since reset")
    if status & (STATUS_BUSY | STATUS_FRAMING_ERROR):
        errors.append(f"STATUS is 0x{status:08X} after all results, expected idle without error")
    want_exits = cfg.get("exit_counts")
    taken = []
    if want_exits is not None:
        exits = await tb.read(REG_EXITS)
        if exits != len(want_exits):
            errors.append(f"EXITS is {exits}, expected {len(want_exits)}")
        taken = [await tb.read(REG_EXIT_BASE + 4 * j) for j in range(len(want_exits))]
        if taken != list(want_exits):
            errors.append(f"EXITj_TAKEN read {taken}, expected {list(want_exits)}")
    await tb.write(REG_CTRL, 1)
    done_after = await tb.read(REG_IMAGES_DONE)
    cycles_after = await tb.read(REG_CYCLES_LO)
    if done_after != 0:
        errors.append(f"IMAGES_DONE is {done_after} after CTRL clear, expected 0")
    if cycles_after >= counted or cycles_after > 16:
        errors.append(f"CYCLES is {cycles_after} a few cycles after CTRL clear, expected < 16")
    if want_exits is not None:
        cleared = [await tb.read(REG_EXIT_BASE + 4 * j) for j in range(len(want_exits))]
        if any(cleared):
            errors.append(f"EXITj_TAKEN read {cleared} after CTRL clear, expected zeros")
    _report(cfg, "test_images", sim_ns=sim_ns, cycles=counted, exit_counts=taken,
            errors=errors)
    assert not errors, "; ".join(errors)


@cocotb.test()
async def test_cycles(dut):
    """Full input rate, output always ready: per-image cycles vs the cycle model."""
    cfg = _load_config()
    arrays = cfg["_arrays"]
    tb = TB(dut, cfg)
    tb.set_traffic(0.0, 0.0, 0)
    await tb.reset()
    images = arrays["images"]
    mismatches = await _send_and_check(tb, cfg, "test_cycles", images, arrays["classes"],
                                       arrays["scores"], taps=True)
    assert not mismatches, _fail_message(cfg, "test_cycles", mismatches)
    n = len(images)
    accept = np.asarray(tb.in_beats[::tb.beats][:n], dtype=np.int64)
    output = np.asarray(tb.out_beats[::1 + tb.classes][:n], dtype=np.int64)
    origin = int(accept[0])
    facts = {"accept": (accept - origin).tolist(), "output": (output - origin).tolist(),
             "input_beats": len(tb.in_beats), "output_beats": len(tb.out_beats)}
    errors = []
    if len(tb.in_beats) != n * tb.beats or len(tb.out_beats) != n * (1 + tb.classes):
        errors.append(f"saw {len(tb.in_beats)} input / {len(tb.out_beats)} output beats, expected "
                      f"{n * tb.beats} / {n * (1 + tb.classes)}")
    if "pred_accept" in arrays:
        pa = arrays["pred_accept"].astype(np.int64)
        po = arrays["pred_output"].astype(np.int64)
        p0 = int(pa[0])
        for name, got, pred in (("input accept", accept - origin, pa - p0),
                                ("first output", output - origin, po - p0)):
            bad = np.flatnonzero(got != pred)
            if bad.size:
                i = int(bad[0])
                errors.append(f"{name} cycle of image {i} is {int(got[i])}, cycle model says "
                              f"{int(pred[i])} ({bad.size} images differ)")
    _report(cfg, "test_cycles", errors=errors, **facts)
    assert not errors, "; ".join(errors)


@cocotb.test()
async def test_reset_mid_image(dut):
    """Reset in the middle of an image, then every image again must be exact."""
    cfg = _load_config()
    arrays = cfg["_arrays"]
    tb = TB(dut, cfg)
    await tb.reset()
    images = arrays["images"]
    # Half an image (as its own frame, so the source stops there), then reset.
    half = (tb.beats // 2) * tb.ppb or tb.ppb
    await tb.source.send(AxiStreamFrame(bytes(images[0][:half].astype(np.uint8))))
    await tb.source.wait()
    await ClockCycles(dut.clk, 3)
    await tb.reset()
    errors = []
    status = await tb.read(REG_STATUS)
    if status & (STATUS_BUSY | STATUS_FRAMING_ERROR):
        errors.append(f"STATUS after the reset is 0x{status:08X}, expected idle without error")
    if not tb.sink.empty():
        errors.append("a result appeared for the half image")
    count = min(len(images), 3)
    mismatches = await _send_and_check(tb, cfg, "test_reset_mid_image", images[:count],
                                       arrays["classes"][:count], arrays["scores"][:count])
    assert not mismatches, _fail_message(cfg, "test_reset_mid_image", mismatches)
    await ClockCycles(dut.clk, 4 * (1 + tb.classes) + 20)
    if not tb.sink.empty():
        errors.append("extra result frames after the expected ones")
    done = await tb.read(REG_IMAGES_DONE)
    if done != count:
        errors.append(f"IMAGES_DONE is {done} after the reset and {count} images, expected {count}")
    _report(cfg, "test_reset_mid_image", errors=errors)
    assert not errors, "; ".join(errors)


@cocotb.test()
async def test_framing_error(dut):
    """Early TLAST sets the sticky framing-error bit; CTRL clears it."""
    cfg = _load_config()
    arrays = cfg["_arrays"]
    tb = TB(dut, cfg)
    await tb.reset()
    errors = []
    if tb.beats < 2:
        _report(cfg, "test_framing_error", skipped="one beat per image: TLAST cannot come early")
        return
    image = arrays["images"][0].astype(np.uint8)
    # Same beat count, but TLAST on beat 0 as well as on the last beat.
    await tb.source.send(AxiStreamFrame(bytes(image[:tb.ppb])))
    await tb.source.send(AxiStreamFrame(bytes(image[tb.ppb:])))
    await tb.source.wait()
    await ClockCycles(dut.clk, 4)
    status = await tb.read(REG_STATUS)
    if not status & STATUS_FRAMING_ERROR:
        errors.append(f"STATUS is 0x{status:08X} after an early TLAST, expected bit 1 set")
    # Sticky until cleared, whatever happens in between.
    await ClockCycles(dut.clk, 10)
    status2 = await tb.read(REG_STATUS)
    if not status2 & STATUS_FRAMING_ERROR:
        errors.append(f"framing error bit did not stay set (STATUS 0x{status2:08X})")
    await tb.write(REG_CTRL, 1)
    status3 = await tb.read(REG_STATUS)
    if status3 & STATUS_FRAMING_ERROR:
        errors.append(f"CTRL clear left STATUS at 0x{status3:08X}")
    # Recovery: after a reset the next image is exact and no error is flagged.
    await tb.reset()
    mismatches = await _send_and_check(tb, cfg, "test_framing_error", arrays["images"][:1],
                                       arrays["classes"][:1], arrays["scores"][:1])
    status4 = await tb.read(REG_STATUS)
    if status4 & STATUS_FRAMING_ERROR:
        errors.append(f"a well-framed image after reset set STATUS to 0x{status4:08X}")
    _report(cfg, "test_framing_error", errors=errors)
    assert not mismatches, _fail_message(cfg, "test_framing_error", mismatches)
    assert not errors, "; ".join(errors)


@cocotb.test()
async def test_load_parameters(dut):
    """Writable parameters: the images give network A's results; the register writes
    ``param_writes`` (network B's memories through PARAM_SELECT / PARAM_DATA) are made on the
    idle accelerator; the same images then give B's results (``load_classes``,
    ``load_scores``), every one exact."""
    cfg = _load_config()
    arrays = cfg["_arrays"]
    writes = cfg.get("param_writes")
    assert writes, "test_load_parameters needs param_writes (TestbenchSpec.param_writes)"
    tb = TB(dut, cfg)
    await tb.reset()
    mismatches = await _send_and_check(tb, cfg, "test_load_parameters_a", arrays["images"],
                                       arrays["classes"], arrays["scores"])
    assert not mismatches, _fail_message(cfg, "test_load_parameters (network A)", mismatches)
    info = await tb.read(0xF8)
    assert info >> 31 == 1, f"PARAM_SELECT reads 0x{info:08X}: the design is not writable"
    for offset, value in writes:
        await tb.write(int(offset), int(value))
    mismatches = await _send_and_check(tb, cfg, "test_load_parameters", arrays["images"],
                                       arrays["load_classes"], arrays["load_scores"])
    _report(cfg, "test_load_parameters", writes=len(writes))
    assert not mismatches, _fail_message(cfg, "test_load_parameters (network B)", mismatches)
