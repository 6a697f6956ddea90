"""``python -m hw.build --board NAME [--net EXPORTDIR] [--fold CONFIG] [--clock MHZ] [--out DIR]``.

Turns a compiled network into what a user takes to a board, in one build directory
(default ``build/<board>``, written atomically: complete or absent):

Zynq boards (``ultra96`` = ``ultra96v2``, ``ultra96v1``, ``zcu104``, ``pynq_z2``)::

    rtl/                 fracbnn_top.v + fracbnn_rom.v + L*_*.mem (+ X*_*.mem: early exits;
                         hw.generate), fracbnn_shell.v (DMA framing shell, hw.board_shell),
                         design.json
    net/                 the compiled network (the runtime's default for this bitstream)
    constraints.xdc      project constraints; ooc.xdc: clock for out-of-context synthesis
    create_project.tcl   Vivado: PS + DMA + accelerator, synth/impl/bitstream, .bit + .hwh
                         (checks the board files, ROM init files, PL clock, timing and
                         hardware handoff, see hw/vivado.py; --board-repo DIR adds board files)
    yosys/               synth_xilinx logs and cell counts
    report.json          board, clock, folding, cycle model, Yosys + analytic resource estimate
                         (and Vivado's post-route numbers when Vivado ran): each resource as a
                         share of the part, a per-layer table, each memory's placement
    report.md            the resource tables as Markdown, with which estimate to trust for what

``--ram-style`` places the weight, threshold and gate memories (block RAM or distributed ROM;
syntax and the depth-aware default in :mod:`hw.memory_style`).

If ``vivado`` is on PATH the script is run and post-route utilisation and timing are reported;
otherwise the exact command is printed.

ULX3S (``ulx3s``): ``rtl/`` as above, ``ecp5/`` (self-test top ``ulx3s_selftest.v``, Yosys and
nextpnr logs and reports), ``ulx3s.bit`` and ``report.json`` with Fmax and utilisation.  The
self-test embeds ``--selftest-images`` images (the network's test vectors; at most 1000, and
no more than the ECP5's EBRs can hold) and their golden results (see hw/selftest.py for the
LEDs) and runs at ``--clock`` (default 80 MHz, made by the ECP5 PLL from the 25 MHz oscillator;
``--clock 25`` uses the oscillator directly; 3.125..400 MHz, the PLL's output range).

Zynq PL clocks: 10 MHz up to the board's maximum.  Every path ``report.json`` names is final:
relative to the build directory.

Default network: the shipped default model ``models/checkpoints/lfc_w1a1.pt`` exported (with
``models.export``) to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sw.atomic_dir import (atomic_directory, atomic_write_json, check_apart, check_replaceable,
                           check_writable_dir, json_safe)
from sw.errors import UserError, cli_main

from .resource_report import add_resource_tables, resource_lines, resource_markdown

__all__ = ["DEFAULT_CHECKPOINT", "REPO_ROOT", "ZYNQ_MIN_CLOCK_MHZ", "ECP5_CLOCK_MHZ",
           "SELFTEST_MAX_IMAGES", "ZYNQ_MAX_PIXELS_PER_BEAT", "build",
           "export_default_network", "selftest_images", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The shipped default model (LFC, BNN-PYNQ's folding on export).
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "checkpoints" / "lfc_w1a1.pt"
_REPORT = "report.json"
_REPORT_MD = "report.md"

#: Lowest PL clock (MHz) a Zynq build accepts: the PS divides its PLLs down to FCLK, and this
#: flow takes 10 MHz as its floor (the AXI DMA and the PS ports are not meant to crawl); the
#: upper end is the board's ``max_clock_mhz``.
ZYNQ_MIN_CLOCK_MHZ = 10.0
#: Design clocks (MHz) of an ECP5 build: the EHXPLLL output range (Lattice TN1263: CLKOP 3.125
#: to 400 MHz); the oscillator itself needs no PLL.
ECP5_CLOCK_MHZ = (3.125, 400.0)
#: Most images a ULX3S self-test embeds (also bounded by what the ECP5's EBRs hold, see
#: :func:`_check_selftest_images`).
SELFTEST_MAX_IMAGES = 1000
#: Largest pixels per beat of a Zynq build: its AXI DMA streams at most 1024 bits, a power of
#: two (hw.vivado.project_tcl).
ZYNQ_MAX_PIXELS_PER_BEAT = 128
_EBR_BITS = 18 * 1024


def export_default_network(outdir, checkpoint=DEFAULT_CHECKPOINT) -> Path:
    """Export ``checkpoint`` (default: the shipped LFC) to ``outdir`` with ``models.export``."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"the default checkpoint {checkpoint} is missing; train it with "
                        "`python -m models.train --net lfc_w1a1` or pass --net EXPORTDIR")
    from models.export import export  # torch: only when exporting

    export(checkpoint, outdir, progress=False)
    return Path(outdir)


