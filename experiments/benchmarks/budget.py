"""Budget-matched comparisons with peers: the same model, the same data, the same wall time,
scored by the same egm estimator (DESIGN.md §4; Deep Learning §20.14 on comparing models).

    python experiments/benchmarks/budget.py                    # 60 s each, embedded MNIST subset
    python experiments/benchmarks/budget.py --budget 120 --source idx --pairs vae,rbm
    python experiments/benchmarks/budget.py --quick            # seconds, for the smoke tests

Throughput ratios say how fast a framework runs; a budget-matched comparison says which one
a researcher with a fixed amount of time should run.  For each pair egm and the peer train
the SAME model from the SAME initial parameters on the same fixed-binarized digits
(``egm.data.load_binarized_mnist("fixed", 0)``: the embedded subset by default, ``--source
idx`` for the IDX files), each for ``--budget`` seconds of its own wall clock.  Training runs
in whole epochs, interleaved (DESIGN.md §4): the budget is cut into ``--slices`` slices and
in slice ``s`` each contender in turn runs epochs while its clock plus its expected epoch time
(the median of its epochs after the first, which carries compilation) stays within ``s /
slices`` of the budget (always at least one epoch overall), so a burst of background load hits
both, and neither plans past the budget (one slow outlier epoch does not stop it early).  Each clock counts only its own epochs, compilation included (a researcher
waits for it too); the ``--settle_s`` pauses between turns (thread pools winding down) are
not counted.  Then both trained models are converted to egm's parameters and scored by one
egm estimator on the same test digits, with the same key (common random numbers):

* ``vae``: the VAE of ``vae_train.py`` (784-200-200-50, tanh, Bernoulli output, analytic-KL
  ELBO with one draw, Adam 1e-3, batch 100) vs pythae's ``VAE`` (its own forward and loss in a
  plain torch loop); importance-sampled ``log p(x)`` with ``k = 5000`` proposals from q(z|x)
  (:func:`egm.estimators.importance.importance_log_likelihood`, §20.10.3).
* ``nade``: NADE 784-500 (Adam 1e-3, batch 100, exact NLL) vs the PyTorch NADE of the
  benchmarks (``_torch_nade.py``, the loop form: the faster one, BUILD_NOTES.md); exact
  ``log p(x)`` (:func:`egm.eval.autoregressive.member_log_probs`).
* ``rbm``: RBM 784-500, uncentered PCD-1, 100 persistent chains, plain SGD 0.01, batch 100
  vs scikit-learn's ``BernoulliRBM`` (the same algorithm); AIS bracket with 100 chains and
  14,500 temperatures (:func:`egm.eval.rbm_log_likelihood_bracket`), the value from forward
  AIS.

``winner`` is ``"tie"`` unless ``|egm - peer_value| > 2 diff_se``, where ``diff_se``
combines in quadrature the two Monte-Carlo standard errors (conservative: the common random
numbers make the two errors positively correlated) and the paired standard error of the
per-example differences over the test digits (``sd(d_n) / √N``: how far the gap would move on
another test set of the same size).  Seed-to-seed variation of training is not measured (one
seed per contender).  A Markdown table of all pairs goes to stderr at the end; stdout carries
the JSON lines only.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.tree_util import Partial  # noqa: E402
from jaxtyping import Array, Float, PRNGKeyArray  # noqa: E402

from egm import data, eval, train  # noqa: E402
from egm.energies import rbm  # noqa: E402
from egm.energies.rbm import RBMParams  # noqa: E402
from egm.errors import ConfigError  # noqa: E402
from egm.estimators import ais  # noqa: E402
from egm.estimators.importance import importance_log_likelihood  # noqa: E402
from egm.eval import autoregressive  # noqa: E402
from egm.eval.record import LogLikelihood  # noqa: E402
from egm.models import vae  # noqa: E402

PAIRS = ("vae", "nade", "rbm")
PEERS = {"vae": "pythae", "nade": "torch", "rbm": "sklearn"}
Z_WINNER = 2.0

FULL = dict(
    budget=60.0, slices=6, settle_s=1.0, n_train=None, n_test=1000, batch_size=100,
    vae_hidden=(200, 200), vae_latent=50, vae_lr=1e-3, is_samples=5000,
    nade_hidden=500, nade_lr=1e-3, rbm_hidden=500, rbm_lr=0.01,
    ais_chains=100, ais_temps=14500, reverse_burn_in=1000,
)  # fmt: skip
QUICK = dict(
    budget=1.0, slices=1, settle_s=0.0, n_train=200, n_test=20, batch_size=50,
    vae_hidden=(16,), vae_latent=4, vae_lr=1e-3, is_samples=50,
    nade_hidden=16, nade_lr=1e-3, rbm_hidden=16, rbm_lr=0.01,
    ais_chains=16, ais_temps=200, reverse_burn_in=20,
)  # fmt: skip


# --------------------------------------------------------------------------- the race


class Contender(NamedTuple):
    """``epoch()`` trains one epoch (blocking until done); ``params()`` returns the current
    parameters in egm's format (the converters below for a peer)."""

    epoch: Callable[[], Any]
    params: Callable[[], Any]


