"""The whole flow from Python: one object threads a network through every step.

::

    from models.flow import Flow

    flow = Flow.train("mynet.toml", "work")          # or Flow.from_checkpoint("x.pt", "work")
    flow.evaluate()                                  # PyTorch test accuracy
    flow.export()                                    # compiled network: work/export
    flow.golden(images=1000)                         # golden model == PyTorch on every activation
    flow.simulate(images=1000)                       # RTL bit- and cycle-exact (Verilator)
    flow.fold(target_fps=1e6, clock_mhz=300)         # a folding for a target: work/fold.json
    flow.build("ultra96")                            # Vivado project + Yosys estimate: work/build-ultra96

Every method runs the command-line tool of the same step (``python -m models.train``,
``models.export``, ``sw.evaluate``, ``sim.run``, ``hw.fold``, ``hw.build``, ...) through its
``main(argv)``, writing that tool's JSON report into ``workdir/reports`` and returning it as a
dict, so the API and the CLIs cannot drift apart.  A failing step raises
:class:`sw.errors.UserError` with the tool's one-line message; a check that finds a mismatch
raises :class:`FlowCheckError` carrying the report.  Paths are resolved once, so the object
works from any current directory.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from sw.errors import UserError

__all__ = ["Flow", "FlowCheckError"]


class FlowCheckError(RuntimeError):
    """A verification step ran and found a disagreement; ``report`` holds the tool's report."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _call(module: str, argv: list[str], *, quiet: bool) -> int:
    """``module.main(argv)`` (its stdout hidden when ``quiet``); returns its exit status."""
    import importlib
    main = importlib.import_module(module).main
    sink = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        return int(main([str(a) for a in argv]) or 0)