def selftest_images(net, net_dir: Path | None, count: int) -> np.ndarray:
    """The first ``count`` of the network's test-vector images; MNIST test images or seeded
    random images where the export has too few (or the input is not MNIST-sized)."""
    from sw.network_io import load_test_vectors

    images = np.zeros((0, net.input.pixels), dtype=np.uint8)
    if net_dir is not None and net.test_vectors is not None:
        images = load_test_vectors(net_dir, net).images.astype(np.uint8)
    if len(images) < count and net.input.pixels == 784:
        try:
            from sw.mnist import load_mnist
            images = load_mnist("test")[0][:count].astype(np.uint8)
        except UserError:
            pass
    if len(images) < count:
        rng = np.random.default_rng(0)
        extra = rng.integers(0, 256, size=(count - len(images), net.input.pixels), dtype=np.uint8)
        images = np.concatenate([images, extra])
    return np.ascontiguousarray(images[:count])


class _Steps:
    """Progress display: a tqdm bar over the build steps on a terminal; elsewhere one line per
    step and an elapsed-time heartbeat while a step runs (:mod:`sw.progress`)."""

    def __init__(self, names: list[str], quiet: bool):
        from sw.progress import is_terminal, progress_bar
        self._tty = is_terminal()
        self._bar = progress_bar(total=len(names), desc="build", unit="step",
                                 disable=quiet or not self._tty)
        self._quiet = quiet
        self._start = time.monotonic()
        self._first = True
        self._beat = None

    def _end_beat(self):
        if self._beat is not None:
            self._beat.__exit__(None, None, None)
            self._beat = None

    def __call__(self, name: str) -> None:
        from sw.progress import heartbeat
        self._end_beat()
        if not self._first:
            self._bar.update(1)
        self._first = False
        self._bar.set_postfix_str(name)
        if not self._quiet and not self._tty:
            print(f"[{time.monotonic() - self._start:7.1f} s] {name}", file=sys.stderr, flush=True)
            self._beat = heartbeat(name)
            self._beat.__enter__()

    def close(self):
        self._end_beat()
        self._bar.update(1)
        self._bar.close()


def _fold_summary(net) -> list[dict]:
    return [{"layer": l.index, "shape": [l.in_features, l.out_features], "in_bits": l.in_bits,
             "out": l.out, "pe": l.folding.pe, "simd": l.folding.simd, "pad": l.folding.pad}
            for l in net.layers]


def _check_fit(board, estimate: dict, what: str) -> None:
    res = board.resources
    over = [f"{name} {estimate[key]:g} of {cap}" for key, name, cap in (
        ("lut", "LUT", res.lut), ("ff", "FF", res.ff), ("bram", "BRAM36", res.bram),
        ("dsp", "DSP", res.dsp)) if estimate[key] > cap]
    if over:
        raise UserError(f"the design does not fit the {board.part}: {what} needs "
                        f"{', '.join(over)}; use a smaller network or fold more (lower PE/SIMD "
                        "with --fold) or a larger board")


def _build_zynq(board, net, net_dir, work: Path, args, step) -> dict:
    from .generate import generate
    from .logic_depth import proxy_clock_mhz
    from .yosys_estimate import yosys_estimate

    step("generate RTL")
    rtl = work / "rtl"
    generate(net_dir, rtl, fold=args.fold, pixels_per_beat=args.pixels_per_beat,
             writable_params=args.writable_params, ram_style=args.ram_style_spec)
    _write_board_shell(net, rtl, args)
    design = json.loads((rtl / "design.json").read_text())

    report = {"design": {k: design[k] for k in ("pixels_per_beat", "classes", "cycle_model",
                                                "ram_style", "memories", "stages", "exits")}}
    analytic = _model_estimate(net, args)
    report["estimate"] = {"analytic": analytic}
    if not args.no_estimate:
        step(f"Yosys synth_xilinx -family {board.yosys_family}")
        est = yosys_estimate(rtl, family=board.yosys_family, log_dir=work / "yosys")
        report["estimate"]["yosys"] = {k: v for k, v in est.items() if k != "cells"}
        report["estimate"]["yosys"]["cells"] = est["cells"]
        _check_fit(board, est, "the Yosys estimate")
        if board.family == "zynq_us+" and est.get("timing_proxy"):
            supported, why = proxy_clock_mhz(est["timing_proxy"])
            report["timing_proxy"] = {"supported_clock_mhz": supported, "basis": why}
            if args.clock_source != "given with --clock":
                # The default clock of an UltraScale+ build is what its own netlist supports.
                args.clock, args.clock_source = supported, why
    else:
        _check_fit(board, analytic, "the analytic estimate")

    step("Vivado project script")
    _write_vivado_project(board, net, work, args)
    return report


