r"""Generative adversarial networks (§20.10.4) and the MLP generators of implicit models.

A generator network :math:`x = g(z; θ^{(g)})` maps noise :math:`z \sim p(z)` to data space; a
discriminator :math:`d(x; θ^{(d)})` outputs the probability that :math:`x` is a training
example.  The game's value (the book's eq. 20.80, Goodfellow et al. 2014 eq. 1) is

.. math:: v(θ^{(g)}, θ^{(d)}) = \mathbb{E}_{x\sim p_{data}} \log d(x)
          + \mathbb{E}_{z\sim p(z)} \log (1 - d(g(z))),

which the discriminator maximises and the generator minimises (the **minimax** loss).  Early
in training :math:`d(g(z)) ≈ 0` and :math:`\log(1 - d)` is flat there (its derivative with
respect to the discriminator's logit is :math:`-d → 0`), so the paper trains the generator to
maximise :math:`\log d(g(z))` instead (the **non-saturating** loss, derivative
:math:`-(1 - d) → -1`).  Everything is written with the discriminator's logit ``l``
(:math:`d = σ(l)`, :math:`\log d = -\mathrm{softplus}(-l)`, :math:`\log(1 - d) =
-\mathrm{softplus}(l)`), so no probability is ever rounded to 0 or 1.

The MNIST setting of Goodfellow et al. (2014), read from their code (goodfeli/adversarial,
``mnist.yaml`` and ``__init__.py``): noise :math:`z \sim N(0, I_{100})`; generator
100-1200-1200-784, ReLU, sigmoid output whose bias starts at the logit of the training
pixels' marginals, weights uniform in ±0.05; discriminator two maxout layers of 240 units × 5
pieces and a sigmoid unit, weights uniform in ±0.005, dropout (keep 0.8 on the pixels, 0.5 on
both hidden layers, inverted scaling as pylearn2's ``input_scales``); the discriminator's loss
is the mean cross-entropy over its 2m examples (:math:`-v/2`, their ``AdversaryCost2``) and the
generator's the non-saturating one through the *dropped-out* discriminator; SGD, batch 100,
learning rate 0.1 decayed by 1.000004 per update (floor 1e-6), momentum 0.5 rising linearly to
0.7 from epoch 1 to 250 (:func:`goodfellow_sgd`); k = 1.

Modules are Flax Linen used as pure ``(apply_fn, params)`` pairs; a GAN's params are the dict
``{"disc": ..., "gen": ...}`` of :func:`egm.train.make_multi_step` (:func:`gan_players`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError, DataError
from egm.train.state import ObjectiveOut, Player

__all__ = [
    "GENERATOR_LOSSES",
    "MLPGenerator",
    "MaxoutDiscriminator",
    "arithmetic_latents",
    "discriminator_loss",
    "gan_players",
    "generator_loss",
    "goodfellow_sgd",
    "init_discriminator",
    "init_generator",
    "interpolation_path",
    "latent_fn",
    "sample",
]

GENERATOR_LOSSES = ("minimax", "non_saturating")
_ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}
_LATENTS = ("gaussian", "uniform")


def _uniform(r: float) -> Callable:
    """pylearn2's ``irange``: weights uniform in ``[-r, r]``."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -r, r)


def _positive(name: str, v: Any) -> None:
    if not v > 0:
        raise ConfigError(f"{name} must be > 0, got {v!r}")


