r"""Generative stochastic networks with a latent state (§20.12; Bengio et al. 2014).

A GSN is a Markov chain over ``(x_k, h_k)`` whose transition is learned:

.. math:: h_k \sim p_θ(h_k \mid h_{k-1}, x_{k-1}), \qquad x_k \sim p_θ(x_k \mid h_k).

Here (the GSN of Bengio et al. 2014): the visible state is corrupted by salt-and-pepper noise,
``x̃ = C(x_{k-1})``, and the hidden layers ``h^1..h^L`` are updated with Gaussian noise before
(sd ``sigma``) and after (sd ``post_sigma``, default 0) the activation,

.. math:: h^l = \tanh\big(h^{l-1} W_l + h^{l+1} W_{l+1}^\top + b_l + σ ε\big) + σ_{post} ε',
          \quad h^0 = \tilde x, \quad h^{L+1} W_{L+1}^\top := 0,

in one of two orders (``GSN.update``), each a sweep in which a layer reads its neighbours'
*current* values:

* ``"gauss_seidel"`` (the default): ``l = 1, 2, .., L`` in turn, so ``h^l_k`` reads the new
  ``h^{l-1}_k`` and the previous ``h^{l+1}_{k-1}``;
* ``"odd_even"`` (the paper's schedule: the deep GSN's computational graph, Bengio et al.
  2014, its DBM-inspired figure and §"Experimental validation of GSNs" -- section and figure
  numbers recalled, not re-read; the schedule itself checked against the authors' released
  code, yaoli/GSN ``model.py``: ``update_odd_layers`` then ``update_even_layers``).  With
  ``x`` as layer 0 (even), one transition ``(x_{k-1}, h_{k-1}) → (x_k, h_k)`` is
  (1) ``x̃ = C(x_{k-1})``; (2) the odd half-step: every odd ``l = 1, 3, ..`` from its even
  neighbours of the previous state, ``h^{l-1}_{k-1}`` (``x̃`` for ``l = 1``, with the label
  state ``y_{k-1}`` through ``V``) and ``h^{l+1}_{k-1}``; (3) the even half-step: every
  even ``l = 2, 4, ..`` from the new odd ``h^{l-1}_k, h^{l+1}_k``, and layer 0: ``p(x_k |
  h^1_k)`` (and ``p(y_k | h^1_k)``), from which the caller samples ``x_k`` (and ``y_k``).
  The authors' code corrupts ``x_k`` right after sampling it and keeps ``x̃_k`` as the
  state; corrupting at the start of the next transition instead is the same chain over
  ``(x_k, x̃_k, h_k)`` and lets clamps and walk-back targets act on the uncorrupted sample.
  Noise: pre- and post-activation on every hidden layer, none on ``x`` beyond ``C``.

For ``L ≤ 2`` the two orders are the same transition (``L = 2``: ``h^1`` from ``(x̃,
h^2_{k-1})``, then ``h^2`` from ``h^1_k`` and ``x`` from ``h^1_k``, in both), and the same key
draws the same noise for layer ``l`` in either order, so they agree bit for bit; they differ
from ``L = 3`` on (Gauss–Seidel: ``h^3`` from the new ``h^2``, ``h^2`` from the old ``h^3``;
odd/even: ``h^3`` from the old ``h^2``, ``h^2`` from the new ``h^3``).  The authors' MNIST
script (yaoli/GSN ``run_dsn.py``) uses 2 layers of 1500 units, 4 walk-back steps, ``sigma =
post_sigma = 2``, salt-and-pepper 0.4 and no noise on ``h^1`` (``noiseless_h1=True`` here:
``h^1`` then gets neither pre- nor post-activation noise, as in the authors' ``model.py``;
the other layers keep both, and every layer keeps its key, so the noise drawn for ``h^2..``
does not move).

``p(x_k | h_k) = Π_i Bernoulli(σ(h^1_k W_1^\top + c)_i)`` (tied weights).  **Walk-back
training** unrolls ``K`` steps from each training example ``x`` (``h_0 = 0``) and penalises
``-log p(x | h_k)`` at every step (the reconstruction target is always the data), with
gradients through the hidden chain (the Gaussian noise is reparameterised) and not through
the sampled ``x_k``.  With ``L = 1`` and ``σ = 0`` the GSN is a DAE whose reconstruction
distribution is ``p(x | h(x̃))`` (the tests use this exact reduction).

Every function below runs either order (it lives in the model description; no combination
is refused): they all step the chain through :func:`transition`.

* :func:`transition`, :func:`sample_chain` (``lax.scan``; ``clamp`` keeps observed units);
* :func:`walkback_loss`;
* :func:`csl_log_likelihood`: the consistent estimator of Bengio, Yao & Cho (2013),
  ``log p̂(x) = log (1/S) Σ_s p(x | h^1_s)`` over ``S`` hidden states of the model's own chain:
  for states drawn from the chain's stationary ``h`` marginal, ``E p(x | h) = p(x)``, so the
  estimate is consistent as ``S → ∞`` and, by Jensen, a lower bound in expectation;
* the discriminative GSN (§20.12.1; Zhou & Troyanskaya 2014): with ``n_classes > 0`` the
  chain runs over ``y`` (one-hot, a softmax ``p(y | h^1)``, fed back to layer 1 through
  ``V``) with ``x`` clamped to the data: the conditional chain whose stationary label law is
  the model's ``p(y | x)``.  :func:`walkback_loss` trains that very chain (``x`` clamped at
  every step, the label state from uniform, ``-log p(y | h_k)`` penalised at each step, the
  sampled labels fed back without gradient) and :func:`classify` runs it and averages
  ``p(y | h_k)``.  (Training on the joint chain from the *true* one-hot label, as an earlier
  version did, lets layer 1 copy the fed-in label: at test time, from a uniform label, that
  net had learned little of ``x`` -- 45 % test error.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from egm.errors import ConfigError
from egm.models.dae import check_corruption_level

__all__ = [
    "GSN",
    "GSNChain",
    "UPDATES",
    "classify",
    "csl_log_likelihood",
    "init_params",
    "recon_log_prob",
    "sample_chain",
    "sample_states",
    "transition",
    "walkback_loss",
]


UPDATES = ("gauss_seidel", "odd_even")


class GSN(NamedTuple):
    """``x_dim`` visible units, ``hidden`` widths (L layers), salt-and-pepper ``level`` on
    the input, Gaussian pre-activation noise ``sigma``, ``n_classes`` softmax label units of
    the discriminative GSN (0: none), the layer ``update`` order (``"gauss_seidel"`` or
    ``"odd_even"``, module docstring), Gaussian post-activation noise ``post_sigma``, and
    ``noiseless_h1``: no noise (pre or post) on the first hidden layer (the authors' recipe)."""

    x_dim: int
    hidden: tuple[int, ...] = (1500,)
    level: float = 0.4
    sigma: float = 2.0
    n_classes: int = 0
    update: str = "gauss_seidel"
    post_sigma: float = 0.0
    noiseless_h1: bool = False

    def check(self) -> GSN:
        """Itself, or a :class:`ConfigError` naming the bad field."""
        if int(self.x_dim) < 1 or not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"a GSN needs x_dim >= 1 and at least one hidden width >= 1, got "
                              f"{self.x_dim}, {tuple(self.hidden)}")  # fmt: skip
        check_corruption_level(self.level, "salt_pepper")
        for name in ("sigma", "post_sigma"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} (hidden noise sd) must be finite and >= 0, got {v}")
        if int(self.n_classes) < 0 or int(self.n_classes) == 1:
            raise ConfigError(f"n_classes must be 0 (none) or >= 2, got {self.n_classes}")
        if self.update not in UPDATES:
            raise ConfigError(f"update must be one of {list(UPDATES)}, got {self.update!r}")
        return self