def _write_board_shell(net, rtl: Path, args) -> None:
    """The board shell (:class:`hw.board_shell.BoardShell`: DMA framing around the
    generated ``fracbnn_top``) as ``rtl/fracbnn_shell.v``, for a chain or residual network."""
    from amaranth.back import verilog

    from .board_shell import SHELL_NAME, BoardShell
    shell = BoardShell(net, pixels_per_beat=args.pixels_per_beat, rom_mode="verilog")
    (rtl / f"{SHELL_NAME}.v").write_text(verilog.convert(shell, name=SHELL_NAME, emit_src=False))


def _write_vivado_project(board, net, work: Path, args) -> None:
    """Constraints and ``create_project.tcl`` (the block design with the PS, the AXI DMA and
    the shell) for the design in ``work/rtl``, after checking its ROM files (an empty ROM
    would not stop Vivado)."""
    from .board_shell import SHELL_NAME
    from .generate import memory_files
    from .vivado import check_rom_files, constraints_xdc, ooc_xdc, project_tcl

    rtl = work / "rtl"
    roms = memory_files(net)
    check_rom_files(rtl, roms)
    (work / "constraints.xdc").write_text(constraints_xdc(board))
    (work / "ooc.xdc").write_text(ooc_xdc(args.clock))
    (work / "create_project.tcl").write_text(project_tcl(
        board, clock_mhz=args.clock, stream_in_bits=8 * args.pixels_per_beat, jobs=args.jobs,
        rtl_files=[f"rtl/{SHELL_NAME}.v", "rtl/fracbnn_top.v", "rtl/fracbnn_rom.v",
                   *(["rtl/fracbnn_ram.v"] if args.writable_params else [])],
        roms=[(f"rtl/{name}", depth) for name, _, depth in roms],
        board_repos=args.board_repo))


def _build_ecp5(board, net, net_dir, work: Path, args, step) -> dict:
    from .ecp5 import ecp5_build, write_pll, write_selftest_rtl
    from .generate import generate

    step("generate RTL")
    rtl = work / "rtl"
    generate(net_dir, rtl, fold=args.fold, pixels_per_beat=args.pixels_per_beat,
             ram_style=args.ram_style_spec)
    design = json.loads((rtl / "design.json").read_text())

    step("self-test top")
    ecp5 = work / "ecp5"
    ecp5.mkdir()
    for f in rtl.iterdir():
        if f.suffix == ".mem" or f.name == "fracbnn_rom.v":
            shutil.copyfile(f, ecp5 / f.name)
    images = selftest_images(net, net_dir, args.selftest_images)
    use_pll = args.clock != board.clock_mhz
    if use_pll:     # the PLL makes the closest frequency it can: that is the design clock
        args.clock = write_pll(ecp5, board.clock_mhz, args.clock)
    write_selftest_rtl(net, images, mem_dir=ecp5, out_dir=ecp5,
                       pixels_per_beat=args.pixels_per_beat, pll=use_pll,
                       ram_style=args.ram_style_spec)
    from sw.golden import GoldenModel
    golden = GoldenModel(net).run(images)
    result = ecp5_build(ecp5, board, clock_mhz=args.clock, seed=args.seed,
                        allow_timing_fail=args.allow_timing_fail, progress=step)
    shutil.copyfile(ecp5 / "ulx3s.bit", work / "ulx3s.bit")
    cycles = design["cycle_model"]
    return {
        "design": {k: design[k] for k in ("pixels_per_beat", "classes", "cycle_model",
                                          "ram_style", "memories", "stages")},
        "selftest": {"images": len(images), "expected_classes": golden.classes.tolist(),
                     "clock": (f"{args.clock:g} MHz from the {board.clock_mhz:g} MHz oscillator "
                               "via the ECP5 PLL") if use_pll else
                              f"{board.clock_mhz:g} MHz oscillator",
                     "leds": "led0 PASS, led1 FAIL, led2 alive (blinks), led3 done, "
                             "led7..4 wrong images"},
        "ecp5": {k: v for k, v in result.items() if k != "cells"} | {"cells": result["cells"]},
        "estimate": {"analytic": _model_estimate(net, args)},
        "images_per_s_at_clock": (args.clock * 1e6 / cycles["ii"]["worst"]),
    }


