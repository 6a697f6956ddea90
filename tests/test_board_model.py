"""The board session's simulated system is the real one: tests/board/zynq_model.py's board
shell against the Amaranth simulation of hw/board_shell.py (registers, results, framing and
TLAST placement; chains, and the residual network the board session runs), and
tests/board/hwh.py's DMA configuration against hw/vivado.py's."""

import numpy as np
import pytest

from boards import get_board
from hw.vivado import dma_config
from sw.network_io import load_compiled_network, load_network
from tests.board.hwh import dma_parameters
from tests.board.make_fixtures import DATA
from tests.board.zynq_model import ShellModel
from tests.netfactory import random_compiled_network, random_images
from tests.pynq_sim import _Device

PPB = 8


@pytest.mark.parametrize("ppb", [1, 2, 8, 16])
def test_hwh_dma_configuration_is_the_vivado_builds(ppb):
    assert dma_parameters(8 * ppb) == dma_config(get_board("ultra96"), 8 * ppb)


def _beats(images: np.ndarray) -> list[int]:
    raw = np.ascontiguousarray(images).reshape(-1, PPB)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def _model_packet(model: ShellModel, beats: list[int]) -> None:
    for k, beat in enumerate(beats):
        assert model.accepts()
        model.push(beat.to_bytes(PPB, "little"), last=k == len(beats) - 1)


def _model_results(model: ShellModel, words: int) -> tuple[list[int], list[int]]:
    """``words`` result words and the indices of those with TLAST."""
    got, lasts = [], []
    for k in range(words):
        word, tlast = model.pop()
        got.append(word)
        if tlast:
            lasts.append(k)
    return got, lasts


def _rtl_results(rtl: _Device, words: int) -> tuple[list[int], list[int]]:
    got, lasts = [], []
    while len(got) < words:           # S2MM receives until TLAST: collect packet by packet
        _, part, last, done = rtl.call("dma", [], words - len(got), "recv", 5000)
        assert done and part, "the RTL stopped sending results"
        got += part
        if last:
            lasts.append(len(got) - 1)
    return got, lasts


#: Layer kinds of the shell pairs; "exits": an early exit after layer 0 (EXITS, EXIT0_TAKEN).
#: "resnet_frac2": the board session's residual network (tests/board/data).
PAIRS = {"frac2": dict(outs=["frac2", "sign"]), "mt3": dict(outs=["mt3", "sign"]),
         "exits": dict(outs=["sign", "sign"], exits=((0, 2),)), "resnet_frac2": None}


@pytest.fixture(scope="module", params=list(PAIRS))
def shell_pair(request, tmp_path_factory):
    if PAIRS[request.param] is None:
        net_dir = DATA / request.param
        net = load_network(net_dir)
        rtl = _Device(net, net_dir, PPB, max_cycles=200_000)
        yield net, ShellModel(net, PPB), rtl
        rtl.close()
        return
    net_dir = random_compiled_network(tmp_path_factory.mktemp("net") / "net", image=(1, 4, 4),
                                      levels=2, shape=(8, 6, 4),
                                      folding=[(2, 4), (2, 4), (2, 3)], seed=3,
                                      **PAIRS[request.param])
    net = load_compiled_network(net_dir)
    rtl = _Device(net, net_dir, PPB, max_cycles=20_000)
    yield net, ShellModel(net, PPB), rtl
    rtl.close()


def test_shell_model_registers_results_and_framing_are_the_rtls(shell_pair):
    net, model, rtl = shell_pair
    per_image = 1 + net.classes
    registers = [a for a in range(0, 0x100, 4) if a not in (0x14, 0x18)]   # CYCLES: timing
    assert [model.read(a) for a in registers] == [rtl.call("read", a) for a in registers]

    images = random_images(net, 7, seed=9)
    # One packet of three images: TLAST on the last result only.
    beats = _beats(images[:3])
    sent, _, _, done = rtl.call("dma", beats, 0, "send", 5000)
    assert done and sent == len(beats)
    _model_packet(model, beats)
    assert _model_results(model, 3 * per_image) == _rtl_results(rtl, 3 * per_image)
    counters = [0x0C, 0x10] + [0xD4 + 4 * j for j in range(len(net.exits))]
    for reg in counters:             # STATUS, IMAGES_DONE, EXITj_TAKEN
        assert model.read(reg) == rtl.call("read", reg)

    # A packet ending inside an image sets the sticky framing error; the image is completed
    # by the next packet (the input is counted in whole images, whatever TLAST says).
    half = len(beats) // 3 // 2
    rest = _beats(images[3:7])
    for packet in (rest[:3 * half], rest[3 * half:]):          # 1.5 images, then 2.5
        rtl.call("dma", packet, 0, "send", 5000)
        _model_packet(model, packet)
        assert model.read(0x0C) == rtl.call("read", 0x0C)
    assert model.read(0x0C) & 2
    assert _model_results(model, 4 * per_image) == _rtl_results(rtl, 4 * per_image)
    for reg in counters:
        assert model.read(reg) == rtl.call("read", reg)
    rtl.call("write", 0x1C, 1)
    model.write(0x1C, 1)
    for reg in counters:
        assert model.read(reg) == rtl.call("read", reg) == 0