class RaceResult(NamedTuple):
    """Epochs run, seconds spent on them (own clock) and the first epoch's seconds
    (compilation and warm-up included)."""

    epochs: int
    seconds: float
    first_epoch_s: float


def race(
    contenders: dict[str, Contender],
    budget_s: float,
    *,
    slices: int = 6,
    settle_s: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Any] = time.sleep,
) -> dict[str, RaceResult]:
    """Train every contender for ``budget_s`` seconds of its own clock, interleaved.

    The budget is cut into ``slices`` equal slices; in slice ``s`` (1-based) each contender,
    in an order rotating between slices, runs whole epochs while ``spent + expected <= s *
    budget_s / slices``, ``expected`` being the median of its epoch times after the first
    (the first epoch's time while it has only one, 0 before it), so it never plans past the
    budget, runs at least one epoch, and a single slow epoch (a burst of background load)
    does not end its run early.  ``settle_s`` seconds of sleep
    precede each turn (not counted: BLAS/XLA/torch worker threads keep spinning a while
    after a call and would slow whoever runs next).  ``clock`` and ``sleep`` are the
    time source and the pause (replaceable, e.g. by a fake clock in a test).
    """
    if not budget_s > 0:
        raise ConfigError(f"budget must be > 0 seconds, got {budget_s}")
    if slices < 1:
        raise ConfigError(f"slices must be >= 1, got {slices}")
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}

    def expected(name: str) -> float:
        t = times[name]
        return 0.0 if not t else (t[0] if len(t) == 1 else _bench.median(t[1:]))

    for s in range(1, slices + 1):
        target = budget_s * s / slices
        order = names[(s - 1) % len(names) :] + names[: (s - 1) % len(names)]
        for name in order:
            if settle_s > 0:
                sleep(settle_s)
            while not times[name] or sum(times[name]) + expected(name) <= target:
                t0 = clock()
                contenders[name].epoch()
                times[name].append(clock() - t0)
    return {n: RaceResult(len(t), sum(t), t[0]) for n, t in times.items()}


# --------------------------------------------------------------------------- scoring


class Score(NamedTuple):
    """A record and its per-example values (for the paired comparison)."""

    record: LogLikelihood
    per_example: np.ndarray


def compare(egm: Score, peer: Score, z: float = Z_WINNER) -> dict[str, Any]:
    """``diff = egm - peer`` (nats), its standard error and the winner (see module doc)."""
    diff = egm.record.value - peer.record.value
    mc = math.hypot(egm.record.stderr or 0.0, peer.record.stderr or 0.0)
    d = np.asarray(egm.per_example, np.float64) - np.asarray(peer.per_example, np.float64)
    paired = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    se = math.hypot(mc, paired)
    winner = "tie" if abs(diff) <= z * se else ("egm" if diff > 0 else "peer")
    return {
        "diff": _bench.sig(diff),
        "diff_se": _bench.sig(se, 3),
        "diff_se_mc": _bench.sig(mc, 3),
        "diff_se_paired_examples": _bench.sig(paired, 3),
        "winner_rule": f"tie unless |diff| > {z:g} diff_se",
        "winner": winner,
    }


