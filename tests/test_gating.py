"""Precision gating switched off (``sw.gating.open_gates``, ``python -m sim.run --gating off``):
every gate opens, the golden model follows, and the RTL runs both planes of every output
at the cycles the cycle model predicts; with gating on the same hardware is faster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def frac2_export(tmp_path_factory):
    """A tiny frac2 ResNet (8x8, widths 4/8, gated block convolutions) exported."""
    from models.export_residual import export_resnet
    from tests.test_hw_residual_accelerator import _tiny
    from tests.test_residual_format import _images
    model = _tiny("frac2", steps=4)
    out = tmp_path_factory.mktemp("gating") / "net"
    export_resnet(model, out, _images(model, 8, seed=5), name="tiny_frac2", vectors=0)
    return out


def test_open_gates_opens_every_gate_and_nothing_else(frac2_export):
    from sw.gating import open_gate, open_gates
    from sw.golden import GoldenModel
    from sw.network_io import load_network

    net = load_network(frac2_export)
    gated = [l.index for l in net.layers if l.gated]
    assert gated, "the test net must have gated layers"
    before = [None if l.gates is None else l.gates.copy() for l in net.layers]
    opened = open_gates(net)
    for old, new, kept in zip(net.layers, opened.layers, before):
        if old.gated:
            assert open_gate(old.in_features) == -old.in_features - 1
            assert np.all(new.gates == -old.in_features - 1)
            assert np.array_equal(old.gates, kept)           # the original is untouched
        else:
            assert new is old
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, net.input.pixels), dtype=np.uint8)
    on, off = GoldenModel(net).run(images), GoldenModel(opened).run(images)
    for i in gated:
        assert off.gates[i].all() and not on.gates[i].all()


def _random_images(monkeypatch, n, pixels):
    import sw.datasets
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, pixels), dtype=np.uint8)
    monkeypatch.setattr(sw.datasets, "load_images",
                        lambda split, shape, data=None: (images, rng.integers(0, 4, n)))


def test_sim_run_gating_on_and_off(frac2_export, monkeypatch, tmp_path, capsys):
    """Both modes bit exact and cycle exact; off: every LSB needed and more cycles per
    image than on (the gates of the test images close some LSB passes)."""
    import sim.run as simrun

    _random_images(monkeypatch, 12, 64)
    reports = {}
    for mode in ("on", "off"):
        report = tmp_path / f"{mode}.json"
        status = simrun.main(["--net", str(frac2_export), "--images", "12", "--shards", "1",
                              "--model-images", "0", "--gating", mode,
                              "--build-root", str(tmp_path / "build"),
                              "--design-dir", str(tmp_path / f"design-{mode}"),
                              "--json", str(report)])
        cap = capsys.readouterr()
        assert status == 0, cap.out + cap.err
        assert "PASS: every output bit-exact and every cycle stamp equal" in cap.out
        assert ("gating off: every gate open" in cap.out) == (mode == "off")
        reports[mode] = json.loads(report.read_text())
    on, off = reports["on"], reports["off"]
    assert on["gating_mode"] == "on" and off["gating_mode"] == "off"
    assert all(g["lsb_fraction"] == 1.0 for g in off["gating"])
    assert any(g["lsb_fraction"] < 1.0 for g in on["gating"])
    assert off["timing"]["ii_measured"] > on["timing"]["ii_measured"]
