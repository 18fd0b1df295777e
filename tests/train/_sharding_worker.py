"""Worker of tests/train/test_sharding.py: ``python _sharding_worker.py CASE [ARG]`` runs one
case on 8 fake CPU devices and prints one JSON object on stdout.

The fake devices need ``--xla_force_host_platform_device_count=8`` in ``XLA_FLAGS`` before
JAX is imported, hence a process of its own.  Imported as a module (the single-device test),
it leaves ``XLA_FLAGS`` alone and only provides the tiny model.

The model is a noisy logistic regression with a generic state (params dict, optax
``inject_hyperparams`` state, a per-member typed PRNG key stream, a step counter), stepped
by ``egm.train.make_epoch``: nothing in it is specific to an egm model family.
"""

from __future__ import annotations

import os
import sys

N_DEVICES = 8
if __name__ == "__main__":
    flag = f"--xla_force_host_platform_device_count={N_DEVICES}"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

import json  # noqa: E402
import re  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from egm.errors import ConfigError  # noqa: E402
from egm.train import shard  # noqa: E402
from egm.train.loop import make_epoch  # noqa: E402
from egm.train.sweep import set_hyperparams, stack, sweep_epoch  # noqa: E402

N_MEMBERS, DIM, N_EXAMPLES, BATCH, EPOCHS = 16, 8, 64, 16, 2
OPT = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


class State(NamedTuple):
    params: dict
    opt_state: Any
    rng: jax.Array  # typed key: a per-member RNG stream riding on the sweep axis
    count: jax.Array


def init_state(seed: int, lr: float = 0.1) -> State:
    k_w, k_rng = jax.random.split(jax.random.key(seed))
    params = {"w": 0.1 * jax.random.normal(k_w, (DIM,)), "b": jnp.zeros(())}
    opt_state = set_hyperparams(OPT.init(params), learning_rate=lr)
    return State(params, opt_state, k_rng, jnp.zeros((), jnp.int32))


def step(state: State, batch: tuple[jax.Array, jax.Array], key: jax.Array):
    x, y = batch
    rng = jax.random.split(state.rng)[0]  # advance the per-member stream
    noise = 0.05 * jax.random.normal(key, x.shape)  # random bits of the (sharded) minibatch

    def loss(p):
        logits = (x + noise) @ p["w"] + p["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    value, grads = jax.value_and_grad(loss)(state.params)
    updates, opt_state = OPT.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = State(params, opt_state, rng, state.count + 1)
    return new, {"loss": value, "grad_norm": optax.tree.norm(grads)}


def make_data() -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(123), (N_EXAMPLES, DIM))
    y = (x @ jnp.arange(1.0, DIM + 1.0) > 0).astype(jnp.float32)
    return x, y


def sweep_states() -> State:
    lrs = np.linspace(0.02, 0.5, N_MEMBERS)
    return stack([init_state(i, float(lr)) for i, lr in enumerate(lrs)])


def sweep_roots() -> jax.Array:
    return jax.random.split(jax.random.key(7), N_MEMBERS)


def to_host(tree: Any) -> list[np.ndarray]:
    """Leaves as host copies (not views, which would block donation), typed keys as their
    raw uint32 data."""
    leaves = jax.tree_util.tree_leaves(tree)
    return [
        np.array(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
            copy=True,
        )
        for x in leaves
    ]


def max_diff(a: Any, b: Any) -> float:
    """The largest absolute difference of two pytrees (or of two lists from :func:`to_host`)."""
    a, b = (t if isinstance(t, list) else to_host(t) for t in (a, b))
    return max(
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0))
        for x, y in zip(a, b, strict=True)
    )


def run_sweep(epoch_fn, states, data, roots, n_epochs=EPOCHS):
    metrics = None
    for e in range(n_epochs):
        keys = jax.vmap(lambda r, e=e: jax.random.fold_in(r, e))(roots)
        states, metrics = epoch_fn(states, data, keys)
    return states, metrics


