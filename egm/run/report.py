"""The reproduction report: every run's ``results.json`` in one Markdown table and one plot.

    python -m egm.run.report runs/                       # table on stdout
    python -m egm.run.report runs/ --out report.md --plot report.png
    python -m egm.run.report runs/ --keep experiments/results   # store the records in the repo
    python -m egm.run.report experiments/results --readme README.md   # regenerate README's table

A row is one figure of one run: every :class:`egm.eval.LogLikelihood` record in a
``results.json`` and every result the experiment maps to a published figure
(``Experiment.published``).  Each row carries the protocol fields a reader needs to compare
it (§20.14): model, figure with its uncertainty and method, dataset, split, protocol and
unit, the published figure and its source, the epochs run against the paper's schedule (the
experiment's ``paper`` preset), wall time and device, and the command that repeats the run.
:func:`check_rows` names every missing field; the command line refuses to write a table
with one.  README.md's table of measured figures is the ``--readme`` output, between the
markers ``<!-- egm-report:begin -->`` and ``<!-- egm-report:end -->``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from egm.errors import ConfigError, DataError

__all__ = ["FIELDS", "check_rows", "collect", "markdown", "plot", "rows_of", "update_readme"]

#: The columns of the report; :func:`check_rows` requires every one of them in every row.
FIELDS = (
    "model",
    "figure",
    "uncertainty",
    "method",
    "dataset",
    "split",
    "protocol",
    "unit",
    "published",
    "source",
    "schedule",
    "wall_time",
    "device",
    "command",
)
BEGIN, END = "<!-- egm-report:begin -->", "<!-- egm-report:end -->"
_METHOD_LABEL = {
    "exact": "exact",
    "ais": "AIS",
    "reverse_ais": "reverse AIS",
    "ais_bracket": "AIS bracket",
    "importance": "IS",
    "variational_bound": "bound",
    "parzen": "Parzen (not a likelihood)",
}


def _is_record(v: Any) -> bool:
    return isinstance(v, dict) and "method" in v and "value" in v and "unit" in v


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return ""
    if unit == "bits/dim":
        return f"{x:.3f}"
    if unit == "error rate":
        return f"{100 * x:.2f} %"
    return f"{x:.2f}" if abs(x) < 1e4 else f"{x:.4g}"


def _schedule(res: dict) -> str:
    s = res.get("schedule")
    if not s:
        return ""
    run = sum(p["epochs"] for p in s["phases"].values())
    paper = [p["paper_epochs"] for p in s["phases"].values()]
    if s.get("paper_preset") is None:
        return f"{run} epochs (no paper preset)" + _selected(res)
    if not s["phases"]:
        return "no training"
    total = sum(p or 0 for p in paper)
    frac = s.get("fraction_of_paper")
    txt = f"{run} of {total} epochs" + (f" ({100 * frac:.3g} %)" if frac is not None else "")
    differs = [f for f in s.get("differs_from_paper", []) if f not in ("seed",)]
    if differs:
        shown = ", ".join(differs[:4]) + (", ..." if len(differs) > 4 else "")
        txt += f"; differs from the paper preset in {shown}"
    return txt + _selected(res)


def _selected(res: dict) -> str:
    """Which epoch a phase that selects on validation kept (``Phase.select``)."""
    out, phases = "", (res.get("schedule") or {}).get("phases", {})
    for name, sel in (res.get("selection") or {}).items():
        planned = phases.get(name, {}).get("epochs")
        trained = f"{sel['epochs_trained']}" + (f" of {planned}" if planned else "")
        stop = f"stopped early after {trained} epochs" if sel["stopped_early"] else \
            f"{trained} epochs trained"  # fmt: skip
        out += (f"; {name}: {stop}, kept epoch {sel['best_epoch'] + 1} (lowest "
                f"{sel['criterion']}, patience {sel['patience']})")  # fmt: skip
    return out


def _wall(res: dict) -> str:
    t, train = res.get("total_seconds"), res.get("train_seconds")
    if t is None:
        return ""
    fmt = lambda x: f"{x:.0f} s" if x < 600 else f"{x / 60:.1f} min"
    # a run resumed from a finished checkpoint trains for ~0 s: the total is its evaluation
    return fmt(t) + (f" (training {fmt(train)})" if train is not None else "")


def _from_config(res: dict, field: str) -> str:
    """A dataset / protocol phrase from the run's config, for results without a record."""
    v = res.get("config", {}).get(field)
    if v is None:
        return ""
    return f"MNIST (source={v})" if field == "source" else f"{v} binarization"


