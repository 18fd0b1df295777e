"""Benchmark: DDPM training steps on MNIST, egm vs the same network and loss in PyTorch (CPU).

    python experiments/benchmarks/ddpm_step.py            # 6400 digits (50 steps) per timed call
    python experiments/benchmarks/ddpm_step.py --quick    # tiny smoke run

Like for like: ε_θ(x_t, t) = egm.models.diffusion.EpsMLP (sinusoidal step embedding of 64 ->
Dense 64 -> SiLU -> Dense 64; each hidden layer SiLU(W h + U e + b); zero-initialised output),
784-1024-1024-784 by default, Ho et al.'s L_simple (t ~ U{1..T}, ε ~ N(0, I), mean squared
error) with T = 1000 and the linear schedule, Adam (lr 2e-4), batch 128, digits scaled to
[-1, 1], float32.

* egm: :func:`egm.models.diffusion.make_loss` with :func:`egm.train.loss_objective`,
  :func:`egm.train.adam` and :func:`egm.models.diffusion.with_ema` (EMA 0.9999 updated every
  step, as ddpm_mnist trains), one call = one jitted ``lax.scan`` over the minibatches
  (donated).
* PyTorch: the same layers as ``torch.nn`` modules, the same loss and Adam, an EMA of the
  weights updated every step (``torch._foreach_lerp_``), in a plain loop over shuffled
  minibatches (``torch.randint`` steps, ``torch.randn`` noise).

Throughput in training examples per second; ratio = egm / torch.  Target: >= 1.5x.
``gemm_bound_fraction``: the seconds of egm's matrix products alone (same shapes, a jitted scan
of the same length, no random draws or elementwise work) over egm's seconds.
"""

from __future__ import annotations

import math
import sys

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm import train  # noqa: E402
from egm.models import diffusion as dm  # noqa: E402

FULL = dict(batch_size=128, repeats=3, n_examples=6400, hidden=(1024, 1024), steps=1000)
QUICK = dict(batch_size=32, repeats=1, n_examples=128, hidden=(32,), steps=10)
TARGET = 1.5
LR, EMA = 2e-4, 0.9999


def load_scaled_mnist(data_dir: str | None, n: int, quick: bool) -> tuple[np.ndarray, str]:
    """The first ``n`` training digits as 2k/255 - 1 (8-bit levels k)."""
    from egm import data
    from egm.errors import DatasetNotFoundError

    try:
        if quick:
            raise FileNotFoundError("--quick")
        ds = data.load_mnist("train_full", source="idx", data_dir=data_dir)
        source = ds.source
    except (DatasetNotFoundError, FileNotFoundError) as err:
        ds = data.load_mnist("train", source="embedded")
        source = f"{ds.source}" + ("" if quick else f" (FALLBACK: {type(err).__name__})")
    x = np.asarray(ds.x[:n], np.float32)
    return (2.0 * np.round(255 * x) / 255 - 1).astype(np.float32), source


def make_egm(x, hidden, steps, batch_size, seed):
    net = dm.EpsMLP(tuple(hidden))
    sched = dm.make_schedule(dm.linear_betas(steps))
    k_init, k_epochs = jax.random.split(jax.random.key(seed))
    p = net.init(k_init, jnp.asarray(x[:batch_size]), jnp.zeros(batch_size, jnp.int32))["params"]
    objective = train.loss_objective(dm.make_loss(dm.eps_fn_of(net), sched), has_aux=True)
    opt = train.adam(LR)
    step = dm.with_ema(train.make_step(objective, opt), EMA)
    epoch = jax.jit(train.make_epoch(step, batch_size), donate_argnums=0)
    X = jnp.asarray(x)
    box = {"state": dm.init_ema_state(p, opt), "i": 0}
    compiled = epoch.lower(box["state"], X, k_epochs).compile()

    def go():
        state, metrics = epoch(box["state"], X, train.epoch_key(k_epochs, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, metrics))

    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(p))
    return go, compiled, n_params