class MLPGenerator(nn.Module):
    """``x = g(z)``: dense layers of ``hidden`` widths (``activation``), then a dense layer of
    ``out_dim`` units with a sigmoid (grey levels in [0, 1]) or no output nonlinearity
    (``output="linear"``).  ``latent``: the noise p(z) of :meth:`noise`, N(0, I) ("gaussian")
    or uniform on [-1, 1]^latent_dim ("uniform", Li et al. 2015).  ``irange``: weights
    uniform in ±irange (0: Flax's default LeCun normal)."""

    latent_dim: int
    hidden: Sequence[int]
    out_dim: int = 784
    activation: str = "relu"
    output: str = "sigmoid"
    latent: str = "gaussian"
    irange: float = 0.05

    def check(self) -> MLPGenerator:
        """Raise :class:`ConfigError` for sizes or names the module cannot take."""
        if not (isinstance(self.latent_dim, int) and self.latent_dim >= 1):
            raise ConfigError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        if any(not (isinstance(h, int) and h >= 1) for h in self.hidden) or self.out_dim < 1:
            raise ConfigError(
                f"layer widths must be >= 1, got {tuple(self.hidden)}, {self.out_dim}"
            )
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"activation {self.activation!r}: use one of {sorted(_ACTIVATIONS)}")
        if self.output not in ("sigmoid", "linear"):
            raise ConfigError(f"output {self.output!r}: use 'sigmoid' or 'linear'")
        if self.latent not in _LATENTS:
            raise ConfigError(f"latent {self.latent!r}: use one of {_LATENTS}")
        if self.irange < 0:
            raise ConfigError(f"irange must be >= 0, got {self.irange}")
        return self

    def noise(self, key: PRNGKeyArray, n: int) -> Float[Array, "n z"]:
        """``n`` draws of p(z)."""
        shape = (n, self.latent_dim)
        if self.latent == "uniform":
            return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
        return jax.random.normal(key, shape, jnp.float32)

    @nn.compact
    def __call__(self, z: Float[Array, "*b z"]) -> Float[Array, "*b x"]:
        init = _uniform(self.irange) if self.irange > 0 else nn.initializers.lecun_normal()
        act = _ACTIVATIONS[self.activation]
        h = z
        for i, width in enumerate(self.hidden):
            h = act(nn.Dense(width, kernel_init=init, name=f"hidden_{i}")(h))
        out = nn.Dense(self.out_dim, kernel_init=init, name="output")(h)
        return nn.sigmoid(out) if self.output == "sigmoid" else out


class MaxoutDiscriminator(nn.Module):
    """The logit ``l`` of ``d(x) = σ(l)``: maxout layers (``units`` × ``pieces``; Goodfellow
    et al. 2013) then one linear unit.  With a ``dropout_key``, inverted dropout keeps each
    pixel with probability ``input_keep`` and each maxout unit's output with ``hidden_keep``
    (scaled by 1/keep, so the network without dropout is its test-time average)."""

    units: Sequence[int] = (240, 240)
    pieces: int = 5
    irange: float = 0.005
    input_keep: float = 0.8
    hidden_keep: float = 0.5

    def check(self) -> MaxoutDiscriminator:
        if not self.units or any(not (isinstance(u, int) and u >= 1) for u in self.units):
            raise ConfigError(f"units must be widths >= 1, got {tuple(self.units)}")
        if not (isinstance(self.pieces, int) and self.pieces >= 1):
            raise ConfigError(f"pieces must be an integer >= 1, got {self.pieces!r}")
        for name in ("input_keep", "hidden_keep"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        _positive("irange", self.irange)
        return self

    @nn.compact
    def __call__(
        self, x: Float[Array, "n x"], dropout_key: PRNGKeyArray | None = None
    ) -> Float[Array, " n"]:
        keys = (
            [None] * (len(self.units) + 1)
            if dropout_key is None
            else list(jax.random.split(dropout_key, len(self.units) + 1))
        )

        def drop(h, keep, key):
            if key is None or keep >= 1.0:
                return h
            return jnp.where(jax.random.bernoulli(key, keep, h.shape), h / keep, 0.0)

        h = drop(x, self.input_keep, keys[0])
        init = _uniform(self.irange)
        for i, u in enumerate(self.units):
            pre = nn.Dense(u * self.pieces, kernel_init=init, name=f"maxout_{i}")(h)
            h = jnp.max(pre.reshape(*pre.shape[:-1], u, self.pieces), axis=-1)
            h = drop(h, self.hidden_keep, keys[i + 1])
        return nn.Dense(1, kernel_init=init, name="output")(h)[..., 0]


def init_generator(
    key: PRNGKeyArray, gen: MLPGenerator, pixel_mean: Float[Any, " x"] | None = None
) -> dict:
    """The generator's params; with ``pixel_mean`` (the training pixels' marginals) the
    sigmoid output bias starts at ``logit(clip(mean, 1e-3, 1 - 1e-3))`` (pylearn2's
    ``init_sigmoid_bias_from_marginals``), so the first samples are the mean digit."""
    gen.check()
    params = gen.init(key, jnp.zeros((1, gen.latent_dim)))["params"]
    if pixel_mean is not None:
        m = jnp.clip(jnp.asarray(pixel_mean, jnp.float32), 1e-3, 1 - 1e-3)
        if m.shape != (gen.out_dim,):
            raise DataError(
                f"pixel_mean has shape {m.shape}; the generator has {gen.out_dim} outputs"
            )
        params = {**params, "output": {**params["output"], "bias": jnp.log(m) - jnp.log1p(-m)}}
    return params


def init_discriminator(key: PRNGKeyArray, disc: MaxoutDiscriminator, x_dim: int = 784) -> dict:
    """The discriminator's params for inputs of ``x_dim`` features."""
    disc.check()
    return disc.init(key, jnp.zeros((1, x_dim)))["params"]


def sample(key: PRNGKeyArray, gen: MLPGenerator, params: dict, n: int) -> Float[Array, "n x"]:
    """``n`` samples ``g(z)``, ``z ~ p(z)`` (grey levels for a sigmoid output)."""
    return gen.apply({"params": params}, gen.noise(key, n))


def latent_fn(
    gen: MLPGenerator,
    params: dict,
    then: Callable[[Any, Array], Array] | None = None,
    then_params: Any = None,
) -> Partial:
    """``u -> g(z(u))`` for one ``u ~ N(0, I)`` (then ``then(then_params, ·)``, e.g. a
    GMMN+AE's decoder), as a ``Partial`` of the parameters: the generator network that
    :func:`egm.eval.directed.generator_report` turns into a likelihood, whose AIS anneals from
    a ``N(0, I)`` prior.  ``z(u) = u`` for ``latent="gaussian"``; for ``"uniform"``
    ``z(u) = 2 Φ(u) - 1 = erf(u / √2) ~ U[-1, 1]`` elementwise, so ``p(x)`` is unchanged (a
    change of variables in the prior: no Jacobian enters the likelihood)."""
    gen.check()
    return Partial(functools.partial(_one_latent, gen, then), params, then_params)


def _one_latent(gen, then, params, then_params, u):
    z = jax.scipy.special.erf(u / math.sqrt(2.0)) if gen.latent == "uniform" else u
    out = gen.apply({"params": params}, z[None])
    return (out if then is None else then(then_params, out))[0]


def discriminator_loss(
    logit_real: Float[Array, " m"], logit_fake: Float[Array, " m"]
) -> Float[Array, ""]:
    """The discriminator's cross-entropy on m real and m generated examples, averaged over
    the 2m: ``-½ [mean log d(x) + mean log(1 - d(g(z)))] = -v/2`` (eq. 20.80)."""
    return 0.5 * (jnp.mean(jax.nn.softplus(-logit_real)) + jnp.mean(jax.nn.softplus(logit_fake)))


def generator_loss(
    logit_fake: Float[Array, " m"], kind: str = "non_saturating"
) -> Float[Array, ""]:
    """``minimax``: ``mean log(1 - d(g(z)))`` (the generator's part of v, minimised);
    ``non_saturating``: ``-mean log d(g(z))`` (Goodfellow et al. 2014 §3)."""
    if kind == "minimax":
        return -jnp.mean(jax.nn.softplus(logit_fake))
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-logit_fake))
    raise ConfigError(f"generator loss {kind!r}: use one of {GENERATOR_LOSSES}")


