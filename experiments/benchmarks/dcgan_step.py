"""DCGAN training steps on MNIST 28x28: egm vs the PyTorch examples' DCGAN, same run.

    python experiments/benchmarks/dcgan_step.py            # f=64, batch 128, 8 steps per call
    python experiments/benchmarks/dcgan_step.py --quick    # tiny smoke run
    python experiments/benchmarks/dcgan_step.py --members 8 --features 8   # sweep: vmap vs lax.map

Like for like: the architecture of egm.models.dcgan (the PyTorch examples' ``dcgan/main.py``
with its 64x64 stack cut to two up-samplings for 28x28): G z(100) -> 7x7x2f -> convT 4/2/1
14x14xf -> convT 4/2/1 28x28x1, batch norm + ReLU, sigmoid output; D conv 4/2/1 14x14xf
LeakyReLU(0.2) -> conv 4/2/1 7x7x2f, batch norm, LeakyReLU -> 7x7 valid conv (a dense layer)
to one logit; bias-free convolutions before batch norm, as the example; N(0, 0.02²) weights;
Adam(2e-4, 0.5, 0.999) for both; the non-saturating generator loss; float32.

* egm: :func:`egm.models.dcgan.dcgan_players` + :func:`egm.train.make_multi_step`, one call =
  one jitted ``lax.scan`` over the steps of an epoch of ``steps x batch`` digits (donated state).
* peer: the example's training loop body (``netD(real)``, ``netD(fake.detach())``, D step,
  ``netD(fake)``, G step) in plain PyTorch.  It reuses its generated batch for the generator's
  update; egm draws a fresh one (one more generator forward pass per step: extra work for egm).

Rate in training steps per second (higher is better); ratio = egm / torch.  Target >= 1.5x.

``--members N``: instead, egm alone in member-steps per second for one member and for an
N-member seed sweep run as the driver does (``jax.vmap`` of the epoch over the stacked
states) and by ``lax.map`` over the members; ratio = sweep / one member (1 = no loss).
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm import data, train  # noqa: E402
from egm.models import dcgan  # noqa: E402

FULL = dict(features=64, latent=100, batch_size=128, steps=8, repeats=3)
QUICK = dict(features=4, latent=8, batch_size=16, steps=2, repeats=1)
TARGET = 1.5


def make_egm(x, features, latent, batch_size, seed, impl):
    g = dcgan.ConvGenerator(latent, features, 28, conv_impl=impl)
    d = dcgan.ConvDiscriminator(features, 28, conv_impl=impl)
    opt = train.adam(2e-4, 0.5, 0.999)
    players = dcgan.dcgan_players(g, d, opt, opt)
    k_init, k_epochs = jax.random.split(jax.random.key(seed))
    params, stats = dcgan.init_dcgan(k_init, g, d)
    epoch = jax.jit(train.make_epoch(train.make_multi_step(players), batch_size), donate_argnums=0)
    X = jnp.asarray(x)
    box = {"state": train.init_multi_state(params, players, aux=stats), "i": 0}
    compiled = epoch.lower(box["state"], X, k_epochs).compile()

    def go():
        state, metrics = epoch(box["state"], X, train.epoch_key(k_epochs, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, metrics))

    return go, compiled


def make_sweep(x, features, latent, batch_size, seed, impl, members, how):
    """A zero-argument epoch of ``members`` DCGANs (seeds seed..seed+members-1)."""
    from egm.train import sweep as sweeplib

    g = dcgan.ConvGenerator(latent, features, 28, conv_impl=impl)
    d = dcgan.ConvDiscriminator(features, 28, conv_impl=impl)
    opt = train.adam(2e-4, 0.5, 0.999)
    players = dcgan.dcgan_players(g, d, opt, opt)
    epoch = train.make_epoch(train.make_multi_step(players), batch_size)

    def state(i):
        params, stats = dcgan.init_dcgan(jax.random.key(seed + i), g, d)
        return train.init_multi_state(params, players, aux=stats)

    states = sweeplib.stack([state(i) for i in range(members)])
    keys = jax.random.split(jax.random.key(seed + 100), members)
    if how == "vmap":
        fn = jax.jit(sweeplib.sweep_epoch(epoch))
    else:
        fn = jax.jit(lambda s, x, k: jax.lax.map(lambda a: epoch(a[0], x, a[1]), (s, k)))
    X = jnp.asarray(x)
    return lambda: jax.block_until_ready(fn(states, X, keys))


def sweep_main(a, cfg, x, env) -> list[dict]:
    f, z, B, S, N = cfg["features"], cfg["latent"], cfg["batch_size"], cfg["steps"], a.members
    with _bench.rng_mode():
        contenders = {
            "one": make_sweep(x, f, z, B, a.seed, a.conv_impl, 1, "map"),
            "vmap": make_sweep(x, f, z, B, a.seed, a.conv_impl, N, "vmap"),
            "map": make_sweep(x, f, z, B, a.seed, a.conv_impl, N, "map"),
        }
        times = _bench.interleaved(contenders, cfg["repeats"], settle_s=0.2 if a.quick else 1.0)
    rate = {k: (1 if k == "one" else N) * S / _bench.median(t) for k, t in times.items()}
    extra = {"steps_per_call": S, "batch_size": B, "features": f, "latent_dim": z,
             "members": N, "egm_conv_impl": a.conv_impl, "quick": a.quick,
             "runs_s": {k: _bench.runs(t) for k, t in times.items()}, **env}  # fmt: skip
    stat = f"median of {cfg['repeats']} interleaved calls of {S} steps (each member)"
    return [
        _bench.emit(_bench.rate_line(
            f"dcgan_sweep{N}_{how}_f{f}_b{B}", egm=rate[how], peer="egm, one member alone",
            peer_value=rate["one"], unit="member-steps/s", stat=stat,
            target="context (1 = a sweep member trains as fast as one model alone)",
            min_ratio=0.0, sweep=how, **extra,
        ))
        for how in ("vmap", "map")
    ]  # fmt: skip


def make_torch(x, features, latent, batch_size, seed):
    import torch
    import torch.nn as tnn

    torch.manual_seed(seed)
    f = features
    netG = tnn.Sequential(
        tnn.ConvTranspose2d(latent, 2 * f, 7, 1, 0, bias=False), tnn.BatchNorm2d(2 * f), tnn.ReLU(True),
        tnn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False), tnn.BatchNorm2d(f), tnn.ReLU(True),
        tnn.ConvTranspose2d(f, 1, 4, 2, 1, bias=True), tnn.Sigmoid(),
    )  # fmt: skip
    netD = tnn.Sequential(
        tnn.Conv2d(1, f, 4, 2, 1), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(f, 2 * f, 4, 2, 1, bias=False), tnn.BatchNorm2d(2 * f),
        tnn.LeakyReLU(0.2, inplace=True), tnn.Conv2d(2 * f, 1, 7, 1, 0),
    )  # fmt: skip
    for m in [*netG.modules(), *netD.modules()]:  # the example's weights_init
        if isinstance(m, tnn.Conv2d | tnn.ConvTranspose2d):
            tnn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, tnn.BatchNorm2d):
            tnn.init.normal_(m.weight, 1.0, 0.02)
            tnn.init.zeros_(m.bias)
    crit = tnn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    X = torch.as_tensor(np.asarray(x, np.float32)).reshape(-1, 1, 28, 28)
    n, gen = X.shape[0], torch.Generator().manual_seed(seed)
    ones, zeros = torch.ones(batch_size), torch.zeros(batch_size)

    def go():
        perm = torch.randperm(n, generator=gen)
        for i in range(n // batch_size):
            real = X[perm[i * batch_size : (i + 1) * batch_size]] * 2 - 1
            netD.zero_grad(set_to_none=True)
            errD_real = crit(netD(real).view(-1), ones)
            errD_real.backward()
            fake = netG(torch.randn(batch_size, latent, 1, 1)) * 2 - 1
            errD_fake = crit(netD(fake.detach()).view(-1), zeros)
            errD_fake.backward()
            optD.step()
            netG.zero_grad(set_to_none=True)
            errG = crit(netD(fake).view(-1), ones)
            errG.backward()
            optG.step()
        return errG.item()

    return go


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="training steps per timed call")
    p.add_argument("--conv_impl", default="matmul", choices=("matmul", "xla"))
    p.add_argument("--torch_threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--members", type=int, default=None, help="N-member sweep vs one member")
    p.add_argument("--features", type=int, default=None, help="f (default 64; quick 4)")
    a = p.parse_args(argv)
    if a.torch_threads is not None:
        import torch

        torch.set_num_threads(a.torch_threads)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in ("repeats", "steps", "features")
                if getattr(a, k) is not None})  # fmt: skip
    f, z, B, S = cfg["features"], cfg["latent"], cfg["batch_size"], cfg["steps"]
    ds = data.load_mnist("train", source="embedded")
    x = np.asarray(ds.x[: B * S], np.float32)
    if a.members:
        return sweep_main(a, cfg, x, env)
    with _bench.rng_mode():
        egm_go, compiled = make_egm(x, f, z, B, a.seed, a.conv_impl)
        contenders = {"egm": egm_go}
        skipped = _bench.peer_available("torch")
        if not skipped:
            contenders["peer"] = make_torch(x, f, z, B, a.seed)
        times = _bench.interleaved(contenders, cfg["repeats"], settle_s=0.2 if a.quick else 1.0)
        env["rng"] = f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"
    med = {k: _bench.median(t) for k, t in times.items()}
    extra = {
        "steps_per_call": S, "batch_size": B, "features": f, "latent_dim": z,
        "architecture": "DCGAN 28x28 (PyTorch examples' dcgan scaled): G dense-convT-convT, "
                        "D conv-conv-dense, batch norm, Adam 2e-4/0.5",
        "egm_conv_impl": a.conv_impl, "data": f"{ds.source}, first {B * S} digits",
        "egm_runs_s": _bench.runs(times["egm"]),
        "peer_runs_s": _bench.runs(times["peer"]) if "peer" in times else None,
        "egm_matmuls_in_hlo": _bench.count_matmuls(compiled), "quick": a.quick, **env,
    }  # fmt: skip
    if "peer" in times:
        import torch

        extra["torch"], extra["torch_threads"] = torch.__version__, torch.get_num_threads()
    if skipped:
        extra["skipped"] = skipped
    rec = _bench.rate_line(
        f"dcgan_step_mnist28_f{f}_b{B}", egm=S / med["egm"],
        peer="PyTorch examples' DCGAN (scaled to 28x28)",
        peer_value=S / med["peer"] if "peer" in med else None, unit="steps/s",
        stat=f"median of {cfg['repeats']} interleaved calls of {S} steps",
        target=f"egm >= {TARGET}x torch", min_ratio=TARGET, **extra,
    )  # fmt: skip
    return [_bench.emit(rec)]


if __name__ == "__main__":
    main()
