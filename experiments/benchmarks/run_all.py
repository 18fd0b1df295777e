"""Run every egm benchmark, one after another, and print all their JSON lines.

    python experiments/benchmarks/run_all.py                  # full sizes (minutes)
    python experiments/benchmarks/run_all.py --quick          # tiny smoke run
    python experiments/benchmarks/run_all.py --out bench.jsonl --only gibbs_rbm,ais_rbm

Each benchmark runs in its own Python process (a fresh JAX runtime, no shared caches or
thread pools) and never two at once, since they time the same CPU.  The benchmarks
(DESIGN.md §4; egm and its peer always measured side by side in the same process):

* ``gibbs_rbm``: block Gibbs chain-sweeps/s of a 784x500 RBM, 1000 chains, vs thrml
  (target >= 20x) and vs a plain dense JAX sweep (target >= 0.9x).
* ``pcd_epoch``: one PCD-1 epoch on 60k binarized MNIST digits, 500 hidden, batch 100,
  vs scikit-learn's BernoulliRBM (target >= 2x faster).
* ``ais_rbm``: forward AIS, 100 chains x 14,500 temperatures on a 784x500 RBM
  (target < 20 s), vs a straightforward implementation of the same estimator.
* ``gibbs_dbm``: block-Gibbs chain-sweeps/s of a 784-500-1000 DBM, 1000 chains, and
  mean-field iterations/s on a 10k batch, each vs a hand-written dense reference
  (target >= 0.9x).
* ``nade``: NADE 784-500 test log-likelihood throughput and training epoch vs a PyTorch
  NADE written for the benchmark.
* ``vae_train``: VAE 784-200-200-50 training throughput vs pythae (target >= 1.5x).
* ``grbm_gibbs``: block-Gibbs chain-sweeps/s of a 784x500 Gaussian-Bernoulli RBM, 1000
  chains, and HMC chain-steps/s (20 leapfrog steps) on the mcRBM free energy of 8x8
  patches, each vs a hand-written dense JAX reference (target >= 0.9x).
* ``rng_cpu``: uniform draws/s on CPU under JAX's legacy vs default Threefry lowering
  (why egm's experiments use the legacy one on CPU).
* ``sweep``: 16 RBMs 784x64 (centered PCD-1) and 8 VAEs 784-200-200-50, each member its own
  seed and learning rate, trained by one vmapped jitted call per epoch vs the same members
  one after another (target >= 3x), with a check that member i is the i-th sequential run.
* ``flow_train``: RealNVP and MAF training throughput and test log-likelihood on a 2-D
  mixture vs flowjax, same architecture and steps (target >= 1.5x, equal or better likelihood).
* ``conv_rbm_gibbs``: conv RBM Gibbs chain-sweeps/s vs learnergy's ConvRBM and egm's dense
  Toeplitz RBM (target >= 3x learnergy).
* ``dcgan_step``: DCGAN 28x28 (f=64, batch 128) training steps/s vs the PyTorch examples'
  DCGAN (target >= 1.5x).
* ``ddpm_step``: a DDPM training step (ε-MLP) on MNIST vs the same network and loss in
  PyTorch (target >= 1.5x).
* ``drbm_epoch``: a discriminative RBM (784-500, batch 100) training epoch vs learnergy's
  DiscriminativeRBM (target >= 2x).
* ``rnnrbm_epoch``: RNN-RBM (CD through time) and RNN-NADE (exact gradient) training epochs on
  JSB Chorales vs PyTorch versions written for the benchmark.
* ``budget``: VAE vs pythae, NADE vs PyTorch, RBM vs scikit-learn, each trained for the same
  wall-clock budget and scored by the same egm estimator (IS, exact, AIS): who wins in equal time.

Beside its ratio, ``gibbs_rbm``, ``pcd_epoch``, ``ais_rbm`` and ``sweep`` print
``gemm_bound_fraction``: the seconds of the same matrix products timed alone (a jitted scan
of the same length, no random draws) over egm's seconds.

Peers (thrml, scikit-learn, torch, pythae) come with ``pip install -e '.[bench]'``; a missing one gives
a JSON line with ``"skipped"`` instead of a ratio.  Remaining arguments are passed to
every script (e.g. ``--repeats 3``).  Exit status: 1 if any script failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "gibbs_rbm",
    "pcd_epoch",
    "ais_rbm",
    "rng_cpu",
    "gibbs_dbm",
    "nade",
    "vae_train",
    "grbm_gibbs",
    "sweep",
    "budget",
    "flow_train",
    "conv_rbm_gibbs",
    "dcgan_step",
    "ddpm_step",
    "drbm_epoch",
    "rnnrbm_epoch",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a, rest = p.parse_known_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = set(names) - set(SCRIPTS)
    if unknown:
        p.error(f"unknown benchmarks {sorted(unknown)}; choose from {list(SCRIPTS)}")
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if a.quick else []), *rest]
        print(f"# {' '.join(cmd)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        for ln in lines:
            json.loads(ln)  # fail loudly on a malformed line
            print(ln, flush=True)
        if a.out and lines:
            with open(a.out, "a") as f:
                f.write("\n".join(lines) + "\n")
        if proc.returncode != 0:
            failed.append(name)
            print(f"# {name} FAILED with exit status {proc.returncode}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