def gan_players(
    gen: MLPGenerator,
    disc: MaxoutDiscriminator,
    disc_optimizer: optax.GradientTransformation,
    gen_optimizer: optax.GradientTransformation,
    *,
    k: int = 1,
    loss: str = "non_saturating",
    dropout_for_generator: bool = True,
) -> tuple[Player, Player]:
    """The two :class:`~egm.train.Player`\\ s of Goodfellow et al.'s algorithm 1 for
    :func:`egm.train.make_multi_step` (params ``{"disc", "gen"}``, batch ``(k·m, D)`` real
    examples): ``k`` discriminator updates, each on its own m examples and m fresh samples
    (``split_batch``), then one generator update on m fresh samples.  The discriminator runs
    with its dropout in both updates (``dropout_for_generator=False``: without it in the
    generator's, the paper code's ``no_drop_in_d_for_g``).  Metrics: ``disc/loss``,
    ``disc/d_real`` and ``disc/d_fake`` (mean d on each half), ``gen/loss``."""
    if not (isinstance(k, int) and k >= 1):
        raise ConfigError(f"k (discriminator updates per generator update) must be >= 1, got {k!r}")
    if loss not in GENERATOR_LOSSES:
        raise ConfigError(f"generator loss {loss!r}: use one of {GENERATOR_LOSSES}")
    gen.check(), disc.check()

    def d_logit(p, x, key):
        return disc.apply({"params": p}, x, dropout_key=key)

    def disc_loss(dp, gp, x, key):
        k_z, k_r, k_f = jax.random.split(key, 3)
        fake = jax.lax.stop_gradient(sample(k_z, gen, gp, x.shape[0]))
        lr, lf = d_logit(dp, x, k_r), d_logit(dp, fake, k_f)
        aux = {"d_real": jnp.mean(jax.nn.sigmoid(lr)), "d_fake": jnp.mean(jax.nn.sigmoid(lf))}
        return discriminator_loss(lr, lf), aux

    def gen_loss(gp, dp, m, key):
        k_z, k_d = jax.random.split(key)
        fake = sample(k_z, gen, gp, m)
        return generator_loss(d_logit(dp, fake, k_d if dropout_for_generator else None), loss)

    def disc_objective(params, batch, key, chains, aux):
        (value, extra), g = jax.value_and_grad(disc_loss, has_aux=True)(
            params["disc"], params["gen"], batch, key
        )
        return ObjectiveOut(g, chains, aux, {"loss": value, **extra})

    def gen_objective(params, batch, key, chains, aux):
        m = batch.shape[0] // k
        value, g = jax.value_and_grad(gen_loss)(params["gen"], params["disc"], m, key)
        return ObjectiveOut(g, chains, aux, {"loss": value})

    return (
        Player("disc", disc_objective, disc_optimizer, n_updates=k, split_batch=True),
        Player("gen", gen_objective, gen_optimizer, n_updates=1),
    )