def build(args: argparse.Namespace) -> dict:
    """Run a build (``args`` from :func:`parse_args`); return the report (also in report.json)."""
    import boards
    from sw.compiled_net import fold_config_from_json, refold
    from sw.network_io import load_compiled_network

    board = boards.get_board(args.board)
    args.clock, args.clock_source = boards.resolve_clock(board.name, args.clock)
    if board.kind == "zynq":
        lo, hi = ZYNQ_MIN_CLOCK_MHZ, board.max_clock_mhz
        basis = "the PL clocks this flow has the PS make"
    else:
        lo, hi = ECP5_CLOCK_MHZ
        basis = "the ECP5 PLL's output range"
    if not lo <= args.clock <= hi:
        raise UserError(f"--clock must be in [{lo:g}, {hi:g}] MHz for the {board.title} "
                        f"({basis}), not {args.clock:g}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, not {args.jobs}")
    args.board_repo = [str(Path(d).expanduser().resolve())
                       for d in (getattr(args, "board_repo", None) or [])]
    if args.board_repo and board.kind != "zynq":
        raise UserError(f"--board-repo is for the Vivado build of Zynq boards; the "
                        f"{board.title} build uses no board files: drop --board-repo")
    for d in args.board_repo:
        if not Path(d).is_dir():
            raise UserError(f"--board-repo {d} is not a directory; pass the directory that "
                            "holds the board files (e.g. a clone of https://github.com/Avnet/bdf)")
    if getattr(args, "writable_params", False) and board.kind != "zynq":
        raise UserError(f"--writable-params is for Zynq boards (the host loads parameters over "
                        f"AXI4-Lite); the {board.title} build is a self-test bitstream without "
                        "a host: drop --writable-params")
    args.writable_params = bool(getattr(args, "writable_params", False))
    if not 0 <= args.seed < 2**31:
        raise UserError(f"--seed must be in 0..{2**31 - 1}, not {args.seed}")
    if not 1 <= args.selftest_images <= SELFTEST_MAX_IMAGES:
        raise UserError(f"--selftest-images must be in 1..{SELFTEST_MAX_IMAGES}, not "
                        f"{args.selftest_images}")
    # --pixels-per-beat is checked against the network once it is loaded (_check_request).
    # Absolute paths: Vivado and the ECP5 tools run inside the build directory.
    out = Path(args.out or Path("build") / board.name).expanduser().resolve()
    for name in ("net", "fold"):
        if getattr(args, name) is not None:
            setattr(args, name, str(Path(getattr(args, name)).expanduser().resolve()))
    check_apart(out, [args.net, args.fold], "build directory")
    check_replaceable(out, _REPORT, "build directory")  # before any slow step
    check_writable_dir(out, "build directory (--out)")

    if args.net is not None and _is_residual(args.net):
        return _build_residual(board, args, out)
    steps = (["export default network"] if args.net is None else []) + (
        ["generate RTL"] + ([] if args.no_estimate else ["Yosys"]) + ["Vivado project script"]
        if board.kind == "zynq" else
        ["generate RTL", "self-test top", "yosys", "nextpnr", "ecppack"])
    step = _Steps(steps, args.quiet)
    start = time.monotonic()
    try:
        with atomic_directory(out, marker=_REPORT, what="build directory") as work:
            if args.net is None:
                step("export default network")
                net_dir = export_default_network(work / "net")
            else:
                net_dir = Path(args.net)
                load_compiled_network(net_dir)     # validates before copying
                shutil.copytree(net_dir, work / "net")
            net = load_compiled_network(work / "net")
            if args.fold is not None:
                shapes = net.fold_shapes
                net = refold(net, fold_config_from_json(args.fold, len(net.layers), shapes))
            _check_request(board, net, args)      # before the slow steps
            net_dir = work / "net"
            builder = _build_zynq if board.kind == "zynq" else _build_ecp5
            try:
                built = builder(board, net, net_dir, work, args, step)  # may settle the clock
            except UserError as exc:
                raise _with_kept_logs(exc, work, out) from None
            report = {"board": board.name, "title": board.title, "part": board.part,
                      "clock_mhz": args.clock, "clock_source": args.clock_source,
                      "network": net.name, "folding": _fold_summary(net), **built}
            report = _write_report(report, board, work, out, start)
    finally:
        step.close()
    report["out"] = str(out)
    if board.kind == "zynq":
        _maybe_run_vivado(out, report, args)
    return report


