"""What a generated accelerator must produce: golden results, registers, cycle predictions.

Everything here comes from the compiled network, independently of the RTL:
classes and scores from :class:`sw.golden.GoldenModel`, the read-only register
values from the documented register map (docs/hardware.md "Register map"),
and per-image cycle stamps from :func:`hw.cycle_model.simulate_pipeline`
(which takes the golden model's gate decisions, because a frac layer skips the
LSB pass of a neuron fold whose gates are all closed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.compiled_net import CompiledNetwork
from sw.golden import GoldenModel, GoldenResult

__all__ = ["REGISTER_ID", "REGISTER_VERSION", "REGISTER_EXITS", "REGISTER_EXIT_BASE",
           "expected_registers", "exit_counts", "layer_outputs_seen", "layer_taps", "Reference",
           "reference", "compare_outputs", "compare_timing"]

REGISTER_ID = 0x464E4231        # "FNB1"
REGISTER_VERSION = 0x00010001   # register map 1.1
REGISTER_EXITS = 0xD0           # EXITS; EXITj_TAKEN at REGISTER_EXIT_BASE + 4j
REGISTER_EXIT_BASE = 0xD4


def expected_registers(net: CompiledNetwork, pixels_per_beat: int) -> dict[int, int]:
    """Byte address -> value of every constant register of the design for ``net``.

    CONFIG = layers | PPB << 8 | classes << 16 | thermometer levels << 24; layer i
    at 0x20 + 8i: PE << 16 | SIMD, at 0x24 + 8i: MW << 16 | MH (true, unpadded sizes);
    EXITS (0xD0): the number of early exits.
    """
    regs = {0x00: REGISTER_ID, 0x04: REGISTER_VERSION,
            0x08: (len(net.layers) | pixels_per_beat << 8 | net.classes << 16
                   | net.input.levels << 24),
            REGISTER_EXITS: len(net.exits)}
    for i, layer in enumerate(net.layers):
        regs[0x20 + 8 * i] = layer.folding.pe << 16 | layer.folding.simd
        regs[0x24 + 8 * i] = layer.in_features << 16 | layer.out_features
    return regs


def exit_counts(net: CompiledNetwork, exits) -> list[int]:
    """Per early exit ``j`` the images that leave through it (the EXITj_TAKEN registers after
    they ran): ``exits`` is the golden model's per-image exit (``GoldenResult.exits``,
    ``len(net.exits)`` = no early exit)."""
    counts = np.bincount(np.asarray(exits, dtype=np.int64), minlength=len(net.exits) + 1)
    return [int(c) for c in counts[:len(net.exits)]]


def layer_outputs_seen(net: CompiledNetwork, golden: GoldenResult) -> list[np.ndarray]:
    """Per layer the golden outputs of the images its engine sees, in order: every image
    without early exits; with them, an image that leaves at exit ``j`` (after layer ``k``)
    is not seen by the engines after ``k``."""
    stop = np.array([ex.after for ex in net.exits] + [len(net.layers)])[
        np.asarray(golden.exits, dtype=np.int64)]
    return [np.asarray(out)[stop >= i] for i, out in enumerate(golden.layer_outputs)]


def layer_taps(design: dict) -> list[dict]:
    """Where each layer engine's output stream can be observed in the generated design.

    ``design`` is the design's ``design.json``.  Engine ``i`` is the instance named by its
    ``mvtu`` stage (``mvtu<i>``); its output handshake completes when its consumer's
    ``i__ready`` is high (the next stage's, or the fork of the early exit after the layer:
    :func:`hw.generate.tap_consumer`).  Returns the testbench's ``taps`` entries
    (sim/tb_accelerator.py).
    """
    from hw.generate import tap_consumer

    stages = design.get("stages") or []
    layers = {l["index"]: l for l in design.get("layers") or []}
    exits = [ex["after"] for ex in design.get("exits") or []]
    taps = []
    for k, stage in enumerate(stages[:-1]):
        if stage.get("kind") != "mvtu" or stage.get("layer") not in layers:
            continue
        layer = layers[stage["layer"]]
        taps.append({"layer": layer["index"], "instance": stage["name"],
                     "consumer": tap_consumer(layer["index"], stages[k + 1]["name"], exits),
                     "out": layer["out"],
                     "pe": layer["pe"],
                     "neuron_folds": layer["neuron_folds"],
                     "out_features": layer["out_features"], "acc_width": layer["acc_width"],
                     "vectors": layer.get("vectors", 1), "conv": layer.get("conv"),
                     "pool": layer.get("pool", 0), "levels": layer.get("levels", 0)})
    return taps


@dataclass
class Reference:
    """Expected behaviour for a batch of images.

    Attributes
    ----------
    golden
        The golden model's result (classes, scores, per-layer outputs, gates).
    accept, output
        Predicted cycle of each image's first accepted input beat and first
        output beat, images offered back to back at full rate with the output
        always ready; ``None`` if not computed.
    registers
        :func:`expected_registers`.
    """

    golden: GoldenResult
    accept: np.ndarray | None
    output: np.ndarray | None
    registers: dict[int, int]

    @property
    def latency(self) -> np.ndarray | None:
        return None if self.accept is None else self.output - self.accept


def reference(net: CompiledNetwork, images: np.ndarray, *, pixels_per_beat: int,
              cycle_model: bool = True, start: int = 0, stop: int | None = None,
              golden: GoldenResult | None = None) -> Reference:
    """Golden outputs, register values and (optionally) cycle predictions for ``images``.

    ``net`` must carry the folding the design was generated with.  With ``start``/``stop``
    the cycle predictions are for images ``start..stop-1`` streamed on their own from reset
    (one shard of a sharded run); ``golden`` reuses a golden-model result of ``images``.
    """
    golden = golden if golden is not None else GoldenModel(net).run(
        np.asarray(images, dtype=np.uint8))
    stop = len(images) if stop is None else stop
    accept = output = None
    if cycle_model:
        from hw.cycle_model import simulate_pipeline
        gates = [None if g is None else g[start:stop] for g in golden.gates]
        paths = {} if not net.exits else {
            "exits": np.asarray(golden.exits[start:stop]),
            "exit_gates": [None if g is None else g[start:stop] for g in golden.exit_gates]}
        pred = simulate_pipeline(net, stop - start, pixels_per_beat=pixels_per_beat,
                                 gates=gates, **paths)
        accept, output = np.asarray(pred.input_start), np.asarray(pred.output_start)
    return Reference(golden, accept, output, expected_registers(net, pixels_per_beat))


def compare_outputs(classes: np.ndarray, scores: np.ndarray, golden: GoldenResult,
                    limit: int = 10) -> tuple[int, list[str]]:
    """Count images whose class or any score differs; describe the first ``limit`` differences.

    Returns ``(mismatched_images, descriptions)``; a description names the image,
    what differs (class, or the score index = last-layer neuron), expected and got.
    """
    bad_class = classes != golden.classes
    bad_score = scores != golden.scores
    bad = bad_class | bad_score.any(axis=1)
    notes = []
    for i in np.flatnonzero(bad)[:limit]:
        if bad_class[i]:
            notes.append(f"image {i}: class expected {golden.classes[i]}, got {classes[i]}")
        for c in np.flatnonzero(bad_score[i]):
            notes.append(f"image {i}: last layer neuron (score) {c} expected "
                         f"{golden.scores[i, c]}, got {scores[i, c]}")
    return int(bad.sum()), notes


def compare_timing(measured_accept: np.ndarray, measured_output: np.ndarray,
                   ref: Reference) -> list[str]:
    """Differences between measured and predicted cycle stamps (both relative to image 0's
    first accepted input beat); empty if they agree exactly."""
    if ref.accept is None:
        return []
    notes = []
    m0, p0 = int(measured_accept[0]), int(ref.accept[0])
    for name, got, pred in (("first input accept", measured_accept - m0, ref.accept - p0),
                            ("first output", measured_output - m0, ref.output - p0)):
        bad = np.flatnonzero(np.asarray(got) != np.asarray(pred))
        if bad.size:
            i = int(bad[0])
            notes.append(f"{name} cycle of image {i}: measured {int(got[i])}, cycle model "
                         f"{int(pred[i])} ({bad.size} of {len(got)} images differ)")
    return notes
