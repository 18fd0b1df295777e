"""Peer implementations that egm's benchmarks time side by side with egm.

Peers are optional: ``thrml`` and ``scikit-learn`` are imported lazily and a missing
one raises ``ImportError`` pointing at ``pip install -e '.[bench]'``.  All inputs are
numpy arrays, cast to float32.  Timing protocol (DESIGN.md §4): one untimed warm-up call
(compiles), then one timed call of the same compiled function, closed by
``jax.block_until_ready``.

Each peer also has a ``make_*`` factory that does the untimed set-up (program build,
data placement) and returns a zero-argument ``go()`` running one blocked workload, so
a benchmark script can interleave repeated timed calls of egm and its peers
(``_bench.interleaved``) without rebuilding or recompiling anything.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_BENCH_HINT = "pip install -e '.[bench]'"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"peer benchmark needs {module!r}: {_BENCH_HINT}") from err


def _gibbs_result(seconds: float, n_chains: int, n_sweeps: int, v: Any) -> dict:
    return {
        "seconds": seconds,
        "chain_sweeps_per_s": n_chains * n_sweeps / seconds,
        "final_visible_mean": float(jnp.mean(jnp.asarray(v, jnp.float32))),
    }


def _time(go: Any) -> tuple[float, Any]:
    go()  # warm-up: compile (+ one run), not timed
    t0 = time.perf_counter()
    out = go()
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------- thrml


def rbm_to_ising(
    W: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact {0,1}-RBM -> ±1 Ising parameters ``(J, field_v, field_h)``.

    With v = (s+1)/2, h = (t+1)/2 (s, t in {-1,+1}):

        -E = v^T W h + b^T v + c^T h
           = sum_ij W_ij (s_i+1)(t_j+1)/4 + sum_i b_i (s_i+1)/2 + sum_j c_j (t_j+1)/2
           = sum_ij (W_ij/4) s_i t_j
             + sum_i s_i (b_i/2 + sum_j W_ij/4)
             + sum_j t_j (c_j/2 + sum_i W_ij/4) + const.

    thrml's IsingEBM has -E = beta (sum_i f_i s_i + sum_ij J_ij s_i t_j); with beta = 1:
    J = W/4, f_v = b/2 + W.sum(1)/4, f_h = c/2 + W.sum(0)/4.  Check: thrml's Gibbs step
    draws s_i = +1 w.p. sigmoid(2 gamma_i), gamma_i = f_i + sum_j J_ij t_j, and
    2 gamma_i = b_i + sum_j W_ij (t_j+1)/2 = b_i + (W h)_i, the RBM conditional.
    """
    W = np.asarray(W, np.float64)
    J = W / 4.0
    field_v = np.asarray(b, np.float64) / 2.0 + W.sum(1) / 4.0
    field_h = np.asarray(c, np.float64) / 2.0 + W.sum(0) / 4.0
    return J.astype(np.float32), field_v.astype(np.float32), field_h.astype(np.float32)


def _thrml_rbm_sampler(W: np.ndarray, b: np.ndarray, c: np.ndarray, n_sweeps: int) -> Any:
    """Build thrml's RBM program; return ``run(keys, v0) -> final visible states (bool)``.

    Two free blocks, hidden then visible, so one thrml iteration is one RBM sweep
    (h ~ p(h|v), then v ~ p(v|h)).  Chains are vmapped over keys and initial states, as
    thrml's own ``estimate_kl_grad`` does.  The schedule keeps only the final state.
    """
    thrml = _require("thrml")
    import equinox as eqx
    from thrml.models import IsingEBM, IsingSamplingProgram

    n_vis, n_hid = W.shape
    J, field_v, field_h = rbm_to_ising(W, b, c)
    vis = [thrml.SpinNode() for _ in range(n_vis)]
    hid = [thrml.SpinNode() for _ in range(n_hid)]
    edges = [(vis[i], hid[j]) for i, j in itertools.product(range(n_vis), range(n_hid))]
    ebm = IsingEBM(
        vis + hid,
        edges,
        jnp.asarray(np.concatenate([field_v, field_h])),
        jnp.asarray(J.reshape(-1)),  # row-major, matches `edges`
        jnp.asarray(1.0, jnp.float32),
    )
    vis_block, hid_block = thrml.Block(vis), thrml.Block(hid)
    program = IsingSamplingProgram(ebm, [hid_block, vis_block], clamped_blocks=[])
    schedule = thrml.SamplingSchedule(n_warmup=n_sweeps, n_samples=1, steps_per_sample=1)

    @eqx.filter_jit
    def run(program: Any, keys: jax.Array, v0: jax.Array) -> jax.Array:
        def one_chain(key: jax.Array, v: jax.Array) -> jax.Array:
            init = [jnp.zeros(n_hid, jnp.bool_), v]  # hidden is resampled first
            (out,) = thrml.sample_states(key, program, schedule, init, [], [vis_block])
            return out[0]

        return jax.vmap(one_chain)(keys, v0)

    return lambda keys, v0: run(program, keys, v0)


