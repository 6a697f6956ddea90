"""models/import_qonnx.py: Brevitas' bnn_pynq FC networks, trained briefly here and exported
with export_qonnx, import exactly: the golden model of the imported directory equals QONNX's
own executor (qonnx.core.onnx_exec.execute_onnx) on every hidden activation, every
last-layer accumulator and every class, and the accelerator equals the golden model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sw.errors import UserError

# The qonnx extra is part of the test install (noxfile); only a bare local run may lack it.
if not os.environ.get("CI"):
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")

from models.brevitas_nets import build, export, train_briefly  # noqa: E402
from models.import_qonnx import QonnxImportError, import_qonnx, main  # noqa: E402
from sw.network_io import load_compiled_network  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _mnist_or_skip():
    from sw.mnist import load_mnist
    try:
        load_mnist("test")
    except UserError as exc:
        pytest.skip(f"MNIST unavailable: {exc}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """TFC 1W1A and 1W2A, 80 training steps each, exported (Gemm, dynamo exporter) and
    1W1A also with the TorchScript exporter (MatMul)."""
    import torch
    _mnist_or_skip()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("qonnx")
    out = {}
    for name in ("tfc_1w1a", "tfc_1w2a"):
        model = train_briefly(build(name), 80, seed=1)
        out[name] = export(model, root / f"{name}.onnx")
        if name == "tfc_1w1a":
            out["tfc_1w1a_matmul"] = export(model, root / f"{name}_ts.onnx", dynamo=False)
            # A negative TensorNorm weight reverses the logits' order: class_scale -1.
            with torch.no_grad():
                model.features[-1].weight.mul_(-1.0)
            out["tfc_1w1a_negative"] = export(model, root / f"{name}_neg.onnx")
    return out


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_1w2a", "tfc_1w1a_matmul",
                                  "tfc_1w1a_negative"])
def test_import_matches_executor(exported, tmp_path, name):
    r = import_qonnx(exported[name], tmp_path / "net", check=400)
    c = r["check"]
    assert c["images"] == 400
    assert c["layer_mismatches"] == [0, 0, 0, 0] and c["class_mismatches"] == 0
    net = load_compiled_network(tmp_path / "net")
    if name == "tfc_1w1a_negative":
        assert set(net.output.class_scale) == {-1}
        assert c["correct"] < 100             # the reversed network is worse than chance
    else:
        assert c["correct"] > 200             # 80 steps: well above chance (10 %)
    if name == "tfc_1w2a":
        # 2-bit input (three levels: two thermometer planes), 3-level activations read in one
        # pass, and per-class offsets S_c of the last layer kept as integer class keys.
        assert net.input.levels == 2
        assert [l.out for l in net.layers] == ["multithreshold"] * 3 + ["scores"]
        assert [l.in_bits for l in net.layers] == [1, 2, 2, 2]
        assert not any(l.gated for l in net.layers)
        assert net.output.class_bias is not None
    else:
        assert [l.out for l in net.layers] == ["sign"] * 3 + ["scores"]


def test_imported_network_through_the_accelerator(exported, tmp_path):
    from hw.cycle_model import simulate_pipeline
    from tests.netfactory import random_images
    from tests.test_hw_accelerator import check_exact, simulate
    import_qonnx(exported["tfc_1w2a"], tmp_path / "net", check=0, vectors=0,
                 fold={"layers": [{"pe": 16, "simd": 56}, {"pe": 8, "simd": 16},
                                  {"pe": 8, "simd": 16}, {"pe": 5, "simd": 16}]})
    net = load_compiled_network(tmp_path / "net")
    images = random_images(net, 3, seed=4)
    result = simulate(net, tmp_path / "net", 16, images)
    gold = check_exact(net, result, images)
    model = simulate_pipeline(net, len(images), pixels_per_beat=16, gates=gold.gates)
    np.testing.assert_array_equal(result[4], model.input_start)
    np.testing.assert_array_equal(result[5], model.output_start)


def test_unsupported_op_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 784])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu0")], "g",
                              [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(QonnxImportError, match="node relu0: op Relu is not supported"):
        import_qonnx(path, tmp_path / "out", check=0)
    assert not (tmp_path / "out").exists()


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(QonnxImportError, match="not found"):
        main([str(tmp_path / "missing.onnx"), str(tmp_path / "out")])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(QonnxImportError, match="not a readable ONNX model"):
        main([str(bad), str(tmp_path / "out")])


def test_check_sees_a_wrong_threshold(exported):
    """The executor comparison is not vacuous: one layer's thresholds moved by 3 show up as
    activation mismatches in that layer and the ones after it."""
    from models.import_qonnx import check_against_executor, compile_qonnx
    from sw.datasets import load_images
    net, info = compile_qonnx(exported["tfc_1w1a"])
    images = load_images("test", (1, 28, 28))[0][:300]
    assert check_against_executor(net, info, images)["layer_mismatches"] == [0, 0, 0, 0]
    net.layers[1].thresholds[:, 0] += 3
    mism = check_against_executor(net, info, images)["layer_mismatches"]
    assert mism[0] == 0 and all(m > 0 for m in mism[1:])


def test_cnv_1w1a_import(tmp_path):
    """Brevitas' CNV (6 binary 3x3 convolutions, two 2x2 max-pools, 3 dense layers) with its
    8-bit Q1.7 input on 32x32 one-channel images: the input becomes 255 thermometer planes
    (two of them at the same threshold, where the quantizer skips a level), every layer
    matches the executor."""
    import torch
    from brevitas_examples.bnn_pynq.models.CNV import CNV
    _mnist_or_skip()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CNV(num_classes=10, weight_bit_width=1, act_bit_width=1, in_bit_width=8, in_ch=1)
    with torch.no_grad():                   # batch-norm statistics away from the defaults
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.uniform_(-3, 3)
                mod.running_var.uniform_(0.5, 4)
                mod.weight.uniform_(-1, 1)
                mod.bias.uniform_(-0.5, 0.5)
    path = export(model.eval(), tmp_path / "cnv.onnx", shape=(1, 1, 32, 32))
    r = import_qonnx(path, tmp_path / "net", check=40)
    assert r["check"]["layer_mismatches"] == [0] * 9 and r["check"]["class_mismatches"] == 0
    net = load_compiled_network(tmp_path / "net")
    th = net.input.thresholds
    assert len(th) == 255 and len(set(th)) == 254
    assert [l.kind for l in net.layers] == ["conv"] * 6 + ["dense"] * 3
    assert [l.pool for l in net.layers[:6]] == [0, 2, 0, 2, 0, 0]
