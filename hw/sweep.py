"""``python -m hw.sweep EXPORTDIR --out DIR [--points N] [--jobs J] [--clock MHZ] [--board NAME]
[--budget lut=..,bram=..] [--gating-stats] [--cosim K] [--images N]``: a design-space sweep
and its Pareto front.

Contract
--------
1. *Points*: initiation intervals spaced geometrically from the fastest folding that fits the
   board's part (``--board``, default Ultra96: the xczu3eg's LUT / FF / BRAM36, modelled;
   ``--budget`` narrows it) (:func:`hw.fold.fold_for_target` at ever lower FPS) to 16x the
   export's own II; for each, the cheapest folding by the resource model (:mod:`hw.fold`,
   weight placement included), its exact steady-state II re-checked with the cycle model (the
   model the RTL is checked against).  Foldings that repeat are dropped.  Networks with frac
   layers: every point also gets its II with every gate open and its mean II under the export's
   test vectors' gate decisions (the images/s gating buys); ``--gating-stats`` folds for the
   latter.
2. *Synthesis*: every point's design is generated (``hw.generate``) and synthesised with Yosys
   ``synth_xilinx -family xcup`` (:func:`hw.yosys_estimate.yosys_estimate`: LUT, FF, BRAM36 and
   the logic-depth timing proxy), ``--jobs`` designs at a time.  A point whose generated design
   (Verilog and memory files) is unchanged since an earlier run in ``--out`` is not synthesised
   again; neither is one whose design matches a record of the resource model's calibration data
   (``hw/calibration/xcup.json``).
3. *Front*: the points that no other point beats on both images/s (at the stated clock) and
   Yosys LUTs.  ``DIR/sweep.json`` holds every point, ``DIR/pareto.png`` plots images/s against
   LUTs (BRAM36 as colour) and against BRAM36.
4. *Co-simulation*: the ``--cosim`` fastest points of the front run ``--images`` MNIST test
   images through the RTL (``python -m sim.run --fold``), bit-exact and cycle-exact or the
   sweep fails.

Every FPS figure states its clock and where the clock comes from (:func:`boards.resolve_clock`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sw.errors import UserError, cli_main

__all__ = ["plan_points", "pareto_front", "sweep", "main"]

#: Published LFC-W1A1 peers for images/s per LUT (as quoted in issue 8: BNN-PYNQ on PYNQ-Z1 at
#: II 512 and 100 MHz, FINN's LFC-max on ZC706).
PEERS = {"BNN-PYNQ LFC (PYNQ-Z1, 100 MHz, II 512)": (100e6 / 512, 28_360),
         "FINN LFC-max (ZC706)": (1.56e6, 83_000)}


def plan_points(net, count: int, clock_mhz: float, *, pixels_per_beat: int = 8,
                budget: dict | None = None, gates=None, progress=print) -> list:
    """Up to ``count`` distinct cheapest foldings (:class:`hw.fold.FoldResult`), fastest first,
    at initiation intervals spaced geometrically from the fastest folding within ``budget``
    (modelled LUT / FF / BRAM36; ``None``: unlimited) to 16x the export's own II.  ``gates``
    (recorded gate decisions, :func:`hw.fold.gate_stats`): frac layers are folded for their
    mean cycles under them instead of the worst case."""
    from .cycle_model import exact_steady_state_ii
    from .fold import fold_for_target, main_chain

    if count < 2:
        raise UserError(f"--points must be at least 2, not {count}")
    own = exact_steady_state_ii(main_chain(net), pixels_per_beat, gates="open") or 1.0
    lo = _fastest_ii(net, clock_mhz, pixels_per_beat, budget, gates)
    hi = max(own * 16, lo * 2)
    points, seen = [], set()
    start = time.monotonic()
    for k in range(count):
        ii = lo * (hi / lo) ** (k / (count - 1))
        # (a hair above ii, so that rounding cannot turn the fastest II into an infeasible one)
        res = fold_for_target(net, clock_mhz * 1e6 / (ii * (1 + 1e-9)), clock_mhz,
                              pixels_per_beat=pixels_per_beat, budget=budget, gates=gates)
        key = tuple((f.pe, f.simd, f.pad) for f in res.folding)
        progress(f"[{time.monotonic() - start:6.1f} s] point {k + 1}/{count}: II <= {ii:,.0f} "
                 f"-> {res.ii:,.0f} cycles" + (" (repeat, dropped)" if key in seen else ""))
        if key not in seen:
            seen.add(key)
            points.append(res)
    return points


def _fastest_ii(net, clock_mhz: float, pixels_per_beat: int, budget=None, gates=None) -> float:
    from .fold import fold_for_budget
    unlimited = {"lut": math.inf, "ff": math.inf, "bram": math.inf}
    return fold_for_budget(net, {**unlimited, **(budget or {})}, clock_mhz,
                           pixels_per_beat=pixels_per_beat, gates=gates).ii


def pareto_front(points: list[dict]) -> list[int]:
    """Indices of the points not beaten on both ``fps`` (higher) and ``lut`` (lower), fastest
    first."""
    order = sorted(range(len(points)), key=lambda i: (-points[i]["fps"], points[i]["lut"]))
    front, best_lut = [], math.inf
    for i in order:
        if points[i]["lut"] < best_lut:
            front.append(i)
            best_lut = points[i]["lut"]
    return front


def _calibration_records() -> dict:
    from .resource_model import DEFAULT_CALIBRATION
    try:
        doc = json.loads(Path(DEFAULT_CALIBRATION).read_text())
    except (OSError, ValueError):
        return {}
    return {r["design"]: r for r in doc.get("records", []) if r.get("design")}


def _synthesise(export: Path, point_dir: Path, folding: list, ppb: int, calib: dict,
                log) -> dict:
    """Generate and synthesise one point (or reuse an unchanged earlier result)."""
    from .generate import generate
    from .resource_model import design_hash
    from .yosys_estimate import yosys_estimate

    design = point_dir / "design"
    generate(export, design, fold={"layers": folding}, pixels_per_beat=ppb)
    digest = design_hash(design)
    cached = point_dir / "yosys.json"
    if cached.is_file():
        old = json.loads(cached.read_text())
        if old.get("design") == digest:
            log(f"{point_dir.name}: unchanged design, earlier Yosys result kept")
            return old
    if digest in calib:
        rec = calib[digest]
        res = {"design": digest, "source": "calibration record", **{
            k: rec["yosys"][k] for k in ("lut", "ff", "bram", "dsp") if k in rec["yosys"]}}
        log(f"{point_dir.name}: design matches a calibration record, Yosys not rerun")
    else:
        est = yosys_estimate(design, family="xcup", log_dir=point_dir / "yosys")
        res = {"design": digest, "source": "yosys", "seconds": est["seconds"],
               **{k: est[k] for k in ("lut", "ff", "bram", "dsp")},
               "timing_proxy": {k: est["timing_proxy"][k] for k in (
                   "lut_levels", "max_carry_chains", "meets_300mhz_rule")}
               if est.get("timing_proxy") else None}
        log(f"{point_dir.name}: Yosys LUT {res['lut']:,} FF {res['ff']:,} BRAM36 "
            f"{res['bram']:g} ({est['seconds']:.0f} s)")
    cached.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _cosim(export: Path, fold_file: Path, images: int, report: Path) -> dict:
    cmd = [sys.executable, "-m", "sim.run", "--net", str(export), "--fold", str(fold_file),
           "--images", str(images), "--json", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not report.is_file():
        raise UserError(f"co-simulation of {fold_file} failed: "
                        f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    r = json.loads(report.read_text())
    t = r["timing"] or {}
    return {"images": r["images"], "mismatches": r["mismatches"],
            "cycle_model_agrees": not t.get("disagreements"), "passed": proc.returncode == 0,
            "ii_measured": t.get("ii_steady_measured")}


def _scale(axis, values) -> None:
    """Logarithmic where ``values`` span more than a decade, else linear; plain numbers as
    tick labels either way (a log axis within one decade has no labelled major tick)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 10 * min(positive):
        (axis.axes.set_xscale if axis is axis.axes.xaxis else axis.axes.set_yscale)("log")
        axis.set_minor_formatter(NullFormatter())      # minor labels of a log axis overlap
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))


