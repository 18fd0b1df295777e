"""Wall time of forward AIS for log Z of a binary RBM: egm vs a straightforward implementation.

    python experiments/benchmarks/ais_rbm.py            # 784x500, 100 chains, 14,500 temps
    python experiments/benchmarks/ais_rbm.py --quick    # tiny smoke run

egm's ``ais.rbm_ais`` computes the hidden pre-activation ``c + vW`` once per temperature
and uses it for both importance-weight terms and the hidden draw (two matrix products
per temperature).  The reference below, written the obvious way, evaluates each
``log f_β(v)`` as the negative free energy of the tempered RBM ``(βW, (1-β)b_A + βb, βc)``
and runs the Gibbs sweep on that tempered RBM, so ``v·(β_from W)``, ``v·(β_to W)`` and
``h·(β_to W)ᵀ`` are separate products (XLA merges the identical ``v·(β_to W)`` of the
second weight term and the hidden draw; the JSON line reports the products each compiled
program really contains).  Both run the same schedule (Salakhutdinov & Murray 2008) on the
same synthetic RBM and are compiled ahead of time, so no timed call compiles.  Seconds,
lower is better; ratio = reference / egm.  Target: egm under 20 s.
``gemm_bound_fraction``: seconds of egm's matrix products alone (those of its compiled
program, in a jitted scan of one iteration per temperature transition, no random draws;
timed interleaved with the rest) over egm's seconds.
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm.energies import rbm  # noqa: E402
from egm.estimators import ais  # noqa: E402

FULL = dict(n_visible=784, n_hidden=500, n_chains=100, n_temps=14500, repeats=3)
QUICK = dict(n_visible=24, n_hidden=16, n_chains=16, n_temps=60, repeats=2)
TARGET_S = 20.0


def synthetic_rbm(n_visible: int, n_hidden: int, weight_scale: float, seed: int):
    """RBM with W ~ N(0, weight_scale²), visible biases ~ N(-1, 0.5²) (MNIST-like: most
    pixels off), hidden biases ~ N(-0.5, 0.1²); base-rate biases b_A = b."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, weight_scale, (n_visible, n_hidden))
    b = rng.normal(-1.0, 0.5, n_visible)
    c = rng.normal(-0.5, 0.1, n_hidden)
    params = rbm.RBMParams(*(jnp.asarray(x, jnp.float32) for x in (W, b, c)))
    return params, params.b


