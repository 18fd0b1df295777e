r"""Convolutional generators (§20.10.6) and the DCGAN of Radford et al. (2015) (§20.10.4).

**Transposed convolution.**  A generator maps a small code to a large image; the layer that
grows the spatial size is the *transpose* of a strided convolution (the operation that back-
propagates through one): each input position ``(i, j)`` adds its ``k × k × C_out`` block
``x[i, j] · W`` into the output at ``(s·i + a - p, s·j + c - p)``, so an ``H × W`` input gives
``(H-1)·s - 2p + k`` rows (PyTorch's ``ConvTranspose2d`` convention; ``k = 4, s = 2, p = 1``
doubles the size).  :func:`conv_transpose` computes it as one matrix product followed by
``(k/s)²`` shifted additions (``k`` a multiple of ``s``), and :func:`conv` the strided
convolution as im2col patches times the kernel: XLA:CPU's own convolution *gradients* are an
order of magnitude slower (egm.eval.features, BUILD_NOTES.md), and ``conv_impl="xla"`` gives
the same function through ``lax.conv_general_dilated`` / ``lax.conv_transpose`` (tested equal).

**Un-pooling** (§20.10.6, Dosovitskiy et al. 2015).  The inverse of max pooling is not
defined; the book's un-pooling approximates it under three simplifying conditions: the stride
equals the pooling width ``k``, the maximum of each pooling region is its upper-left input,
and every other input is zero.  :func:`unpool` therefore copies each value into the upper-left
corner of a ``k × k`` block of zeros; :class:`ConvGenerator` with ``upsample="unpool"`` follows
each un-pooling with a 5 × 5 convolution, as Dosovitskiy et al.'s chair generator does.

**DCGAN** (Radford et al. 2015, §3): strided convolutions in the discriminator and transposed
convolutions in the generator (no pooling), batch normalisation in both except the
generator's output and the discriminator's input layer, ReLU in the generator with a bounded
output, LeakyReLU (slope 0.2) in the discriminator, no fully connected hidden layers, weights
``N(0, 0.02²)``, Adam (learning rate 2e-4, β₁ = 0.5), minibatch 128.  The 28 × 28 scaling is
the one of the PyTorch examples' DCGAN with its 64 × 64 stack cut to two up-samplings::

    G: z (100) -> dense 7·7·2f, BN, ReLU -> convT 4/2/1 -> 14×14×f, BN, ReLU
               -> convT 4/2/1 -> 28×28×1, sigmoid
    D: x (28×28) -> conv 4/2/1 -> 14×14×f, LeakyReLU -> conv 4/2/1 -> 7×7×2f, BN, LeakyReLU
               -> dense 1 (the logit)

(the dense layers are the PyTorch example's 7 × 7 valid convolutions on a 1 × 1 code and a
7 × 7 map).  The output is a sigmoid for grey levels in [0, 1]: ``σ(a) = (tanh(a/2) + 1)/2``,
the paper's tanh output affinely rescaled, and the discriminator maps its input to
``2x - 1`` so it sees the paper's [-1, 1] range.

**Batch-norm statistics in the train state.**  :func:`egm.train.make_multi_step` carries one
``aux`` pytree through every player's updates; a DCGAN keeps its running statistics there,
``aux = {"gen": batch_stats, "disc": batch_stats}`` (:func:`init_dcgan`), so a sweep stacks
them with the params and every member keeps its own.  Training applies both nets in train
mode (batch statistics; running averages with momentum 0.9 in Flax's convention, PyTorch's
0.1), updating them as the PyTorch example does: the discriminator's on its real and its
generated minibatch and again in the generator's update, the generator's once per step (in
its own update).  :func:`sample` uses the running statistics (eval mode).
"""

from __future__ import annotations

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError, DataError
from egm.models.gan import GENERATOR_LOSSES, discriminator_loss, generator_loss
from egm.train.state import ObjectiveOut, Player

__all__ = [
    "ConvDiscriminator",
    "ConvGenerator",
    "conv",
    "conv_transpose",
    "dcgan_players",
    "discriminator_logits",
    "generate",
    "init_dcgan",
    "sample",
    "unpool",
]

_IMPLS = ("matmul", "xla")
_UPSAMPLE = ("transpose", "unpool")
_DN = ("NHWC", "HWIO", "NHWC")