def _members(res: dict, key: str) -> tuple[dict | None, dict | None]:
    """One member's value of ``key`` (the first; for a sweep, with the summary over members)."""
    if "members" in res:
        return res["members"][0].get(key), res.get("summary", {}).get(key)
    return res.get(key), None


def rows_of(res: dict, path: str = "") -> list[dict]:
    """The report rows of one ``results.json`` (see the module docstring)."""
    published = res.get("published", {})
    first = res["members"][0] if "members" in res else res
    keys = [k for k, v in first.items() if _is_record(v)]
    keys += [k for k in published if k not in keys and k in first]
    recs = [first[k] for k in keys if _is_record(first[k])]
    common_dataset = recs[0].get("dataset") if recs else None
    common_protocol = recs[0].get("protocol") if recs else None
    rows = []
    for key in keys:
        v, summary = _members(res, key)
        pub = published.get(key)
        row = {
            "run": path,
            "result": key,
            "experiment": res.get("experiment", ""),
            "preset": res.get("preset", ""),
            "model": res.get("model", res.get("experiment", "")),
            "schedule": _schedule(res),
            "wall_time": _wall(res),
            "device": f"{res.get('device', '')}" + (
                f" x{res['n_devices']}" if res.get("n_devices", 1) > 1 else ""
            ),
            "command": res.get("command", ""),
            "published": "none declared" if pub is None else _num(pub["value"], pub["unit"]),
            "source": "" if pub is None else pub["source"] + (" (recalled)" if pub.get("recalled") else ""),
        }  # fmt: skip
        if pub is None:
            row["source"] = "—"
        if _is_record(v):
            unit = v["unit"]
            value = v["value"]
            unc = []
            if v.get("stderr") is not None:
                unc.append(f"± {_num(v['stderr'], unit)} (MC)")
            if v.get("lower") is not None and v.get("upper") is not None:
                unc.append(f"[{_num(v['lower'], unit)}, {_num(v['upper'], unit)}]")
            if v.get("consistent") is False:
                unc.append("sides crossed")
            row.update(
                value=value,
                method=_METHOD_LABEL.get(v["method"], v["method"])
                + (f", {v['bound']} bound" if v.get("bound") else ""),
                dataset=v.get("dataset", ""),
                split=v.get("split", ""),
                protocol=v.get("protocol", ""),
                unit=unit,
                uncertainty=" ".join(unc) or "deterministic",
            )
        else:
            unit = "" if pub is None else pub["unit"]
            value = v
            se = first.get(f"{key}_stderr")  # e.g. a test error's binomial standard error
            row.update(
                value=value,
                method=key.replace("_", " "),
                dataset=common_dataset or res.get("dataset", "") or _from_config(res, "source"),
                split="test" if "test" in key else res.get("split", ""),
                protocol=common_protocol
                or res.get("protocol", "")
                or _from_config(res, "binarization"),
                unit=unit,
                uncertainty=f"± {_num(float(se), unit)} (s.e.)"
                if _is_float(se)
                else "deterministic",
            )
        if summary is not None:
            row["value"] = summary["mean"]
            row["uncertainty"] = f"± {_num(summary['sd'], unit)} (sd over {summary['n']} runs)"
        row["figure"] = "" if row["value"] is None else _num(float(row["value"]), unit)
        if pub is not None and "embedded" in str(row["dataset"]):
            row["source"] += "; not comparable: egm's embedded MNIST subset"
        rows.append(row)
    return rows


def collect(roots: Iterable[str | Path]) -> list[dict]:
    """Rows of every ``results.json`` under ``roots`` (files or folders, searched
    recursively; a file named ``*.json`` directly in a root is read as one results file)."""
    paths: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            paths.append(root)
        elif root.is_dir():
            paths += sorted(root.rglob("results.json"))
            paths += sorted(p for p in root.glob("*.json") if p.name != "results.json")
        else:
            raise DataError(f"{root} does not exist; give folders of runs (e.g. runs/)")
    rows = []
    for p in paths:
        try:
            res = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{p} is not a readable results.json ({e}); rerun that run") from None
        if not isinstance(res, dict) or "experiment" not in res:
            continue
        rows += rows_of(res, str(p))
    return rows