def make_thrml_rbm_gibbs(
    W: np.ndarray, b: np.ndarray, c: np.ndarray, n_chains: int, n_sweeps: int, seed: int = 0
) -> Any:
    """Build thrml's RBM sampler (untimed); return ``go() -> final visible states``.

    Each ``go()`` runs ``n_sweeps`` sweeps of ``n_chains`` chains from the same start and
    blocks until done.  Visible states are bool (True == +1 == v=1).
    """
    W = np.asarray(W, np.float32)
    run = _thrml_rbm_sampler(W, b, c, n_sweeps)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    v0 = jax.random.bernoulli(k_init, 0.5, (n_chains, W.shape[0]))
    keys = jax.random.split(k_run, n_chains)
    return lambda: jax.block_until_ready(run(keys, v0))


def thrml_rbm_gibbs(
    W: np.ndarray, b: np.ndarray, c: np.ndarray, n_chains: int, n_sweeps: int, seed: int = 0
) -> dict:
    """Time ``n_sweeps`` two-block Gibbs sweeps of ``n_chains`` parallel chains in thrml.

    The Bernoulli RBM E(v,h) = -v^T W h - b^T v - c^T h is mapped exactly to thrml's
    ±1 IsingEBM (see :func:`rbm_to_ising`).  Program construction (Python, O(V*H)
    edges) is not timed.  Returns ``seconds``, ``chain_sweeps_per_s`` and
    ``final_visible_mean`` (visible states in the {0,1} convention).
    """
    seconds, v = _time(make_thrml_rbm_gibbs(W, b, c, n_chains, n_sweeps, seed))
    return _gibbs_result(seconds, n_chains, n_sweeps, v)


