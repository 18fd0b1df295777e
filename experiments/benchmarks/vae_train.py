"""VAE training throughput on MNIST: egm vs pythae (PyTorch), same architecture, same run.

    python experiments/benchmarks/vae_train.py            # 60k digits, one epoch per timed call
    python experiments/benchmarks/vae_train.py --quick    # tiny smoke run

Like for like: the VAE of Burda et al. (2016) with one stochastic layer, encoder
784-200-200-(50+50) and decoder 50-200-200-784, tanh, Bernoulli output, one reparameterised
draw per digit and the closed-form KL, Adam (lr 1e-3), minibatches of ``--batch_size``
with dynamic binarization (a fresh Bernoulli draw of each minibatch), in float32.

* egm: ``vae.make_loss(model, "elbo", 1, dynamic_binarization=True)`` with
  :func:`egm.train.loss_objective` and :func:`egm.train.adam`, one epoch = one jitted
  ``lax.scan`` (donated state).  Its draws are ``jax.random``'s own Threefry stream, hashed
  by ``egm.random_bits.fast_*`` without XLA:CPU's rolled hash loop (the same numbers).
* pythae (``pythae.models.VAE`` with ``reconstruction_loss="bce"`` and encoder/decoder of
  the same layers): pythae's own forward and loss (``model({"data": x}).loss``) in a plain
  PyTorch loop -- shuffled index permutation, ``torch.bernoulli`` binarization,
  ``torch.optim.Adam`` -- i.e. pythae's training computation without its Trainer's
  logging, callbacks and checkpointing (which would only slow the peer down).

Throughput in training examples per second (higher is better); ratio = egm / pythae.
Target (issue 11): egm >= 2x pythae.  If pythae is missing, a straightforward PyTorch VAE of the
same architecture and loss (``--peer torch``) is the peer instead.
"""

from __future__ import annotations

import sys

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from egm import train  # noqa: E402
from egm.models import vae  # noqa: E402
from egm.train import init_state, loss_objective, make_step  # noqa: E402

FULL = dict(batch_size=100, repeats=3, n_examples=None, hidden=(200, 200), latent=50)
QUICK = dict(batch_size=50, repeats=1, n_examples=200, hidden=(16,), latent=4)
TARGET = 2.0


def load_grey_mnist(data_dir: str | None, quick_n: int | None) -> tuple[np.ndarray, str]:
    """Grey MNIST (dynamic binarization happens in each training step)."""
    from egm import data
    from egm.errors import DatasetNotFoundError

    if quick_n is not None:
        ds = data.load_mnist("train", source="embedded")
        return ds.x[:quick_n], f"{ds.source} (first {quick_n}, --quick)"
    try:
        ds = data.load_mnist("train_full", source="idx", data_dir=data_dir)
        return ds.x, ds.source
    except (DatasetNotFoundError, FileNotFoundError) as err:
        ds = data.load_mnist("train", source="embedded")
        return ds.x, f"{ds.source} (FALLBACK: idx folder {data_dir!r}: {type(err).__name__})"


def make_egm_epoch(x, hidden, latent, batch_size, lr, seed):
    model = vae.VAE(x_dim=x.shape[1], latent_dim=latent, hidden=hidden, activation="tanh")
    k_init, k_epochs = jax.random.split(jax.random.key(seed))
    params = vae.init_params(k_init, model)
    opt = train.adam(lr)  # egm's Adam (injected hyper-parameters, sweepable)
    step = make_step(
        loss_objective(vae.make_loss(model, "elbo", 1, dynamic_binarization=True), has_aux=True),
        opt,
    )
    epoch = jax.jit(train.make_epoch(step, batch_size), donate_argnums=0)
    X = jnp.asarray(x)
    box = {"state": init_state(params, opt), "i": 0}
    compiled = epoch.lower(box["state"], X, k_epochs).compile()

    def go():
        state, metrics = epoch(box["state"], X, train.epoch_key(k_epochs, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, metrics))

    return go, compiled


def _torch_nets(hidden, latent, d):
    import torch.nn as tnn

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [tnn.Linear(a, b), tnn.Tanh()]
        return tnn.Sequential(*layers)

    enc_body = mlp((d, *hidden))
    dec_body = mlp((latent, *hidden[::-1]))
    return enc_body, dec_body


