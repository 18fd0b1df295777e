"""egm.models.diffusion against diffusers' ``DDPMScheduler`` (the ``bench`` extra; skipped when
diffusers is not installed).

Same schedule, same numbers: betas, ᾱ_t, the posterior variance β̃_t, and the mean of one
reverse step x_{t-1} from (ε̂, x_t).  diffusers computes in float32 torch from float32 betas,
egm in float64 numpy then rounds to float32: the two differ by a few float32 ulps of
quantities of order 1, amplified at most by the products over T = 1000 steps (ᾱ_t: a relative
error ≤ T · 6e-8 ≈ 6e-5 in the worst case) -- tolerance rtol 1e-4.  The step's mean is
compared after subtracting diffusers' own noise (regenerated from the same seeded
generator): the mean inherits ᾱ_t's relative error (≤ 6e-5) at most twice, through 1/√ᾱ_t in
x̂_0 and through the recombination -- rtol 2e-4 (atol 1e-5 for values near 0).  diffusers'
β̃_t is computed from β_t = 1 - ᾱ_t/ᾱ_{t-1} in float32, which costs it up to 2e-7 absolute
(a relative 1e-3 at β_t ~ 1e-4; egm's float64 value is the accurate one): atol 2e-7 there.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from egm.models import diffusion as dm

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
def test_schedule_and_posterior_match_diffusers(kind):
    T = 1000
    sch = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=kind,
                                  variance_type="fixed_small", clip_sample=False)  # fmt: skip
    betas = dm.linear_betas(T) if kind == "linear" else dm.cosine_betas(T)
    s = dm.make_schedule(betas)
    np.testing.assert_allclose(np.asarray(s.betas), sch.betas.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(s.alpha_bars), sch.alphas_cumprod.numpy(), rtol=1e-4,
                               atol=1e-7)  # fmt: skip
    post = np.array([float(sch._get_variance(t)) for t in range(1, T)])
    # diffusers recomputes β_t = 1 - ᾱ_t/ᾱ_{t-1} in float32: an absolute error of a few ulps
    # of 1 (≤ 2e-7) in β_t, hence in β̃_t ≤ β_t; egm's float64 β̃_t has none
    np.testing.assert_allclose(np.asarray(s.posterior_variance)[1:], post, rtol=1e-4, atol=2e-7)


def test_reverse_step_mean_matches_diffusers():
    T = 1000
    sch = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                  variance_type="fixed_small", clip_sample=False)  # fmt: skip
    s = dm.make_schedule(dm.linear_betas(T))
    rng = np.random.default_rng(0)
    xt = rng.standard_normal((4, 6)).astype(np.float32)
    eps = rng.standard_normal((4, 6)).astype(np.float32)
    for t in (1, 10, 500, 999):
        out = sch.step(torch.from_numpy(eps), t, torch.from_numpy(xt),
                       generator=torch.Generator().manual_seed(t)).prev_sample.numpy()  # fmt: skip
        noise = diffusers.utils.torch_utils.randn_tensor(
            (4, 6), generator=torch.Generator().manual_seed(t), dtype=torch.float32
        ).numpy()
        their_mean = out - np.sqrt(float(sch._get_variance(t))) * noise
        mean, _, _ = dm.p_mean_variance(s, jnp.asarray(eps), jnp.asarray(xt),
                                        jnp.full((4,), t, jnp.int32))  # fmt: skip
        np.testing.assert_allclose(np.asarray(mean), their_mean, rtol=2e-4, atol=1e-5)


def test_ddpm_step_benchmark_quick(run_quick):
    """experiments/benchmarks/ddpm_step.py at --quick sizes: one JSON line, ratio = egm/peer."""
    (rec,) = run_quick("ddpm_step")
    assert rec["unit"] == "examples/s" and rec["steps_per_call"] == 4
    assert rec["ratio"] == pytest.approx(rec["egm"] / rec["peer_value"], rel=2e-2)