# --------------------------------------------------------------------------- VAE vs pythae


def _linears(seq: Any) -> list:
    import torch.nn as tnn

    return [m for m in seq if isinstance(m, tnn.Linear)]


def make_pythae_vae(x_dim: int, hidden: Sequence[int], latent: int, seed: int = 0) -> Any:
    """pythae's ``VAE`` (``reconstruction_loss="bce"``) with the layers of egm's
    ``vae.VAE(x_dim, latent, hidden, activation="tanh")``: encoder ``x_dim-hidden-(mu,
    log_var)``, decoder ``latent-hidden[::-1]-x_dim`` with a sigmoid output."""
    import torch
    import torch.nn as tnn
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    torch.manual_seed(seed)

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [tnn.Linear(a, b), tnn.Tanh()]
        return tnn.Sequential(*layers)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = mlp((x_dim, *hidden))
            self.mu = tnn.Linear(hidden[-1], latent)
            self.logvar = tnn.Linear(hidden[-1], latent)

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.body = mlp((latent, *tuple(hidden)[::-1]))
            self.out = tnn.Linear(hidden[0], x_dim)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.out(self.body(z))))

    cfg = VAEConfig(input_dim=(x_dim,), latent_dim=latent, reconstruction_loss="bce")
    return VAE(cfg, encoder=Encoder(), decoder=Decoder())


def pythae_vae_params(model: Any) -> dict:
    """egm ``vae.VAE`` parameters from a pythae VAE of :func:`make_pythae_vae`.

    torch ``Linear`` computes ``x Wᵀ + b`` with ``W`` (out, in); a Flax ``Dense`` kernel is
    (in, out).  pythae's encoder gives ``log σ²``, egm's ``log σ``: the ``q_log_sigma`` head
    is half the ``logvar`` head.  pythae's decoder returns ``sigmoid(out(h))``; egm's
    ``p_out`` gives the logits ``out(h)``."""

    def dense(lin, scale=1.0):
        w = lin.weight.detach().cpu().numpy().astype(np.float32)
        b = lin.bias.detach().cpu().numpy().astype(np.float32)
        return {"kernel": jnp.asarray(scale * w.T), "bias": jnp.asarray(scale * b)}

    enc, dec = model.encoder, model.decoder
    e = {f"Dense_{i}": dense(lin) for i, lin in enumerate(_linears(enc.body))}
    e["q_mu"], e["q_log_sigma"] = dense(enc.mu), dense(enc.logvar, 0.5)
    d = {f"Dense_{i}": dense(lin) for i, lin in enumerate(_linears(dec.body))}
    d["p_out"] = dense(dec.out)
    return {"params": {"encoder": e, "decoder": d}}


def load_egm_vae_into_pythae(params: dict, model: Any) -> None:
    """The inverse of :func:`pythae_vae_params`: copy egm VAE parameters into ``model``."""
    import torch

    p = params["params"]

    def put(lin, d, scale=1.0):
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(scale * np.asarray(d["kernel"], np.float32).T))
            lin.bias.copy_(torch.as_tensor(scale * np.asarray(d["bias"], np.float32)))

    enc, dec = model.encoder, model.decoder
    for i, lin in enumerate(_linears(enc.body)):
        put(lin, p["encoder"][f"Dense_{i}"])
    put(enc.mu, p["encoder"]["q_mu"])
    put(enc.logvar, p["encoder"]["q_log_sigma"], 2.0)
    for i, lin in enumerate(_linears(dec.body)):
        put(lin, p["decoder"][f"Dense_{i}"])
    put(dec.out, p["decoder"]["p_out"])