def _dcgan_normal(key, shape, dtype=jnp.float32):
    """Radford et al.'s weight initialisation, N(0, 0.02²)."""
    return 0.02 * jax.random.normal(key, shape, dtype)


def _bn_scale(key, shape, dtype=jnp.float32):
    """The PyTorch example's batch-norm scale initialisation, N(1, 0.02²)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


# ------------------------------------------------------------------------ the layers


def unpool(x: Float[Array, "b h w c"], k: int = 2) -> Float[Array, "b hk wk c"]:
    """Un-pooling (§20.10.6): each value of ``x`` in the upper-left corner of a ``k × k``
    block of zeros, ``y[:, k·i, k·j] = x[:, i, j]`` and ``y = 0`` elsewhere."""
    if not (isinstance(k, int) and k >= 1):
        raise ConfigError(f"un-pooling width k must be an integer >= 1, got {k!r}")
    b, h, w, c = x.shape
    y = jnp.zeros((b, h, k, w, k, c), x.dtype).at[:, :, 0, :, 0, :].set(x)
    return y.reshape(b, h * k, w * k, c)


def conv(
    x: Float[Array, "b h w ci"],
    kernel: Float[Array, "k k ci co"],
    stride: int = 1,
    padding: int = 0,
    impl: str = "matmul",
) -> Float[Array, "b ho wo co"]:
    """The convolution (cross-correlation, as in every deep-learning library) of ``x`` with an
    HWIO ``kernel`` at ``stride`` after zero-padding ``padding`` pixels on each side:
    ``y[i, j] = Σ_{a,c} x_pad[s·i + a, s·j + c] · W[a, c]``, ``(h + 2p - k)//s + 1`` rows."""
    k, s = kernel.shape[0], stride
    if impl == "xla":
        pad = ((padding, padding), (padding, padding))
        return jax.lax.conv_general_dilated(x, kernel, (s, s), pad, dimension_numbers=_DN)
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    cols = [
        xp[:, a : a + s * (ho - 1) + 1 : s, c : c + s * (wo - 1) + 1 : s, :]
        for a in range(k)
        for c in range(k)
    ]
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(-1, kernel.shape[-1])


def conv_transpose(
    x: Float[Array, "b h w ci"],
    kernel: Float[Array, "k k ci co"],
    stride: int = 2,
    padding: int = 1,
    impl: str = "matmul",
) -> Float[Array, "b ho wo co"]:
    """The transpose of :func:`conv` with the same ``kernel``, ``stride`` and ``padding``
    (PyTorch's ``ConvTranspose2d`` with an HWIO kernel): ``y[s·i + a - p, s·j + c - p] +=
    x[i, j] · W[a, c]``, ``(h - 1)·s - 2p + k`` rows.  ``kernel``'s size must be a multiple
    of ``stride`` (4 and 2 in a DCGAN)."""
    k, s, p = kernel.shape[0], stride, padding
    if k % s:
        raise ConfigError(f"conv_transpose: kernel size {k} must be a multiple of stride {s}")
    if impl == "xla":
        # the gradient of conv with respect to its input: the flipped kernel on the dilated x
        flipped = kernel[::-1, ::-1]
        pad = ((k - 1 - p, k - 1 - p),) * 2
        return jax.lax.conv_general_dilated(
            x, flipped, (1, 1), pad, lhs_dilation=(s, s), dimension_numbers=_DN
        )
    b, h, w, _ = x.shape
    co, q = kernel.shape[-1], k // s
    # z[b, i, j, qa, ra, qc, rc, o] = x[b, i, j] · W[s·qa + ra, s·qc + rc]: output position
    # s·i + a = s·(i + qa) + ra, so each (qa, qc) is one shift of a (h, s, w, s) block
    z = (x @ kernel.transpose(2, 0, 1, 3).reshape(x.shape[-1], -1)).reshape(b, h, w, q, s, q, s, co)
    full = sum(
        jnp.pad(z[:, :, :, qa, :, qc], ((0, 0), (qa, q - 1 - qa), (qc, q - 1 - qc)) + ((0, 0),) * 3)
        for qa in range(q)
        for qc in range(q)
    )  # (b, h + q - 1, w + q - 1, s, s, co) -> rows s·(i + qa) + ra
    full = full.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h + q - 1) * s, (w + q - 1) * s, co)
    ho, wo = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
    return full[:, p : p + ho, p : p + wo]


