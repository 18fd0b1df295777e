"""Experiment configs: frozen dataclasses whose fields declare their own checks.

A config is a ``@dataclasses.dataclass(frozen=True)`` whose fields are made with
:func:`field`; each field states its check once (``check=at_least(1)``,
``check=one_of("cd", "pcd")``), whether it only affects evaluation (``eval_only=True``:
a resumed run may change it) and whether a vmapped sweep may vary it (``sweep=True``:
seeds and numeric hyper-parameters that live in the train state, never shapes).
:func:`validate` runs every check; :func:`parse_args` reads ``--config PRESET``, then
``--field value`` overrides, then ``--sweep field=v1,v2,...`` axes from a command line.

Why not ml_collections: its ``config_flags`` go through absl's global ``FLAGS`` (one
parse per process, awkward for experiments run in-process by tests) and a ``ConfigDict``
declares no per-field checks or types, so every experiment wrote its own ``validate()``.
A typed dataclass with declared checks is the same "presets as data" idea with the checks
in one place (BUILD_NOTES.md, issue 11).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from egm.errors import ConfigError

__all__ = [
    "MNISTFields",
    "RunFields",
    "at_least",
    "field",
    "fields_of",
    "finite",
    "greater_than",
    "in_range",
    "one_of",
    "parse_args",
    "patience_field",
    "sweep_members",
    "to_dict",
    "validate",
]

Check = Callable[[Any], str | None]  # returns an error phrase, or None when the value is fine


def field(
    default: Any,
    *,
    check: Check | Sequence[Check] | None = None,
    help: str = "",
    eval_only: bool = False,
    sweep: bool = False,
) -> Any:
    """A config field with its check, help text and role (see the module docstring)."""
    checks = (
        () if check is None else (tuple(check) if isinstance(check, list | tuple) else (check,))
    )
    meta = {"checks": checks, "help": help, "eval_only": eval_only, "sweep": sweep}
    if isinstance(default, list | dict | set):
        raise TypeError("config defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def patience_field(criterion: str) -> Any:
    """The one declaration of an early-stopping field (``Phase.select``, egm.run.driver):
    unset keeps the last epoch; ``p >= 0`` keeps the epoch of the lowest ``criterion`` and
    stops after ``p`` epochs without a lower one (0: trains every epoch)."""
    return field(None, check=at_least(0), help=f"keep the epoch of the lowest {criterion}; stop "
                 f"after this many epochs without a lower one (0: train every epoch; unset: keep "
                 f"the last epoch)")  # fmt: skip


def _none_ok(f: Callable[[Any], str | None]) -> Check:
    return lambda v: None if v is None else f(v)


def at_least(low: float) -> Check:
    return _none_ok(lambda v: None if v >= low else f"must be >= {low}")


def greater_than(low: float) -> Check:
    return _none_ok(lambda v: None if v > low else f"must be > {low}")


def in_range(
    low: float, high: float, *, closed_low: bool = True, closed_high: bool = True
) -> Check:
    lo, hi = "[" if closed_low else "(", "]" if closed_high else ")"

    def check(v):
        ok_lo = v >= low if closed_low else v > low
        ok_hi = v <= high if closed_high else v < high
        return None if ok_lo and ok_hi else f"must be in {lo}{low}, {high}{hi}"

    return _none_ok(check)


def one_of(*choices: Any) -> Check:
    return lambda v: None if v in choices else f"must be one of {list(choices)}"


def finite(v: Any) -> str | None:
    return None if v is None or not isinstance(v, float) or math.isfinite(v) else "must be finite"


def fields_of(cfg: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg)}


def validate(cfg: Any) -> Any:
    """Run every field's declared checks (and the type of numbers); return ``cfg`` or raise
    :class:`ConfigError` naming the field, its value and what it must be."""
    for name, f in fields_of(cfg).items():
        v = getattr(cfg, name)
        if isinstance(f.default, int | float) and not isinstance(f.default, bool):
            if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
                raise ConfigError(f"{name} must be a number, got {v!r}")
            if isinstance(f.default, int) and isinstance(v, float) and not v.is_integer():
                raise ConfigError(f"{name} must be an integer, got {v!r}")
        for check in (finite, *f.metadata.get("checks", ())):
            msg = check(v)
            if msg:
                raise ConfigError(f"{name} {msg}, got {v!r}")
    post = getattr(cfg, "check", None)  # cross-field rules, declared once on the class
    if callable(post):
        post()
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def eval_only_fields(cfg: Any) -> tuple[str, ...]:
    return tuple(n for n, f in fields_of(cfg).items() if f.metadata.get("eval_only"))


def sweepable_fields(cfg: Any) -> tuple[str, ...]:
    return tuple(n for n, f in fields_of(cfg).items() if f.metadata.get("sweep"))


def _convert(name: str, value: str, f: dataclasses.Field, current: Any) -> Any:
    annotation = str(f.type)
    if value.lower() in ("none", "null") and ("None" in annotation or current is None):
        return None
    kind = type(f.default) if f.default is not None else type(current)
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if kind is int or (kind is type(None) and "int" in annotation):
            return int(value)
        if kind is float or (kind is type(None) and "float" in annotation):
            return float(value)
        if kind is tuple:
            return tuple(int(x) for x in value.strip("()").split(",") if x.strip())
        return value
    except ValueError:
        what = "true/false" if kind is bool else getattr(kind, "__name__", str(kind))
        raise ConfigError(f"--{name} expects {what}, got {value!r}") from None


def _pairs(argv: Sequence[str]) -> list[tuple[str, str]]:
    out, it = [], iter(argv)
    for a in it:
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; use --field value or --field=value")
        if "=" in a and not a.startswith("--sweep"):
            k, v = a[2:].split("=", 1)
        elif a.startswith("--sweep="):
            k, v = "sweep", a[len("--sweep=") :]
        else:
            k = a[2:]
            try:
                v = next(it)
            except StopIteration:
                raise ConfigError(f"--{k} needs a value") from None
        out.append((k.replace("-", "_"), v))
    return out


def parse_args(
    presets: dict[str, Any], argv: Sequence[str], default: str = "default"
) -> tuple[Any, dict[str, tuple]]:
    """``(config, sweep)`` from a command line.

    ``--config NAME`` picks a preset (default ``default``); ``--field value`` overrides
    fields (converted to the field's type); ``--sweep field=v1,v2,...`` adds a sweep axis
    (several ``--sweep`` give their product; ``--sweep seed=0:8`` is ``0..7``).  Unknown
    fields, bad values and non-sweepable sweep fields raise :class:`ConfigError`.
    """
    pairs = _pairs(argv)
    name = default
    for k, v in pairs:
        if k == "config":
            if v not in presets:
                raise ConfigError(f"unknown --config {v!r}; choose one of {sorted(presets)}")
            name = v
    cfg = presets[name]
    fields = fields_of(cfg)
    updates: dict[str, Any] = {}
    sweep: dict[str, tuple] = {}
    for k, v in pairs:
        if k == "config":
            continue
        if k == "sweep":
            fname, _, values = v.partition("=")
            fname = fname.replace("-", "_")
            if fname not in fields or not values:
                raise ConfigError(
                    f"--sweep expects field=v1,v2,... with a config field; got {v!r}. "
                    f"Sweepable fields: {', '.join(sweepable_fields(cfg))}"
                )
            if not fields[fname].metadata.get("sweep"):
                raise ConfigError(
                    f"--sweep {fname}: this field changes shapes or control flow, so it cannot "
                    f"be vmapped; run one experiment per value. Sweepable fields: "
                    f"{', '.join(sweepable_fields(cfg))}"
                )
            if ":" in values and "," not in values:
                lo, hi = (int(x) for x in values.split(":"))
                sweep[fname] = tuple(range(lo, hi))
            else:
                sweep[fname] = tuple(
                    _convert(fname, x, fields[fname], getattr(cfg, fname))
                    for x in values.split(",")
                )
            if not sweep[fname]:
                raise ConfigError(f"--sweep {v!r} names no value")
            continue
        if k not in fields:
            raise ConfigError(
                f"unknown config field --{k}; valid fields: {', '.join(sorted(fields))}"
            )
        updates[k] = _convert(k, v, fields[k], getattr(cfg, k))
    cfg = validate(dataclasses.replace(cfg, **updates))
    for member in sweep_members(cfg, sweep):
        validate(member)
    return cfg, sweep


def sweep_members(cfg: Any, sweep: dict[str, Sequence[Any]]) -> list[Any]:
    """The configs of a sweep: the product of its axes, in order (the first axis slowest)."""
    if not sweep:
        return [cfg]
    names = list(sweep)
    return [
        dataclasses.replace(cfg, **dict(zip(names, values, strict=True)))
        for values in itertools.product(*(sweep[n] for n in names))
    ]


# ------------------------------------------------------------------------------------------
# Field groups shared by experiments (inherit them: ``class Config(MNISTFields): ...``)
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunFields:
    """What every run has: its seed (sweepable), work directory and bookkeeping."""

    seed: int = field(0, check=at_least(0), sweep=True, help="root PRNG seed")
    workdir: str = field("runs/experiment", eval_only=True, help="where the run's files go")
    progress: bool = field(True, eval_only=True, help="show a progress bar")
    checkpoint_every: int = field(5, check=at_least(1), eval_only=True)
    fast_cpu_rng: bool = field(
        True, help="non-partitionable threefry on a single CPU device (about 2x faster bits)"
    )
    data_parallel: bool = field(
        False, eval_only=True, help="with several devices, shard each minibatch over them"
    )


@dataclasses.dataclass(frozen=True)
class MNISTFields(RunFields):
    """Where binarized MNIST comes from and under which protocol (egm.data.load_binarized_mnist)."""

    source: str = field(
        "embedded", check=one_of("embedded", "idx", "tfds", "auto"), help="egm.data.load_mnist"
    )
    data_dir: str | None = field(None, help="folder of the four MNIST IDX files")
    binarization: str = field("fixed", check=one_of("fixed", "dynamic", "threshold"))
    binarization_seed: int = field(0, check=at_least(0))
    score_samples: int = field(
        0, check=at_least(0), eval_only=True,
        help="score this many model samples (Fréchet distance, classifier score, Parzen "
        "window, copy check; egm.eval.scores); 0: off",
    )  # fmt: skip

    def check(self) -> None:
        if self.data_dir is not None and self.source == "embedded":
            raise ConfigError(
                "--data_dir is set but --source is 'embedded' (the subset shipped in the "
                "package), which ignores it; add --source idx (or --source auto)"
            )