def _is_residual(net_dir) -> bool:
    from .generate import _is_residual as is_residual
    return is_residual(net_dir)


def _build_residual(board, args, out: Path) -> dict:
    """``hw.build`` of a residual (version 4) network on a Zynq board: the residual
    accelerator's RTL (:func:`hw.residual_generate.generate_residual`), the board shell
    (the same DMA framing, ports and registers as a chain's), its Yosys estimate (the fit
    check: there is no analytic resource model for it) and the Vivado project script (run when
    Vivado is on PATH, as for chains).  ECP5 boards are refused (no self-test top yet)."""
    from sw.network_io import load_network

    from .residual_accelerator import resolve_folding
    from .residual_generate import generate_residual
    from .yosys_estimate import yosys_estimate

    if board.kind != "zynq":
        raise UserError(f"{args.net} is a residual network: the {board.title} build needs a "
                        f"self-test top the residual accelerator does not have yet; use a Zynq "
                        f"board (e.g. --board ultra96 --no-vivado) for its Yosys estimate")
    if args.no_estimate:
        raise UserError("a residual network's fit check is its Yosys estimate (there is no "
                        "analytic resource model for it yet): drop --no-estimate")
    if args.writable_params or getattr(args, "ram_style", "auto") != "auto":
        raise UserError("--writable-params / --ram-style: the residual accelerator has ROM "
                        "parameters placed by the auto rule only; drop them")
    if args.pixels_per_beat & (args.pixels_per_beat - 1) or \
            not 1 <= args.pixels_per_beat <= ZYNQ_MAX_PIXELS_PER_BEAT:
        raise UserError(f"--pixels-per-beat must be a power of two up to "
                        f"{ZYNQ_MAX_PIXELS_PER_BEAT} (the {board.title}'s AXI DMA), not "
                        f"{args.pixels_per_beat}")
    net, note = resolve_folding(load_network(args.net), args.fold)
    steps = ["generate RTL", "Yosys", "Vivado project script"]
    step = _Steps(steps, args.quiet)
    start = time.monotonic()
    try:
        with atomic_directory(out, marker=_REPORT, what="build directory") as work:
            if note is None:
                shutil.copytree(args.net, work / "net")
            else:   # the board runtime's net/ is the hardware's: the refolded network
                from dataclasses import replace

                from sw.residual_io import write_residual_network
                write_residual_network(replace(net, test_vectors=None), work / "net")
            step("generate RTL")
            rtl = work / "rtl"
            generate_residual(work / "net", rtl, pixels_per_beat=args.pixels_per_beat,
                              fold=args.fold)
            _write_board_shell(net, rtl, args)
            design = json.loads((rtl / "design.json").read_text())
            step(f"Yosys synth_xilinx -family {board.yosys_family}")
            try:
                est = yosys_estimate(rtl, family=board.yosys_family, log_dir=work / "yosys",
                                     per_stage=False)
            except UserError as exc:
                raise _with_kept_logs(exc, work, out) from None
            _check_fit(board, est, "the Yosys estimate")
            report = {"board": board.name, "title": board.title, "part": board.part,
                      "kind": "residual", "clock_mhz": args.clock,
                      "clock_source": args.clock_source, "network": net.name,
                      "folding": _fold_summary(net), "folding_note": note,
                      "design": {k: design[k] for k in ("pixels_per_beat", "classes",
                                                        "cycle_model", "skip_fifo_depths")},
                      "estimate": {"yosys": est}}
            if est.get("timing_proxy"):
                from .logic_depth import proxy_clock_mhz
                supported, why = proxy_clock_mhz(est["timing_proxy"])
                report["timing_proxy"] = {"supported_clock_mhz": supported, "basis": why}
                if args.clock_source != "given with --clock":
                    args.clock, args.clock_source = supported, why
                    report["clock_mhz"], report["clock_source"] = supported, why
            step("Vivado project script")
            _write_vivado_project(board, net, work, args)
            report = _write_report(report, board, work, out, start)
    finally:
        step.close()
    report["out"] = str(out)
    _maybe_run_vivado(out, report, args)
    return report