class _Conv(nn.Module):
    features: int
    kernel_size: int
    stride: int
    padding: int
    transpose: bool
    impl: str
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", _dcgan_normal, (k, k, x.shape[-1], self.features))
        fn = conv_transpose if self.transpose else conv
        y = fn(x, kernel, self.stride, self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _bn(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, scale_init=_bn_scale, name=name
    )


def _check_common(features: int, image_size: int, impl: str) -> None:
    if not (isinstance(features, int) and features >= 1):
        raise ConfigError(f"features (channels of the first layer) must be >= 1, got {features!r}")
    if not (isinstance(image_size, int) and image_size >= 4 and image_size % 4 == 0):
        raise ConfigError(
            f"image_size {image_size!r}: this architecture up-samples twice by 2 (or down-samples "
            f"twice by 2), so it takes square images whose side is a multiple of 4 (28 for "
            f"MNIST); pad or crop the images to such a size"
        )
    if impl not in _IMPLS:
        raise ConfigError(f"conv_impl {impl!r}: use one of {_IMPLS}")


class ConvGenerator(nn.Module):
    """``x = g(z)`` (module docstring): ``z ~ N(0, I_latent_dim)`` → dense ``(s/4)² · 2f`` →
    two ×2 up-samplings (``upsample="transpose"``: transposed convolutions 4/2/1;
    ``"unpool"``: :func:`unpool` then a 5 × 5 convolution) → ``s × s`` grey levels (sigmoid),
    flattened to ``s²``.  Batch norm after every layer but the output (``batch_norm=False``:
    none).  ``train=True``: batch statistics (call with ``mutable=["batch_stats"]``)."""

    latent_dim: int = 100
    features: int = 64
    image_size: int = 28
    upsample: str = "transpose"
    batch_norm: bool = True
    conv_impl: str = "matmul"

    def check(self) -> ConvGenerator:
        """Raise :class:`ConfigError` for sizes or names the module cannot take."""
        if not (isinstance(self.latent_dim, int) and self.latent_dim >= 1):
            raise ConfigError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        _check_common(self.features, self.image_size, self.conv_impl)
        if self.upsample not in _UPSAMPLE:
            raise ConfigError(f"upsample {self.upsample!r}: use one of {_UPSAMPLE}")
        return self

    def noise(self, key: PRNGKeyArray, n: int) -> Float[Array, "n z"]:
        """``n`` draws of p(z) = N(0, I)."""
        return jax.random.normal(key, (n, self.latent_dim), jnp.float32)

    def _up(self, h, features, name, use_bias):
        if self.upsample == "transpose":
            return _Conv(features, 4, 2, 1, True, self.conv_impl, use_bias, name=name)(h)
        return _Conv(features, 5, 1, 2, False, self.conv_impl, use_bias, name=name)(unpool(h, 2))

    @nn.compact
    def __call__(self, z: Float[Array, "n z"], train: bool = False) -> Float[Array, "n x"]:
        s0, f, bn = self.image_size // 4, self.features, self.batch_norm
        h = nn.Dense(s0 * s0 * 2 * f, use_bias=not bn, kernel_init=_dcgan_normal, name="project")
        h = h(z).reshape(z.shape[0], s0, s0, 2 * f)
        if bn:
            h = _bn(train, "bn0")(h)
        h = self._up(nn.relu(h), f, "up1", use_bias=not bn)
        if bn:
            h = _bn(train, "bn1")(h)
        out = self._up(nn.relu(h), 1, "up2", use_bias=True)
        return nn.sigmoid(out.reshape(z.shape[0], -1))


class ConvDiscriminator(nn.Module):
    """The logit ``l`` of ``d(x) = σ(l)`` (module docstring): ``2x - 1`` → conv 4/2/1 (``f``
    channels, no batch norm) → LeakyReLU → conv 4/2/1 (``2f``), batch norm → LeakyReLU →
    dense 1.  Inputs ``(n, s²)`` grey levels; ``train=True`` as for :class:`ConvGenerator`."""

    features: int = 64
    image_size: int = 28
    leak: float = 0.2
    batch_norm: bool = True
    conv_impl: str = "matmul"

    def check(self) -> ConvDiscriminator:
        _check_common(self.features, self.image_size, self.conv_impl)
        if not 0 <= self.leak < 1:
            raise ConfigError(f"leak (LeakyReLU slope) must be in [0, 1), got {self.leak}")
        return self

    @nn.compact
    def __call__(self, x: Float[Array, "n x"], train: bool = False) -> Float[Array, " n"]:
        s, f, bn = self.image_size, self.features, self.batch_norm
        if x.shape[-1] != s * s:
            raise DataError(
                f"the discriminator takes {s}x{s} images flattened to {s * s} values, got "
                f"inputs of shape {x.shape}; set image_size to the data's side"
            )
        h = (2.0 * x - 1.0).reshape(x.shape[0], s, s, 1)
        h = _Conv(f, 4, 2, 1, False, self.conv_impl, name="down1")(h)
        h = nn.leaky_relu(h, self.leak)
        h = _Conv(2 * f, 4, 2, 1, False, self.conv_impl, use_bias=not bn, name="down2")(h)
        if bn:
            h = _bn(train, "bn1")(h)
        h = nn.leaky_relu(h, self.leak).reshape(x.shape[0], -1)
        return nn.Dense(1, kernel_init=_dcgan_normal, name="output")(h)[:, 0]


# ------------------------------------------------------------------------ the game


def init_dcgan(key: PRNGKeyArray, gen: ConvGenerator, disc: ConvDiscriminator) -> tuple[dict, dict]:
    """``(params, batch_stats)``, each ``{"gen": ..., "disc": ...}``: the params for
    :func:`egm.train.init_multi_state` and the running statistics for its ``aux``."""
    gen.check(), disc.check()
    if gen.image_size != disc.image_size:
        raise ConfigError(
            f"generator and discriminator image sizes differ ({gen.image_size} vs "
            f"{disc.image_size})"
        )
    return _init_vars(key, gen, disc)


@partial(jax.jit, static_argnums=(1, 2))
def _init_vars(key, gen, disc):
    """The initial variables, every random leaf from ONE normal draw (one random-number
    kernel to compile instead of one per layer): kernels ``0.02·n`` (:func:`_dcgan_normal`),
    batch-norm scales ``1 + 0.02·n`` (:func:`_bn_scale`), biases and running means 0,
    running variances 1 (what ``nn.Module.init`` gives, in law)."""
    shapes = {
        "gen": jax.eval_shape(gen.init, key, jnp.zeros((2, gen.latent_dim))),
        "disc": jax.eval_shape(disc.init, key, jnp.zeros((2, disc.image_size**2))),
    }
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = [math.prod(x.shape) for _, x in leaves]
    noise = jnp.split(jax.random.normal(key, (sum(sizes),), jnp.float32), np.cumsum(sizes)[:-1])

    def value(path, x, n):
        name = path[-1].key
        if name == "kernel":
            return 0.02 * n.reshape(x.shape)
        if name == "scale":
            return 1.0 + 0.02 * n.reshape(x.shape)
        return jnp.full(x.shape, 1.0 if name == "var" else 0.0, x.dtype)

    out = jax.tree_util.tree_unflatten(
        tree, [value(p, x, n) for (p, x), n in zip(leaves, noise, strict=True)]
    )
    params = {m: out[m]["params"] for m in ("gen", "disc")}
    stats = {m: out[m].get("batch_stats", {}) for m in ("gen", "disc")}
    return params, stats


def _vars(params: dict, stats: dict) -> dict:
    return {"params": params, "batch_stats": stats}


def sample(
    key: PRNGKeyArray, gen: ConvGenerator, params: dict, batch_stats: dict, n: int
) -> Float[Array, "n x"]:
    """``n`` samples ``g(z)``, ``z ~ N(0, I)``, in eval mode (the running statistics)."""
    return generate(gen, params, batch_stats, gen.noise(key, n))


_CHUNK = 128


def generate(
    gen: ConvGenerator, params: dict, batch_stats: dict, z: Float[Array, "n z"]
) -> Float[Array, "n x"]:
    """``g(z)`` in eval mode (the running statistics; each sample independent of the others).
    Concrete ``z`` runs in chunks of 128 codes (the last zero-padded), so one compiled
    program serves every ``n``; traced ``z`` (inside a jit) is one application."""
    if isinstance(z, jax.core.Tracer):
        return gen.apply(_vars(params, batch_stats), z)
    z = np.asarray(z, np.float32)
    n = len(z)
    pad = np.zeros((-n % _CHUNK, *z.shape[1:]), np.float32)
    zp = np.concatenate([z, pad])
    out = [np.asarray(_generate(gen, params, batch_stats, zp[i : i + _CHUNK]))
           for i in range(0, len(zp), _CHUNK)]  # fmt: skip
    return jnp.asarray(np.concatenate(out)[:n])


@partial(jax.jit, static_argnums=0)
def _generate(gen, params, batch_stats, z):
    return gen.apply(_vars(params, batch_stats), z)


def discriminator_logits(
    disc: ConvDiscriminator, params: dict, batch_stats: dict, x: Float[Array, "n x"]
) -> Float[Array, " n"]:
    """The discriminator's logits in eval mode (the running statistics), jitted."""
    return _disc_eval(disc, params, batch_stats, x)


@partial(jax.jit, static_argnums=0)
def _disc_eval(disc, params, batch_stats, x):
    return disc.apply(_vars(params, batch_stats), x)


def dcgan_players(
    gen: ConvGenerator,
    disc: ConvDiscriminator,
    disc_optimizer: optax.GradientTransformation,
    gen_optimizer: optax.GradientTransformation,
    *,
    k: int = 1,
    loss: str = "non_saturating",
) -> tuple[Player, Player]:
    """The two :class:`~egm.train.Player`\\ s of a DCGAN for :func:`egm.train.make_multi_step`
    (params ``{"disc", "gen"}``, aux the running statistics of :func:`init_dcgan`, batch
    ``(k·m, s²)`` real images): ``k`` discriminator updates (each on its own m examples and m
    fresh samples; real and generated minibatches normalised separately, as in Radford et
    al.'s and the PyTorch example's code), then one generator update on m fresh samples.
    Metrics: ``disc/loss``, ``disc/d_real``, ``disc/d_fake``, ``gen/loss``."""
    if not (isinstance(k, int) and k >= 1):
        raise ConfigError(f"k (discriminator updates per generator update) must be >= 1, got {k!r}")
    if loss not in GENERATOR_LOSSES:
        raise ConfigError(f"generator loss {loss!r}: use one of {GENERATOR_LOSSES}")
    gen.check(), disc.check()
    mut = ["batch_stats"]

    def gen_train(gp, gs, key, m):
        x, new = gen.apply(_vars(gp, gs), gen.noise(key, m), train=True, mutable=mut)
        return x, new["batch_stats"]

    def disc_train(dp, ds, x):
        logit, new = disc.apply(_vars(dp, ds), x, train=True, mutable=mut)
        return logit, new["batch_stats"]

    def disc_loss(dp, gp, x, key, stats):
        fake = jax.lax.stop_gradient(gen_train(gp, stats["gen"], key, x.shape[0])[0])
        lr, ds = disc_train(dp, stats["disc"], x)
        lf, ds = disc_train(dp, ds, fake)
        m = {"d_real": jnp.mean(jax.nn.sigmoid(lr)), "d_fake": jnp.mean(jax.nn.sigmoid(lf))}
        return discriminator_loss(lr, lf), ({**stats, "disc": ds}, m)

    def gen_loss(gp, dp, m, key, stats):
        fake, gs = gen_train(gp, stats["gen"], key, m)
        lf, ds = disc_train(dp, stats["disc"], fake)
        return generator_loss(lf, loss), {"gen": gs, "disc": ds}

    def disc_objective(params, batch, key, chains, aux):
        (value, (aux, extra)), g = jax.value_and_grad(disc_loss, has_aux=True)(
            params["disc"], params["gen"], batch, key, aux
        )
        return ObjectiveOut(g, chains, aux, {"loss": value, **extra})

    def gen_objective(params, batch, key, chains, aux):
        m = batch.shape[0] // k
        (value, aux), g = jax.value_and_grad(gen_loss, has_aux=True)(
            params["gen"], params["disc"], m, key, aux
        )
        return ObjectiveOut(g, chains, aux, {"loss": value})

    return (
        Player("disc", disc_objective, disc_optimizer, n_updates=k, split_batch=True),
        Player("gen", gen_objective, gen_optimizer, n_updates=1),
    )