def reference_ais(key, params: rbm.RBMParams, base_b, betas, n_chains: int):
    """Straightforward forward AIS (batched over chains, one key per temperature).

    Returns ``(log_z, log_z_se, log_w)`` with the same estimator as egm.
    """
    W, b, c = params

    def tempered(beta):
        return beta * W, (1.0 - beta) * base_b + beta * b, beta * c

    def log_f(beta, v):  # -F of the tempered RBM
        Wt, bt, ct = tempered(beta)
        return v @ bt + jnp.sum(jax.nn.softplus(v @ Wt + ct), axis=-1)

    def body(carry, inp):
        v, log_w = carry
        k, beta_from, beta_to = inp
        log_w = log_w + log_f(beta_to, v) - log_f(beta_from, v)
        Wt, bt, ct = tempered(beta_to)
        k_h, k_v = jax.random.split(k)
        h = jax.random.bernoulli(k_h, jax.nn.sigmoid(v @ Wt + ct)).astype(jnp.float32)
        v = jax.random.bernoulli(k_v, jax.nn.sigmoid(h @ Wt.T + bt)).astype(jnp.float32)
        return (v, log_w), None

    k0, k1 = jax.random.split(key)
    V, H = W.shape
    v0 = jax.random.bernoulli(k0, jax.nn.sigmoid(base_b), (n_chains, V)).astype(jnp.float32)
    keys = jax.random.split(k1, betas.shape[0] - 1)
    (_, log_w), _ = jax.lax.scan(
        body, (v0, jnp.zeros(n_chains, jnp.float32)), (keys, betas[:-1], betas[1:])
    )
    log_za = jnp.sum(jax.nn.softplus(base_b)) + H * jnp.log(2.0)
    log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(n_chains)
    se = jnp.std(jnp.exp(log_w - log_mean_w), ddof=1) / jnp.sqrt(n_chains)
    return log_za + log_mean_w, se, log_w


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    for k in ("n_visible", "n_hidden", "n_chains", "n_temps"):
        p.add_argument(f"--{k}", type=int, default=None)
    p.add_argument("--weight_scale", type=float, default=0.05)
    p.add_argument("--no_peer", action="store_true", help="time egm only (no reference)")
    a = p.parse_args(argv)
    env = _bench.environment()  # before any work: load_avg_1m is the background load
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    V, H, C, K = cfg["n_visible"], cfg["n_hidden"], cfg["n_chains"], cfg["n_temps"]

    params, base_b = synthetic_rbm(V, H, a.weight_scale, a.seed)
    betas_np = ais.betas_salakhutdinov_murray(K)
    betas = jnp.asarray(betas_np)
    key = jax.random.key(a.seed + 1)

    # egm's public call under an outer jit, so it can be compiled ahead of time (the
    # inner jit of rbm_ais is inlined; the program is the same).
    egm_fn = jax.jit(lambda k, p, bb: ais.rbm_ais(k, p, bb, n_chains=C, betas=betas_np))
    ref_fn = jax.jit(reference_ais, static_argnums=(4,))
    compiled = {"egm": egm_fn.lower(key, params, base_b).compile()}
    out: dict = {}
    contenders = {
        "egm": lambda: out.__setitem__("egm", jax.block_until_ready(egm_fn(key, params, base_b)))
    }
    bound = _bench.make_gemm_bound(_bench.hlo_products(compiled["egm"]), K - 1, a.seed)
    contenders["gemm_bound"] = bound.go
    if not a.no_peer:
        compiled["reference"] = ref_fn.lower(key, params, base_b, betas, C).compile()
        contenders["reference"] = lambda: out.__setitem__(
            "reference", jax.block_until_ready(ref_fn(key, params, base_b, betas, C))
        )

    times = _bench.interleaved(contenders, cfg["repeats"], warmups=dict.fromkeys(contenders))
    med = {k: _bench.median(t) for k, t in times.items()}
    egm_res = out["egm"]
    rec: dict = {
        "egm_log_z": round(float(egm_res.log_z), 3),
        "egm_log_z_se": _bench.sig(float(egm_res.log_z_se), 3),
        "egm_ess": round(float(egm_res.ess), 1),
        "egm_runs_s": _bench.runs(times["egm"]),
        "egm_matmuls_in_hlo": _bench.count_matmuls(compiled["egm"]),
        **bound.record(med["gemm_bound"], med["egm"]),
    }
    if not a.no_peer:
        lz, se, _ = out["reference"]
        rec.update(
            peer_log_z=round(float(lz), 3),
            peer_log_z_se=_bench.sig(float(se), 3),
            peer_runs_s=_bench.runs(times["reference"]),
            peer_matmuls_in_hlo=_bench.count_matmuls(compiled["reference"]),
        )
    line = _bench.seconds_line(
        f"ais_rbm_{V}x{H}_{C}chains_{K}temps",
        egm=med["egm"],
        peer="straightforward_reference (in ais_rbm.py)",
        peer_value=med.get("reference"),
        stat=f"median of {cfg['repeats']} interleaved timed calls (compiled ahead of time)",
        target=f"< {TARGET_S:g} s",
        target_met=bool(med["egm"] < TARGET_S),
        n_chains=C,
        n_temps=K,
        schedule="Salakhutdinov & Murray 2008 (500:4000:10000)",
        weights=f"W~N(0,{a.weight_scale}^2), b~N(-1,0.5^2), c~N(-0.5,0.1^2), b_A=b, synthetic",
        quick=a.quick,
        **({"skipped": "--no_peer"} if a.no_peer else {}),
        **rec,
        **env,
    )
    return [_bench.emit(line)]


if __name__ == "__main__":
    with _bench.rng_mode():
        main()