def _check_request(board, net, args) -> None:
    """Checks that need the network, before any slow step: ``--ram-style`` (parsed into
    ``args.ram_style_spec``), pixels per beat (a divisor of the image; for Zynq a power of two
    the DMA can stream) and, for ECP5, that the self-test's image and expected-result ROMs fit
    the EBRs at all."""
    from .generate import check_pixels_per_beat
    from .memory_style import parse_ram_style

    args.ram_style_spec = parse_ram_style(getattr(args, "ram_style", None))
    args.ram_style_spec.check(net)
    if board.kind == "zynq":
        check_pixels_per_beat(net, args.pixels_per_beat, power_of_two=True,
                              limit=ZYNQ_MAX_PIXELS_PER_BEAT,
                              why=f"the {board.title}'s AXI DMA streams a power of two of 8 to "
                                  f"{8 * ZYNQ_MAX_PIXELS_PER_BEAT} bits per beat")
    else:
        check_pixels_per_beat(net, args.pixels_per_beat)
        _check_selftest_images(board, net, args.selftest_images)


def _check_selftest_images(board, net, count: int) -> None:
    """The self-test ROMs hold ``8*P`` bits per image and ``32*(1 + C)`` bits of expected
    results: refuse a count whose ROMs alone exceed the board's EBRs."""
    per_image = 8 * net.input.pixels + 32 * (1 + net.classes)
    fits = min(SELFTEST_MAX_IMAGES, board.resources.bram * _EBR_BITS // per_image)
    if count > fits:
        raise UserError(f"--selftest-images {count} does not fit the {board.part}: each "
                        f"{net.name} image needs {per_image:,} ROM bits and the "
                        f"{board.resources.bram} EBRs hold {board.resources.bram * _EBR_BITS:,}; "
                        f"choose at most {fits}")


def _with_kept_logs(exc: UserError, work: Path, out: Path) -> UserError:
    """``exc`` of a failed tool step, whose log lies in the temporary build directory ``work``
    (removed on failure): the step's logs (``*.log``, ``*.log.full``) are copied to
    ``OUT.failed-logs/`` beside the build directory and the message names them there."""
    msg = str(exc)
    bases = sorted({str(work), os.path.realpath(work)}, key=len, reverse=True)
    if not any(b in msg for b in bases):
        return exc
    kept = out.with_name(out.name + ".failed-logs")
    try:
        shutil.rmtree(kept, ignore_errors=True)
        for log in [*work.rglob("*.log"), *work.rglob("*.log.full")]:
            dest = kept / log.relative_to(work)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, dest)
    except OSError:
        return exc
    for b in bases:
        msg = msg.replace(b, str(kept))
    return UserError(msg)


def _write_report(report: dict, board, work: Path, out: Path, start: float) -> dict:
    """Finish ``report`` (resource tables, seconds) and write report.json and report.md into
    the temporary build directory ``work``; returns it with the final paths."""
    add_resource_tables(report, board)
    report["seconds"] = round(time.monotonic() - start, 1)
    # Paths inside the temporary directory become the final ones (relative to the build
    # directory where a value is a path), as it is renamed into place.
    report = _final_paths(report, work, out)
    (work / _REPORT).write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
    (work / _REPORT_MD).write_text(resource_markdown(report))
    return report


def _final_paths(obj, tmp: Path, final: Path):
    """``obj`` with every path inside the temporary build directory ``tmp`` made final: a
    value that is such a path becomes relative to the build directory, a path inside a longer
    text becomes the one under ``final``."""
    bases = sorted({str(tmp), os.path.realpath(tmp)}, key=len, reverse=True)
    if isinstance(obj, dict):
        return {k: _final_paths(v, tmp, final) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_final_paths(v, tmp, final) for v in obj]
    if not isinstance(obj, str):
        return obj
    for base in bases:
        if obj == base:
            return "."
        if obj.startswith(base + os.sep):
            return obj[len(base) + 1:]
    for base in bases:
        obj = obj.replace(base, str(final))
    return obj


def _model_estimate(net, args) -> dict:
    """The analytic model's estimate (:func:`hw.resource_model.estimate`) for ``net`` with its
    memories placed as this build places them: totals, ``parts`` (``fixed``, ``L0``, ...)."""
    from .resource_model import estimate

    est = estimate(net, args.pixels_per_beat, ram_style=args.ram_style_spec)
    return {**est, "dsp": 0, "basis": "hw.resource_model, calibrated on Yosys synth_xilinx "
                                      "-family xcup (LUT includes LUTRAM)"}


