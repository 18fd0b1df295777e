"""The run driver: an experiment declares, the driver loops (DESIGN.md §7).

An :class:`Experiment` declares its presets, how to load its data, its training
:class:`Phase`\\ s (one for most models; greedy layers, pretraining or fine-tuning are more),
what to evaluate and which pictures to draw.  :func:`run` owns everything else:

- one jitted epoch (a ``lax.scan`` over minibatches) per phase, with the state donated;
- a **sweep** (``--sweep learning_rate=...``, ``--sweep seed=0:8``): the members' states are
  stacked and the epoch vmapped, so N models train in one jitted call; with several devices
  the sweep axis is sharded over a mesh (:mod:`egm.train.shard`), or, for one model, the
  minibatch is (``data_parallel=True``);
- selection on validation and early stopping (``Phase.select``: a monitored validation loss;
  each member keeps its best epoch's state, and training stops after ``patience`` epochs
  without a better one);
- orbax checkpoints every ``checkpoint_every`` epochs and resume with the same-run check (a
  killed run restarted with the same command continues where it stopped and ends with the same
  parameters as an uninterrupted run: epoch keys are ``fold_in(root, epoch)``);
- metrics as JSON lines, a progress bar, divergence detection (non-finite values, and runs
  that explode without a NaN: the parameter norm or a training metric growing by orders of
  magnitude), ``results.json`` with every member's evaluation records and the sweep's mean ±
  sd, and the PNGs.

:func:`main` is the command line: config errors, bad data and divergence end in one message
on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from egm.errors import ConfigError, DivergenceError, EgmError
from egm.run import config as cfglib
from egm.run.workdir import Workdir, log
from egm.train import sweep as sweeplib
from egm.train.checkpoint import Checkpointer
from egm.train.loop import check_divergence, make_epoch, metrics_to_floats

__all__ = ["Experiment", "Phase", "main", "nearest_preset", "provenance", "rng_mode", "run"]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase.

    ``init(cfg, data, key, done) -> state``: the initial train state of one member, where
    ``done`` maps the names of the finished phases to that member's final states;
    ``step(cfg, data, done0) -> step``: the train step (built once, from the first member;
    what differs between members must live in the state, e.g. injected hyper-parameters);
    ``train_data(cfg, data, done0)``: the array (or pytree) the epoch scans over
    (default ``data.train``); ``epochs(cfg)`` and ``batch_size(cfg)``; ``data_check(cfg,
    host_array)``: raise a clear error for data the model cannot take (non-binary data for
    a binary model...); ``monitor(cfg, data, state, key, epoch) -> dict``: host-side
    evaluations after an epoch (it decides its own cadence); ``check_epoch(epoch, metrics)``:
    extra stop rules such as a frozen sampler (:func:`egm.train.check_acceptance`).

    ``select``: the name of a ``monitor`` metric to minimise (a validation loss): the phase
    then hands on each member's state of the epoch where that metric was lowest, not the
    last one, and with ``patience(cfg) = p > 0`` stops once every member has gone ``p``
    monitored epochs without a lower value (early stopping).  The best states, their epochs
    and values ride in the checkpoints, so a killed run resumes with nothing lost, and each
    member's results say which epoch was kept (``selection``).
    """

    name: str
    init: Callable[..., Any]
    step: Callable[..., Any]
    epochs: Callable[[Any], int] = lambda cfg: cfg.epochs
    batch_size: Callable[[Any], int] = lambda cfg: cfg.batch_size
    train_data: Callable[..., Any] = lambda cfg, data, done: data.train
    data_check: Callable[[Any, Any], None] | None = None
    monitor: Callable[..., dict] | None = None
    check_epoch: Callable[[int, dict], None] | None = None
    params_of: Callable[[Any], Any] = lambda state: state.params
    select: str | None = None
    patience: Callable[[Any], int] = lambda cfg: int(getattr(cfg, "patience", 0) or 0)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What an experiment file declares (the driver does the rest).

    ``load(cfg) -> data`` (any object; phases read it); ``phases(cfg) -> [Phase]``;
    ``evaluate(cfg, data, done, key) -> dict`` of one member's results (floats, strings,
    :class:`egm.eval.LogLikelihood` records...); ``pictures(cfg, data, done, key) ->
    {file name: (image in [0, 1], title)}`` for the first member; ``files(cfg, data, done, path)``
    writes other run files into the work directory ``path`` (a stored whitening, exported
    parameters), for the first member; ``describe(cfg) -> dict``
    of strings (model, training) stored with the results.  ``explode_factor``: a run whose
    parameter norm grows past this factor of its initial norm (or a metric past
    ``explode_factor`` times its first-epoch size) is stopped as diverged.
    ``published(cfg) -> {result key: key of egm.eval.published.PUBLISHED}``: the published
    figures the results compare with (copied into ``results.json``).  ``sample(cfg, data,
    done, key, n) -> (n, D)`` model samples in the data's representation (binary for binary
    models): with ``--score_samples n`` the driver adds their Fréchet distance, classifier
    score, Parzen estimate and copy check (:func:`egm.eval.scores.sample_scores`) to each
    member's results.  ``score_splits(cfg, data) -> {"train", "valid", "test": (N, D)}``: the
    data the samples are scored against, in the samples' representation (default: the
    data's ``binary`` splits; grey-level models such as a GAN or a flow declare their grey
    splits); ``score_protocol(cfg, data) -> str``: the protocol sentence of those scores
    when it is not the data's (``data.protocol``), e.g. a binary model's p(x|h) scored
    against the grey digits.

    ``sweep_members``: how a sweep's members train on one device — ``"vmap"`` (batched, the
    default) or ``"map"`` (one after another inside the same jitted epoch, ``lax.map``: for
    models whose ops batch poorly under vmap, such as a DCGAN's convolutions on XLA:CPU).
    Across several devices members are always sharded.

    A preset named ``paper`` is the paper's full schedule; every ``results.json`` says how
    much of it the run trained (``schedule``: epochs per phase against the paper preset's,
    and the fields where the run differs from it) and the command that repeats the run.
    """

    name: str
    presets: dict[str, Any]
    load: Callable[[Any], Any]
    phases: Callable[[Any], Sequence[Phase]]
    evaluate: Callable[..., dict]
    pictures: Callable[..., dict] | None = None
    files: Callable[..., None] | None = None
    describe: Callable[[Any], dict] | None = None
    explode_factor: float = 1e3
    divergence_hint: Callable[[Any], str] = lambda cfg: ""
    published: Callable[[Any], dict[str, str]] | None = None
    sample: Callable[..., Any] | None = None
    score_splits: Callable[[Any, Any], dict] | None = None
    score_protocol: Callable[[Any, Any], str] | None = None
    sweep_members: str = "vmap"

    def __post_init__(self) -> None:
        if self.sweep_members not in ("vmap", "map"):
            raise ConfigError(f"Experiment.sweep_members must be 'vmap' or 'map', got "
                              f"{self.sweep_members!r}")  # fmt: skip


def rng_mode(fast_cpu_rng: bool):
    """On CPU, ``fast_cpu_rng`` selects JAX's non-partitionable threefry lowering for
    everything traced inside (the same Threefry-2x32 generator with about 2x faster random
    bits on CPU, BUILD_NOTES.md; different, equally valid streams).  Partitionable keys
    matter only when arrays are sharded across devices, so it applies only to a single CPU
    device.  The global setting is restored on exit."""
    if fast_cpu_rng and jax.default_backend() == "cpu" and jax.device_count() == 1:
        return jax.threefry_partitionable(False)
    return contextlib.nullcontext()


def main(experiment: Experiment, argv: Sequence[str] | None = None) -> dict:
    """The command line of an experiment file: parse, run, and turn egm's errors into one
    message and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg, sweep = cfglib.parse_args(experiment.presets, argv)
        return run(experiment, cfg, sweep)
    except EgmError as e:
        print(f"{experiment.name}: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(
            f"{experiment.name}: interrupted; run the same command again to resume", file=sys.stderr
        )
        raise SystemExit(130) from None


def run(experiment: Experiment, cfg: Any, sweep: dict[str, Sequence] | None = None) -> dict:
    """Train and evaluate ``cfg`` (every member of ``sweep``); returns the results dict that
    is also written to ``<workdir>/results.json``."""
    cfglib.validate(cfg)
    sweep = dict(sweep or {})
    members = cfglib.sweep_members(cfg, sweep)
    for m in members:
        cfglib.validate(m)
    with rng_mode(getattr(cfg, "fast_cpu_rng", False)):
        return _Run(experiment, cfg, sweep, members).go()


class _Run:
    def __init__(self, exp: Experiment, cfg: Any, sweep: dict, members: list):
        self.exp, self.cfg, self.sweep, self.members = exp, cfg, sweep, members
        self.n = len(members)
        self.wd = Workdir(cfg.workdir)
        self.t0 = time.perf_counter()
        self.epoch_seconds: dict[str, list[float]] = {}
        self.selection: dict[str, list[dict]] = {}  # phase -> each member's kept epoch
        roots = [jax.random.key(getattr(m, "seed", 0)) for m in members]
        self.keys = [
            dict(zip(("init", "train", "eval", "pics"), jax.random.split(r, 4), strict=True))
            for r in roots
        ]

    # ---------------------------------------------------------------- bookkeeping
    def record(self) -> dict:
        eval_only = cfglib.eval_only_fields(self.cfg)
        conf = {k: v for k, v in cfglib.to_dict(self.cfg).items() if k not in eval_only}
        return {
            "experiment": self.exp.name,
            "config": conf,
            "sweep": {k: list(v) for k, v in self.sweep.items()},
        }

    def check_same_run(self, has_checkpoints: bool) -> None:
        import json

        from egm.errors import ConfigError

        saved = self.wd.read_json("run.json")
        rec = json.loads(json.dumps(self.record()))  # tuples as lists, as read back from disk
        if has_checkpoints and saved is not None and saved != rec:
            changed = sorted(
                k
                for k in set(saved["config"]) | set(rec["config"])
                if saved["config"].get(k) != rec["config"].get(k)
            ) + (["sweep"] if saved.get("sweep") != rec["sweep"] else [])
            raise ConfigError(
                f"{self.wd.path} holds checkpoints of a run with a different config (changed: "
                f"{', '.join(changed)}); use a new --workdir or delete that directory"
            )
        self.wd.write_json("run.json", rec)
        self.wd.write_json("config.json", cfglib.to_dict(self.cfg))

    # ---------------------------------------------------------------- training
    def go(self) -> dict:
        exp, cfg = self.exp, self.cfg
        data = exp.load(cfg)
        phases = list(exp.phases(cfg))
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must differ, got {names}")
        ckpt_root = Path(cfg.workdir) / "checkpoints"
        started = any(
            (ckpt_root / p.name).exists() and any((ckpt_root / p.name).iterdir()) for p in phases
        )
        self.check_same_run(started)
        if not started:
            self.wd.truncate_metrics(lambda rec: False)
        done: list[dict] = [{} for _ in self.members]
        train_s = 0.0
        for i, phase in enumerate(phases):
            t = time.perf_counter()
            states = self.train_phase(i, phase, data, done, ckpt_root / phase.name)
            train_s += time.perf_counter() - t
            for m, s in enumerate(states):
                done[m][phase.name] = s
        t_eval = time.perf_counter()
        per_member = []
        for m, mcfg in enumerate(self.members):
            res = exp.evaluate(mcfg, data, done[m], self.keys[m]["eval"])
            n_score = int(getattr(mcfg, "score_samples", 0) or 0)
            if n_score:
                res = {**res, **self.sample_scores(mcfg, data, done[m], m, n_score)}
            per_member.append(res)
        eval_s = time.perf_counter() - t_eval
        if exp.pictures is not None:
            for name, (image, title) in exp.pictures(
                self.members[0], data, done[0], self.keys[0]["pics"]
            ).items():
                self.wd.save_png(name, image, title)
        if exp.files is not None:
            exp.files(self.members[0], data, done[0], self.wd.path)
        results = self.results(per_member, train_s, eval_s)
        self.wd.write_json("results.json", results)
        for line in _summary_lines(results):
            log(line)
        log(f"results in {Path(cfg.workdir) / 'results.json'}")
        return results

    def sample_scores(self, cfg: Any, data: Any, done: dict, member: int, n: int) -> dict:
        """§20.14 scores of ``n`` model samples (``Experiment.sample``) against the data's
        splits (``Experiment.score_splits``, by default its binary ones):
        :func:`egm.eval.scores.sample_scores`."""
        from egm.errors import ConfigError
        from egm.eval.scores import sample_scores

        if self.exp.sample is None:
            raise ConfigError(
                f"--score_samples {n}: {self.exp.name} declares no sampler (Experiment.sample); "
                f"set --score_samples 0"
            )
        if self.exp.score_splits is not None:
            splits = self.exp.score_splits(cfg, data)
        else:
            splits = getattr(data, "binary", None)
        if not isinstance(splits, dict) or not {"train", "valid", "test"} <= set(splits):
            raise ConfigError(
                f"--score_samples: {self.exp.name}'s data has no train/valid/test splits to "
                f"score samples against (declare Experiment.score_splits); set --score_samples 0"
            )
        protocol = getattr(data, "protocol", "")
        if self.exp.score_protocol is not None:
            protocol = self.exp.score_protocol(cfg, data)
        k_sample, k_score = jax.random.split(jax.random.fold_in(self.keys[member]["eval"], 7))
        drawn = self.exp.sample(cfg, data, done, k_sample, n)
        sets = drawn if isinstance(drawn, dict) else {"": drawn}  # {model name: samples}
        out = {}
        for name, samples in sets.items():
            scores = sample_scores(
                k_score, np.asarray(samples), splits["train"], splits["valid"], splits["test"],
                dataset=getattr(data, "source", "unknown"), protocol=protocol,
            )  # fmt: skip
            grid = scores.pop("copy_grid", None)
            if grid is not None and member == 0:
                self.wd.save_png(
                    f"{name + '_' if name else ''}copies.png", grid,
                    "model samples closest to a training digit, each beside that digit",
                )  # fmt: skip
            out.update({(f"{name}_{k}" if name else k): v for k, v in scores.items()})
        return out

    def train_phase(
        self, index: int, phase: Phase, data: Any, done: list[dict], ckpt_dir: Path
    ) -> list:
        cfg, n = self.cfg, self.n
        n_epochs, batch = int(phase.epochs(cfg)), int(phase.batch_size(cfg))
        states = [
            phase.init(m, data, jax.random.fold_in(self.keys[j]["init"], index), done[j])
            for j, m in enumerate(self.members)
        ]
        # each member's data (a phase may train on what an earlier phase of that member made)
        datas = [phase.train_data(m, data, done[j]) for j, m in enumerate(self.members)]
        per_member = not all(_same_tree(datas[0], x) for x in datas[1:])
        k = n if per_member else 1
        checked = [
            _check_data(x, phase, m) for x, m in zip(datas[:k], self.members[:k], strict=True)
        ]
        train_data = sweeplib.stack(checked) if per_member else checked[0]
        step = phase.step(cfg, data, done[0])
        state = states[0] if n == 1 else sweeplib.stack(states)
        epoch_fn, state, train_data = self.place(step, batch, state, train_data, per_member)
        ckpt = Checkpointer(ckpt_dir, every=getattr(cfg, "checkpoint_every", 1))
        best = None if phase.select is None else _Best(phase, cfg, state, n)
        pack = (lambda s: s) if best is None else best.pack
        start = 0
        last = ckpt.latest_epoch()
        if last is not None:
            _, tree = ckpt.restore(pack(state))
            if jax.device_count() == 1:  # restored arrays are committed, fresh ones are not:
                # place both alike so that jitted evaluations do not recompile after a resume
                tree = jax.tree_util.tree_map(_uncommit, tree)
            state = tree if best is None else best.unpack(tree, last)
            start = n_epochs if best is not None and best.stopped else last + 1
            log(f"{self.wd.path}: phase {phase.name!r}: resuming after epoch {last}")
        self.wd.truncate_metrics(
            lambda rec, name=phase.name, upto=start: (
                rec.get("phase") != name or rec.get("epoch", -1) < upto
            )
        )
        norm0 = _param_norms(phase.params_of(state), n)
        first: dict[str, float] = {}
        from tqdm.auto import tqdm

        bar = tqdm(
            range(start, n_epochs),
            disable=not getattr(cfg, "progress", False),
            desc=phase.name,
            unit="epoch",
        )
        hint = self.exp.divergence_hint(cfg)
        for e in bar:
            keys = [jax.random.fold_in(jax.random.fold_in(k["train"], index), e) for k in self.keys]
            key = keys[0] if n == 1 else jnp.stack(keys)
            t_epoch = time.perf_counter()
            state, metrics = epoch_fn(state, train_data, key)
            m = metrics_to_floats(metrics)  # waits for the epoch
            m["epoch_s"] = time.perf_counter() - t_epoch
            self.epoch_seconds.setdefault(phase.name, []).append(m["epoch_s"])
            extra: list[dict] = [{}]
            if phase.monitor is not None:
                extra = [
                    phase.monitor(
                        mc, data, s, jax.random.fold_in(self.keys[j]["eval"], 1000 * index + e), e
                    )
                    or {}
                    for j, (mc, s) in enumerate(
                        zip(self.members, self._members_of(state), strict=True)
                    )
                ]
                for k in extra[0]:
                    m[k] = extra[0][k] if n == 1 else [x.get(k) for x in extra]
            self.check(e, phase, state, m, norm0, first, hint)
            if phase.check_epoch is not None:
                phase.check_epoch(
                    e,
                    {
                        k: (v if n == 1 else float(np.min(v)))
                        for k, v in m.items()
                        if isinstance(v, float | list)
                    },
                )
            if best is not None:
                best.update(e, m, state, set(extra[0]))
            self.wd.log_metrics(
                {"phase": phase.name, "epoch": e, **m, "wall_s": time.perf_counter() - self.t0}
            )
            stop = best is not None and best.stopped
            ckpt.save(e, pack(state), force=stop or e == n_epochs - 1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in list(m.items())[:3] if isinstance(v, float)})
            if stop:
                log(f"{phase.name}: no better {phase.select} for {best.patience} epochs: stopped "
                    f"after epoch {e}")  # fmt: skip
                break
        ckpt.close()
        if best is None:
            return list(self._members_of(state))
        self.selection[phase.name] = best.summary()
        return list(self._members_of(best.state))

    def _members_of(self, state: Any) -> list:
        return [state] if self.n == 1 else sweeplib.unstack(state)

    def place(self, step, batch, state, train_data, per_member=False):
        """jit the epoch (vmapped over the sweep) and place state and data on the devices;
        ``per_member``: the data has a leading sweep axis (one data set per member)."""
        from egm.train import shard

        epoch = make_epoch(step, batch)
        n_dev = jax.device_count()
        if self.n > 1:
            fn = (sweeplib.map_epoch if self.exp.sweep_members == "map" else sweeplib.sweep_epoch)(
                epoch, per_member
            )
            if n_dev > 1:
                mesh = shard.sweep_mesh(self.n)
                place_data = shard.shard_sweep if per_member else shard.replicate
                return (
                    shard.sharded_sweep_epoch(epoch, mesh, data_per_member=per_member),
                    shard.shard_sweep(state, mesh),
                    place_data(train_data, mesh),
                )
            return jax.jit(fn, donate_argnums=0), state, train_data
        if n_dev > 1 and getattr(self.cfg, "data_parallel", False):
            mesh = shard.data_mesh()
            return (
                shard.data_parallel_epoch(step, batch, mesh),
                shard.replicate(state, mesh),
                shard.replicate(train_data, mesh),
            )
        return jax.jit(epoch, donate_argnums=0), state, train_data

    def check(self, e, phase, state, m, norm0, first, hint) -> None:
        """NaN/inf anywhere, or an explosion without NaN, stops the run with its epoch and cause."""
        scalar = {k: v for k, v in m.items() if isinstance(v, float)}
        flat = {
            k: float(np.max(np.abs(np.asarray(v, float))))
            for k, v in m.items()
            if isinstance(v, list) and all(isinstance(x, float | int) for x in v)
        }
        who = "" if self.n == 1 else " (some member of the sweep)"
        check_divergence(e, phase.params_of(state), {**scalar, **flat}, hint + who)
        factor = self.exp.explode_factor
        norms = _param_norms(phase.params_of(state), self.n)
        for j, (a, b) in enumerate(zip(norm0, norms, strict=True)):
            if b > factor * max(a, 1.0):
                raise DivergenceError(
                    f"training diverged at epoch {e} of phase {phase.name!r}{self._member(j)}: the "
                    f"parameter norm grew from {a:.3g} to {b:.3g} (more than {factor:g}x) without "
                    f"a NaN. Likely cause: the learning rate is too high for this model; lower it "
                    f"(or add weight decay / gradient clipping) and start a new --workdir. {hint}".rstrip()
                )
        for k, v in {**scalar, **flat}.items():
            if k.endswith("_s") or not math.isfinite(v):
                continue
            if k not in first:
                first[k] = abs(v)
            elif abs(v) > 10 * factor * max(first[k], 1.0):
                raise DivergenceError(
                    f"training diverged at epoch {e} of phase {phase.name!r}{who}: the metric {k} "
                    f"grew from {first[k]:.3g} to {v:.3g} (more than {10 * factor:g}x its first "
                    f"epoch) without a NaN. Likely cause: the learning rate is too high; lower it "
                    f"and start a new --workdir. {hint}".rstrip()
                )

    def _member(self, j: int) -> str:
        if self.n == 1:
            return ""
        vals = {k: getattr(self.members[j], k) for k in self.sweep}
        return f" (sweep member {j}: {vals})"

    # ---------------------------------------------------------------- results
    def results(self, per_member: list[dict], train_s: float, eval_s: float) -> dict:
        cfg = self.cfg
        members = [_plain(r) for r in per_member]
        described = self.exp.describe(cfg) if self.exp.describe else {}
        clash = _RESERVED & (set(members[0]) | set(described))
        if clash:
            raise ValueError(
                f"{self.exp.name}: evaluate/describe return driver-owned keys {sorted(clash)}; "
                f"declare published figures with Experiment.published and rename the others"
            )
        for j, r in enumerate(members):  # which epoch each selecting phase kept (Phase.select)
            if self.selection:
                r["selection"] = {k: v[j] for k, v in self.selection.items()}
        out: dict[str, Any] = {
            "experiment": self.exp.name,
            **described,
            "config": cfglib.to_dict(cfg),
            "train_seconds": train_s,
            "eval_seconds": eval_s,
            "seconds_per_epoch": {  # medians (the first epoch of a run includes compilation)
                k: float(np.median(v)) for k, v in self.epoch_seconds.items()
            },
            "total_seconds": time.perf_counter() - self.t0,
            "device": str(jax.devices()[0]),
            "n_devices": jax.device_count(),
            "rng": f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}",
            **provenance(self.exp, cfg, self.sweep),
        }
        if self.exp.published is not None:
            from egm.eval.published import lookup

            out["published"] = {k: lookup(v).to_dict() for k, v in self.exp.published(cfg).items()}
        if self.n == 1:
            out.update(members[0])
            return out
        out["sweep"] = {k: list(v) for k, v in self.sweep.items()}
        out["members"] = [
            {"overrides": {k: getattr(m, k) for k in self.sweep}, **r}
            for m, r in zip(self.members, members, strict=True)
        ]
        out["summary"] = _summarise(members)
        return out


