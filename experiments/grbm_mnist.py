"""Gaussian–Bernoulli RBM on real-valued MNIST (§20.5.1): grbm_patches' model and training on
dequantised digits.  This file is a command alias: ``--config tiny|default|full`` here runs
``grbm_patches.py --config mnist_tiny|mnist|mnist_full`` (one declaration, no copy).

    python experiments/grbm_mnist.py --config tiny         # smoke test, seconds (embedded subset)
    python experiments/grbm_mnist.py --config full --data_dir ../shared/data/mnist

Grey levels are dequantised, ``(pixel + u) / 256`` with one fixed draw ``u ~ U[0, 1)``
(``--data_seed``), and standardised per pixel (the transform is stored in the work
directory).  The GRBM learns per-pixel variances (clipped to [min_var, max_var] after every
update) by PCD with block Gibbs or Gibbs–Langevin (``--sampler gibbs_langevin``, Liao et al.
2022).  results.json holds the AIS test log-likelihood in nats per standardised image and
in bits per pixel of the 8-bit image (comparable across models), the full-covariance
Gaussian's exact figure on the same data, and denoising PSNR against the Wiener filter.

The figures of the ``full`` preset (AIS does not converge there: results.json flags the
optimistic figure): BUILD_NOTES.md (issue 4).
"""

import runpy
import sys
from pathlib import Path

_PRESETS = {"tiny": "mnist_tiny", "default": "mnist", "full": "mnist_full"}


def _argv(argv: list[str]) -> list[str]:
    out, it, named = [], iter(argv), False
    for a in it:
        if a == "--config" or a.startswith("--config="):
            name = a.split("=", 1)[1] if "=" in a else next(it, "")
            out += ["--config", _PRESETS.get(name, name)]
            named = True
        else:
            out.append(a)
    return out if named else ["--config", "mnist", *out]


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_argv(sys.argv[1:])]
    runpy.run_path(str(Path(__file__).with_name("grbm_patches.py")), run_name="__main__")
