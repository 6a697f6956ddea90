"""``fracbnn COMMAND [ARGS]``: one console command for the whole flow.

Each command is the ``python -m`` module of the same job, run with the given arguments
(``fracbnn train --net tiny`` is ``python -m models.train --net tiny``), so both spellings
work from any directory once the package is installed (``pip install .``).  ``fracbnn``
alone, or ``fracbnn --help``, lists the commands.
"""

from __future__ import annotations

import importlib
import sys

from .errors import cli_main

__all__ = ["COMMANDS", "main"]

#: command -> (module, one line)
COMMANDS = {
    "train": ("models.train", "train a zoo network or a network description file (.toml)"),
    "evaluate": ("models.evaluate", "PyTorch test accuracy of a checkpoint"),
    "export": ("models.export", "checkpoint -> compiled network (network.json + .mem files)"),
    "golden": ("sw.evaluate", "golden model accuracy, compared with PyTorch on every activation"),
    "generate": ("hw.generate", "compiled network -> Verilog + init files"),
    "sim": ("sim.run", "bit- and cycle-exact co-simulation of the generated RTL"),
    "build": ("hw.build", "board build: Vivado project + Yosys estimate, or an ECP5 bitstream"),
    "compare": ("sw.compare", "runtime: golden model, simulator or PYNQ board vs software"),
    "fold": ("hw.fold", "folding (PE/SIMD) for a target throughput"),
    "sweep": ("hw.sweep", "Pareto front of foldings: images/s vs resources"),
    "import-bnnpynq": ("models.import_bnnpynq", "import a BNN-PYNQ parameter folder"),
    "import-qonnx": ("models.import_qonnx", "import a QONNX/Brevitas ONNX graph"),
    "recalibrate": ("models.recalibrate", "re-estimate batch-norm statistics of a checkpoint"),
    "compare-methods": ("models.compare_methods",
                        "train with bp/dfa/drtp/selfbin, with and without batch norm: table + plot"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: fracbnn COMMAND [ARGS]   (fracbnn COMMAND --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {what}  (python -m {module})"
              for name, (module, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its module's ``main(argv[1:])``; see the module docstring."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from .errors import UserError
        raise UserError(f"unknown command {name!r}; choose one of {', '.join(COMMANDS)} "
                        f"(fracbnn --help)")
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


def run() -> None:
    """Console-script entry point (``fracbnn``): :func:`main` with one-line errors."""
    cli_main(main)


if __name__ == "__main__":
    run()
