"""Gaussian–Bernoulli RBM on real-valued MNIST (§20.5.1): the grbm_patches experiment with
``dataset = "mnist"``.

    python experiments/grbm_mnist.py --config tiny         # smoke test, seconds (embedded subset)
    python experiments/grbm_mnist.py --config full --data_dir ../shared/data/mnist

Grey levels are dequantised, ``(pixel + u) / 256`` with one fixed draw ``u ~ U[0, 1)``, and
standardised per pixel (the transform is stored in the work directory).  The GRBM learns
per-pixel variances (clipped to [min_var, max_var] after every update) by PCD with block
Gibbs or Gibbs–Langevin (``--sampler gibbs_langevin``, Liao et al. 2022).  results.json
holds the AIS test log-likelihood in nats per standardised image and in bits per pixel of
the 8-bit image (comparable across models), the full-covariance Gaussian's exact figure on
the same data, and denoising PSNR against the Wiener filter.  Every other field and
output is grbm_patches'; see its docstring.

Full config (50k/10k digits, 500 hidden, PCD-1 Gibbs, 100 epochs; AIS 100 chains x 100,000
temperatures): test ≥ 5.42 bits per pixel (-731.75 nats per image, optimistic: AIS did not
converge, ESS 1.0, flagged in results.json) against 5.29 for the exact full-covariance
Gaussian; 146 s of training, 256 s in all on the 2-core CPU (BUILD_NOTES.md, issue 4).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grbm_patches  # noqa: E402
from _common import parse_overrides, rng_mode  # noqa: E402

_BASE = grbm_patches.Config(
    dataset="mnist",
    source="embedded",
    n_train=4000,
    n_test=1000,
    whitening="standardize",
    whiten_eps=0.0,  # dequantised: every pixel varies, so every pixel gets unit variance
    n_hidden=500,
    epochs=20,
    workdir="runs/grbm_mnist",
)

PRESETS = {
    "default": _BASE,
    "tiny": dataclasses.replace(
        _BASE,
        n_train=500,
        n_test=200,
        n_hidden=16,
        epochs=2,
        n_chains=20,
        batch_size=50,
        ais_chains=16,
        ais_temps=200,
        n_samples=16,
        sample_steps=20,
        denoise_n=20,
        checkpoint_every=1,
        progress=False,
        workdir="runs/grbm_mnist_tiny",
    ),
    "full": dataclasses.replace(
        _BASE,
        source="auto",
        n_train=50_000,
        n_test=10_000,
        epochs=100,
        ais_temps=100_000,
        workdir="runs/grbm_mnist_full",
    ),
}


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(PRESETS["default"], argv, PRESETS).validate()
    with rng_mode(cfg.fast_cpu_rng):
        return grbm_patches._run(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