_RESERVED = {
    "published",
    "schedule",
    "command",
    "preset",
    "experiment",
    "config",
    "sweep",
    "selection",
}
_NOT_RUN_FIELDS = ("workdir", "progress")  # where and how a run shows itself, not what it is


def _uncommit(x: Any) -> Any:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(
            jnp.asarray(np.asarray(jax.random.key_data(x))), impl=jax.random.key_impl(x)
        )
    return jnp.asarray(np.asarray(x))


class _Best:
    """Each member's best state so far on ``phase.select`` (lower is better), with the epoch
    and value it was reached at and the monitored epochs since; :meth:`pack` puts them in the
    checkpointed tree beside the running state.  Values are compared in float32, the type
    they are checkpointed in, so a resumed run keeps exactly the epochs an uninterrupted one
    keeps."""

    def __init__(self, phase: Phase, cfg: Any, state: Any, n: int):
        self.key, self.n, self.phase = phase.select, n, phase.name
        if phase.monitor is None:
            raise ValueError(f"phase {phase.name!r} selects on {phase.select!r} but declares no "
                             f"monitor to compute it (Phase.monitor)")  # fmt: skip
        self.patience = int(phase.patience(cfg))
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0 (0: no early stopping), got {self.patience}")
        self.state = jax.tree_util.tree_map(lambda x: x.copy(), state)  # the epoch donates state
        self.value = np.full(n, np.inf, np.float32)
        self.epoch = np.full(n, -1, np.int32)
        self.since = np.zeros(n, np.int32)
        self.last = -1  # the newest epoch trained

    def pack(self, state: Any) -> dict:
        return {
            "state": state, "best": self.state, "value": jnp.asarray(self.value),
            "epoch": jnp.asarray(self.epoch), "since": jnp.asarray(self.since),
        }  # fmt: skip

    @property
    def stopped(self) -> bool:
        """Whether every member has gone ``patience`` monitored epochs without improving."""
        return self.patience > 0 and bool(np.all(self.since >= self.patience))

    def unpack(self, tree: dict, epoch: int) -> Any:
        """The running state of the checkpoint of ``epoch``; the best states and counts
        restored into ``self``."""
        self.state = tree["best"]
        self.value, self.epoch, self.since = (
            np.array(tree[k], dt) for k, dt in (("value", np.float32), ("epoch", np.int32),
                                                ("since", np.int32))
        )  # fmt: skip
        self.last = int(epoch)
        return tree["state"]

    def update(self, e: int, metrics: dict, state: Any, monitored: set) -> None:
        self.last = e
        if monitored and self.key not in monitored:
            raise ValueError(f"phase {self.phase!r} selects on {self.key!r}, which its monitor "
                             f"does not report (it reports {sorted(monitored)})")  # fmt: skip
        if metrics.get(self.key) is None:
            return  # the monitor did not evaluate this epoch
        v = np.asarray(metrics[self.key], np.float32).reshape(self.n)
        better = v < self.value
        self.value = np.where(better, v, self.value)
        self.epoch = np.where(better, e, self.epoch).astype(np.int32)
        self.since = np.where(better, 0, self.since + 1).astype(np.int32)
        if better.all():
            self.state = jax.tree_util.tree_map(lambda x: x.copy(), state)
        elif better.any():
            mask = jnp.asarray(better)
            self.state = jax.tree_util.tree_map(
                lambda s, b: _where_members(mask, s, b), state, self.state
            )

    def summary(self) -> list[dict]:
        if np.any(self.epoch < 0):
            raise ValueError(
                f"phase {self.phase!r} selects on {self.key!r}, which its monitor never reported"
            )
        return [
            {
                "criterion": self.key,
                "best_epoch": int(self.epoch[j]),
                "best_value": float(self.value[j]),
                "epochs_trained": self.last + 1,
                "patience": self.patience,
                "stopped_early": self.stopped,
            }  # fmt: skip
            for j in range(self.n)
        ]