class GSNChain(NamedTuple):
    """Kept states of a chain: ``x`` samples, ``mean`` the probabilities ``p(x_k | h_k)``
    (for the visible units; label probabilities in ``y`` when ``n_classes``), ``h1`` the
    first hidden layer (what ``p(x | h)`` reads)."""

    x: Float[Array, "T *b D"]
    mean: Float[Array, "T *b D"]
    h1: Float[Array, "T *b H"]
    y: Float[Array, "T *b K"] | None


def init_params(
    key: PRNGKeyArray, model: GSN, x_mean: Float[ArrayLike, " D"] | None = None
) -> dict[str, Any]:
    """``{"W": [W_l (n_{l-1}, n_l)], "b": [b_l], "c": visible bias, "V", "d": label weights
    and bias}``: uniform ``±sqrt(6 / (fan_in + fan_out))`` weights, zero hidden biases, the
    visible bias at the logit of ``x_mean`` when given."""
    model.check()
    sizes = (model.x_dim, *model.hidden)
    keys = jax.random.split(key, len(sizes))
    W = [
        jax.random.uniform(k, (a, b), jnp.float32, -1, 1) * math.sqrt(6 / (a + b))
        for k, a, b in zip(keys[:-1], sizes[:-1], sizes[1:], strict=True)
    ]
    c = jnp.zeros((model.x_dim,), jnp.float32)
    if x_mean is not None:
        m = jnp.clip(jnp.asarray(x_mean, jnp.float32), 1e-3, 1 - 1e-3)
        c = jnp.log(m) - jnp.log1p(-m)
    p = {"W": W, "b": [jnp.zeros((n,), jnp.float32) for n in model.hidden], "c": c}
    K = int(model.n_classes)
    if K:
        H = model.hidden[0]
        p["V"] = jax.random.uniform(keys[-1], (K, H), jnp.float32, -1, 1) * math.sqrt(6 / (K + H))
        p["d"] = jnp.zeros((K,), jnp.float32)
    return p