def _pythae_epoch(model: Any, x: np.ndarray, batch_size: int, lr: float, seed: int):
    """pythae's forward and loss (``model({"data": x}).loss``: BCE + analytic KL, batch mean)
    in a plain torch loop with Adam over shuffled minibatches (remainder dropped)."""
    import torch

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X = torch.as_tensor(np.asarray(x, np.float32))
    n = (X.shape[0] // batch_size) * batch_size
    gen = torch.Generator().manual_seed(seed)

    def go():
        perm = torch.randperm(X.shape[0], generator=gen)[:n].view(-1, batch_size)
        for idx in perm:
            loss = model({"data": X[idx]}).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())

    return go


def _egm_contender(step, params0, opt, batch_size: int, x: np.ndarray, key, state=None):
    """egm's epoch (one jitted ``lax.scan`` over shuffled minibatches, donated state)."""
    epoch = jax.jit(train.make_epoch(step, batch_size), donate_argnums=0)
    X = jnp.asarray(x)
    box = {"state": train.init_state(params0, opt) if state is None else state, "i": 0}

    def go():
        s, m = epoch(box["state"], X, train.epoch_key(key, box["i"]))
        box["state"], box["i"] = s, box["i"] + 1
        return jax.block_until_ready(s)

    return Contender(go, lambda: box["state"].params)


def score_vae(
    key: PRNGKeyArray,
    model: vae.VAE,
    params: Any,
    x: Float[np.ndarray, "N D"],
    k: int,
    fields: dict,
) -> Score:
    """Importance-sampled ``log p(x)`` with ``k`` proposals from q(z|x) (§20.10.3)."""
    est = importance_log_likelihood(key, Partial(vae.log_weights_fn(model), params), x, k)
    return Score(eval.importance_record(est, **fields), np.asarray(est.per_example))


def vae_pair(cfg: dict, d: dict, key: PRNGKeyArray, skipped: str | None, seed: int) -> dict:
    """Train egm's VAE and pythae's (same layers, same start) for the budget; IS-score both."""
    k_init, k_train, k_eval = jax.random.split(key, 3)
    x_tr, x_te = d["train"], d["test"]
    H, L, B, lr = cfg["vae_hidden"], cfg["vae_latent"], cfg["batch_size"], cfg["vae_lr"]
    model = vae.VAE(x_dim=x_tr.shape[1], latent_dim=L, hidden=H, activation="tanh")
    params0 = vae.init_params(k_init, model)
    opt = train.adam(lr)
    step = train.make_step(train.loss_objective(vae.make_loss(model, "elbo", 1), has_aux=True), opt)
    contenders = {}
    if not skipped:  # copy the initial parameters before egm's first epoch donates them
        peer_model = make_pythae_vae(x_tr.shape[1], H, L, seed)
        load_egm_vae_into_pythae(jax.tree_util.tree_map(np.array, params0), peer_model)
        go = _pythae_epoch(peer_model, x_tr, B, lr, seed)
        contenders["peer"] = Contender(go, lambda: pythae_vae_params(peer_model))
    contenders = {"egm": _egm_contender(step, params0, opt, B, x_tr, k_train), **contenders}
    res = race(contenders, cfg["budget"], slices=cfg["slices"], settle_s=cfg["settle_s"])
    k = cfg["is_samples"]
    scores = {n: score_vae(k_eval, model, c.params(), x_te, k, d["fields"]) for n, c in contenders.items()}  # fmt: skip
    peer = None
    if not skipped:
        import pythae

        peer = f"pythae {_version('pythae', pythae)} VAE (torch loop)"
    return _line(
        "budget_vae", cfg, d, res, scores, peer, skipped,
        estimator=f"importance sampling, k = {k} proposals from q(z|x) "
        "(egm.estimators.importance.importance_log_likelihood), same key for both",
        model=f"VAE 784-{'-'.join(map(str, H))}-{L} tanh, Bernoulli output",
        training=f"analytic-KL ELBO with 1 draw, Adam {lr:g}, batch {B}, same initial parameters",
    )  # fmt: skip


# --------------------------------------------------------------------------- NADE vs torch


