"""Early exits: the format (write, read back, one-line errors) and the golden model's exit
rule (docs/compiled-network.md, "Early exits")."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from sw.compiled_net import EXITS_VERSION, VERSION, ExitSpec
from sw.network_io import load_compiled_network, write_compiled_network
from sw.errors import UserError
from sw.golden import GoldenModel, _reference_run, exit_margins, take_exits
from tests.netfactory import random_images, random_network


def _net(**kw):
    kw.setdefault("shape", (12, 10, 8, 4))
    kw.setdefault("exits", ((0, 3), (1, 2)))
    return random_network(image=(1, 4, 4), levels=2, seed=3, **kw)


def test_margins_and_rule():
    s = np.array([[1, 5, 5, 0], [7, 1, 2, 3], [0, 0, 0, 0]])
    assert exit_margins(s).tolist() == [0, 4, 0]
    taken = take_exits([np.array([0, 4, 9]), np.array([5, 0, 9])], [1, 5], 3)
    assert taken.tolist() == [1, 0, 0]
    assert take_exits([np.array([0, 0])], [1], 2).tolist() == [1, 1]


@pytest.mark.parametrize("outs", [None, ["frac2", "sign", "sign"], ["mt3", "frac2", "sign"]])
def test_golden_exits(outs):
    net = _net(outs=outs)
    images = random_images(net, 300, seed=1)
    res = GoldenModel(net).run(images)
    ref = _reference_run(net, images)
    assert np.array_equal(res.exits, ref.exits) and np.array_equal(res.classes, ref.classes)
    for a, b in zip(res.exit_scores, ref.exit_scores):
        assert np.array_equal(a, b)
    # The rule, literally: first exit whose best - second best >= margin, else the last layer.
    for i in range(len(images)):
        want = 2
        for j, ex in enumerate(net.exits):
            s = sorted(res.exit_scores[j][i].tolist())
            if s[-1] - s[-2] >= ex.margin:
                want = j
                break
        assert res.exits[i] == want
        scores = res.exit_scores[want][i] if want < 2 else res.layer_outputs[-1][i]
        assert np.array_equal(res.scores[i], scores)
        assert res.classes[i] == (int(np.argmax(scores)) if want < 2
                                  else res.final_classes[i])
    assert set(res.exits.tolist()) == {0, 1, 2}          # every path taken on this net
    # Margin 0 at exit 0: every image leaves there.
    zero = replace(net, exits=[replace(net.exits[0], margin=0)] + net.exits[1:])
    assert (GoldenModel(zero).run(images).exits == 0).all()


def test_no_exits_unchanged():
    net = _net(exits=())
    res = GoldenModel(net).run(random_images(net, 20))
    assert (res.exits == 0).all() and res.exit_scores == []
    assert np.array_equal(res.classes, res.final_classes)


def test_round_trip(tmp_path):
    net = _net(outs=["frac2", "sign", "sign"])
    out = write_compiled_network(net, tmp_path / "n")
    doc = json.loads((out / "network.json").read_text())
    assert doc["version"] == EXITS_VERSION and [e["after"] for e in doc["exits"]] == [0, 1]
    assert (out / "X0_weights.mem").exists() and (out / "X0_gates.mem").exists()
    back = load_compiled_network(out)
    assert [(e.after, e.margin) for e in back.exits] == [(0, 3), (1, 2)]
    images = random_images(net, 50)
    assert np.array_equal(GoldenModel(back).run(images).classes,
                          GoldenModel(net).run(images).classes)
    plain = write_compiled_network(_net(exits=()), tmp_path / "p")
    doc = json.loads((plain / "network.json").read_text())
    assert doc["version"] == VERSION and "exits" not in doc


def _edit(tmp_path, fn):
    out = write_compiled_network(_net(), tmp_path / "n")
    doc = json.loads((out / "network.json").read_text())
    fn(doc)
    (out / "network.json").write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["exits"][0].update(margin=-1), "margin is -1"),
    (lambda d: d["exits"][1].update(after=3), "before the last one"),
    (lambda d: d.update(version=2), "need format version 3"),
    (lambda d: d.update(exits=[]), "exits is empty"),
    (lambda d: d["exits"][0]["layer"].update(in_features=9), "in_features|inputs"),
    (lambda d: d["exits"].reverse(), "increasing|index"),
])
def test_bad_files(tmp_path, edit, match):
    out = _edit(tmp_path, edit)
    with pytest.raises(UserError, match=match) as err:
        load_compiled_network(out)
    assert "\n" not in str(err.value)


def test_bad_specs():
    net = _net()
    ex = net.exits[0]
    with pytest.raises(UserError, match="margin"):
        ExitSpec(0, ex.layer, -2)
    with pytest.raises(UserError, match="before the last"):
        replace(net, exits=[replace(ex, after=3)])
    with pytest.raises(UserError, match="inputs"):
        replace(net, exits=[replace(ex, after=1)])


def test_main_chain_of_an_exit_network():
    from hw.accelerator import plan_stages
    assert ([s.to_json() for s in plan_stages(_net(), 8)]
            == [s.to_json() for s in plan_stages(_net(exits=()), 8)])


def test_exits_report_statistics():
    from sim.exits_report import exit_statistics, report, throughput_bound
    net = _net()
    images = random_images(net, 200, seed=5)
    res = GoldenModel(net).run(images)
    labels = res.final_classes.copy()
    labels[::7] = (labels[::7] + 1) % 4
    stats = exit_statistics(net, images, labels)
    shares = [r["share"] for r in stats["exits"]]
    assert sum(shares) == pytest.approx(1.0)
    assert [r["images"] for r in stats["exits"]] == np.bincount(res.exits, minlength=3).tolist()
    assert stats["accuracy_without_exits"] == pytest.approx(np.mean(res.final_classes == labels))
    bound = throughput_bound(net, stats["taken"])
    eng = {r["stage"]: r for r in bound["stages"]}
    # Layers after an exit see only the images that did not leave there.
    assert eng["exit0"]["share"] == 1.0
    assert eng["exit1"]["share"] == pytest.approx(np.mean(res.exits >= 1))
    assert bound["ii_with_exits"] <= max(r["cycles"] for r in bound["stages"])
    rep = report(net, images, labels)
    per_exit = rep["with_exits"]["per_exit"]
    assert [r["images"] for r in per_exit] == np.bincount(res.exits, minlength=3).tolist()
    assert rep["without_exits"]["latency_worst"] > 0 and "per_exit" not in rep["without_exits"]


def test_exits_report_rtl_timing():
    from sim.exits_report import cycle_timing, rtl_timing
    net = random_network(image=(1, 4, 4), levels=2, seed=3, shape=(12, 10, 8, 4),
                         folding=[(4, 8), (2, 4), (1, 1), (2, 4)], exits=((0, 3), (1, 2)))
    images = random_images(net, 10, seed=2)
    with_exits = rtl_timing(net, images)            # asserts bit-exactness itself
    plain = rtl_timing(replace(net, exits=[]), images)
    assert len(with_exits["latency"]) == 10 and with_exits["exits"] != [2] * 10
    # Layer 2 (PE = SIMD = 1: 80 cycles/image) is the bottleneck without exits; images
    # leaving early skip it (the exit engines, PE = SIMD = 1, take 48 and 40).
    assert with_exits["interval_mean"] < plain["interval_mean"]
    # The cycle model predicts both exactly.
    for variant, measured in ((net, with_exits), (replace(net, exits=[]), plain)):
        model = cycle_timing(variant, images)
        assert model["latency"] == measured["latency"]
        assert model["interval_mean"] == measured["interval_mean"]