def _plot(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    pts, front = doc["points"], doc["front"]
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    fps = [p["fps"] / 1e3 for p in pts]
    sc = ax1.scatter([p["lut"] for p in pts], fps, c=[p["bram"] for p in pts], cmap="viridis",
                     s=36, zorder=3)
    fig.colorbar(sc, ax=ax1, label="BRAM36 (Yosys)")
    fl = sorted(front, key=lambda i: pts[i]["lut"])
    ax1.plot([pts[i]["lut"] for i in fl], [pts[i]["fps"] / 1e3 for i in fl], "r-", lw=1,
             label="Pareto front", zorder=2)
    if any(p.get("fps_worst") for p in pts):
        gated = doc["gating"].startswith("mean")
        other = "fps_worst" if gated else "fps_gated"
        ax1.scatter([p["lut"] for p in pts], [p[other] / 1e3 for p in pts], facecolors="none",
                    edgecolors="gray", s=36, zorder=2,
                    label="every gate open" if gated else "mean under the recorded gates")
    ax1.set(xlabel="LUT (Yosys synth_xilinx -family xcup)", ylabel="images/s (thousands)")
    lut_values = [p["lut"] for p in pts]
    _scale(ax1.xaxis, lut_values)
    _scale(ax1.yaxis, fps)
    ax1.legend(loc="lower right")
    ax2.scatter([p["bram"] for p in pts], fps, c="tab:blue", s=36)
    if doc.get("bram_limit"):
        ax2.axvline(doc["bram_limit"], color="gray", ls="--", lw=1,
                    label=f"budget: {doc['bram_limit']:g}")
    ax2.set(xlabel="BRAM36 (Yosys)", ylabel="images/s (thousands)")
    _scale(ax2.yaxis, fps)
    ax2.legend(loc="lower right")
    import textwrap
    title = (f"{doc['network']}: images/s at {doc['clock_mhz']:g} MHz ({doc['clock_source']}) "
             "— cycle-exact II; resources from Yosys")
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def sweep(export, out, *, points: int = 8, jobs: int = 2, clock_mhz: float, clock_source: str,
          cosim: int = 1, images: int = 200, pixels_per_beat: int = 8,
          budget: dict | None = None, gating_stats: bool = False, log=print) -> dict:
    """Run the sweep (see the module docstring); return the ``sweep.json`` document."""
    from sw.network_io import load_compiled_network

    from .cycle_model import exact_steady_state_ii
    from .fold import gate_stats, gated_mean_ii, main_chain

    export, out = Path(export), Path(out)
    net = load_compiled_network(export)
    from .generate import check_pixels_per_beat
    check_pixels_per_beat(net, pixels_per_beat)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserError(f"cannot write to {out}; choose another --out")
    frac = any(l.gated for l in net.layers)
    gates = gate_stats(net, export) if frac else None
    log(f"{net.name}: planning {points} points at {clock_mhz:g} MHz ({clock_source})"
        + (f" within {_budget_text(budget)}" if budget else "")
        + ("; frac layers folded for their mean cycles under the test vectors' gates"
           if gating_stats and frac else ""))
    plan = plan_points(net, points, clock_mhz, pixels_per_beat=pixels_per_beat, budget=budget,
                       gates=gates if gating_stats else None, progress=log)
    calib = _calibration_records()
    dirs = []
    for k, res in enumerate(plan):
        d = out / f"p{k:02d}"
        d.mkdir(exist_ok=True)
        (d / "fold.json").write_text(json.dumps(
            {"layers": [f.to_json() for f in res.folding]}) + "\n")
        dirs.append(d)
    start = time.monotonic()

    def one(k):
        return _synthesise(export, dirs[k], [f.to_json() for f in plan[k].folding],
                           pixels_per_beat, calib,
                           lambda m: log(f"[{time.monotonic() - start:7.1f} s] {m}"))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        synth = list(pool.map(one, range(len(plan))))
    rows = []
    for k, (res, y) in enumerate(zip(plan, synth)):
        extra = {}
        if frac:
            # Worst case (every gate open) and the mean under the test vectors' gate decisions.
            worst = exact_steady_state_ii(main_chain(res.net), pixels_per_beat, gates="open")
            gated = gated_mean_ii(res.net, gates, pixels_per_beat)
            extra = {"ii_worst": worst, "ii_gated": gated,
                     "fps_worst": clock_mhz * 1e6 / worst if worst else None,
                     "fps_gated": clock_mhz * 1e6 / gated}
        rows.append({"point": dirs[k].name, "folding": [f.to_json() for f in res.folding],
                     **extra, "ii": res.ii, "fps": clock_mhz * 1e6 / res.ii,
                     "lut": y["lut"], "ff": y["ff"], "bram": y["bram"],
                     "fps_per_lut": clock_mhz * 1e6 / res.ii / y["lut"],
                     "modelled": {r: res.resources[r] for r in ("lut", "ff", "bram")},
                     "yosys_source": y["source"], "timing_proxy": y.get("timing_proxy")})
    front = pareto_front(rows)
    for i in front[:max(0, cosim)]:
        log(f"co-simulating {rows[i]['point']} (II {rows[i]['ii']:g}) on {images} images ...")
        rows[i]["cosim"] = _cosim(export, dirs[i] / "fold.json", images,
                                  dirs[i] / "sim.json")
    doc = {"network": net.name, "export": str(export), "clock_mhz": clock_mhz,
           "clock_source": clock_source, "pixels_per_beat": pixels_per_beat,
           "budget": budget, "gating": ("mean under the export's test vectors' gate decisions"
                                        if gating_stats and frac else
                                        "worst case (every gate open)" if frac else "none"),
           "bram_limit": (budget or {}).get("bram"), "points": rows, "front": front,
           "peers_fps_per_lut": {k: fps / lut for k, (fps, lut) in PEERS.items()}}
    (out / "sweep.json").write_text(json.dumps(doc, indent=1) + "\n")
    _plot(doc, out / "pareto.png")
    return doc


def _budget_text(budget: dict) -> str:
    return ", ".join(f"{v:,.0f} {k.upper() if k != 'bram' else 'BRAM36'}"
                     for k, v in budget.items() if math.isfinite(v)) + " (modelled)"


def _summary(doc: dict) -> list[str]:
    lines = [f"{doc['network']} at {doc['clock_mhz']:g} MHz ({doc['clock_source']}); II from "
             "the cycle model, resources from Yosys synth_xilinx -family xcup",
             f"{'point':6} {'II':>7} {'images/s':>11} {'LUT':>8} {'FF':>8} {'BRAM36':>7} "
             f"{'img/s/LUT':>9}  front  cosim"]
    if doc.get("gating", "none") != "none":
        lines.insert(1, f"frac layers folded for: {doc['gating']}; images/s with every gate "
                        "open / under the recorded gates:")
    front = set(doc["front"])
    for i, p in enumerate(doc["points"]):
        c = p.get("cosim")
        cs = "" if c is None else (f"{c['images']} images, {c['mismatches']} mismatches, "
                                   f"{'cycle-exact' if c['cycle_model_agrees'] else 'CYCLES DIFFER'}")
        lines.append(f"{p['point']:6} {p['ii']:>7,.0f} {p['fps']:>11,.0f} {p['lut']:>8,} "
                     f"{p['ff']:>8,} {p['bram']:>7g} {p['fps_per_lut']:>9.1f}  "
                     f"{'*' if i in front else ' ':^5}  {cs}")
        if p.get("fps_gated"):
            lines.append(f"{'':6} gates open {p['fps_worst']:,.0f}, gated {p['fps_gated']:,.0f}"
                         f" images/s (II {p['ii_worst']:,.0f} / {p['ii_gated']:,.1f})")
    for name, v in doc["peers_fps_per_lut"].items():
        lines.append(f"peer   {name}: {v:.1f} images/s per LUT (published)")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", metavar="EXPORTDIR", help="compiled-network directory")
    p.add_argument("--out", required=True, help="sweep directory (points, sweep.json, pareto.png)")
    p.add_argument("--points", type=int, default=8, help="initiation intervals tried (default 8)")
    p.add_argument("--jobs", type=int, default=2, help="Yosys runs at a time (default 2)")
    p.add_argument("--clock", type=float, metavar="MHZ", help="clock of the FPS figures")
    p.add_argument("--board", help="board whose default clock and part budget are used "
                                   "(default ultra96)")
    p.add_argument("--budget", metavar="lut=..,bram=..,ff=..",
                   help="modelled resource limits of every point (default: the board's part)")
    p.add_argument("--gating-stats", action="store_true",
                   help="frac layers: fold for their mean cycles under the export's test "
                        "vectors' gate decisions instead of the worst case")
    p.add_argument("--cosim", type=int, default=1,
                   help="fastest Pareto points co-simulated bit-exactly (default 1)")
    p.add_argument("--images", type=int, default=200, help="images per co-simulation")
    p.add_argument("--pixels-per-beat", type=int, default=8)
    args = p.parse_args(argv)
    if args.jobs < 1 or args.images < 1 or args.cosim < 0:
        raise UserError("--jobs and --images must be >= 1 and --cosim >= 0")
    from boards import get_board, resolve_clock

    from .fold import parse_budget
    clock, source = resolve_clock(args.board, args.clock)
    board = get_board(args.board or "ultra96")
    if board.kind != "zynq":
        raise UserError(f"the sweep synthesises for Xilinx UltraScale+ (Yosys xcup); "
                        f"{board.name} is an ECP5 board: use --board ultra96 or zcu104")
    budget = {"lut": board.resources.lut, "ff": board.resources.ff,
              "bram": board.resources.bram}
    if args.budget is not None:
        budget.update(parse_budget(args.budget))
    doc = sweep(args.export_dir, args.out, points=args.points, jobs=args.jobs, clock_mhz=clock,
                clock_source=source, cosim=args.cosim, images=args.images,
                pixels_per_beat=args.pixels_per_beat, budget=budget,
                gating_stats=args.gating_stats,
                log=lambda m: print(m, file=sys.stderr, flush=True))
    for line in _summary(doc):
        print(line)
    print(f"wrote {Path(args.out) / 'sweep.json'} and {Path(args.out) / 'pareto.png'}")
    bad = [p["point"] for p in doc["points"] if p.get("cosim") and not p["cosim"]["passed"]]
    if bad:
        print(f"FAIL: co-simulation of {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    cli_main(main)
