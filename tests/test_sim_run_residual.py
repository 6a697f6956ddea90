"""``python -m sim.run``, ``python -m hw.generate`` and ``python -m hw.build`` on a residual
(version 4) network: sim.run generates the residual accelerator, runs the C++ batch harness
and compares every class and score with the golden model and the cycle stamps with the
residual cycle model (tiny random ResNet, 8x8 input: ``sw.datasets.load_images`` is replaced
by random 8x8 images); a folding with different PEs is refolded to one PE; hw.generate
dispatches to the residual generator; the options that have no residual meaning are one-line
errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sw.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    """A tiny sign-activation ResNet exported with the exporter's default folding (PE 4 and
    8: not one PE, so the tools refold it)."""
    from models.export_residual import export_resnet
    from tests.test_hw_residual_accelerator import _tiny
    from tests.test_residual_format import _images
    model = _tiny("sign", steps=2)
    images = _images(model, 8, seed=5)
    out = tmp_path_factory.mktemp("resrun") / "net"
    export_resnet(model, out, images, name="tiny_sign", vectors=0)
    return out


@pytest.fixture
def random_images(monkeypatch):
    """``load_images`` returns 40 random 8x8 images (the test net is not MNIST-sized)."""
    import sw.datasets

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 64), dtype=np.uint8)
    labels = rng.integers(0, 4, 40)
    monkeypatch.setattr(sw.datasets, "load_images", lambda split, shape, data=None:
                        (images, labels))
    return images, labels


def test_sim_run_residual(resnet_export, random_images, tmp_path, capsys):
    """Every class, score and cycle stamp agrees; the summary has the usual lines; the JSON
    report says which images the cycle model covered."""
    import sim.run as simrun
    from sw.golden import GoldenModel
    from sw.network_io import load_network

    net = load_network(resnet_export)
    assert len({l.folding.pe for l in net.layers}) > 1
    report = tmp_path / "run.json"
    status = simrun.main(["--net", str(resnet_export), "--images", "24", "--shards", "2",
                          "--model-images", "0", "--build-root", str(tmp_path / "build"),
                          "--design-dir", str(tmp_path / "design"), "--json", str(report)])
    cap = capsys.readouterr()
    assert status == 0, cap.out + cap.err
    assert "refolded to PE" in cap.err
    for line in ("mismatches       0", "cycles/image     measured", "latency          measured",
                 "images/s at", "cycle model      agrees exactly",
                 "PASS: every output bit-exact and every cycle stamp equal to the cycle model"):
        assert line in cap.out, cap.out
    s = json.loads(report.read_text())
    images, labels = random_images
    gold = GoldenModel(net).run(images[:24])
    assert s["kind"] == "residual" and s["images"] == 24 and s["shards"] == 2
    assert s["accuracy"] == s["golden_accuracy"] == float(np.mean(gold.classes == labels[:24]))
    t = s["timing"]
    assert t["disagreements"] == [] and t["modelled_images"] == 12
    assert t["latency_measured_first"] == t["latency_modelled_first"] > 0
    design = json.loads((tmp_path / "design" / "design.json").read_text())
    assert design["kind"] == "residual" and len({f["pe"] for f in design["folding"]}) == 1

    # The cycle model on a prefix only (--model-images): still PASS, and the summary says so.
    status = simrun.main(["--net", str(resnet_export), "--images", "24", "--shards", "1",
                          "--model-images", "5", "--build-root", str(tmp_path / "build")])
    out = capsys.readouterr().out
    assert status == 0 and "first 5 images of each shard" in out and "PASS" in out


def test_sim_run_residual_cocotb(resnet_export, random_images, tmp_path, capsys):
    """``--engine cocotb``: registers, every output and every cycle stamp at full rate; with
    ``--stall-percent`` every output under backpressure."""
    import sim.run as simrun
    for extra in ([], ["--stall-percent", "40"]):
        status = simrun.main(["--net", str(resnet_export), "--images", "6", "--engine", "cocotb",
                              "--model-images", "0", "--build-root", str(tmp_path / "build"),
                              *extra])
        out = capsys.readouterr().out
        assert status == 0, out
        assert "mismatches       0" in out and "PASS: every output bit-exact" in out
        assert ("cycle model      agrees exactly" in out) == (not extra)


def test_sim_run_residual_refusals(resnet_export, random_images, tmp_path, capsys):
    """A pixels-per-beat the stream cannot take is a one-line error."""
    import sim.run as simrun
    with pytest.raises(UserError, match="not a multiple of 5"):
        simrun.main(["--net", str(resnet_export), "--images", "2", "--pixels-per-beat", "5"])


def test_hw_generate_dispatch(resnet_export, tmp_path, capsys):
    """``python -m hw.generate`` on a version 4 export writes the residual design (one
    summary line); chain-only options are one-line errors."""
    from hw.generate import main
    assert main([str(resnet_export), str(tmp_path / "d"), "--pixels-per-beat", "1"]) == 0
    out = capsys.readouterr().out
    assert "residual" in out and "skip FIFO depths" in out
    doc = json.loads((tmp_path / "d" / "design.json").read_text())
    assert doc["kind"] == "residual" and doc["pixels_per_beat"] == 1
    # --fold: one entry per convolution, here PE 2 everywhere.
    from sw.network_io import load_network
    net = load_network(resnet_export)
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": [{"pe": 2, "simd": l.folding.simd}
                                           for l in net.layers]}))
    assert main([str(resnet_export), str(tmp_path / "f"), "--fold", str(fold),
                 "--pixels-per-beat", "1"]) == 0
    doc = json.loads((tmp_path / "f" / "design.json").read_text())
    assert [f["pe"] for f in doc["folding"]] == [2] * len(net.layers)
    with pytest.raises(UserError, match="--writable-params"):
        main([str(resnet_export), str(tmp_path / "w"), "--writable-params"])
    with pytest.raises(UserError, match="--ram-style"):
        main([str(resnet_export), str(tmp_path / "r"), "--ram-style", "block"])


def test_hw_build_residual_refusals(resnet_export, tmp_path):
    """``python -m hw.build`` of a residual network is the Yosys estimate on a Zynq board:
    an ECP5 board, ``--no-estimate`` and chain-only options are one-line errors (before any
    slow step; the Yosys run itself: docs/simulation.md, measured by hand)."""
    from hw.build import build, parse_args
    base = ["--net", str(resnet_export), "--no-vivado", "--quiet"]
    for extra, match in ((["--board", "ulx3s"], "self-test top"),
                         (["--board", "ultra96", "--no-estimate"], "drop --no-estimate"),
                         (["--board", "ultra96", "--writable-params"], "--writable-params"),
                         (["--board", "ultra96", "--pixels-per-beat", "3"], "power of two")):
        with pytest.raises(UserError, match=match):
            build(parse_args(base + extra + ["--out", str(tmp_path / "b")]))
        assert not (tmp_path / "b").exists()


def test_hw_build_residual_writes_shell_and_vivado_project(resnet_export, tmp_path):
    """``python -m hw.build --board ultra96 --net <residual export> --no-vivado``: the Yosys
    estimate fits, and the board shell and the Vivado project script are written for the
    residual design (its engines' ROM files listed, the shell around ``fracbnn_top``); ``net/``
    beside it is the network as built (refolded to one PE: the board runtime checks the
    design's folding registers against it)."""
    from hw.build import build, parse_args
    from sw.golden import GoldenModel
    from sw.network_io import load_network
    out = tmp_path / "b"
    report = build(parse_args(["--board", "ultra96", "--net", str(resnet_export), "--no-vivado",
                               "--quiet", "--out", str(out)]))
    assert report["kind"] == "residual"
    y = report["estimate"]["yosys"]
    assert 0 < y["lut"] < 70_560 and y["ff"] > 0
    tcl = (out / "create_project.tcl").read_text()
    assert "rtl/fracbnn_shell.v" in tcl and "rtl/fracbnn_top.v" in tcl
    assert "rtl/L0_weights.mem" in tcl
    shell = (out / "rtl" / "fracbnn_shell.v").read_text()
    assert "fracbnn_top" in shell and "module fracbnn_shell" in shell
    assert (out / "constraints.xdc").is_file() and (out / "report.json").is_file()
    built, export = load_network(out / "net"), load_network(resnet_export)
    assert {l.folding.pe for l in built.layers} == {report["folding"][0]["pe"]}
    assert len({l.folding.pe for l in export.layers}) > 1
    images = np.random.default_rng(1).integers(0, 256, (5, 64), dtype=np.uint8)
    assert np.array_equal(GoldenModel(built).run(images).scores,
                          GoldenModel(export).run(images).scores)


def test_sim_run_residual_taps(resnet_export, random_images, tmp_path, capsys, monkeypatch):
    """``--tap-images``: the batch harness records every convolution engine's output stream
    of the first images of each shard and every accumulator equals the golden model's; one
    changed accumulator makes the run fail and names the layer and image."""
    import sim.run as simrun
    import sim.taps

    args = ["--net", str(resnet_export), "--images", "24", "--shards", "2", "--tap-images", "7",
            "--model-images", "2", "--build-root", str(tmp_path / "build"),
            "--json", str(tmp_path / "run.json")]
    status = simrun.main(args)
    out = capsys.readouterr().out
    assert status == 0, out
    s = json.loads((tmp_path / "run.json").read_text())
    assert s["taps"]["images"] == 14 and s["taps"]["mismatches"] == 0
    from sw.network_io import load_network
    assert s["taps"]["layers"] == len(load_network(resnet_export).layers) > 1
    assert "layer taps" in out and "(and every layer tap of 14 images)" in out

    decode = sim.taps.decode_tap

    def tampered(tap, beats, images):
        got = decode(tap, beats, images)
        if tap["layer"] == 1 and len(got):
            got[-1, 3] += 1
        return got

    monkeypatch.setattr(sim.taps, "decode_tap", tampered)
    status = simrun.main(args)
    out = capsys.readouterr().out
    assert status == 1 and "FAIL" in out and "layer 1 tap, image 6: output 3" in out, out

    with pytest.raises(SystemExit):
        simrun.main([*args, "--engine", "cocotb"])
