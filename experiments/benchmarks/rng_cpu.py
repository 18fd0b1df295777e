"""Threefry random bits on CPU: JAX's default (partitionable) lowering vs the legacy one.

    python experiments/benchmarks/rng_cpu.py            # 100 draws of (100, 784) uniforms
    python experiments/benchmarks/rng_cpu.py --quick

egm's experiments and benchmarks trace under ``jax.threefry_partitionable(False)`` on CPU
(``egm.run.driver.rng_mode``, the experiments' ``fast_cpu_rng`` field); this measures why,
side by side in one process.
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402

FULL = dict(shape=(100, 784), n_draws=100, repeats=5)
QUICK = dict(shape=(8, 16), n_draws=4, repeats=2)


def _draws(shape, n_draws, partitionable: bool):
    with jax.threefry_partitionable(partitionable):

        @jax.jit
        def f(key):
            def body(c, k):
                return c + jax.random.uniform(k, shape).sum(), None

            return jax.lax.scan(body, 0.0, jax.random.split(key, n_draws))[0]

    def call():  # jit's cache is keyed on the setting: call under it too
        with jax.threefry_partitionable(partitionable):
            return jax.block_until_ready(f(jax.random.key(1)))

    return call


def main(argv: list[str] | None = None) -> list[dict]:
    a = _bench.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    env = _bench.environment()
    cfg = QUICK if a.quick else FULL
    shape, n = cfg["shape"], cfg["n_draws"]
    contenders = {"legacy": _draws(shape, n, False), "partitionable": _draws(shape, n, True)}
    repeats = a.repeats or cfg["repeats"]
    times = _bench.interleaved(contenders, repeats)
    med = {k: _bench.median(t) for k, t in times.items()}
    lines = [
        _bench.emit(
            {
                "bench": "threefry_uniform_cpu",
                "egm": _bench.sig(n * shape[0] * shape[1] / med["legacy"]),
                "peer": "jax default (threefry_partitionable=True)",
                "peer_value": _bench.sig(n * shape[0] * shape[1] / med["partitionable"]),
                "ratio": round(med["partitionable"] / med["legacy"], 2),
                "unit": "uniforms/s",
                "ratio_is": "egm's setting / jax default",
                "target": "none (informational: explains the experiments' RNG setting)",
                "target_met": None,
                "stat": f"median of {repeats} interleaved calls",
                "quick": a.quick,
                **env,
            }
        ),
    ]
    return lines


if __name__ == "__main__":
    main()