def _maybe_run_vivado(out: Path, report: dict, args) -> None:
    from .vivado import parse_vivado_summary, vivado_on_path

    command = f"cd {shlex.quote(str(out))} && vivado -mode batch -source create_project.tcl"
    report["vivado"] = {"command": command, "ran": False}
    exe = None if args.no_vivado else vivado_on_path()
    if exe is not None:
        log = out / "vivado.log"
        with open(log, "w") as fh:
            proc = subprocess.run([exe, "-mode", "batch", "-nojournal", "-log", str(log) + ".full",
                                   "-source", "create_project.tcl"], cwd=out, stdout=fh,
                                  stderr=subprocess.STDOUT)
        report["vivado"]["ran"] = True
        summary = out / "vivado_summary.txt"
        if summary.is_file():
            report["vivado"]["post_route"] = parse_vivado_summary(summary.read_text())
            import boards
            add_resource_tables(report, boards.get_board(report["board"]))
            (out / _REPORT_MD).write_text(resource_markdown(report))
        atomic_write_json(out / _REPORT, report, what="build report")
        if proc.returncode != 0:
            text = log.read_text(errors="replace").splitlines()
            # The script's own refusals name the problem and the fix: they come first.
            lines = ([line for line in text if line.startswith("ERROR: [fracbnn]")][:1] or
                     [line for line in text if "ERROR" in line][:2])
            raise UserError(f"Vivado failed: {' | '.join(lines) or 'see log'}; see {log}")