def run_single(epoch_fn, state, data, root, n_epochs=EPOCHS):
    metrics = None
    for e in range(n_epochs):
        state, metrics = epoch_fn(state, data, jax.random.fold_in(root, e))
    return state, metrics


def collectives(hlo: str) -> dict[str, int]:
    names = ["all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter"]
    return {n: len(re.findall(rf"\b{n}(?:-start)?\(", hlo)) for n in names}


def sharding_info(tree: Any) -> list[dict[str, Any]]:
    out = []
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        s = x.sharding
        out.append(
            {
                "path": jax.tree_util.keystr(path),
                "spec": str(getattr(s, "spec", None)),
                "n_devices": len(s.device_set),
                "shard_rows": sorted(
                    {int(sh.data.shape[0]) if x.ndim else 0 for sh in x.addressable_shards}
                ),
                "is_key": bool(jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)),
            }
        )
    return out


def case_sweep() -> dict[str, Any]:
    data, out, finals = make_data(), {}, []
    for partitionable in (True, False):
        jax.config.update("jax_threefry_partitionable", partitionable)
        epoch = make_epoch(step, BATCH)
        ref, ref_m = run_sweep(jax.jit(sweep_epoch(epoch)), sweep_states(), data, sweep_roots())
        mesh = shard.sweep_mesh(N_MEMBERS)
        fn = shard.sharded_sweep_epoch(epoch, mesh)
        states = shard.shard_sweep(sweep_states(), mesh)
        roots = shard.shard_sweep(sweep_roots(), mesh)
        hlo = fn.lower(states, shard.replicate(data, mesh), roots).compile().as_text()
        got, got_m = run_sweep(fn, states, shard.replicate(data, mesh), roots)
        finals.append(got.params)
        out[str(partitionable)] = {
            "mesh_size": int(mesh.size),
            "max_diff_state": max_diff(ref, got),
            "max_diff_metrics": max_diff(ref_m, got_m),
            "shardings": sharding_info(got),
            "metric_shardings": sharding_info(got_m),
            "collectives": collectives(hlo),
            "lr_distinct": len(
                set(np.asarray(got.opt_state.hyperparams["learning_rate"]).tolist())
            ),
        }
    out["max_diff_between_settings"] = max_diff(*finals)
    return out


def case_data_parallel() -> dict[str, Any]:
    data, out = make_data(), {}
    dots = lambda t: sorted(set(re.findall(r"(f32\[[0-9,]*\])\S* dot\(", t)))
    for partitionable in (True, False):
        jax.config.update("jax_threefry_partitionable", partitionable)
        root = jax.random.key(11)
        ref, ref_m = run_single(jax.jit(make_epoch(step, BATCH)), init_state(3), data, root)
        mesh = shard.data_mesh()
        fn = shard.data_parallel_epoch(step, BATCH, mesh)
        rep_data = shard.replicate(data, mesh)
        state0 = shard.replicate(init_state(3), mesh)
        hlo = fn.lower(state0, rep_data, root).compile().as_text()
        got, got_m = run_single(fn, state0, rep_data, root)
        res = {
            "max_diff_state": max_diff(ref, got),
            "max_diff_metrics": max_diff(ref_m, got_m),
            "shardings": sharding_info(got),
            "collectives": collectives(hlo),
            "dots": dots(hlo),
            "steps": int(got.count),
        }
        if partitionable:  # data split over the devices; and no constraint, for contrast
            split_data = shard.shard_batch(data, mesh)
            state0 = shard.replicate(init_state(3), mesh)
            res["collectives_split_data"] = collectives(
                fn.lower(state0, split_data, root).compile().as_text()
            )
            got2, _ = run_single(fn, state0, split_data, root)
            res["max_diff_split_data"] = max_diff(ref, got2)
            whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            plain = jax.jit(make_epoch(step, BATCH), in_shardings=(whole, None, whole))
            hlo_plain = plain.lower(shard.replicate(init_state(3), mesh), rep_data, root)
            hlo_plain = hlo_plain.compile().as_text()
            res["collectives_unconstrained"] = collectives(hlo_plain)
            res["dots_unconstrained"] = dots(hlo_plain)
        out[str(partitionable)] = res
    return out