class Flow:
    """One network and its working directory; see the module docstring.

    Attributes (paths, absolute)
    ----------------------------
    workdir
        Everything the flow writes goes here (created on first use).
    checkpoint
        The PyTorch checkpoint, or ``None`` for an imported network (:meth:`from_export`).
    export_dir
        The compiled network (after :meth:`export`, or given to :meth:`from_export`).
    folding
        The folding file :meth:`fold` wrote, used by later steps unless they are given one.
    """

    def __init__(self, workdir: str | Path, *, checkpoint: str | Path | None = None,
                 export_dir: str | Path | None = None, data: str | Path | None = None,
                 quiet: bool = False):
        self.workdir = Path(workdir).expanduser().resolve()
        self.checkpoint = Path(checkpoint).expanduser().resolve() if checkpoint else None
        self.export_dir = Path(export_dir).expanduser().resolve() if export_dir else None
        self.data = Path(data).expanduser().resolve() if data else None
        self.folding: Path | None = None
        self.quiet = quiet

    def __repr__(self) -> str:
        return (f"Flow(workdir={str(self.workdir)!r}, checkpoint={self.checkpoint and str(self.checkpoint)!r}, "
                f"export_dir={self.export_dir and str(self.export_dir)!r})")

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def train(cls, net, workdir: str | Path, *, data: str | Path | None = None,
              limit: int | None = None, threads: int = 2, quiet: bool = False,
              **recipe) -> "Flow":
        """Train ``net`` (a zoo name, a description file, or a :class:`~models.layers.BinaryNet`
        built in Python) into ``workdir/<name>.pt``; ``recipe`` overrides its training recipe
        (``epochs``, ``lr``, ``seed``, ``batch_size``, ``max_shift``, ...)."""
        from models import zoo
        from models.layers import BinaryNet

        workdir = Path(workdir).expanduser().resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(net, BinaryNet):
            from models.train import save_trained, train
            import torch
            torch.set_num_threads(threads)
            model, history = train(net, data=data, limit=limit, progress=not quiet, **recipe)
            out = workdir / "net.pt"
            save_trained(model, history, out, name="net", recipe={**zoo.DEFAULT_RECIPE, **recipe},
                         description=None, limit=limit, threads=threads, command="models.flow.Flow.train")
            return cls(workdir, checkpoint=out, data=data, quiet=quiet)
        entry = zoo.resolve(net)
        out = workdir / f"{entry.name}.pt"
        flags = {"epochs": "--epochs", "seed": "--seed", "lr": "--lr", "batch_size": "--batch-size",
                 "max_shift": "--max-shift"}
        unknown = set(recipe) - set(flags)
        if unknown:
            raise UserError(f"Flow.train: recipe overrides {sorted(unknown)} are not command-line "
                            f"options; put them in the network description's [recipe] instead")
        argv = ["--net", str(net if not isinstance(net, zoo.ZooEntry) else entry.name),
                "--out", out, "--threads", threads]
        for key, value in recipe.items():
            argv += [flags[key], value]
        if limit is not None:
            argv += ["--limit", limit]
        if data is not None:
            argv += ["--data", Path(data).expanduser().resolve()]
        _call("models.train", argv, quiet=quiet)
        return cls(workdir, checkpoint=out, data=data, quiet=quiet)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, workdir: str | Path, **kwargs) -> "Flow":
        """A trained checkpoint (``models.train``'s output)."""
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise UserError(f"checkpoint {path} not found; train one with Flow.train or "
                            f"`python -m models.train`")
        return cls(workdir, checkpoint=path, **kwargs)

    @classmethod
    def from_export(cls, export_dir: str | Path, workdir: str | Path, **kwargs) -> "Flow":
        """A compiled network (``models.export``, ``models.import_bnnpynq``/``import_qonnx``)."""
        path = Path(export_dir).expanduser()
        if not (path / "network.json").is_file():
            raise UserError(f"{path} is not a compiled-network directory (no network.json); "
                            f"make one with Flow.export or `python -m models.export`")
        return cls(workdir, export_dir=path, **kwargs)

    # -- steps -------------------------------------------------------------------------
    def _report(self, name: str) -> Path:
        (self.workdir / "reports").mkdir(parents=True, exist_ok=True)
        return self.workdir / "reports" / f"{name}.json"

    def _data_args(self) -> list:
        return ["--data", self.data] if self.data is not None else []

    def _need(self, what: str, attr: str, fix: str):
        value = getattr(self, attr)
        if value is None:
            raise UserError(f"{what} needs {attr.replace('_', ' ')}; {fix}")
        return value

    def evaluate(self, images: int | None = None) -> dict:
        """PyTorch test accuracy of the checkpoint (``models.evaluate``)."""
        ckpt = self._need("evaluate", "checkpoint", "use Flow.train or Flow.from_checkpoint")
        report = self._report("evaluate")
        argv = [ckpt, "--json", report, *self._data_args()]
        if images is not None:
            argv += ["--limit", images]
        _call("models.evaluate", argv, quiet=self.quiet)
        return json.loads(report.read_text())

    def export(self, fold: str | Path | None = None, check: int = 1000) -> Path:
        """Export the checkpoint to ``workdir/export`` (``models.export``; checked against
        PyTorch on ``check`` images before anything is written)."""
        ckpt = self._need("export", "checkpoint", "use Flow.train or Flow.from_checkpoint")
        out = self.workdir / "export"
        argv = [ckpt, out, "--check", check, *self._data_args()]
        if fold is not None:
            argv += ["--fold", Path(fold).expanduser().resolve()]
        _call("models.export", argv, quiet=self.quiet)
        self.export_dir = out
        return out

    def golden(self, images: int | None = None) -> dict:
        """Golden-model accuracy, and (with a checkpoint) agreement with PyTorch on every
        activation (``sw.evaluate``); raises :class:`FlowCheckError` on any difference."""
        export = self._need("golden", "export_dir", "call Flow.export first")
        report = self._report("golden")
        argv = [export, "--json", report, *self._data_args()]
        if images is not None:
            argv += ["--images", images]
        if self.checkpoint is not None:
            argv += ["--checkpoint", self.checkpoint]
        status = _call("sw.evaluate", argv, quiet=self.quiet)
        result = json.loads(report.read_text())
        if status != 0:
            raise FlowCheckError("the golden model and PyTorch disagree (see report['agreement'])",
                                 result)
        return result

    def fold(self, *, target_fps: float | None = None, budget: str | None = None,
             board: str | None = None, clock_mhz: float | None = None) -> Path:
        """Choose PE/SIMD per layer (``hw.fold``) into ``workdir/fold.json``; later
        :meth:`generate`, :meth:`simulate` and :meth:`build` use it."""
        export = self._need("fold", "export_dir", "call Flow.export first")
        out = self.workdir / "fold.json"
        argv = [export, "--out", out]
        for flag, value in (("--target-fps", target_fps), ("--budget", budget),
                            ("--board", board), ("--clock", clock_mhz)):
            if value is not None:
                argv += [flag, value]
        _call("hw.fold", argv, quiet=self.quiet)
        self.folding = out
        return out

    def _fold_args(self, fold) -> list:
        fold = fold if fold is not None else self.folding
        return ["--fold", Path(fold).expanduser().resolve()] if fold is not None else []

    def generate(self, fold: str | Path | None = None, pixels_per_beat: int = 8) -> Path:
        """Verilog and init files in ``workdir/rtl`` (``hw.generate``)."""
        export = self._need("generate", "export_dir", "call Flow.export first")
        out = self.workdir / "rtl"
        _call("hw.generate", [export, out, *self._fold_args(fold),
                              "--pixels-per-beat", pixels_per_beat], quiet=self.quiet)
        return out

    def simulate(self, images: int = 1000, *, full: bool = False, fold: str | Path | None = None,
                 engine: str = "batch", stall_percent: int = 0, board: str | None = None,
                 clock_mhz: float | None = None) -> dict:
        """Co-simulate the generated RTL (``sim.run``) and compare every class, score and cycle
        with the golden and cycle models; raises :class:`FlowCheckError` on any mismatch."""
        export = self._need("simulate", "export_dir", "call Flow.export first")
        report = self._report("simulate")
        argv = ["--net", export, "--json", report, "--engine", engine,
                "--stall-percent", stall_percent, "--design-dir", self.workdir / "sim-design",
                *self._fold_args(fold), *self._data_args()]
        argv += ["--full"] if full else ["--images", images]
        if board is not None:
            argv += ["--board", board]
        if clock_mhz is not None:
            argv += ["--clock", clock_mhz]
        status = _call("sim.run", argv, quiet=self.quiet)
        result = json.loads(report.read_text())
        if status != 0:
            raise FlowCheckError(f"the RTL disagrees with the golden/cycle model: "
                                 f"{result.get('mismatches')} output mismatches", result)
        return result

    def build(self, board: str = "ultra96", *, fold: str | Path | None = None,
              clock_mhz: float | None = None, estimate: bool = True,
              extra_args: list[str] | None = None) -> dict:
        """Board build in ``workdir/build-<board>`` (``hw.build``): Zynq boards get the Vivado
        project script and the Yosys estimate, ULX3S a bitstream.  Returns the build report."""
        export = self._need("build", "export_dir", "call Flow.export first")
        out = self.workdir / f"build-{board}"
        argv = ["--board", board, "--net", export, "--out", out, "--quiet", *self._fold_args(fold)]
        if clock_mhz is not None:
            argv += ["--clock", clock_mhz]
        if not estimate:
            argv += ["--no-estimate"]
        argv += list(extra_args or [])
        _call("hw.build", argv, quiet=self.quiet)
        return json.loads((out / "report.json").read_text())

    def summary(self) -> dict[str, Any]:
        """Paths of what the flow has made so far."""
        return {"workdir": str(self.workdir), "checkpoint": self.checkpoint and str(self.checkpoint),
                "export_dir": self.export_dir and str(self.export_dir),
                "folding": self.folding and str(self.folding)}
