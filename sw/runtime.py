"""Host runtime: one API for the golden model, the Verilator co-simulation and a PYNQ board.

In the spirit of finn-examples' driver::

    acc = Accelerator("golden", net="exported_dir")            # integer golden model
    acc = Accelerator("sim", net="exported_dir")               # generated RTL in Verilator
    acc = Accelerator("pynq", bitfile="build/ultra96/fracbnn.bit")   # the board
    classes, scores = acc.execute(images)                      # uint8 (N, P) -> (N,), (N, C)
    acc.throughput_test()

Data path (sim and board share it; see docs/boards.md):

* input DMA buffer (:func:`pack_images`): the images' pixels as bytes, row-major, image after
  image; an ``8*PPB``-bit stream beat carries pixel j of the beat at bits ``[8j, 8j+8)``,
  i.e. the little-endian bytes of the buffer in order.  One DMA packet (one MM2S transfer)
  is one batch; the board shell frames images for the accelerator.
* output DMA buffer (:func:`unpack_results`): ``1 + C`` 32-bit words per image: the class
  index, then the ``C`` scores (two's complement).
* registers (:class:`RegisterDriver`): the documented AXI4-Lite map (docs/hardware.md
  "Register map"): ID and CONFIG are checked against the network before the first run,
  CTRL clears the counters, STATUS/IMAGES_DONE/CYCLES are checked after every batch, and
  for a network with early exits the per-exit counters EXITj_TAKEN are read
  (:meth:`Accelerator.exit_counts`).

The ``pynq`` package is imported only by the ``"pynq"`` target (:class:`sw.errors.UserError`
if it is missing); tests pass a stand-in module with the same ``Overlay`` / ``allocate``
surface to run this exact code against a simulated design.

Board-side dependencies: numpy (1.26 or 2.x) and threadpoolctl; the ``sim`` target's
generator and simulator (Amaranth, Verilator) are imported only by that target, so the
golden and pynq targets run from the light board install (``pip install ./sw/board``,
docs/boards.md).

A DMA transfer is never waited for without a deadline (PYNQ's ``wait()`` has none): each
channel's idle and error bits are polled until ``dma_timeout`` seconds (default
:func:`dma_timeout_for` the batch) have passed, then a stalled accelerator is a one-line
:class:`sw.errors.UserError` naming the channel; ``wait()`` is called only once the channel is
idle, where it returns at once (and invalidates the receive buffer's cache lines).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .compiled_net import CompiledNetwork
from .network_io import load_compiled_network, load_network
from .residual_graph import ResidualNetwork
from .errors import UserError

__all__ = ["TARGETS", "REG", "REG_ID_VALUE", "REG_VERSION_VALUE", "PARAM_WRITABLE",
           "Accelerator", "DeviceError", "RegisterDriver", "pack_images", "unpack_results",
           "check_results", "config_word", "check_design", "requested_network",
           "parameter_memories", "parameter_writes", "check_same_hardware",
           "dma_timeout_for", "wait_for_dma"]

#: Runtime targets.
TARGETS = ("golden", "sim", "pynq")

#: Register byte addresses (docs/hardware.md "Register map").
REG = {"ID": 0x00, "VERSION": 0x04, "CONFIG": 0x08, "STATUS": 0x0C, "IMAGES_DONE": 0x10,
       "CYCLES_LO": 0x14, "CYCLES_HI": 0x18, "CTRL": 0x1C, "LAYER_BASE": 0x20,
       "EXITS": 0xD0, "EXIT_BASE": 0xD4, "PARAM_SELECT": 0xF8, "PARAM_DATA": 0xFC}
#: PARAM_SELECT read-back bit of designs built with writable parameters.
PARAM_WRITABLE = 1 << 31
_SELECT_ADDR_BITS = 20
REG_ID_VALUE = 0x464E4231        # "FNB1"
REG_VERSION_VALUE = 0x00010001   # register map 1.1 (EXITS, EXITj_TAKEN)
_STATUS_BUSY, _STATUS_FRAMING = 1, 2
# Default DMA deadline: a fixed allowance plus 10 ms per image, about 7x the per-image time
# of the slowest design the flow models (CNV, 14,636 cycles/image, at the 10 MHz minimum
# clock: 1.5 ms).
_DMA_TIMEOUT_BASE_S, _DMA_TIMEOUT_PER_IMAGE_S = 2.0, 0.01
# Poll without sleeping this long (a fast batch's end is seen at once), then sleep between polls.
_DMA_SPIN_S, _DMA_POLL_SLEEP_S = 0.01, 0.0005


class DeviceError(RuntimeError):
    """The device (board or simulated design) misbehaved: wrong ID, framing error, short result."""


def _as_images(images, pixels: int) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != pixels:
        raise UserError(f"images must be (N, {pixels}) pixels, not shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"images must be 8-bit unsigned pixels (uint8, or integers in "
                            f"0..255), not {arr.dtype}; convert them, e.g. with "
                            f"np.clip(images, 0, 255).astype(np.uint8)")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise UserError(f"images must be 8-bit unsigned pixels, but these {arr.dtype} "
                            f"values span {arr.min()}..{arr.max()}, outside 0..255; scale or "
                            "clip them into 0..255")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def pack_images(images, pixels_per_beat: int, pixels: int | None = None) -> np.ndarray:
    """The MM2S (input) DMA buffer for ``images``: uint8, ``N * P`` bytes.

    Beat ``k`` of the stream is bytes ``[k*PPB, (k+1)*PPB)`` read little-endian (pixel j at
    bits ``[8j, 8j+8)``), so the buffer is the pixels in row-major image order; ``P`` must be
    a multiple of ``pixels_per_beat``.
    """
    arr = np.asarray(images)
    pixels = arr.shape[-1] if pixels is None else pixels
    arr = _as_images(arr, pixels)
    if pixels_per_beat < 1 or pixels % pixels_per_beat:
        raise UserError(f"{pixels} pixels per image do not split into {pixels_per_beat}-pixel beats")
    return arr.reshape(-1)


def unpack_results(words, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse the S2MM (output) DMA buffer: ``1 + C`` uint32 words per image.

    Returns ``(classes (N,), scores (N, C))`` as int64 (scores sign-extended from 32 bits).
    Raises :class:`DeviceError` if the buffer is not a whole number of images.
    """
    words = np.asarray(words)
    if words.dtype != np.uint32:
        words = words.astype(np.uint32)
    per_image = 1 + classes
    if words.ndim != 1 or words.size % per_image:
        raise DeviceError(f"result buffer of {words.size} words is not a whole number of "
                          f"{per_image}-word images")
    table = words.reshape(-1, per_image)
    return table[:, 0].astype(np.int64), table[:, 1:].view(np.int32).astype(np.int64)