def _salt_pepper(key, x, level):
    k_mask, k_coin = jax.random.split(key)
    coin = jax.random.bernoulli(k_coin, 0.5, x.shape).astype(x.dtype)
    return jnp.where(jax.random.bernoulli(k_mask, level, x.shape), coin, x)


def _visible_logits(model: GSN, params: dict, h1: Array):
    x_logits = h1 @ params["W"][0].T + params["c"]
    y_logits = h1 @ params["V"].T + params["d"] if model.n_classes else None
    return x_logits, y_logits


def _order(model: GSN) -> list[int]:
    """Layer indices (0-based: index ``i`` is ``h^{i+1}``) in their update order."""
    L = len(model.hidden)
    if model.update == "odd_even":  # odd layers h^1, h^3, .. (even indices) first
        return [*range(0, L, 2), *range(1, L, 2)]
    return list(range(L))


def transition(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    x: Float[Array, "*b D"],
    hs: tuple[Array, ...],
    y: Float[Array, "*b K"] | None = None,
) -> tuple[tuple[Array, ...], Array, Array | None]:
    """``h_k ~ p(h_k | h_{k-1}, x_{k-1})`` in the order ``model.update`` (module docstring):
    the new hidden layers, and the logits of ``p(x_k | h_k)`` (and of ``p(y_k | h_k)``).
    ``y``: the previous label state (one-hot or probabilities) of a discriminative GSN, fed
    to layer 1 through ``V``.  Key layout, the same in both orders: ``split(key, L + 1)``,
    the first for the corruption, the ``l``-th after it for layer ``h^l``'s noise (split in
    two, pre and post, when ``post_sigma > 0``)."""
    model.check()
    L = len(model.hidden)
    keys = jax.random.split(key, L + 1)
    x_tilde = _salt_pepper(keys[0], x, model.level)
    new = list(hs)
    for lvl in _order(model):
        a = (x_tilde if lvl == 0 else new[lvl - 1]) @ params["W"][lvl] + params["b"][lvl]
        if lvl + 1 < L:
            a = a + new[lvl + 1] @ params["W"][lvl + 1].T
        if lvl == 0 and model.n_classes and y is not None:
            a = a + y @ params["V"]
        k_pre, k_post = jax.random.split(keys[lvl + 1]) if model.post_sigma > 0 else \
            (keys[lvl + 1], None)  # fmt: skip
        quiet = lvl == 0 and model.noiseless_h1
        if model.sigma > 0 and not quiet:
            a = a + model.sigma * jax.random.normal(k_pre, a.shape, a.dtype)
        h = jnp.tanh(a)
        if model.post_sigma > 0 and not quiet:
            h = h + model.post_sigma * jax.random.normal(k_post, h.shape, h.dtype)
        new[lvl] = h
    x_logits, y_logits = _visible_logits(model, params, new[0])
    return tuple(new), x_logits, y_logits


