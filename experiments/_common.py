"""Shared plumbing of experiment scripts: config overrides, the work directory, PNGs.

Only experiments read flags, print and write files (DESIGN.md §1); the library never does.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from egm.errors import ConfigError


def parse_overrides(config: Any, argv: list[str], presets: dict[str, Any]) -> Any:
    """Apply ``--config NAME`` (a preset) then ``--field value`` / ``--field=value`` overrides.

    Values are converted to the field's type; unknown fields raise :class:`ConfigError`
    listing the valid ones.
    """
    args: list[tuple[str, str]] = []
    it = iter(argv)
    for a in it:
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; use --field value or --field=value")
        if "=" in a:
            k, v = a[2:].split("=", 1)
        else:
            k = a[2:]
            try:
                v = next(it)
            except StopIteration:
                raise ConfigError(f"--{k} needs a value") from None
        args.append((k.replace("-", "_"), v))
    for k, v in args:
        if k == "config":
            if v not in presets:
                raise ConfigError(f"unknown --config {v!r}; choose one of {sorted(presets)}")
            config = presets[v]
    fields = {f.name: f for f in dataclasses.fields(config)}
    updates = {}
    for k, v in args:
        if k == "config":
            continue
        if k not in fields:
            raise ConfigError(
                f"unknown config field --{k}; valid fields: {', '.join(sorted(fields))}"
            )
        updates[k] = _convert(k, v, type(getattr(config, k)), fields[k].type)
    return dataclasses.replace(config, **updates)


def _convert(name: str, value: str, current_type: type, annotation: Any) -> Any:
    if value.lower() in ("none", "null") and "None" in str(annotation):
        return None
    try:
        if current_type is bool:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if current_type is int:
            return int(value)
        if current_type is float:
            return float(value)
        if current_type is type(None):  # a None default: the annotation says what else it takes
            if "float" in str(annotation):
                return float(value)
            if "int" in str(annotation):
                return int(value)
        return value
    except ValueError:
        raise ConfigError(f"--{name} expects a {current_type.__name__}, got {value!r}") from None


class Workdir:
    """A run's directory: ``config.json``, ``metrics.jsonl``, ``results.json``, PNGs, checkpoints."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, obj: Any) -> None:
        (self.path / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def read_json(self, name: str) -> Any | None:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def truncate_metrics(self, after_epoch: int | None) -> None:
        """Drop metric lines of epochs after ``after_epoch`` (all if None): used on resume."""
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return
        keep = []
        for line in p.read_text().splitlines():
            rec = json.loads(line)
            if after_epoch is not None and rec.get("epoch", -1) <= after_epoch:
                keep.append(line)
        p.write_text("".join(x + "\n" for x in keep))

    def log_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def save_png(self, name: str, image: np.ndarray, title: str | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h, w = image.shape
        fig = plt.figure(figsize=(w / 40, h / 40 + (0.3 if title else 0)), dpi=80)
        ax = fig.add_axes((0, 0, 1, 1 if not title else h / (h + 12)))
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
        if title:
            fig.suptitle(title, fontsize=8)
        fig.savefig(self.path / name)
        plt.close(fig)


def rng_mode(fast_cpu_rng: bool):
    """Context manager: on CPU, ``fast_cpu_rng`` selects JAX's non-partitionable threefry
    lowering (``jax.threefry_partitionable(False)``) for everything traced inside: the same
    Threefry-2x32 generator with about 2x faster random bits on CPU (measured in
    BUILD_NOTES.md) and different, equally valid streams.  Partitionable keys matter only
    when arrays are sharded across devices, so accelerators keep the default.  The global
    setting is restored on exit (tests run experiments in-process)."""
    import contextlib

    import jax

    if fast_cpu_rng and jax.default_backend() == "cpu":
        return jax.threefry_partitionable(False)
    return contextlib.nullcontext()


def rng_label() -> str:
    import jax

    return f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_binarized_mnist(cfg: Any) -> tuple[dict, dict, str, dict]:
    """Train/valid/test splits of MNIST under ``cfg.binarization`` (fields used: ``source``,
    ``data_dir``, ``binarization``, ``binarization_seed``).

    Returns ``(train_arrays, eval_arrays, source, labels)``: the training arrays are binary
    except under "dynamic" (grey kept, the train step re-draws them); the evaluation arrays
    are binary under every protocol (dynamic: one fixed draw, seed ``binarization_seed + 10 +
    split``); ``labels`` are the integer classes of each split.
    """
    from egm import data

    splits = {
        s: data.load_mnist(s, source=cfg.source, data_dir=cfg.data_dir)
        for s in ("train", "valid", "test")
    }
    out = {}
    for i, (name, ds) in enumerate(splits.items()):
        x = ds.x
        if cfg.binarization == "fixed":
            x = data.binarize_fixed(x, seed=cfg.binarization_seed + i)
        elif cfg.binarization == "threshold":
            x = data.binarize_threshold(x)
        out[name] = x
    evals = {
        name: (
            x
            if cfg.binarization != "dynamic"
            else data.binarize_fixed(x, seed=cfg.binarization_seed + 10 + i)
        )
        for i, (name, x) in enumerate(out.items())
    }
    labels = {name: np.asarray(ds.y) for name, ds in splits.items()}
    return out, evals, splits["train"].source, labels


def describe_binarization(cfg: Any) -> str:
    """The protocol sentence stored with every likelihood (see egm.data.describe_protocol)."""
    from egm import data

    protocol = data.describe_protocol(cfg.binarization, seed=cfg.binarization_seed)
    if cfg.binarization == "fixed":
        s = cfg.binarization_seed
        protocol += f" (train/valid/test drawn with seeds {s}/{s + 1}/{s + 2})"
    return protocol


def comparable(record: dict[str, Any], eval_only: tuple[str, ...] = ()) -> dict[str, Any]:
    """A saved config without the fields that do not change the trained parameters
    (``eval_only``: work dir, progress bars, evaluation sizes...), for resume checks."""
    return {k: v for k, v in record.items() if k not in eval_only}


def check_same_run(
    wd: Workdir,
    record: dict[str, Any],
    eval_only: tuple[str, ...] = (),
    *,
    has_checkpoints: bool,
    record_name: str = "config.json",
) -> None:
    """Refuse to mix runs: if ``wd`` holds checkpoints (``has_checkpoints``) of a run whose
    saved ``record_name`` differs from ``record`` outside ``eval_only``, raise
    :class:`ConfigError`; then write ``record``."""
    saved = wd.read_json(record_name)
    if has_checkpoints and saved is not None:
        if comparable(saved, eval_only) != comparable(record, eval_only):
            changed = sorted(
                k
                for k in set(saved) | set(record)
                if k not in eval_only and saved.get(k) != record.get(k)
            )
            raise ConfigError(
                f"{wd.path} holds checkpoints of a run with a different config (changed: "
                f"{', '.join(changed)}); use a new --workdir or delete that directory"
            )
    wd.write_json(record_name, record)


def resume(
    wd: Workdir,
    ckpt: Any,
    state: Any,
    record: dict[str, Any],
    eval_only: tuple[str, ...] = (),
    *,
    record_name: str = "config.json",
) -> tuple[Any, int]:
    """Start or resume a run: restore ``ckpt``'s newest checkpoint into ``state`` (after
    :func:`check_same_run`), keep metrics.jsonl up to the restored epoch (all of it dropped
    on a fresh start), and return ``(state, first epoch to run)``."""
    last_epoch = ckpt.latest_epoch()
    check_same_run(
        wd, record, eval_only, has_checkpoints=last_epoch is not None, record_name=record_name
    )
    if last_epoch is None:
        wd.truncate_metrics(None)
        return state, 0
    last, state = ckpt.restore(state)
    log(f"{wd.path}: resuming after epoch {last}")
    wd.truncate_metrics(last)
    return state, last + 1