def case_checkpoint(directory: str) -> dict[str, Any]:
    from egm.train.checkpoint import Checkpointer

    mesh = shard.sweep_mesh(N_MEMBERS)
    epoch = make_epoch(step, BATCH)
    fn = shard.sharded_sweep_epoch(epoch, mesh)  # donates its input state, as in a loop
    data = shard.replicate(make_data(), mesh)
    roots = shard.shard_sweep(sweep_roots(), mesh)
    saved, _ = run_sweep(fn, shard.shard_sweep(sweep_states(), mesh), data, roots, 1)
    saved_host = to_host(saved)
    saved_shardings = [x.sharding for x in jax.tree_util.tree_leaves(saved)]
    saved_dtypes = [x.dtype for x in jax.tree_util.tree_leaves(saved)]
    ck = Checkpointer(directory)
    ck.save(0, saved, force=True)  # asynchronous write ...
    # ... while the next epoch donates `saved` (JAX skips the donation of a buffer that the
    # save in flight still reads, so the checkpoint holds the values saved)
    later, _ = fn(saved, data, roots)
    jax.block_until_ready(later)
    ck.close()
    like = shard.shard_sweep(sweep_states(), mesh)
    epoch_no, restored = Checkpointer(directory).restore(like)
    # restoring follows the shardings of `like`: here a 4-device sweep mesh
    mesh4 = shard.sweep_mesh(N_MEMBERS, jax.devices()[:4])
    _, restored4 = Checkpointer(directory).restore(shard.shard_sweep(sweep_states(), mesh4))
    leaves = jax.tree_util.tree_leaves(restored)
    return {
        "epoch": int(epoch_no),
        "max_diff": max_diff(saved_host, to_host(restored)),
        "max_diff_4": max_diff(saved_host, to_host(restored4)),
        "same_shardings": [a == b.sharding for a, b in zip(saved_shardings, leaves, strict=True)],
        "key_dtypes_kept": [a == b.dtype for a, b in zip(saved_dtypes, leaves, strict=True)],
        "shardings": sharding_info(restored),
        "shardings_4": sharding_info(restored4),
    }


def case_mesh() -> dict[str, Any]:
    sizes = {n: int(shard.sweep_mesh(n).size) for n in (1, 3, 7, 8, 12, 13, 16, 24)}
    errors = {}
    attempts = {
        "shard_batch_60": lambda: shard.shard_batch(jnp.zeros((60, DIM)), shard.data_mesh()),
        "dp_batch_12": lambda: shard.data_parallel_epoch(step, 12, shard.data_mesh()),
        "shard_sweep_12_on_8": lambda: shard.shard_sweep(jnp.zeros((12, 3)), shard.sweep_mesh(16)),
        "wrong_axis": lambda: shard.shard_batch(jnp.zeros((64, DIM)), shard.sweep_mesh(16)),
        "n_members_0": lambda: shard.sweep_mesh(0),
    }
    for name, fn in attempts.items():
        try:
            fn()
            errors[name] = None
        except ConfigError as e:
            errors[name] = str(e)
    return {
        "n_devices": jax.device_count(),
        "sizes": {str(k): v for k, v in sizes.items()},
        "sweep_axis": list(shard.sweep_mesh(16).axis_names),
        "batch_axis": list(shard.data_mesh().axis_names),
        "errors": errors,
    }


def case_all(directory: str) -> dict[str, Any]:
    """Every case in one process (one start-up and one JAX import for the whole module)."""
    return {
        "sweep": case_sweep(),
        "data_parallel": case_data_parallel(),
        "checkpoint": case_checkpoint(directory),
        "mesh": case_mesh(),
    }


CASES = {
    "sweep": case_sweep,
    "data_parallel": case_data_parallel,
    "checkpoint": case_checkpoint,
    "mesh": case_mesh,
    "all": case_all,
}

if __name__ == "__main__":
    result = CASES[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(result))