def torch_nade_params(model: Any) -> dict:
    """egm NADE parameters ``{"params": {W, c, V, b}}`` from a ``_torch_nade.TorchNADE``
    (the same layout: ``W, V`` [D, H] with row ``i`` belonging to unit ``i``)."""
    return {
        "params": {
            n: jnp.asarray(getattr(model, n).detach().cpu().numpy(), jnp.float32)
            for n in ("W", "c", "V", "b")
        }
    }


def score_nade(
    net: Any, params: Any, family: Any, x: Float[np.ndarray, "N D"], fields: dict
) -> Score:
    """Exact ``log p(x)`` under NADE (§20.10.10)."""
    per = autoregressive.member_log_probs(net, params, family, x)[0]
    return Score(LogLikelihood.from_per_example(per, "exact", **fields), np.asarray(per))


def nade_pair(
    cfg: dict, d: dict, key: PRNGKeyArray, skipped: str | None, seed: int, form: str
) -> dict:
    """Train egm's NADE and the torch NADE (same start) for the budget; score both exactly."""
    k_init, k_train = jax.random.split(key)
    x_tr, x_te = d["train"], d["test"]
    H, B, lr = cfg["nade_hidden"], cfg["batch_size"], cfg["nade_lr"]
    net = autoregressive.binary_autoregressive("nade", x_tr.shape[1], (H,))
    params0, family = net.init(k_init, jnp.mean(jnp.asarray(x_tr), axis=0))
    opt = train.adam(lr)
    step = train.make_step(train.loss_objective(lambda p, b, k: net.loss(p, family, b, k)), opt)
    contenders = {}
    if not skipped:
        import _torch_nade

        tm = _torch_nade.make(jax.tree_util.tree_map(np.array, params0), form)
        go = _torch_nade.epoch_fn(tm, x_tr, B, lr, seed)
        contenders["peer"] = Contender(go, lambda: torch_nade_params(tm))
    contenders = {"egm": _egm_contender(step, params0, opt, B, x_tr, k_train), **contenders}
    res = race(contenders, cfg["budget"], slices=cfg["slices"], settle_s=cfg["settle_s"])
    scores = {n: score_nade(net, c.params(), family, x_te, d["fields"]) for n, c in contenders.items()}  # fmt: skip
    return _line(
        "budget_nade", cfg, d, res, scores, None if skipped else f"torch_{form}", skipped,
        estimator="exact NADE log-likelihood (egm.eval.autoregressive.member_log_probs)",
        model=f"NADE 784-{H}, identity ordering, output biases at the data-mean logits",
        training=f"exact NLL, Adam {lr:g}, batch {B}, same initial parameters",
    )  # fmt: skip


# --------------------------------------------------------------------------- RBM vs sklearn


def sklearn_rbm_params(model: Any) -> RBMParams:
    """egm ``RBMParams`` from a fitted ``sklearn.neural_network.BernoulliRBM``.

    sklearn's free energy is ``F(v) = -v·intercept_visible_ - Σ_j softplus(v·components_[j]
    + intercept_hidden_[j])``, egm's ``F(v) = -bᵀv - Σ_j softplus(c_j + vᵀW_{:,j})``: so
    ``W = components_ᵀ`` (V, H), ``b = intercept_visible_``, ``c = intercept_hidden_``."""
    f32 = lambda a: jnp.asarray(np.asarray(a), jnp.float32)  # noqa: E731
    return RBMParams(
        W=f32(model.components_.T), b=f32(model.intercept_visible_), c=f32(model.intercept_hidden_)
    )