def make_pythae_epoch(x, hidden, latent, batch_size, lr, seed):
    """pythae's VAE (its forward and loss) trained for one epoch by a plain torch loop."""
    import torch
    import torch.nn as tnn
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    torch.manual_seed(seed)
    d = x.shape[1]
    enc_body, dec_body = _torch_nets(hidden, latent, d)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body, self.mu, self.logvar = enc_body, tnn.Linear(hidden[-1], latent), tnn.Linear(hidden[-1], latent)  # fmt: skip

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.body, self.out = dec_body, tnn.Linear(hidden[0], d)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.out(self.body(z))))

    cfg = VAEConfig(input_dim=(d,), latent_dim=latent, reconstruction_loss="bce")
    model = VAE(cfg, encoder=Encoder(), decoder=Decoder())
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X = torch.as_tensor(np.asarray(x, np.float32))
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed)

    def go():
        perm = torch.randperm(n, generator=gen)
        for i in range(n // batch_size):
            xb = torch.bernoulli(X[perm[i * batch_size : (i + 1) * batch_size]])
            loss = model({"data": xb}).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss.item()

    return go


def make_torch_epoch(x, hidden, latent, batch_size, lr, seed):
    """A straightforward PyTorch VAE of the same architecture and loss (fallback peer)."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    d = x.shape[1]
    enc_body, dec_body = _torch_nets(hidden, latent, d)
    heads = tnn.ModuleDict(
        {
            "mu": tnn.Linear(hidden[-1], latent),
            "logvar": tnn.Linear(hidden[-1], latent),
            "out": tnn.Linear(hidden[0], d),
        }
    )
    params = [*enc_body.parameters(), *dec_body.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    X = torch.as_tensor(np.asarray(x, np.float32))
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed)

    def go():
        perm = torch.randperm(n, generator=gen)
        for i in range(n // batch_size):
            xb = torch.bernoulli(X[perm[i * batch_size : (i + 1) * batch_size]])
            h = enc_body(xb)
            mu, logvar = heads["mu"](h), heads["logvar"](h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = heads["out"](dec_body(z))
            rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
            kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), -1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss.item()

    return go


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--n_examples", type=int, default=None, help="use the first N examples")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    p.add_argument("--peer", default="pythae", choices=("pythae", "torch"))
    p.add_argument(
        "--torch_threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own, = cores); 1 avoids the collapse of "
        "torch's thread pool on an oversubscribed machine",
    )
    a = p.parse_args(argv)
    if a.torch_threads is not None:
        import torch

        torch.set_num_threads(a.torch_threads)
    env = _bench.environment()
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    B, H, Lz = cfg["batch_size"], cfg["hidden"], cfg["latent"]
    x, source = load_grey_mnist(a.data_dir, cfg["n_examples"] if a.quick else None)
    if cfg["n_examples"] is not None:
        x = x[: cfg["n_examples"]]
    x = np.asarray(x, np.float32)
    N = (x.shape[0] // B) * B

    with _bench.rng_mode():
        egm_go, compiled = make_egm_epoch(x, H, Lz, B, a.learning_rate, a.seed)
        contenders = {"egm": egm_go}
        peer_name, skipped = None, None
        if a.peer == "pythae":
            skipped = _bench.peer_available("pythae")
            if not skipped:
                import pythae

                contenders["peer"] = make_pythae_epoch(x, H, Lz, B, a.learning_rate, a.seed)
                peer_name = f"pythae {_version('pythae', pythae)} VAE (torch loop)"
        if a.peer == "torch" or skipped:
            tskip = _bench.peer_available("torch")
            if not tskip:
                contenders["peer"] = make_torch_epoch(x, H, Lz, B, a.learning_rate, a.seed)
                peer_name = "plain PyTorch VAE (same layers and loss)"
                skipped = None if a.peer == "torch" else f"{skipped}; fell back to plain PyTorch"
            else:
                skipped = tskip
        times = _bench.interleaved(contenders, cfg["repeats"])
        rng = f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}"
    med = {k: _bench.median(t) for k, t in times.items()}
    egm_rate = N / med["egm"]
    peer_rate = N / med["peer"] if "peer" in med else None
    extra = {
        "n_examples": N,
        "batch_size": B,
        "architecture": f"784-{'-'.join(map(str, H))}-{Lz} tanh, Bernoulli output, 1 draw, analytic KL",
        "data": f"{source}, dynamic binarization per minibatch",
        "egm_runs_s": _bench.runs(times["egm"]),
        "peer_runs_s": _bench.runs(times["peer"]) if "peer" in times else None,
        "egm_matmuls_in_hlo": _bench.count_matmuls(compiled),
        "quick": a.quick,
        **env,
        "rng": rng,
    }
    if "peer" in times:
        import torch

        extra["torch"] = torch.__version__
        extra["torch_threads"] = torch.get_num_threads()
    if skipped:
        extra["skipped"] = skipped
    rec = _bench.rate_line(
        f"vae_train_epoch_mnist_784-{'-'.join(map(str, H))}-{Lz}_b{B}",
        egm=egm_rate,
        peer=peer_name or "none",
        peer_value=peer_rate,
        unit="examples/s",
        stat=f"one epoch per call, median of {cfg['repeats']} interleaved timed calls "
        f"(after 1 untimed warm-up)",
        target=f">= {TARGET:g}x pythae",
        min_ratio=TARGET,
        **extra,
    )
    return [_bench.emit(rec)]


def _version(dist: str, module) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return getattr(module, "__version__", "unknown")


if __name__ == "__main__":
    main(sys.argv[1:])