def check_results(classes: np.ndarray, scores: np.ndarray, output=None) -> None:
    """Raise :class:`DeviceError` unless every class index is what the network's decoder
    gives for its scores (``output``: :class:`sw.compiled_net.OutputSpec`; default the
    first maximal score, what the hardware computes without class keys); catches shifted or
    torn DMA buffers."""
    if len(classes) == 0:
        return
    expected = (np.argmax(scores, axis=1) if output is None
                else output.decode(np.asarray(scores, dtype=np.int64)))
    bad = np.flatnonzero(classes != expected)
    if bad.size:
        i = int(bad[0])
        raise DeviceError(f"{bad.size} result(s) inconsistent: image {i} reports class "
                          f"{int(classes[i])} but its scores peak at {int(expected[i])}")


def config_word(net: CompiledNetwork, pixels_per_beat: int) -> int:
    """The CONFIG register value of a design for ``net``."""
    return (len(net.layers) | pixels_per_beat << 8 | net.classes << 16
            | net.input.levels << 24)


def parameter_memories(net: CompiledNetwork) -> list[tuple[int, int, list[int]]]:
    """``(index, width, words)`` of every parameter memory of ``net`` in load order: memory
    index ``3*layer + kind`` (:data:`sw.compiled_net.MEMORY_KINDS`), words exactly the
    ``.mem`` files'."""
    from .compiled_net import MEMORY_KINDS
    from .memory_layout import memory_widths, memory_words
    return [(3 * i + MEMORY_KINDS.index(kind), width, memory_words(layer, kind))
            for i, layer in enumerate(net.layers)
            for kind, width in memory_widths(layer).items()]


