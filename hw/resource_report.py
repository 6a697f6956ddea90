"""The resource report of a build: each estimate as a share of the part, a per-layer table
with each memory's placement, and which estimate to trust for what.

:func:`add_resource_tables` adds ``resources`` and ``per_layer`` to a build report
(``hw.build``'s ``report.json``); :func:`resource_lines` prints them in the build summary and
:func:`resource_markdown` writes ``report.md``.
"""

from __future__ import annotations

import re

__all__ = ["ESTIMATE_NOTES", "resource_shares", "layer_table", "add_resource_tables",
           "resource_lines", "resource_markdown"]

#: Which resource estimate to trust for what (printed with the tables, in report.md).
ESTIMATE_NOTES = (
    "Yosys (synth_xilinx, out of context): the cells of the real netlist after synthesis, "
    "before Vivado's optimisation and packing; trust its BRAM36 and FF counts, take its LUTs "
    "as an upper estimate (Vivado's mapping is usually smaller; a distributed ROM deeper "
    "than 32 words costs Yosys ~3 LUTs per bit column). Its per-layer split "
    "follows the cells' hierarchical names (anonymous LUTs go with the cells they feed), so "
    "the rows add up to the totals but logic on a boundary may sit on either side.",
    "Model (hw.resource_model): milliseconds, calibrated on Yosys; it is what hw.fold and "
    "hw.sweep search with, exact for BRAM36, a few % off in total LUT/FF (its per-layer "
    "split only roughly: it is fitted to totals); use it to compare foldings and placements, "
    "not for sign-off.",
    "Vivado's utilization.rpt after implementation (create_project.tcl) is the real number.",
)
#: (report key, name) of the resources a summary shows, per board kind.
_RESOURCE_NAMES = {"zynq": (("lut", "LUT"), ("ff", "FF"), ("bram", "BRAM36"), ("dsp", "DSP")),
                   "ecp5": (("lut", "LUT4"), ("ff", "FF"), ("bram", "EBR"),
                            ("dsp", "MULT18"))}


def resource_shares(counts: dict, resources, kind: str = "zynq") -> list[dict]:
    """Each resource of ``counts`` (``lut``, ``ff``, ``bram``, ``dsp``) as used / available of
    the part (``resources``: :class:`boards.base.Resources`): a list of ``{"key", "name",
    "used", "available", "share"}`` (``share`` in %, ``None`` where the part has none);
    ``kind`` (``"zynq"`` or ``"ecp5"``) names them (BRAM36 or EBR, ...)."""
    rows = []
    for key, name in _RESOURCE_NAMES[kind]:
        used = counts.get(key)
        if used is None:
            continue
        cap = getattr(resources, key)
        rows.append({"key": key, "name": name, "used": used, "available": cap,
                     "share": 100.0 * used / cap if cap else None})
    return rows


_STAGE_ORDER = ("convert", "pad", "window", "mvtu", "pool")


def _stage_key(stage: str) -> tuple:
    m = re.fullmatch(r"([a-z_]+?)(\d*)", stage)
    head = m.group(1) if m else stage
    return (_STAGE_ORDER.index(head) if head in _STAGE_ORDER else len(_STAGE_ORDER), stage)


def layer_table(stages: dict | None, parts: dict, memories: list[dict]) -> list[dict]:
    """The per-layer resource table: one row per part of the design (``L0``, ``L1``, ...,
    the early exits' branches ``X0``, ``X1``, ..., then ``fixed`` = thermometer, serializer,
    AXI4-Lite registers and the top's framing and control) and a ``total`` row.

    ``stages``: Yosys counts per stage (``yosys_estimate(...)["stages"]``; ``None`` without a
    Yosys run), summed into the part each stage belongs to
    (:func:`hw.yosys_estimate.part_of_stage`); ``parts``: the model's per-part numbers
    (:func:`hw.resource_model.estimate`'s ``parts``); ``memories``: ``design.json``'s
    ``memories``.  Each row: ``part``, ``stages`` (names), ``memories`` (``kind: style``
    phrases), ``yosys`` and ``model`` (``lut``, ``ff``, ``bram``, ``lutram``; ``yosys`` is
    ``None`` without stages).
    """
    from .yosys_estimate import part_of_stage

    keys = ("lut", "ff", "bram", "lutram")
    names = [n for n in parts if n != "fixed"]
    names.sort(key=lambda n: (n[0] != "L", int(n[1:]) if n[1:].isdigit() else 1 << 30))
    by_part: dict[str, dict] = {}
    for stage, counts in (stages or {}).items():
        part = "unattributed" if stage == "unattributed" else part_of_stage(stage)
        row = by_part.setdefault(part, {"stages": [], **{k: 0 for k in keys}})
        row["stages"].append(stage)
        for k in keys:
            row[k] += counts.get("lut_memory" if k == "lutram" else k, 0)
    rows = []
    extra = ["unattributed"] if "unattributed" in by_part else []
    for name in names + ["fixed"] + extra:
        y = by_part.get(name)
        m = parts.get(name)
        mems = [f"{mem['name'].split('.', 1)[1]} {mem['style']}" for mem in memories
                if mem["name"].split(".", 1)[0] == name]
        rows.append({"part": name,
                     "stages": sorted(y["stages"], key=_stage_key) if y else [],
                     "memories": mems,
                     "yosys": None if stages is None else
                     {k: (y or {}).get(k, 0) for k in keys},
                     "model": None if m is None else {k: m.get(k, 0) for k in keys}})
    total = {"part": "total", "stages": [], "memories": [],
             "yosys": None if stages is None else
             {k: sum(r["yosys"][k] for r in rows) for k in keys},
             "model": {k: sum(r["model"][k] for r in rows if r["model"]) for k in keys}}
    return rows + [total]