def _summary_lines(r: dict) -> list[str]:
    lines = [f"board     {r['title']} ({r['part']})",
             f"clock     {r['clock_mhz']:g} MHz ({r['clock_source']})",
             f"network   {r['network']}: " + ", ".join(
                 f"{l['shape'][0]}->{l['shape'][1]} PE {l['pe']} SIMD {l['simd']}"
                 for l in r["folding"])]
    cm = r["design"]["cycle_model"]
    if r.get("kind") == "residual":
        worst = max(v["ii"] for v in cm.values())
        lines.append("cycles    residual cycle model: " + ", ".join(
            f"gates {k}: II {v['ii']} cycles/image, latency {v['latency']}"
            for k, v in cm.items()) + f" -> {r['clock_mhz'] * 1e6 / worst:,.0f} images/s at "
            f"{r['clock_mhz']:g} MHz (worst case); skip FIFO depths "
            f"{r['design']['skip_fifo_depths']}")
        if r.get("folding_note"):
            lines.append(f"folding   {r['folding_note']}")
    ii = None if r.get("kind") == "residual" else cm["ii"]["worst"]
    exits = len(r["design"].get("exits") or [])
    if ii is not None:
        lines.append(f"cycles    II {cm['ii']['best']}..{ii} cycles/image, latency "
                     f"{cm['latency']['best']}..{cm['latency']['worst']} cycles -> "
                     f"{r['clock_mhz'] * 1e6 / ii:,.0f} images/s at {r['clock_mhz']:g} MHz "
                     f"(worst case"
                     + (f"; {exits} early exit(s): no image exiting, faster as images leave "
                        f"early" if exits else "") + ")")
    est = r.get("estimate", {})
    if "yosys" in est:
        y = est["yosys"]
        lines.append(f"yosys     LUT {y['lut']:,} (logic {y['lut_logic']:,}, memory "
                     f"{y['lut_memory']:,})  FF {y['ff']:,}  BRAM36 {y['bram']:g}  DSP {y['dsp']}"
                     f"   [synth_xilinx -family {y['family']}, {y['lut_mapper']} LUT mapping, "
                     f"{y['seconds']:.0f} s]")
    if "yosys" in est and est["yosys"].get("timing_proxy"):
        tp = est["yosys"]["timing_proxy"]
        lines.append(f"timing    proxy: worst path {tp['lut_levels']} LUT levels "
                     f"({tp['start']} -> {tp['end']}), at most {tp['max_carry_chains']} carry "
                     f"chain(s); 300 MHz rule (<= 4 LUT + 1 carry chain) "
                     f"{'met' if tp['meets_300mhz_rule'] else 'not met'}; "
                     f"{tp['violating_endpoints']:,} of {tp['endpoints']:,} endpoints over it")
        sup = r.get("timing_proxy", {}).get("supported_clock_mhz")
        if sup is not None and r["clock_mhz"] > sup:
            lines.append(f"warning   --clock {r['clock_mhz']:g} MHz is above the {sup:g} MHz the "
                         "timing proxy supports for this design")
    lines += resource_lines(r)
    if "ecp5" in r:
        e = r["ecp5"]
        util = e["utilization"]
        pick = lambda k: util.get(k, {"used": 0, "available": 0})  # noqa: E731
        lines.append(f"ecp5      Fmax {e['fmax_mhz']:.1f} MHz (target {e['clock_mhz']:g} MHz, "
                     f"{'met' if e['timing_met'] else 'NOT MET'})")
        lines.append("          " + "  ".join(
            f"{name} {pick(k)['used']:,}/{pick(k)['available']:,}" for name, k in (
                ("LUT4", "TRELLIS_COMB"), ("FF", "TRELLIS_FF"), ("EBR", "DP16KD"),
                ("MULT18", "MULT18X18D"))) + f"   [{e['lut_mapper']} LUT mapping]")
        if e.get("ebr_outreg"):
            o = e["ebr_outreg"]
            lines.append(f"          EBR output registers: {o['ebr']} of {o['ebr_total']} EBRs "
                         f"(absorbed {o['ff']} flip-flops)")
        lines.append(f"self-test {r['selftest']['images']} images embedded; "
                     f"{r['selftest']['leds']}")
        bit = Path(r["out"]) / "ulx3s.bit"
        lines.append(f"bitstream {bit}  (openFPGALoader -b ulx3s {shlex.quote(str(bit))})")
    if "vivado" in r:
        v = r["vivado"]
        if v.get("post_route"):
            p = v["post_route"]
            lines.append(f"vivado    post-route LUT {p.get('lut')}  FF {p.get('ff')}  BRAM36 "
                         f"{p.get('bram')}  DSP {p.get('dsp')}  WNS {p.get('wns_ns')} ns  WHS "
                         f"{p.get('whs_ns')} ns at the PS's {p.get('pl_clock_mhz')} MHz")
        elif not v["ran"]:
            lines.append(f"vivado    not on PATH; to build the bitstream run:\n          {v['command']}")
    if r.get("resources"):
        lines.append("which estimate to trust for what: see report.md (Yosys: cells after "
                     "synthesis, LUT an upper estimate; model: for folding; Vivado's "
                     "post-route report is the real one)")
    lines.append(f"wrote     {r['out']} ({r['seconds']:.0f} s)")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    import boards

    p = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--board", required=True,
                   help=f"one of {', '.join(boards.board_names() + sorted(boards.ALIASES))}")
    p.add_argument("--net", metavar="EXPORTDIR",
                   help="compiled network (default: export models/checkpoints/lfc_w1a1.pt)")
    p.add_argument("--fold", metavar="CONFIG", help="folding JSON overriding the network's")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="PL clock (Zynq) / design clock (ULX3S, made by the PLL from the 25 MHz "
                        "oscillator); default: the board's default clock, whose basis the "
                        "summary prints")
    p.add_argument("--out", metavar="DIR",
                   help="build directory (default build/<board> in the current directory)")
    p.add_argument("--writable-params", action="store_true",
                   help="Zynq boards: weights, thresholds and gates in RAMs the host loads at "
                        "run time (sw.runtime Accelerator.load; docs/hardware.md)")
    p.add_argument("--pixels-per-beat", type=int, default=8, metavar="N",
                   help="input stream width in pixels (default 8 = 64-bit DMA stream)")
    p.add_argument("--ram-style", metavar="SPEC", default="auto",
                   help="where weight/threshold/gate memories go: auto (default: block RAM "
                        "only above 32 words and 4 Kb), block or distributed, "
                        "optionally per layer or memory, e.g. "
                        "'L0=block,L2.thresholds=distributed' (hw/memory_style.py)")
    p.add_argument("--jobs", type=int, default=2, help="Vivado jobs (default 2)")
    p.add_argument("--board-repo", action="append", metavar="DIR",
                   help="Zynq boards: a directory of Vivado board files added to Vivado's "
                        "board repositories (repeatable; FRACBNN_BOARD_REPO=DIR[:DIR] is also "
                        "read when the script runs); docs/boards.md \"Board files\"")
    p.add_argument("--no-estimate", action="store_true", help="skip the Yosys estimate (Zynq)")
    p.add_argument("--no-vivado", action="store_true", help="do not run Vivado even if on PATH")
    p.add_argument("--selftest-images", type=int, default=4, metavar="N",
                   help=f"images embedded in the ULX3S self-test (default 4, at most "
                        f"{SELFTEST_MAX_IMAGES} and what the EBRs hold)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (ULX3S)")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="ULX3S: keep the bitstream even if Fmax < --clock")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p.parse_args(argv)


def main(argv=None) -> int:
    report = build(parse_args(argv))
    for line in _summary_lines(report):
        print(line)
    return 0


if __name__ == "__main__":
    cli_main(main)