def parameter_writes(net: CompiledNetwork) -> list[tuple[int, int]]:
    """The register writes ``(byte offset, value)`` that load every parameter memory of
    ``net`` into a design built with writable parameters: per memory, PARAM_SELECT =
    ``index << 20`` (word 0), then each word as ``ceil(width/32)`` PARAM_DATA writes, least
    significant 32 bits first (docs/hardware.md, "Writable parameters")."""
    writes = []
    for index, width, words in parameter_memories(net):
        writes.append((REG["PARAM_SELECT"], index << _SELECT_ADDR_BITS))
        chunks = -(-width // 32)
        for word in words:
            writes += [(REG["PARAM_DATA"], (word >> (32 * k)) & 0xFFFF_FFFF)
                       for k in range(chunks)]
    return writes


def _hardware_view(net: CompiledNetwork) -> dict:
    """What the hardware fixes: network.json without the memories' contents (sha256),
    name, provenance, test vectors, the codes' values and the float logit map."""
    from .network_json import network_to_json
    doc = network_to_json(net)
    for key in ("name", "source", "test_vectors"):
        doc.pop(key, None)
    for layer in doc["layers"]:
        for mem in layer["memories"].values():
            mem.pop("sha256", None)
        # What a code means (its value) is documentation; the hardware sees levels only.
        layer.pop("out_bias", None)
        layer.pop("out_scale", None)
    for key in ("mean", "scale", "beta"):    # the float logit map: not in the hardware
        doc["output"].pop(key, None)
    return doc


def check_same_hardware(loaded: CompiledNetwork, new: CompiledNetwork) -> None:
    """Raise :class:`sw.errors.UserError` (one line, naming the first difference) unless
    ``new`` runs on hardware built for ``loaded`` with writable parameters: same layers,
    shapes, folding, activation kinds, thermometer thresholds and output decoder."""
    a, b = _hardware_view(loaded), _hardware_view(new)
    if a == b:
        return

    def first_diff(x, y, path):
        if type(x) is not type(y):
            return path
        if isinstance(x, dict):
            for k in sorted(set(x) | set(y)):
                if k not in x or k not in y:
                    return f"{path}.{k}"
                d = first_diff(x[k], y[k], f"{path}.{k}")
                if d:
                    return d
            return None
        if isinstance(x, list):
            if len(x) != len(y):
                return f"{path} (length {len(x)} vs {len(y)})"
            for k, (u, v) in enumerate(zip(x, y)):
                d = first_diff(u, v, f"{path}[{k}]")
                if d:
                    return d
            return None
        return None if x == y else f"{path} ({x!r} vs {y!r})"

    where = first_diff(a, b, "network") or "network"
    raise UserError(f"the export does not fit the loaded hardware: {where} differs; only "
                    "weights, thresholds and gates can be loaded (same shapes, folding, "
                    "activations, input encoding and output decoder)")


class RegisterDriver:
    """The register map over an MMIO object with ``read(offset) -> int`` and
    ``write(offset, value)`` (``pynq.MMIO``, an overlay IP, or a simulated bus)."""

    def __init__(self, mmio):
        self._mmio = mmio

    def read(self, name: str) -> int:
        return int(self._mmio.read(REG[name])) & 0xFFFF_FFFF

    def identify(self) -> dict:
        """ID, VERSION, CONFIG and EXITS decoded."""
        cfg = self.read("CONFIG")
        return {"id": self.read("ID"), "version": self.read("VERSION"), "config": cfg,
                "layers": cfg & 0xFF, "pixels_per_beat": cfg >> 8 & 0xFF,
                "classes": cfg >> 16 & 0xFF, "levels": cfg >> 24 & 0xFF,
                "exits": self.read("EXITS")}

    def check_design(self, net: CompiledNetwork) -> int:
        """Check that the device is a FracBNN accelerator for ``net``; return pixels per beat.

        Compares ID, VERSION, CONFIG (layers, classes, thermometer levels), EXITS (early
        exits) and every layer's folding and shape registers.  Raises :class:`DeviceError` on any difference.
        """
        info = self.identify()
        if info["id"] != REG_ID_VALUE:
            raise DeviceError(f"ID register reads 0x{info['id']:08X}, not 0x{REG_ID_VALUE:08X}: "
                              "not a FracBNN accelerator (wrong bitstream or IP name?)")
        if info["version"] != REG_VERSION_VALUE:
            raise DeviceError(f"register map version 0x{info['version']:08X} is not the "
                              f"supported 0x{REG_VERSION_VALUE:08X}")
        want = {"layers": len(net.layers), "classes": net.classes, "levels": net.input.levels,
                "exits": len(net.exits)}
        for key, value in want.items():
            if info[key] != value:
                raise DeviceError(f"the design has {info[key]} {key}, the network {value}: "
                                  "the bitstream was built for another network")
        for i, layer in enumerate(net.layers):
            fold = int(self._mmio.read(REG["LAYER_BASE"] + 8 * i)) & 0xFFFF_FFFF
            shape = int(self._mmio.read(REG["LAYER_BASE"] + 8 * i + 4)) & 0xFFFF_FFFF
            want_fold = layer.folding.pe << 16 | layer.folding.simd
            want_shape = layer.in_features << 16 | layer.out_features
            if (fold, shape) != (want_fold, want_shape):
                raise DeviceError(f"layer {i}: the design has PE/SIMD {fold >> 16}/{fold & 0xFFFF} "
                                  f"and shape {shape >> 16}x{shape & 0xFFFF}, the network "
                                  f"{layer.folding.pe}/{layer.folding.simd} and "
                                  f"{layer.in_features}x{layer.out_features}")
        if info["pixels_per_beat"] < 1 or net.input.pixels % info["pixels_per_beat"]:
            raise DeviceError(f"CONFIG reports {info['pixels_per_beat']} pixels per beat")
        return info["pixels_per_beat"]

    def load_parameters(self, net: CompiledNetwork) -> int:
        """Write every parameter memory of ``net`` (:func:`parameter_writes`); returns the
        number of register writes.  Checks first, before writing anything, that the design
        has writable parameters, fits ``net`` (:meth:`check_design`) and is idle."""
        if not self.read("PARAM_SELECT") & PARAM_WRITABLE:
            raise DeviceError("the design's parameters are not writable; build it with "
                              "`python -m hw.generate --writable-params` (hw.build likewise)")
        self.check_design(net)
        if self.read("STATUS") & _STATUS_BUSY:
            raise DeviceError("the accelerator is busy; load parameters between batches")
        writes = parameter_writes(net)
        for offset, value in writes:
            self._mmio.write(offset, value)
        return len(writes)

    def clear(self) -> None:
        """CTRL bit 0: clear IMAGES_DONE, CYCLES and the framing error."""
        self._mmio.write(REG["CTRL"], 1)

    def cycles(self) -> int:
        lo = self.read("CYCLES_LO")        # latches the high half
        return self.read("CYCLES_HI") << 32 | lo

    def exit_counts(self, exits: int) -> list[int]:
        """EXITj_TAKEN of the ``exits`` early exits: per exit the images whose result left
        through it since the last clear."""
        return [int(self._mmio.read(REG["EXIT_BASE"] + 4 * j)) & 0xFFFF_FFFF
                for j in range(exits)]

    def check_after(self, images_expected: int, exits: int = 0) -> dict:
        """Read STATUS, IMAGES_DONE and CYCLES after a batch, then the ``exits`` per-exit
        counters (``exit_counts``); raise :class:`DeviceError` on a framing error, a busy
        pipeline, a wrong image count or exit counts that do not add up to at most it."""
        status, done = self.read("STATUS"), self.read("IMAGES_DONE")
        if status & _STATUS_FRAMING:
            raise DeviceError("STATUS reports a framing error: an input packet ended inside an "
                              "image (the input buffer was not whole images)")
        if status & _STATUS_BUSY:
            raise DeviceError("STATUS reports busy after every result arrived")
        if done != images_expected:
            raise DeviceError(f"IMAGES_DONE reads {done}, expected {images_expected}")
        cycles = self.cycles()
        taken = self.exit_counts(exits)
        if sum(taken) > done:
            raise DeviceError(f"EXITj_TAKEN read {taken}, more than the {done} images done")
        return {"status": status, "images_done": done, "cycles": cycles, "exit_counts": taken}


def dma_timeout_for(images: int) -> float:
    """Default deadline (seconds) for one DMA batch of ``images`` images: 2 s + 10 ms/image."""
    return _DMA_TIMEOUT_BASE_S + _DMA_TIMEOUT_PER_IMAGE_S * images


def _check_dma_timeout(value) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        raise UserError(f"dma_timeout must be a number of seconds > 0 (or None for the "
                        f"default), not {value!r}")
    return float(value)


def wait_for_dma(channel, what: str, deadline: float, timeout: float, images: int) -> None:
    """Wait for a PYNQ DMA ``channel`` (``idle``, ``error``, ``wait()``) until the
    ``time.monotonic()`` ``deadline``.

    Polls ``channel.idle`` (spinning for the first 10 ms, then sleeping 0.5 ms between polls),
    then calls ``channel.wait()``, which returns at once for an idle channel and finishes the
    transfer PYNQ's way (cache invalidation of a receive buffer, ``transferred``).

    Raises
    ------
    DeviceError
        The channel reports a DMA error (``channel.error``).
    UserError
        The deadline passed first: one line naming ``what`` (the channel), the ``timeout``
        and the batch's ``images``, and the fix.  The DMA is left mid-transfer.
    """
    spin_until = time.monotonic() + _DMA_SPIN_S
    while not channel.idle:
        if channel.error:
            raise DeviceError(f"the DMA reports an error on {what} (DMASR error bits set): "
                              "a buffer the DMA cannot reach or a result buffer too small")
        now = time.monotonic()
        if now >= deadline:
            raise UserError(
                f"the accelerator stalled: {what} was not done after {timeout:g} s ({images} "
                "image(s) in the batch); check that the overlay is the bitstream built for "
                "this network and is loaded (a new Accelerator loads it again, which is "
                "needed before the next run), or allow more time with dma_timeout= "
                "(sw.compare: --dma-timeout)")
        if now >= spin_until:
            time.sleep(_DMA_POLL_SLEEP_S)
    channel.wait()


def _import_pynq():
    try:
        import pynq  # noqa: PLC0415 - only the board target needs it
    except ImportError:
        raise UserError("the 'pynq' target needs the PYNQ package (run this on the board's "
                        "PYNQ image, or `pip install pynq` there); use --target golden or sim "
                        "elsewhere") from None
    return pynq


class _GoldenBackend:
    def __init__(self, net: CompiledNetwork):
        from .golden import GoldenModel
        self.model = GoldenModel(net)
        self.pixels_per_beat = None

    def run(self, images: np.ndarray):
        result = self.model.run(images)
        exits = len(self.model.net.exits)
        counts = np.bincount(result.exits, minlength=exits + 1)[:exits]
        return (result.classes.astype(np.int64), result.scores.astype(np.int64),
                {"exit_counts": [int(c) for c in counts]})


def requested_network(net: CompiledNetwork, fold) -> CompiledNetwork:
    """``net`` with the folding ``fold`` (a folding JSON path or dict; ``None``: its own)."""
    if fold is None:
        return net
    from .compiled_net import fold_config_from_json, refold
    return refold(net, fold_config_from_json(fold, len(net.layers), net.fold_shapes))


def check_design(design_dir, net: CompiledNetwork, pixels_per_beat: int, *,
                 export_dir=None) -> dict:
    """Check that the generated design in ``design_dir`` is the one requested; return its
    ``design.json``.

    It must name ``net`` (name, layer shapes), have ``net``'s folding and ``pixels_per_beat``;
    with ``export_dir`` (a design of the export's own folding) its ``.mem`` files must be the
    export's.  A design for anything else would run (and stall, or disagree) in the simulator.

    Raises
    ------
    UserError
        Naming what differs: another network, another folding or another pixels per beat.
    """
    from sim.build import design_info

    design_dir = Path(design_dir)
    info = design_info(design_dir)
    where = f"the design in {design_dir}"
    fix = "choose another --design-dir (or remove this one) to generate a new design"
    name = info.get("network")
    if name != net.name:
        raise UserError(f"{where} names another network ({name!r}, not {net.name!r}); {fix}")
    got = [(l.get("in_features"), l.get("out_features"), l.get("pe"), l.get("simd"),
            bool(l.get("pad"))) for l in info.get("layers") or []]
    want = [(l.in_features, l.out_features, l.folding.pe, l.folding.simd, bool(l.folding.pad))
            for l in net.layers]
    if len(got) != len(want) or any(g[:2] != w[:2] for g, w in zip(got, want)):
        shape = lambda layers: " -> ".join(f"{l[0]}x{l[1]}" for l in layers)  # noqa: E731
        raise UserError(f"{where} names another network: its layers are {shape(got)}, "
                        f"{net.name}'s {shape(want)}; {fix}")
    for i, (g, w) in enumerate(zip(got, want)):
        if g[2:] != w[2:]:
            raise UserError(f"{where} has another folding: layer {i} PE/SIMD {g[2]}/{g[3]}"
                            f"{' padded' if g[4] else ''}, requested {w[2]}/{w[3]}"
                            f"{' padded' if w[4] else ''}; pass the --fold it was generated "
                            f"with, or {fix}")
    if info["pixels_per_beat"] != pixels_per_beat:
        raise UserError(f"{where} was generated with {info['pixels_per_beat']} pixels per beat, "
                        f"not the requested {pixels_per_beat}; pass --pixels-per-beat "
                        f"{info['pixels_per_beat']}, or {fix}")
    if export_dir is not None:
        for mem in sorted(f for f in info.get("files", []) if f.endswith(".mem")):
            mine, theirs = design_dir / mem, Path(export_dir) / mem
            if theirs.is_file() and (not mine.is_file()
                                     or mine.read_bytes() != theirs.read_bytes()):
                raise UserError(f"{where} names another export of {net.name}: its {mem} differs "
                                f"from {theirs}; {fix}")
    return info


class _SimBackend:
    """The generated design in the Verilator batch harness, fed the packed DMA buffer."""

    def __init__(self, net_dir: Path, net: CompiledNetwork, *, design_dir, fold, pixels_per_beat,
                 build_root, writable_params: bool = False, own_folding: bool = True):
        from hw.generate import generate
        from sim import batch as simbatch

        if isinstance(net, ResidualNetwork):
            if writable_params:
                raise UserError("writable_params: the residual accelerator has ROM parameters "
                                "only; drop it")
            from hw.residual_generate import generate_residual

            def generate(net_dir, design_dir, *, fold, pixels_per_beat, writable_params):
                generate_residual(net_dir, design_dir, pixels_per_beat=pixels_per_beat,
                                  fold=fold)
        self._tmp = None
        if design_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="fracbnn-runtime-")
            design_dir = Path(self._tmp) / "design"
            generate(net_dir, design_dir, fold=fold, pixels_per_beat=pixels_per_beat,
                     writable_params=writable_params)
        elif not (Path(design_dir) / "design.json").is_file():
            generate(net_dir, design_dir, fold=fold, pixels_per_beat=pixels_per_beat,
                     writable_params=writable_params)
        else:
            # The design's .mem files are the export's when its folding is the export's
            # (``own_folding``; a residual network refolded to one PE has them laid out anew).
            check_design(design_dir, net, pixels_per_beat,
                         export_dir=net_dir if own_folding else None)
        info = json.loads((Path(design_dir) / "design.json").read_text())
        self.writable = bool(info.get("writable_params"))
        # Register writes of the loaded parameters: each run starts the simulator from
        # reset (the RAMs hold the design's own .mem files), so they are made every run.
        self.param_writes: list | None = None
        self.design_dir = Path(design_dir)
        self.pixels_per_beat = pixels_per_beat
        self._classes = net.classes
        self._simbatch = simbatch
        self.build = simbatch.build_batch(self.design_dir, pixels_per_beat=pixels_per_beat,
                                          classes=net.classes, build_root=build_root)

    def run(self, images: np.ndarray):
        buffer = pack_images(images, self.pixels_per_beat)
        # The harness streams its image file beat by beat: exactly the DMA buffer's bytes.
        res = self._simbatch.run_batch(self.build, buffer.reshape(images.shape),
                                       axil_writes=self.param_writes)
        if res.framing_errors:
            raise DeviceError(f"{res.framing_errors} result frames had TLAST misplaced")
        if res.reg_status & _STATUS_FRAMING or res.reg_images_done != len(images):
            raise DeviceError(f"after the run STATUS=0x{res.reg_status:08X}, IMAGES_DONE="
                              f"{res.reg_images_done} (expected {len(images)})")
        # The harness records every m_axis beat's tdata: rebuild the S2MM buffer from them.
        words = np.empty((len(images), 1 + self._classes), dtype=np.uint32)
        words[:, 0] = res.classes.astype(np.uint32)
        words[:, 1:] = res.scores.astype(np.int64).astype(np.uint32)
        classes, scores = unpack_results(words.reshape(-1), self._classes)
        cycles = int(res.last_out[-1] - res.first_in[0] + 1) if len(images) else 0
        return classes, scores, {"cycles": cycles, "sim_seconds": res.wall_seconds,
                                 "first_in": res.first_in, "first_out": res.first_out,
                                 "exit_counts": list(res.reg_exit_taken)}

    def close(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class _PynqBackend:
    """A PYNQ overlay: the board shell's registers and an AXI DMA in simple mode."""

    def __init__(self, net: CompiledNetwork | ResidualNetwork, *, bitfile, pynq_module, ip_name,
                 dma_name, batch_size, dma_timeout):
        self._pynq = pynq_module if pynq_module is not None else _import_pynq()
        if not Path(bitfile).is_file():
            raise UserError(f"bitstream {bitfile} not found; build it with "
                            "`python -m hw.build --board ...` and run the Vivado script")
        self.overlay = self._pynq.Overlay(str(bitfile))
        for name in (ip_name, dma_name):
            if not hasattr(self.overlay, name):
                raise UserError(f"the overlay {bitfile} has no IP named {name!r}; pass "
                                "ip_name=/dma_name= matching its block design")
        self.regs = RegisterDriver(getattr(self.overlay, ip_name))
        self.dma = getattr(self.overlay, dma_name)
        self.pixels_per_beat = self.regs.check_design(net)
        self._net, self._batch, self._timeout = net, batch_size, dma_timeout
        self._channels = {"send": f"the {dma_name} MM2S channel (images in)",
                          "recv": f"the {dma_name} S2MM channel (results out)"}

    def run(self, images: np.ndarray):
        net, allocate = self._net, self._pynq.allocate
        per_image = 1 + net.classes
        classes, scores = [], []
        self.regs.clear()
        start = time.perf_counter()
        for first in range(0, len(images), self._batch):
            chunk = images[first:first + self._batch]
            in_buf = allocate(shape=(chunk.size,), dtype=np.uint8)
            out_buf = allocate(shape=(len(chunk) * per_image,), dtype=np.uint32)
            try:
                in_buf[:] = pack_images(chunk, self.pixels_per_beat)
                timeout = self._timeout or dma_timeout_for(len(chunk))
                deadline = time.monotonic() + timeout
                # Arm S2MM first: the results stream back while the images still go in.
                self.dma.recvchannel.transfer(out_buf)
                self.dma.sendchannel.transfer(in_buf)
                for key in ("send", "recv"):
                    wait_for_dma(getattr(self.dma, f"{key}channel"), self._channels[key],
                                 deadline, timeout, len(chunk))
                c, s = unpack_results(np.array(out_buf, copy=True), net.classes)
            finally:
                for buf in (in_buf, out_buf):
                    free = getattr(buf, "freebuffer", None)
                    if free is not None:
                        free()
            classes.append(c)
            scores.append(s)
        seconds = time.perf_counter() - start
        after = self.regs.check_after(len(images), len(net.exits))
        return (np.concatenate(classes), np.concatenate(scores),
                {"wall_seconds": seconds, "register_cycles": after["cycles"],
                 "exit_counts": after["exit_counts"]})


class Accelerator:
    """One FracBNN accelerator, on any target.

    Parameters
    ----------
    target : {"golden", "sim", "pynq"}
        Integer golden model; the generated RTL co-simulated with Verilator; a PYNQ board.
    net : path or CompiledNetwork, optional
        The compiled network (``models.export`` directory).  Required for ``golden`` and
        ``sim``; for ``pynq`` it defaults to ``net/`` beside the bitstream (what
        ``python -m hw.build`` writes).
    fold : path or dict, optional
        ``sim``: folding to generate the design with (default: the network's).
    pixels_per_beat : int
        ``sim``: input beat width of the generated design (default 8).
    design_dir, build_root : path, optional
        ``sim``: generated design directory (generated if it has no ``design.json``), and the
        simulator build cache.
    writable_params : bool
        ``sim``: generate the design with writable parameters, so that :meth:`load` works
        (default ``False``).
    clock_mhz : float, optional
        ``sim``: clock used to convert cycles into images/s (default: the Ultra96's default
        clock, :func:`boards.resolve_clock`).
    bitfile : path
        ``pynq``: the ``.bit`` (its ``.hwh`` beside it).
    ip_name, dma_name : str
        ``pynq``: block-design names of the accelerator and the DMA.
    batch_size : int
        ``pynq``: images per DMA transfer (default 1000).
    dma_timeout : float, optional
        ``pynq``: seconds a batch's DMA transfers may take before the accelerator counts as
        stalled (:class:`sw.errors.UserError`); default :func:`dma_timeout_for` the batch
        (2 s + 10 ms per image).
    pynq_module : module, optional
        ``pynq``: the ``pynq`` package or a stand-in with ``Overlay`` and ``allocate`` whose
        DMA channels have ``transfer``, ``idle``, ``error`` and ``wait``.
    """

    def __init__(self, target: str = "golden", *, net=None, fold=None, pixels_per_beat: int = 8,
                 design_dir=None, build_root=None, clock_mhz: float | None = None, bitfile=None,
                 writable_params: bool = False,
                 ip_name: str = "fracbnn_0", dma_name: str = "axi_dma_0", batch_size: int = 1000,
                 dma_timeout: float | None = None, pynq_module=None):
        if target not in TARGETS:
            raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise UserError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        batch_size = int(batch_size)
        dma_timeout = _check_dma_timeout(dma_timeout)
        if target == "sim":
            from boards import resolve_clock     # host side only (the board runtime has no boards/)
            from sim.build import check_build_root
            clock_mhz, _ = resolve_clock(None, clock_mhz, option="clock_mhz")
            # Absolute paths: the generator and the simulator run in other directories.
            build_root = check_build_root(build_root)
            if design_dir is not None:
                design_dir = Path(design_dir).expanduser().resolve()
            if isinstance(pixels_per_beat, np.integer):
                pixels_per_beat = int(pixels_per_beat)
        self._target, self._clock_mhz = target, clock_mhz
        self._pixels_per_beat = pixels_per_beat if target == "sim" else None
        if net is None and target == "pynq" and bitfile is not None:
            net = Path(bitfile).parent / "net"
        if net is None:
            raise UserError(f"target {target!r} needs net= (a compiled-network directory from "
                            "`python -m models.export`)")
        net_dir = None
        if not isinstance(net, (CompiledNetwork, ResidualNetwork)):
            net_dir = Path(net).expanduser().resolve()
            net = load_network(net_dir)
        own_folding = fold is None
        if isinstance(net, ResidualNetwork):
            # The golden model needs no folding; the simulated design has one PE throughout.
            if target == "sim":
                from hw.residual_accelerator import plan_residual, resolve_folding
                net, refolded = resolve_folding(net, fold)
                own_folding = refolded is None
                plan_residual(net, pixels_per_beat)      # a one-line error if it cannot stream
        else:
            net = requested_network(net, fold)
        if target == "sim" and isinstance(net, CompiledNetwork):
            from hw.generate import check_pixels_per_beat
            check_pixels_per_beat(net, pixels_per_beat, option="pixels_per_beat")
        self._net = net
        if target == "golden":
            self._backend = _GoldenBackend(net)
        elif target == "sim":
            if net_dir is None:
                raise UserError("target 'sim' needs net= as a compiled-network directory "
                                "(the generator reads its .mem files)")
            self._backend = _SimBackend(net_dir, net, design_dir=design_dir, fold=fold,
                                        pixels_per_beat=pixels_per_beat, build_root=build_root,
                                        writable_params=writable_params,
                                        own_folding=own_folding)
        else:
            if bitfile is None:
                raise UserError("target 'pynq' needs bitfile= (the .bit from the Vivado build)")
            self._backend = _PynqBackend(net, bitfile=bitfile, pynq_module=pynq_module,
                                         ip_name=ip_name, dma_name=dma_name,
                                         batch_size=batch_size, dma_timeout=dma_timeout)
        self.last_run: dict = {}

    target = property(lambda self: self._target)
    net = property(lambda self: self._net)
    #: ``sim``: input beat width of the simulated design (None for other targets).
    pixels_per_beat = property(lambda self: self._pixels_per_beat)

    @property
    def classes(self) -> int:
        return self._net.classes

    def load(self, net) -> dict:
        """Load another network's weights, thresholds and gates without a new bitstream.

        ``net``: a compiled-network directory (or :class:`CompiledNetwork`) with the same
        shapes, folding, activation kinds, input encoding and output decoder as the loaded
        one (e.g. the same topology retrained); anything else is refused in one line before
        a register is written (:func:`check_same_hardware`).  ``pynq``: the design must be
        built with writable parameters (``hw.generate --writable-params``); the memories are
        written through PARAM_SELECT / PARAM_DATA.  ``sim`` (created with
        ``writable_params=True``): the same register writes, made by the simulator after
        reset at the start of every run (each run restarts it).  ``golden``: the model is
        swapped.
        Returns ``{"writes": register writes, "seconds": wall time}``.
        """
        if not isinstance(net, CompiledNetwork):
            net = load_compiled_network(Path(net).expanduser().resolve())
        check_same_hardware(self._net, net)
        start = time.perf_counter()
        writes = 0
        if self._target == "pynq":
            writes = self._backend.regs.load_parameters(net)
        elif self._target == "golden":
            self._backend = _GoldenBackend(net)
        else:
            if not self._backend.writable:
                raise UserError("the simulated design's parameters are not writable; create "
                                "the accelerator with writable_params=True")
            self._backend.param_writes = parameter_writes(net)
            writes = len(self._backend.param_writes)
        self._net = net
        return {"writes": writes, "seconds": time.perf_counter() - start}

    def execute(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Classify ``images`` (uint8 (N, P) or one image (P,)).

        Returns ``(classes (N,), scores (N, C))``, int64.  ``last_run`` holds the timing of
        this call (wall seconds; cycles for ``sim``; the CYCLES register for ``pynq``).
        """
        images = _as_images(images, self._net.input.pixels)
        start = time.perf_counter()
        classes, scores, info = self._backend.run(images)
        if self._target != "golden":
            check_results(classes, scores, self._net.output)
        self.last_run = {"images": len(images), "wall_seconds": time.perf_counter() - start,
                         **info}
        return classes, scores

    def exit_counts(self) -> list[int]:
        """Per early exit ``j`` the images of the last :meth:`execute` whose result left
        through it (``pynq``/``sim``: the EXITj_TAKEN registers; ``golden``: the golden
        model's exits); empty for a network without early exits."""
        return list(self.last_run.get("exit_counts", []))

    def throughput_test(self, images=None, *, count: int = 1000, seed: int = 0) -> dict:
        """Run ``images`` (default ``count`` random images) and report throughput.

        Keys as in finn-examples: ``runtime[ms]``, ``throughput[images/s]``,
        ``DRAM_in_bandwidth[MB/s]``, ``DRAM_out_bandwidth[MB/s]``, ``batch_size``; for
        ``sim`` the images/s are from simulated cycles at ``clock_mhz``
        (``fclk[mhz]``, ``cycles_per_image``) and the wall speed of the simulation is
        ``sim_images_per_s``.
        """
        if images is None:
            rng = np.random.default_rng(seed)
            images = rng.integers(0, 256, size=(count, self._net.input.pixels), dtype=np.uint8)
        images = _as_images(images, self._net.input.pixels)
        self.execute(images)
        n = len(images)
        run = self.last_run
        seconds = run["wall_seconds"]
        report = {"target": self._target, "batch_size": n}
        if self._target == "sim":
            cycles = run["cycles"]
            # Results leave at the bottleneck's rate; input accepts run ahead into buffers.
            per_image = (float(run["first_out"][-1] - run["first_out"][0]) / (n - 1) if n > 1
                         else float(cycles))
            seconds = cycles / (self._clock_mhz * 1e6)
            report.update({"fclk[mhz]": self._clock_mhz, "cycles": cycles,
                           "cycles_per_image": per_image,
                           "sim_images_per_s": n / run["sim_seconds"] if run["sim_seconds"] else None})
        elif self._target == "pynq":
            report["register_cycles"] = run["register_cycles"]
            seconds = run.get("wall_seconds", seconds)
        report.update({
            "runtime[ms]": seconds * 1e3,
            "throughput[images/s]": n / seconds if seconds > 0 else float("inf"),
            "DRAM_in_bandwidth[MB/s]": n * self._net.input.pixels / seconds / 1e6 if seconds > 0 else None,
            "DRAM_out_bandwidth[MB/s]": n * 4 * (1 + self.classes) / seconds / 1e6 if seconds > 0 else None,
        })
        return report

    def close(self) -> None:
        """Release temporary files (the ``sim`` target's generated design)."""
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