def sklearn_rbm_contender(
    params0: RBMParams,
    x: Float[np.ndarray, "N V"],
    batch_size: int,
    lr: float,
    seed: int,
    rng: np.random.RandomState | None = None,
) -> Contender:
    """``BernoulliRBM`` started from ``params0`` and trained epoch by epoch (``rng``: its
    sampling stream, default ``RandomState(seed)``).

    ``fit`` always re-initialises (there is no ``warm_start``) and ``partial_fit`` casts the
    data to float64 (2x the GEMM time of ``fit``'s float32), so each epoch runs the loop of
    ``BernoulliRBM.fit`` itself: ``_fit`` (one PCD-1 update) over ``gen_even_slices`` of the
    float32 data, with ``fit``'s attributes (float32, ``components_`` Fortran-ordered) set
    from ``params0``.  The computation is exactly ``fit(n_iter=epochs)``'s from that start."""
    from sklearn.neural_network import BernoulliRBM
    from sklearn.utils import gen_even_slices

    X = np.ascontiguousarray(x, np.float32)
    n, D = X.shape
    H = params0.W.shape[1]
    m = BernoulliRBM(n_components=H, learning_rate=lr, batch_size=batch_size, random_state=seed)
    m.components_ = np.array(params0.W, np.float32).T.copy(order="F")  # own, writable copies
    m.intercept_hidden_ = np.array(params0.c, np.float32)
    m.intercept_visible_ = np.array(params0.b, np.float32)
    m.h_samples_ = np.zeros((batch_size, H), np.float32)
    m.n_features_in_ = D
    rng = np.random.RandomState(seed) if rng is None else rng
    n_batches = int(np.ceil(n / batch_size))
    slices = list(gen_even_slices(n_batches * batch_size, n_batches, n_samples=n))

    def go():
        for sl in slices:
            m._fit(X[sl], rng)
        return m

    return Contender(go, lambda: sklearn_rbm_params(m))


_neg_free_energies = jax.jit(jax.vmap(lambda p, v: -rbm.free_energy(p, v), in_axes=(None, 0)))


def score_rbm(
    key: PRNGKeyArray,
    params: RBMParams,
    base_b: Float[Array, " V"],
    x: Float[np.ndarray, "N V"],
    cfg: dict,
    fields: dict,
) -> Score:
    """AIS bracket (forward and reverse, §18.7) of the mean test ``log p(v)``; per example
    ``-F(v_n) - log Ẑ_forward``."""
    betas = ais.betas_salakhutdinov_murray(cfg["ais_temps"])
    rec = eval.rbm_log_likelihood_bracket(
        key, params, base_b, x, n_chains=cfg["ais_chains"], betas=betas,
        reverse_burn_in=cfg["reverse_burn_in"], **fields,
    )  # fmt: skip
    per = np.asarray(_neg_free_energies(params, jnp.asarray(x)), np.float64)
    return Score(rec, per - rec.extras["log_z_forward"])


def rbm_pair(cfg: dict, d: dict, key: PRNGKeyArray, skipped: str | None, seed: int) -> dict:
    """Train egm's RBM and sklearn's BernoulliRBM (same start) for the budget; AIS-score both."""
    k_init, k_state, k_train, k_eval = jax.random.split(key, 4)
    x_tr, x_te = d["train"], d["test"]
    H, B, lr = cfg["rbm_hidden"], cfg["batch_size"], cfg["rbm_lr"]
    mean = jnp.mean(jnp.asarray(x_tr), axis=0)
    params0 = rbm.init(k_init, x_tr.shape[1], H, data_mean=mean)
    opt = train.sgd(lr)
    config = train.RBMStepConfig(estimator="pcd", k=1, centering=False)
    step = train.make_step(train.rbm_objective(config), opt)
    contenders = {}
    if not skipped:
        host = RBMParams(*(np.array(a) for a in params0))  # copies: egm donates params0
        contenders["peer"] = sklearn_rbm_contender(host, x_tr, B, lr, seed)
    state = train.init_rbm_state(k_state, params0, opt, mean, n_chains=B)
    contenders = {"egm": _egm_contender(step, None, opt, B, x_tr, k_train, state), **contenders}
    res = race(contenders, cfg["budget"], slices=cfg["slices"], settle_s=cfg["settle_s"])
    base_b = ais.base_rate_biases(jnp.asarray(x_tr))
    scores = {n: score_rbm(k_eval, c.params(), base_b, x_te, cfg, d["fields"]) for n, c in contenders.items()}  # fmt: skip
    peer = None
    if not skipped:
        import sklearn

        peer = f"sklearn {sklearn.__version__} BernoulliRBM"
    line = _line(
        "budget_rbm", cfg, d, res, scores, peer, skipped,
        estimator=f"AIS bracket, {cfg['ais_chains']} chains x {cfg['ais_temps']} temperatures, "
        f"reverse burn-in {cfg['reverse_burn_in']} (egm.eval.rbm_log_likelihood_bracket); "
        "value = forward AIS, same key for both",
        model=f"RBM 784-{H}, W ~ N(0, 0.01^2), b = base-rate logits, c = 0",
        training=f"uncentered PCD-1, {B} persistent chains, SGD {lr:g} (no momentum, no weight "
        f"decay), batch {B}, same initial parameters",
    )  # fmt: skip
    for n, s in scores.items():
        line[f"{n}_bracket" if n == "egm" else "peer_bracket"] = [
            _bench.sig(s.record.lower),
            _bench.sig(s.record.upper),
        ]
    if "peer" in scores:
        (el, eu), (pl, pu) = line["egm_bracket"], line["peer_bracket"]
        line["brackets_overlap"] = bool(el <= pu and pl <= eu)
    return line