def goodfellow_sgd(
    learning_rate: float,
    steps_per_epoch: int,
    *,
    momentum: tuple[float, float] = (0.5, 0.7),
    momentum_epochs: tuple[int, int] = (1, 250),
    decay_factor: float = 1.000004,
    min_lr: float = 1e-6,
) -> optax.GradientTransformation:
    """SGD with momentum as in Goodfellow et al.'s MNIST run (pylearn2's ``Momentum``,
    ``MomentumAdjustor`` and ``ExponentialDecay``): ``v ← μ_t v + g``, update ``-ε_t v`` with
    ``ε_t = max(ε / decay_factor^t, min_lr)`` after t updates and μ rising linearly from
    ``momentum[0]`` to ``momentum[1]`` between ``momentum_epochs`` (epochs of
    ``steps_per_epoch`` updates).  ``learning_rate`` is an injected hyper-parameter (sweepable);
    the schedules are static."""
    _positive("learning_rate", learning_rate)
    if steps_per_epoch < 1 or not decay_factor >= 1 or not 0 <= min(momentum) <= max(momentum) < 1:
        raise ConfigError(
            f"goodfellow_sgd: need steps_per_epoch >= 1 (got {steps_per_epoch}), decay_factor "
            f">= 1 (got {decay_factor}) and momenta in [0, 1) (got {momentum})"
        )
    (m0, m1), (e0, e1) = momentum, momentum_epochs
    log_decay = math.log(decay_factor)

    def mu(count):
        frac = jnp.clip((count / steps_per_epoch - e0) / max(e1 - e0, 1), 0.0, 1.0)
        return m0 + (m1 - m0) * frac

    def factory(learning_rate, momentum):
        def decay(t):
            return jnp.maximum(jnp.exp(-log_decay * t), min_lr / learning_rate)

        return optax.chain(
            optax.trace(decay=momentum),
            optax.scale_by_schedule(decay),
            optax.scale_by_learning_rate(learning_rate),
        )

    return optax.inject_hyperparams(factory)(learning_rate=learning_rate, momentum=mu)


def interpolation_path(
    z0: Float[Array, "r z"], z1: Float[Array, "r z"], steps: int
) -> Float[Array, "rs z"]:
    """Rows of ``steps`` linear interpolations (1 − t) z0 + t z1, t evenly in [0, 1], one row
    per pair, flattened row by row (the latent walks of Radford et al. 2015, §20.10.4)."""
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    return ((1 - t) * z0[:, None] + t * z1[:, None]).reshape(-1, z0.shape[-1])


def arithmetic_latents(
    key: PRNGKeyArray,
    z: Float[Array, "n z"],
    class_probs: Float[Array, "n k"],
    classes: tuple[int, int, int],
    per_class: int = 3,
    noise: float = 0.25,
) -> Float[Array, "m z"]:
    """Latent arithmetic of Radford et al. (2015, Fig. 7): for classes (a, b, c), the
    ``per_class`` draws of ``z`` a classifier is surest of and their mean, row by row; then
    z̄(a) − z̄(b) + z̄(c) with uniform noise in ±``noise`` added ``per_class`` times, and alone.
    ``per_class + 1`` latents per row, 4 rows."""
    probs = np.asarray(class_probs)
    picks = [np.argsort(-probs[:, c])[:per_class] for c in classes]
    means = jnp.stack([z[i].mean(0) for i in picks])
    z_res = means[0] - means[1] + means[2]
    z_out = z_res + jax.random.uniform(key, (per_class, z.shape[-1]), minval=-noise, maxval=noise)
    rows = [jnp.concatenate([z[i], means[j][None]]) for j, i in enumerate(picks)]
    return jnp.concatenate([*rows, z_out, z_res[None]])
