"""A run's directory: ``config.json``, ``metrics.jsonl``, ``results.json``, PNGs, checkpoints.

This and :mod:`egm.run.driver` are the only library modules that write files or print
(DESIGN.md §1: the run driver is the thin CLI layer above the pure floors).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from egm.errors import ConfigError


def log(msg: str) -> None:
    """A time-stamped line on stderr (stdout stays free for JSON output)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Workdir:
    """The files of one run (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, obj: Any) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")
        tmp.replace(self.path / name)  # atomic: a killed run never leaves half a file

    def read_json(self, name: str) -> Any | None:
        p = self.path / name
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{p} is not valid JSON ({e}); delete it (or use a new --workdir) to start afresh"
            ) from None

    def truncate_metrics(self, keep: Any) -> None:
        """Keep only the metric lines for which ``keep(record)`` is true (used on resume)."""
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return
        lines = []
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a kill
                continue
            if keep(rec):
                lines.append(line)
        p.write_text("".join(x + "\n" for x in lines))

    def log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def save_png(self, name: str, image: np.ndarray, title: str | None = None) -> None:
        """A grey image in [0, 1] (e.g. :func:`egm.eval.tile_images`) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        image = np.asarray(image)
        h, w = image.shape
        fig = plt.figure(figsize=(w / 40, h / 40 + (0.3 if title else 0)), dpi=80)
        ax = fig.add_axes((0, 0, 1, 1 if not title else h / (h + 12)))
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
        if title:
            fig.suptitle(title, fontsize=8)
        fig.savefig(self.path / name)
        plt.close(fig)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "tolist"):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