# --------------------------------------------------------------------------- lines, table


def _line(bench, cfg, d, res, scores, peer, skipped, **extra) -> dict:
    e, p = scores["egm"], scores.get("peer")
    rec = {
        "bench": bench,
        "budget_s": cfg["budget"],
        "egm": _bench.sig(e.record.value),
        "peer": peer or "none",
        "peer_value": None if p is None else _bench.sig(p.record.value),
        "ratio": None,
        "unit": "nats",
        "stat": f"mean test log-likelihood of {len(d['test'])} digits after {cfg['budget']:g} s "
        f"of training each (own clock, compilation included, {cfg['slices']} interleaved "
        "slices)",
        "target": "informational: who reaches the better likelihood in the same time",
        "target_met": None,
        "egm_epochs": res["egm"].epochs,
        "peer_epochs": res["peer"].epochs if "peer" in res else None,
        "egm_train_s": _bench.sig(res["egm"].seconds, 3),
        "peer_train_s": _bench.sig(res["peer"].seconds, 3) if "peer" in res else None,
        "egm_first_epoch_s": _bench.sig(res["egm"].first_epoch_s, 3),
        "peer_first_epoch_s": _bench.sig(res["peer"].first_epoch_s, 3) if "peer" in res else None,
        "winner": None,
        **extra,
        "egm_record": e.record.to_dict(),
        "peer_record": None if p is None else p.record.to_dict(),
        "n_train": int(len(d["train"])),
        "n_test": int(len(d["test"])),
        "data": d["fields"]["dataset"],
        "protocol": d["fields"]["protocol"],
    }
    if p is not None:
        cmp = compare(e, p)
        rec.update(cmp)
        rec["winner"] = {"egm": "egm", "peer": peer, "tie": "tie"}[cmp["winner"]]
    if skipped:
        rec["skipped"] = skipped
    return rec