def _exact_visible_marginal(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """p(v) over all 2^V states (row k = bits of k, MSB first) by enumeration."""
    n_vis = W.shape[0]
    states = np.array(list(itertools.product([0, 1], repeat=n_vis)), np.float64)
    log_p = states @ b + np.logaddexp(0.0, states @ W + c).sum(1)  # -F(v)
    p = np.exp(log_p - log_p.max())
    return p / p.sum()


def check_thrml_matches_exact(
    n_vis: int = 4, n_hid: int = 3, n_chains: int = 20_000, n_sweeps: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Compare thrml's visible histogram on a tiny RBM with the exact p(v).

    Weights ~ N(0, 1.5^2), biases ~ N(0, 0.5^2).  The chains are independent, so the
    final states are i.i.d. draws; the bound is 4x the expected TV of a perfect sampler's
    multinomial histogram, E|p_hat - p| ~ sqrt(2 p (1-p) / (pi n)), plus 0.005.
    Returns ``(tv, bound)``; a correct conversion gives ``tv < bound``.
    """
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 1.5, (n_vis, n_hid))
    b = rng.normal(0.0, 0.5, n_vis)
    c = rng.normal(0.0, 0.5, n_hid)
    p = _exact_visible_marginal(W, b, c)
    run = _thrml_rbm_sampler(W.astype(np.float32), b, c, n_sweeps)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    v0 = jax.random.bernoulli(k_init, 0.5, (n_chains, n_vis))
    v = np.asarray(run(jax.random.split(k_run, n_chains), v0), np.int64)
    idx = v @ (1 << np.arange(n_vis - 1, -1, -1))
    p_hat = np.bincount(idx, minlength=2**n_vis) / n_chains
    tv = 0.5 * np.abs(p_hat - p).sum()
    expected = 0.5 * np.sqrt(2.0 * p * (1.0 - p) / (np.pi * n_chains)).sum()
    return float(tv), float(4.0 * expected + 0.005)


# --------------------------------------------------------------------------- dense JAX


def make_dense_rbm_gibbs(
    W: np.ndarray, b: np.ndarray, c: np.ndarray, n_chains: int, n_sweeps: int, seed: int = 0
) -> Any:
    """Plain dense reference: jitted ``lax.scan`` of h ~ p(h|v); v ~ p(v|h) on (n_chains, V).

    Two float32 matmuls and two Bernoulli draws per sweep, keys pre-split outside the
    scan.  Returns ``go() -> final visible states`` (float32, blocked).
    """
    W, b, c = (jnp.asarray(x, jnp.float32) for x in (W, b, c))

    @jax.jit
    def run(W: jax.Array, b: jax.Array, c: jax.Array, keys: jax.Array, v0: jax.Array):
        def sweep(v: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
            kh, kv = jax.random.split(k)
            h = jax.random.bernoulli(kh, jax.nn.sigmoid(v @ W + c)).astype(jnp.float32)
            v = jax.random.bernoulli(kv, jax.nn.sigmoid(h @ W.T + b)).astype(jnp.float32)
            return v, None

        return jax.lax.scan(sweep, v0, keys)[0]

    k_init, k_run = jax.random.split(jax.random.key(seed))
    v0 = jax.random.bernoulli(k_init, 0.5, (n_chains, W.shape[0])).astype(jnp.float32)
    keys = jax.random.split(k_run, n_sweeps)
    return lambda: jax.block_until_ready(run(W, b, c, keys, v0))


def dense_rbm_gibbs_reference(
    W: np.ndarray, b: np.ndarray, c: np.ndarray, n_chains: int, n_sweeps: int, seed: int = 0
) -> dict:
    """Time :func:`make_dense_rbm_gibbs`: same protocol and keys as :func:`thrml_rbm_gibbs`."""
    seconds, v = _time(make_dense_rbm_gibbs(W, b, c, n_chains, n_sweeps, seed))
    return _gibbs_result(seconds, n_chains, n_sweeps, v)


# --------------------------------------------------------------------------- sklearn


def make_sklearn_rbm_epoch(
    X: np.ndarray,
    n_hidden: int = 500,
    batch_size: int = 100,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Return ``(go, info)``: ``go()`` fits a fresh ``BernoulliRBM`` for one epoch on ``X``.

    Threads: sklearn does not limit them here; the matmuls run in numpy/scipy's
    OpenBLAS with its default thread count (``info()["blas_threads"]``, via
    threadpoolctl).  Precision: ``fit`` keeps float32 input as float32 (``components_``
    etc. follow ``X.dtype``; float64 is the default for other input), so ``X`` is cast to
    float32 here to match egm (``info()["dtype"]`` reports what the model used).
    """
    _require("sklearn")
    from sklearn.neural_network import BernoulliRBM
    from threadpoolctl import threadpool_info

    X = np.ascontiguousarray(X, np.float32)
    last: dict[str, Any] = {}

    def rbm() -> Any:
        return BernoulliRBM(
            n_components=n_hidden,
            learning_rate=learning_rate,
            batch_size=batch_size,
            n_iter=1,
            random_state=seed,
        )

    def go() -> Any:
        last["model"] = rbm().fit(X)
        return last["model"]

    def info() -> dict:
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        model = last.get("model")
        return {
            "blas_threads": max(blas, default=None),
            "dtype": None if model is None else str(model.components_.dtype),
        }

    return go, info


def sklearn_rbm_epoch(
    X: np.ndarray,
    n_hidden: int = 500,
    batch_size: int = 100,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> dict:
    """Time one epoch (``n_iter=1``) of scikit-learn's ``BernoulliRBM`` (PCD-1) on ``X``.

    See :func:`make_sklearn_rbm_epoch` for threads and precision.  A 2-minibatch warm-up
    fit runs first, untimed.  Returns ``seconds``, ``examples_per_s``, ``blas_threads``
    and ``dtype``.
    """
    X = np.ascontiguousarray(X, np.float32)
    make_sklearn_rbm_epoch(X[: 2 * batch_size], n_hidden, batch_size, learning_rate, seed)[0]()
    go, info = make_sklearn_rbm_epoch(X, n_hidden, batch_size, learning_rate, seed)
    t0 = time.perf_counter()
    go()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "examples_per_s": X.shape[0] / seconds, **info()}