def _where_members(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """Members (leading axis) of ``new`` where ``mask``, else of ``old``."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)


def _diff(a: Any, b: Any) -> list[str]:
    skip = set(_NOT_RUN_FIELDS)
    return [
        f.name
        for f in dataclasses.fields(a)
        if f.name not in skip and getattr(a, f.name) != getattr(b, f.name)
    ]


def nearest_preset(experiment: Experiment, cfg: Any) -> tuple[str, list[str]]:
    """``(name, changed fields)`` of the preset ``cfg`` differs from in the fewest fields
    (``default`` on ties): the ``--config`` of the command that repeats the run."""
    best = None
    for name, p in experiment.presets.items():
        if type(p) is not type(cfg):
            continue
        d = _diff(p, cfg)
        rank = (len(d), name != "default")
        if best is None or rank < best[0]:
            best = (rank, name, d)
    if best is None:
        return "default", []
    return best[1], best[2]


def _arg(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def provenance(experiment: Experiment, cfg: Any, sweep: dict | None = None) -> dict:
    """What a ``results.json`` says about where it came from: the preset and the command that
    repeats the run, and how much of the paper's schedule (the ``paper`` preset) it trained."""
    preset, changed = nearest_preset(experiment, cfg)
    args = [f"--config {preset}"] + [f"--{k} {_arg(getattr(cfg, k))}" for k in changed]
    args += [f"--sweep {k}={','.join(_arg(x) for x in v)}" for k, v in (sweep or {}).items()]
    if cfg.workdir != experiment.presets[preset].workdir:
        args.append(f"--workdir {cfg.workdir}")
    out: dict[str, Any] = {
        "preset": preset,
        "command": f"python experiments/{experiment.name}.py " + " ".join(args),
    }
    paper = experiment.presets.get("paper")
    phases = {p.name: int(p.epochs(cfg)) for p in experiment.phases(cfg)}
    if paper is None:
        out["schedule"] = {
            "phases": {k: {"epochs": v, "paper_epochs": None} for k, v in phases.items()},
            "fraction_of_paper": None,
            "paper_preset": None,
            "note": "this experiment declares no 'paper' preset",
        }
        return out
    paper_phases = {p.name: int(p.epochs(paper)) for p in experiment.phases(paper)}
    eval_only = set(cfglib.eval_only_fields(cfg)) - {"epochs", "max_epochs"}
    run_total, paper_total = sum(phases.values()), sum(paper_phases.values())
    out["schedule"] = {
        "phases": {
            k: {"epochs": v, "paper_epochs": paper_phases.get(k)} for k, v in phases.items()
        },
        "fraction_of_paper": (run_total / paper_total) if paper_total else None,
        "paper_preset": "paper",
        "differs_from_paper": [k for k in _diff(paper, cfg) if k not in eval_only],
    }
    return out


def _same_tree(a: Any, b: Any) -> bool:
    """Whether two members' training data are the same (the same objects, or equal arrays)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(
        x is y or (np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y)))
        for x, y in zip(la, lb, strict=True)
    )


def _check_data(train_data: Any, phase: Phase, cfg: Any) -> Any:
    from egm.data.validate import check_finite

    host = jax.tree_util.tree_map(np.asarray, train_data)
    for path, leaf in jax.tree_util.tree_leaves_with_path(host):
        check_finite(leaf, f"training data{jax.tree_util.keystr(path)}")
    sizes = {x.shape[0] if x.ndim else None for x in jax.tree_util.tree_leaves(host)}
    if len(sizes) != 1 or None in sizes:
        from egm.errors import DataError

        raise DataError(
            f"training data leaves must share their leading (example) axis; got {sizes}"
        )
    if phase.data_check is not None:
        phase.data_check(cfg, host)
    return jax.tree_util.tree_map(jnp.asarray, train_data)


def _param_norms(params: Any, n: int) -> list[float]:
    leaves = [
        np.asarray(x, np.float64)
        for x in jax.tree_util.tree_leaves(params)
        if np.issubdtype(np.asarray(x).dtype, np.floating)
    ]
    if n == 1:
        return [math.sqrt(sum(float(np.sum(x**2)) for x in leaves))]
    return [math.sqrt(sum(float(np.sum(x[j] ** 2)) for x in leaves)) for j in range(n)]


def _plain(res: dict) -> dict:
    out = {}
    for k, v in res.items():
        if hasattr(v, "to_dict"):
            out[k] = v.to_dict()
        elif isinstance(v, np.generic | jax.Array):
            out[k] = np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v).tolist()
        else:
            out[k] = v
    return out


def _figure(v: Any) -> float | None:
    """The number a result stands for: a float, or a record's value when it is trustworthy."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, dict) and "value" in v and "method" in v:
        return None if v.get("consistent") is False else float(v["value"])
    return None


def _summarise(members: list[dict]) -> dict:
    """Mean ± sd over the sweep of every numeric result (records: their values; a record
    whose bracket is inverted is left out and counted)."""
    out = {}
    for k in members[0]:
        vals = [_figure(m.get(k)) for m in members]
        kept = [v for v in vals if v is not None]
        if not kept:
            continue
        arr = np.asarray(kept)
        out[k] = {
            "mean": float(arr.mean()),
            "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "n": len(kept),
            "values": [None if v is None else float(v) for v in vals],
        }
        if len(kept) < len(vals):
            out[k]["left_out"] = f"{len(vals) - len(kept)} member(s) whose AIS bracket is inverted"
    return out


def _summary_lines(results: dict) -> list[str]:
    lines = []
    if "summary" in results:
        for k, s in results["summary"].items():
            lines.append(f"{k}: {s['mean']:.4g} ± {s['sd']:.2g} (sd over {s['n']} members)")
        return lines
    for k, v in results.items():
        if isinstance(v, dict) and "method" in v and "value" in v:
            from egm.eval.record import LogLikelihood

            rec = LogLikelihood.from_dict(v)
            lines.append(f"{k}: {rec.describe()}")
            if v.get("consistent") is False:
                lines.append(
                    f"WARNING: {k}: forward and reverse AIS disagree beyond their noise (the "
                    f"bracket was inverted); the interval shown covers both, but AIS has not "
                    f"converged: raise the number of temperatures or the reverse burn-in"
                )
    return lines