def markdown_table(lines: Sequence[dict]) -> str:
    """One Markdown table of the budget lines: who reaches the better likelihood."""
    rows = [
        "| pair | budget (s) | egm (nats) | peer | peer (nats) | diff ± se | epochs egm / peer "
        "| winner |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        pv = "—" if r["peer_value"] is None else f"{r['peer_value']:.2f}"
        diff = "—" if r.get("diff") is None else f"{r['diff']:+.2f} ± {r['diff_se']:.2f}"
        pe = "—" if r["peer_epochs"] is None else r["peer_epochs"]
        rows.append(
            f"| {r['bench'].removeprefix('budget_')} | {r['budget_s']:g} | {r['egm']:.2f} | "
            f"{r['peer']} | {pv} | {diff} | {r['egm_epochs']} / {pe} | {r['winner'] or '—'} |"
        )
    return "\n".join(rows)


def _version(dist: str, module: Any) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return getattr(module, "__version__", "unknown")


# --------------------------------------------------------------------------- main


def load(source: str, data_dir: str | None, n_train: int | None, n_test: int | None) -> dict:
    """Fixed-binarized MNIST (seeds 0/1/2 for train/valid/test) as float32 train and test
    arrays (the first ``n_train`` / ``n_test`` digits) and the record fields."""
    ds = data.load_binarized_mnist(
        "fixed", 0, source=source, data_dir=data_dir if source == "idx" else None
    )
    x_tr = np.asarray(ds.binary["train"], np.float32)[:n_train]
    x_te = np.asarray(ds.binary["test"], np.float32)[:n_test]
    return {
        "train": x_tr,
        "test": x_te,
        "fields": {"dataset": ds.source, "split": "test", "protocol": ds.protocol},
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, of {PAIRS}")
    p.add_argument("--budget", type=float, default=None, help="seconds of training each")
    p.add_argument("--slices", type=int, default=None, help="interleaved slices of the budget")
    p.add_argument("--settle_s", type=float, default=None)
    p.add_argument("--source", default="embedded", choices=("embedded", "idx"))
    p.add_argument("--data_dir", default=_bench.DEFAULT_DATA_DIR)
    p.add_argument("--n_train", type=int, default=None, help="first N training digits")
    p.add_argument("--n_test", type=int, default=None, help="first N test digits")
    p.add_argument("--is_samples", type=int, default=None, help="VAE importance samples k")
    p.add_argument("--ais_temps", type=int, default=None)
    p.add_argument("--ais_chains", type=int, default=None)
    p.add_argument("--nade_form", default="loop", choices=("loop", "cumsum"))
    p.add_argument("--no_peer", action="store_true", help="train and score egm only")
    p.add_argument("--torch_threads", type=int, default=None)
    a = p.parse_args(argv)
    cfg = {**(QUICK if a.quick else FULL)}
    cfg.update({k: getattr(a, k) for k in cfg if getattr(a, k, None) is not None})
    pairs = [x for x in a.pairs.split(",") if x]
    if not pairs or set(pairs) - set(PAIRS):
        raise ConfigError(f"--pairs must name some of {PAIRS}, got {a.pairs!r}")
    if not cfg["budget"] > 0 or cfg["slices"] < 1 or cfg["settle_s"] < 0:
        raise ConfigError(
            f"need --budget > 0, --slices >= 1 and --settle_s >= 0; got {cfg['budget']}, "
            f"{cfg['slices']}, {cfg['settle_s']}"
        )
    if a.torch_threads is not None:
        import torch

        torch.set_num_threads(a.torch_threads)
    d = load(a.source, a.data_dir, cfg["n_train"], cfg["n_test"])
    keys = dict(zip(PAIRS, jax.random.split(jax.random.key(a.seed), len(PAIRS)), strict=True))
    lines = []
    t_start = time.perf_counter()
    with _bench.rng_mode():
        for name in pairs:
            env = _bench.environment()  # before the pair's work: the background load
            skipped = "--no_peer" if a.no_peer else _bench.peer_available(PEERS[name])
            t0 = time.perf_counter()
            if name == "vae":
                rec = vae_pair(cfg, d, keys[name], skipped, a.seed)
            elif name == "nade":
                rec = nade_pair(cfg, d, keys[name], skipped, a.seed, a.nade_form)
            else:
                rec = rbm_pair(cfg, d, keys[name], skipped, a.seed)
            rec.update(
                {
                    "pair_wall_s": _bench.sig(time.perf_counter() - t0, 3),
                    "quick": a.quick,
                    **env,
                    "load_avg_1m_end": round(_load_1m(), 2),
                }
            )
            if not skipped and name != "rbm":
                import torch

                rec["torch"], rec["torch_threads"] = torch.__version__, torch.get_num_threads()
            lines.append(_bench.emit(rec))
    print(
        f"\n{markdown_table(lines)}\n\ntotal wall {time.perf_counter() - t_start:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return lines


def _load_1m() -> float:
    import os

    return os.getloadavg()[0]


if __name__ == "__main__":
    main(sys.argv[1:])