def add_resource_tables(report: dict, board) -> None:
    """Add ``resources`` (each estimate's resources as shares of the part) and ``per_layer``
    (:func:`layer_table`) to a build report."""
    kind = board.kind
    est = report.get("estimate", {})
    shares = {}
    if "yosys" in est:
        shares["yosys"] = resource_shares(est["yosys"], board.resources, kind)
    if "ecp5" in report:
        shares["ecp5_synth"] = resource_shares(report["ecp5"]["synth"], board.resources, kind)
    if "analytic" in est and kind == "zynq":
        shares["model"] = resource_shares(est["analytic"], board.resources, kind)
    post = report.get("vivado", {}).get("post_route")
    if post:
        shares["vivado"] = resource_shares(post, board.resources, kind)
    report["resources"] = {"part": board.part, "shares": shares, "notes": list(ESTIMATE_NOTES)}
    if "analytic" in est:
        stages = est.get("yosys", {}).get("stages")
        table = layer_table(stages, est["analytic"]["parts"],
                            report["design"].get("memories", []))
        # The model's own totals (its parts are rounded one by one).
        table[-1]["model"] = {k: est["analytic"].get(k, 0) for k in ("lut", "ff", "bram",
                                                                     "lutram")}
        report["per_layer"] = table
        att = est.get("yosys", {}).get("attribution")
        if att:
            report["resources"]["attribution"] = att


_SHARE_TITLES = {"yosys": "Yosys", "ecp5_synth": "Yosys synth_ecp5", "model": "model",
                 "vivado": "Vivado post-route"}


def _share_text(row: dict) -> str:
    used = row["used"]
    used = f"{int(used):,}" if float(used).is_integer() else f"{used:,.1f}"
    share = "-" if row["share"] is None else f"{row['share']:.1f} %"
    return f"{used} / {row['available']:,} ({share})"


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if isinstance(v, float) and not v.is_integer() else f"{int(v):,}"


def resource_lines(r: dict) -> list[str]:
    """The summary's resource lines: shares of the part, the per-layer table, the notes."""
    res = r.get("resources")
    if not res:
        return []
    lines = []
    for src, rows in res["shares"].items():
        lines.append(f"{_SHARE_TITLES[src]:<10}" + "  ".join(
            f"{row['name']} {_share_text(row)}" for row in rows))
    table = r.get("per_layer")
    if table:
        lines.append(f"{'part':<7} {'memories':<38} {'Yosys LUT':>10} {'FF':>8} {'BRAM36':>7} "
                     f"{'LUTRAM':>7} | {'model LUT':>9} {'FF':>8} {'BRAM36':>7}")
        for row in table:
            y, m = row["yosys"] or {}, row["model"] or {}
            mems = ", ".join(m.replace(" distributed", " LUT").replace(" block", " BRAM")
                             for m in row["memories"]) or " ".join(row["stages"])
            lines.append(f"{row['part']:<7} {mems[:38]:<38} {_num(y.get('lut')):>10} "
                         f"{_num(y.get('ff')):>8} {_num(y.get('bram')):>7} "
                         f"{_num(y.get('lutram')):>7} | {_num(m.get('lut')):>9} "
                         f"{_num(m.get('ff')):>8} {_num(m.get('bram')):>7}")
    return lines


def resource_markdown(r: dict) -> str:
    """``report.md``: the build's resources as Markdown (shares of the part per estimate, the
    per-layer table with each memory's placement, which estimate to trust for what)."""
    out = [f"# Resources: {r['network']} on the {r['title']} ({r['part']})", ""]
    res = r.get("resources", {})
    if res.get("shares"):
        names = [row["name"] for row in next(iter(res["shares"].values()))]
        out += ["| estimate | " + " | ".join(names) + " |",
                "|---|" + "---:|" * len(names)]
        for src, rows in res["shares"].items():
            out.append(f"| {_SHARE_TITLES[src]} | " + " | ".join(_share_text(row)
                                                                for row in rows) + " |")
        out.append("")
    table = r.get("per_layer")
    if table:
        out += [f"Memories: `--ram-style {r['design'].get('ram_style', 'auto')}`.", "",
                "| part | stages | memories | Yosys LUT | FF | BRAM36 | LUTRAM | model LUT | FF "
                "| BRAM36 |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in table:
            y, m = row["yosys"] or {}, row["model"] or {}
            out.append(f"| {row['part']} | {' '.join(row['stages'])} | "
                       f"{', '.join(row['memories'])} | {_num(y.get('lut'))} | "
                       f"{_num(y.get('ff'))} | {_num(y.get('bram'))} | "
                       f"{_num(y.get('lutram'))} | {_num(m.get('lut'))} | {_num(m.get('ff'))} "
                       f"| {_num(m.get('bram'))} |")
        out.append("")
    if res.get("notes"):
        out += ["Which estimate to trust for what:", ""] + [f"* {n}" for n in res["notes"]]
        out.append("")
    return "\n".join(out)
