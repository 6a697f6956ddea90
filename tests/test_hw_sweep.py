"""hw.sweep: the Pareto front logic, and one small end-to-end sweep (Yosys + co-simulation)."""

import json

import pytest

from hw.sweep import main as sweep_main, pareto_front
from tests.netfactory import random_compiled_network


def test_pareto_front_keeps_the_undominated_points_fastest_first():
    pts = [{"fps": 100, "lut": 50}, {"fps": 200, "lut": 80}, {"fps": 150, "lut": 90},
           {"fps": 200, "lut": 70}, {"fps": 50, "lut": 10}, {"fps": 50, "lut": 20}]
    assert pareto_front(pts) == [3, 0, 4]


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    return random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 8, 8),
                                   shape=(64, 32, 10), folding=[(2, 32), (4, 16), (2, 8, True)],
                                   seed=5)


def test_sweep_writes_front_and_plot_and_reuses_results(small_net, tmp_path, capsys):
    """Two Yosys points of a small net (the co-simulation of front points needs an MNIST-shaped
    network and runs in the benchmark: `python -m hw.sweep <lfc export> --cosim 2`)."""
    out = tmp_path / "sweep"
    assert sweep_main([str(small_net), "--out", str(out), "--points", "2", "--jobs", "2",
                       "--clock", "200", "--cosim", "0"]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert (out / "pareto.png").stat().st_size > 5_000
    pts = doc["points"]
    assert len(pts) >= 2 and doc["clock_source"] == "given with --clock"
    # Fastest first, every II from the cycle model, every point synthesised by Yosys.
    assert [p["ii"] for p in pts] == sorted(p["ii"] for p in pts)
    assert all(p["lut"] > 0 and p["yosys_source"] in ("yosys", "calibration record")
               for p in pts)
    assert doc["front"][0] == 0          # the fastest point is always on the front
    text = capsys.readouterr().out
    assert "images/s" in text and "200 MHz (given with --clock)" in text
    # A second run reuses the unchanged designs' Yosys results.
    assert sweep_main([str(small_net), "--out", str(out), "--points", "2", "--jobs", "1",
                       "--clock", "200", "--cosim", "0"]) == 0
    assert capsys.readouterr().err.count("earlier Yosys result kept") == 2


def test_sweep_points_fit_the_budget_and_frac_points_get_both_iis(tmp_path):
    """Every planned point fits the modelled budget; a frac network's points carry the II with
    every gate open and the (no larger) mean under recorded gate decisions."""
    import numpy as np

    from hw.cycle_model import exact_steady_state_ii
    from hw.fold import gated_mean_ii
    from hw.sweep import plan_points
    from sw.golden import GoldenModel
    from tests.netfactory import random_network

    net = random_network(image=(1, 4, 4), levels=2, shape=[24, 16, 10],
                         outs=["frac2", "frac2"], seed=5)
    free = plan_points(net, 3, 200, progress=lambda m: None)
    budget = {"lut": free[0].resources["lut"] * 0.8}
    points = plan_points(net, 3, 200, budget=budget, progress=lambda m: None)
    assert points[0].ii > free[0].ii
    assert all(p.resources["lut"] <= budget["lut"] for p in points)
    images = np.random.default_rng(0).integers(0, 256, (16, net.input.pixels), dtype=np.uint8)
    gates = GoldenModel(net).run(images).gates
    for p in points:
        worst = exact_steady_state_ii(p.net, 8, gates="open")
        assert gated_mean_ii(p.net, gates, 8) <= worst