def check_rows(rows: Sequence[dict]) -> list[str]:
    """A message for every report field missing from a row (empty when the table is whole)."""
    out = []
    for r in rows:
        missing = [f for f in FIELDS if not str(r.get(f, "")).strip()]
        if missing:
            out.append(f"{r.get('run', '?')} [{r.get('result', '?')}]: no {', '.join(missing)}")
    return out


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[dict]) -> str:
    """The report as a Markdown table (one row per figure)."""
    head = ["model", "result", "figure", "uncertainty", "unit", "method", "data", "protocol",
            "published", "schedule", "wall time", "device", "command"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pub = r["published"] if r["source"] == "—" else f"{r['published']} ({r['source']})"
        cells = [r["model"], r["result"], f"**{r['figure']}**", r["uncertainty"], r["unit"],
                 r["method"], f"{r['dataset']}, {r['split']}", r["protocol"], pub,
                 r["schedule"], r["wall_time"], r["device"], f"`{r['command']}`"]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], path: str | Path) -> None:
    """Measured figures (with their uncertainty) beside the published ones, one panel per unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = sorted({r["unit"] for r in rows if r["value"] is not None})
    if not units:
        raise DataError("no figures to plot")
    fig, axes = plt.subplots(len(units), 1, figsize=(9, 1.2 + 0.45 * len(rows)), squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        sel = [r for r in rows if r["unit"] == unit and r["value"] is not None]
        ys = list(range(len(sel)))
        ax.scatter([float(r["value"]) for r in sel], ys, label="egm", zorder=3)
        pubs = [(y, float(r["published"])) for y, r in zip(ys, sel, strict=True)
                if _is_float(r["published"])]  # fmt: skip
        if pubs:
            ax.scatter([p for _, p in pubs], [y for y, _ in pubs], marker="x", label="published")
        ax.set_yticks(ys, [f"{r['model']} [{r['result']}]"[:60] for r in sel], fontsize=7)
        ax.set_xlabel(unit)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _is_float(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def update_readme(readme: str | Path, table: str, command: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``readme`` with ``table``."""
    text = Path(readme).read_text()
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{readme} has no {BEGIN} ... {END} markers to put the table between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    note = f"<!-- generated by `{command}`: do not edit by hand -->\n"
    Path(readme).write_text(head + BEGIN + "\n" + note + table + END + tail)


def keep(roots: Iterable[str | Path], into: str | Path) -> list[Path]:
    """Copy every ``results.json`` under ``roots`` to ``into/<experiment>__<workdir>.json``,
    where ``<workdir>`` is the run's folder relative to the current directory (a leading
    ``runs/`` dropped, ``/`` as ``__``: ``runs/scores/gan_mnist`` -> ``scores__gan_mnist``),
    or relative to its root when it lies outside the current directory."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for root in map(Path, roots):
        for p in sorted(root.rglob("results.json")):
            res = json.loads(p.read_text())
            if "experiment" not in res:
                continue
            try:
                parts = p.parent.resolve().relative_to(Path.cwd().resolve()).parts
            except ValueError:
                parts = p.parent.relative_to(root).parts or (p.parent.name,)
            if len(parts) > 1 and parts[0] == "runs":
                parts = parts[1:]
            where = "__".join(parts)  # the work dir
            dest = into / f"{res['experiment']}__{where}.json"
            shutil.copyfile(p, dest)
            out.append(dest)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m egm.run.report", description=__doc__.split("\n")[0]
    )
    ap.add_argument("roots", nargs="+", help="folders of runs (searched for results.json)")
    ap.add_argument("--out", help="write the Markdown table here (default: stdout)")
    ap.add_argument("--plot", help="write the plot (PNG) here")
    ap.add_argument("--keep", help="copy the results.json files into this folder first")
    ap.add_argument("--readme", help="replace the table between the report markers in README.md")
    args = ap.parse_args(argv)
    try:
        roots = args.roots
        if args.keep:
            kept = keep(roots, args.keep)
            print(f"kept {len(kept)} results in {args.keep}", file=sys.stderr)
            roots = [args.keep]
        rows = collect(roots)
        if not rows:
            raise DataError(f"no results.json with figures under {', '.join(map(str, roots))}")
        problems = check_rows(rows)
        if problems:
            raise DataError("rows with missing protocol fields:\n  " + "\n  ".join(problems))
        table = markdown(rows)
        if args.readme:
            cmd = (
                "python -m egm.run.report " + " ".join(map(str, roots)) + f" --readme {args.readme}"
            )
            update_readme(args.readme, table, cmd)
        if args.out:
            Path(args.out).write_text(table)
        elif not args.readme:
            sys.stdout.write(table)
        if args.plot:
            plot(rows, args.plot)
    except (ConfigError, DataError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