def make_torch(x, hidden, steps, batch_size, seed):
    import torch
    import torch.nn as tnn

    torch.manual_seed(seed)
    d, tdim = x.shape[1], 64

    class Eps(tnn.Module):
        def __init__(self):
            super().__init__()
            self.t1, self.t2 = tnn.Linear(tdim, tdim), tnn.Linear(tdim, tdim)
            sizes = (d, *hidden)
            self.h = tnn.ModuleList(
                tnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            )
            self.u = tnn.ModuleList(tnn.Linear(tdim, b, bias=False) for b in hidden)
            self.out = tnn.Linear(hidden[-1], d)
            tnn.init.zeros_(self.out.weight)
            tnn.init.zeros_(self.out.bias)
            half = tdim // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            self.register_buffer("freqs", freqs)

        def forward(self, x, t):
            a = t.float()[:, None] * self.freqs[None]
            e = self.t2(torch.nn.functional.silu(self.t1(torch.cat([a.sin(), a.cos()], -1))))
            h = x
            for lin, u in zip(self.h, self.u, strict=True):
                h = torch.nn.functional.silu(lin(h) + u(e))
            return self.out(h)

    model = Eps()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    ab = torch.from_numpy(np.cumprod(1 - dm.linear_betas(steps)).astype(np.float32))
    sa, s1 = ab.sqrt(), (1 - ab).sqrt()
    X = torch.from_numpy(x)
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed)
    box = {"k": 0}

    def go():
        perm = torch.randperm(n, generator=gen)
        for i in range(n // batch_size):
            x0 = X[perm[i * batch_size : (i + 1) * batch_size]]
            t = torch.randint(0, steps, (batch_size,), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            xt = sa[t, None] * x0 + s1[t, None] * eps
            loss = torch.mean((model(xt, t) - eps) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k = box["k"]
            dec = min(EMA, (1 + k) / (10 + k))
            with torch.no_grad():
                torch._foreach_lerp_(ema, list(model.parameters()), 1 - dec)
            box["k"] = k + 1
        return loss.item()

    return go


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--n_examples", type=int, default=None)
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    p.add_argument("--torch_threads", type=int, default=None, help="torch intra-op threads")
    a = p.parse_args(argv)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    B, H, T = cfg["batch_size"], cfg["hidden"], cfg["steps"]
    x, source = load_scaled_mnist(a.data_dir, cfg["n_examples"], a.quick)
    N = (x.shape[0] // B) * B
    skipped = _bench.peer_available("torch")
    with _bench.rng_mode():
        egm_go, compiled, n_params = make_egm(x, H, T, B, a.seed)
        contenders = {"egm": egm_go}
        bound = _bench.make_gemm_bound(_bench.hlo_products(compiled), N // B)
        contenders["gemm_bound"] = bound.go
        if not skipped:
            import torch

            if a.torch_threads is not None:
                torch.set_num_threads(a.torch_threads)
            contenders["peer"] = make_torch(x, H, T, B, a.seed)
        times = _bench.interleaved(contenders, cfg["repeats"])
        rng = f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"
    med = {k: _bench.median(t) for k, t in times.items()}
    extra = {
        "n_examples": N, "batch_size": B, "steps_per_call": N // B, "diffusion_steps": T,
        "architecture": f"EpsMLP 784-{'-'.join(map(str, H))}-784 SiLU, time embedding 64, "
        f"{n_params} params; L_simple, Adam {LR:g}, EMA {EMA}",
        "data": f"{source}, 2k/255 - 1", "egm_runs_s": _bench.runs(times["egm"]),
        "peer_runs_s": _bench.runs(times["peer"]) if "peer" in times else None,
        "egm_matmuls_in_hlo": _bench.count_matmuls(compiled), "quick": a.quick, **env, "rng": rng,
    }  # fmt: skip
    if "peer" in times:
        import torch

        extra["torch"], extra["torch_threads"] = torch.__version__, torch.get_num_threads()
    if skipped:
        extra["skipped"] = skipped
    extra.update(bound.record(med["gemm_bound"], med["egm"]))
    rec = _bench.rate_line(
        f"ddpm_train_step_mnist_mlp{'-'.join(map(str, H))}_b{B}", egm=N / med["egm"],
        peer="PyTorch (same EpsMLP, L_simple, Adam, EMA)" if "peer" in med else "none",
        peer_value=N / med["peer"] if "peer" in med else None, unit="examples/s",
        stat=f"{N // B} steps per call, median of {cfg['repeats']} interleaved timed calls "
        "(after 1 untimed warm-up)", target=f">= {TARGET:g}x PyTorch", min_ratio=TARGET, **extra,
    )  # fmt: skip
    return [_bench.emit(rec)]


if __name__ == "__main__":
    main(sys.argv[1:])