def _zeros(model: GSN, lead: tuple[int, ...]) -> tuple[Array, ...]:
    return tuple(jnp.zeros((*lead, n), jnp.float32) for n in model.hidden)


def recon_log_prob(x: Float[ArrayLike, "*b D"], logits: Float[Array, "*b D"]) -> Float[Array, "*b"]:
    """``log p(x | h) = Σ_i log Bernoulli(x_i; σ(logit_i))``."""
    x = jnp.asarray(x, jnp.float32)
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)


def sample_chain(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    x0: Float[ArrayLike, "*b D"],
    n_steps: int,
    *,
    clamp: Bool[ArrayLike, "*b D"] | None = None,
    y0: Float[ArrayLike, "*b K"] | None = None,
    keep_every: int = 1,
) -> GSNChain:
    """``n_steps`` GSN transitions from ``x0`` (hidden state 0), keeping every
    ``keep_every``-th; ``clamp``: visible units held at ``x0`` (bit-exact).  A discriminative
    GSN also resamples its label ``y ~ softmax`` (from ``y0``, default uniform)."""
    n_steps, keep_every = int(n_steps), int(keep_every)
    if n_steps < 1 or keep_every < 1 or n_steps % keep_every:
        raise ConfigError(
            f"n_steps ({n_steps}) must be >= 1 and a multiple of keep_every ({keep_every} >= 1)"
        )
    x0 = jnp.asarray(x0, jnp.float32)
    lead = x0.shape[:-1]
    fix = (lambda x: x) if clamp is None else (lambda x: jnp.where(jnp.asarray(clamp), x0, x))
    K = int(model.n_classes)
    if K:
        y0 = jnp.full((*lead, K), 1.0 / K) if y0 is None else jnp.asarray(y0, jnp.float32)
    else:
        y0 = jnp.zeros((*lead, 0))

    def one(carry, k):
        x, hs, y = carry
        k_t, k_x, k_y = jax.random.split(k, 3)
        hs, x_logits, y_logits = transition(k_t, model, params, x, hs, y if K else None)
        mean = fix(jax.nn.sigmoid(x_logits))
        x = fix(jax.random.bernoulli(k_x, jax.nn.sigmoid(x_logits)).astype(jnp.float32))
        if K:
            y_prob = jax.nn.softmax(y_logits, -1)
            y = jax.nn.one_hot(jax.random.categorical(k_y, y_logits, -1), K)
        else:
            y_prob = y
        return (x, hs, y), (mean, hs[0], y_prob)

    def block(carry, keys):
        carry, (mean, h1, yp) = jax.lax.scan(one, carry, keys)
        return carry, (carry[0], mean[-1], h1[-1], yp[-1])

    keys = jax.random.split(key, n_steps).reshape(n_steps // keep_every, keep_every)
    _, (xs, means, h1s, ys) = jax.lax.scan(block, (fix(x0), _zeros(model, lead), y0), keys)
    return GSNChain(xs, means, h1s, ys if K else None)


def sample_states(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    n: int,
    burn_in: int,
    n_chains: int = 100,
    means: bool = False,
) -> Float[Array, " n D"]:
    """``n`` visible samples: consecutive states of ``min(n, n_chains)`` chains started from
    coin flips, after ``burn_in`` transitions, chain by chain (Bengio et al. 2014 took the
    consecutive states of one chain); with ``means`` each state's ``p(x | h)`` (the
    probabilities its binary ``x`` is drawn from: grey digits) instead of the draw."""
    if int(n) < 1 or int(burn_in) < 1 or int(n_chains) < 1:
        raise ConfigError(f"need n, burn_in and n_chains >= 1, got {n}, {burn_in}, {n_chains}")
    c = min(int(n), int(n_chains))
    k0, k1, k2 = jax.random.split(key, 3)
    x0 = jax.random.bernoulli(k0, 0.5, (c, model.x_dim)).astype(jnp.float32)
    x0 = sample_chain(k1, model, params, x0, int(burn_in), keep_every=int(burn_in)).x[-1]
    chain = sample_chain(k2, model, params, x0, -(-int(n) // c))
    xs = chain.mean if means else chain.x  # (steps, c, D)
    return jnp.swapaxes(xs, 0, 1).reshape(-1, model.x_dim)[: int(n)]


def walkback_loss(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    x: Float[ArrayLike, "B D"],
    n_steps: int,
    y: Int[ArrayLike, " B"] | None = None,
    *,
    recon_weight: float = 0.0,
) -> tuple[Float[Array, ""], dict]:
    """The walk-back criterion (module docstring): the mean over ``n_steps`` unrolled
    transitions from ``x`` of ``-log p(x | h_k)``.  A discriminative GSN (labels ``y``) runs
    the conditional chain instead: ``x`` clamped to the data at every step, the label state
    from uniform ``1/K`` then resampled from ``p(y | h_k)`` (no gradient through the draw),
    and the loss is the mean of ``-log p(y | h_k)`` plus ``recon_weight`` times the mean
    of ``-log p(x | h_k)`` (0, the default: a purely discriminative chain; 1: the hybrid
    that also models ``x``).  Metrics: ``recon_nll`` (step 1), ``walkback_nll`` (all steps), ``label_nll``."""
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ConfigError(f"walk-back needs n_steps >= 1, got {n_steps}")
    x = jnp.asarray(x, jnp.float32)
    K = int(model.n_classes)
    if K and y is None:
        raise ConfigError("a discriminative GSN (n_classes > 0) trains on (x, y): pass labels y")
    if not (math.isfinite(float(recon_weight)) and recon_weight >= 0):
        raise ConfigError(f"recon_weight must be finite and >= 0, got {recon_weight}")
    y1 = jax.nn.one_hot(jnp.asarray(y), K) if K else None
    y0 = jnp.full((x.shape[0], K), 1.0 / K) if K else None

    def one(carry, k):
        xk, hs, yk = carry
        k_t, k_x, k_y = jax.random.split(k, 3)
        hs, x_logits, y_logits = transition(k_t, model, params, xk, hs, yk)
        cost = -recon_log_prob(x, x_logits)
        if K:  # the conditional chain: x stays clamped, the label is resampled
            lab = -jnp.sum(y1 * jax.nn.log_softmax(y_logits, -1), -1)
            yk = jax.nn.one_hot(jax.random.categorical(k_y, jax.lax.stop_gradient(y_logits)), K)
            return (xk, hs, yk), (cost, lab)
        xk = jax.lax.stop_gradient(jax.random.bernoulli(k_x, jax.nn.sigmoid(x_logits)))
        return (xk.astype(jnp.float32), hs, yk), (cost, jnp.zeros_like(cost))

    _, (costs, labs) = jax.lax.scan(
        one, (x, _zeros(model, x.shape[:-1]), y0), jax.random.split(key, n_steps)
    )
    loss = recon_weight * jnp.mean(costs) + jnp.mean(labs) if K else jnp.mean(costs)
    metrics = {"recon_nll": jnp.mean(costs[0]), "walkback_nll": jnp.mean(costs)}
    if K:
        metrics["label_nll"] = jnp.mean(labs)
    return loss, metrics


def csl_log_likelihood(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    x_test: Float[ArrayLike, "M D"],
    *,
    n_chains: int = 10,
    n_steps: int = 1000,
    burn_in: int = 100,
    keep_every: int = 1,
    chunk: int = 100,
) -> Float[Array, " M"]:
    r"""The CSL estimate (Bengio, Yao & Cho 2013) of ``log p(x)`` for every test row:
    ``n_chains`` chains from ``Bernoulli(0.5)`` noise, ``burn_in`` steps dropped, then the
    first-layer states ``h_s`` of the next ``n_steps`` (every ``keep_every``-th; ``S =
    n_chains · n_steps / keep_every`` in all) and

    .. math:: \log \hat p(x) = \operatorname{logsumexp}_s \log p(x \mid h_s) - \log S,

    computed over ``chunk`` test rows at a time (log-space).  Biased low for finite ``S``
    (Jensen), consistent as ``S → ∞``; chains that mix poorly make it pessimistic, not
    optimistic."""
    for name, v in (("n_chains", n_chains), ("n_steps", n_steps), ("chunk", chunk)):
        if int(v) < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
    if int(burn_in) < 0:
        raise ConfigError(f"burn_in must be >= 0, got {burn_in}")
    k0, k_burn, k_run = jax.random.split(key, 3)
    x0 = jax.random.bernoulli(k0, 0.5, (int(n_chains), model.x_dim)).astype(jnp.float32)
    if burn_in:
        x0 = sample_chain(k_burn, model, params, x0, int(burn_in), keep_every=int(burn_in)).x[-1]
    h1 = sample_chain(k_run, model, params, x0, n_steps, keep_every=keep_every).h1
    logits = _visible_logits(model, params, h1.reshape(-1, h1.shape[-1]))[0]  # (S, D)
    log_s = math.log(logits.shape[0])
    lsig, lsig_neg = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    x_test = jnp.asarray(x_test, jnp.float32)
    M = x_test.shape[0]
    pad = (-M) % int(chunk)
    xs = jnp.pad(x_test, ((0, pad), (0, 0))).reshape(-1, int(chunk), x_test.shape[1])

    def per_chunk(xc):  # (chunk, D) -> (chunk,)
        lp = xc @ lsig.T + (1 - xc) @ lsig_neg.T  # (chunk, S): log p(x | h_s)
        return jax.nn.logsumexp(lp, -1) - log_s

    return jax.lax.map(per_chunk, xs).reshape(-1)[:M]


def classify(
    key: PRNGKeyArray,
    model: GSN,
    params: dict,
    x: Float[ArrayLike, "B D"],
    n_steps: int = 10,
) -> Float[Array, "B K"]:
    """The discriminative GSN's ``p(y | x)`` (§20.12.1): ``x`` clamped, the label state from
    uniform, the chain run ``n_steps`` transitions (the chain :func:`walkback_loss` trains),
    the label probabilities ``p(y | h_k)`` averaged over them."""
    if not model.n_classes:
        raise ConfigError("classify needs a discriminative GSN (n_classes >= 2)")
    x = jnp.asarray(x, jnp.float32)
    out = sample_chain(key, model, params, x, n_steps, clamp=jnp.ones(x.shape, bool))
    return jnp.mean(out.y, 0)
