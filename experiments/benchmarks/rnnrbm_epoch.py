"""RNN-RBM and RNN-NADE training epochs on JSB Chorales: egm vs plain PyTorch, same run.

    python experiments/benchmarks/rnnrbm_epoch.py            # 229 chorales, 88-150-100, CD-15
    python experiments/benchmarks/rnnrbm_epoch.py --quick    # tiny smoke run
    python experiments/benchmarks/rnnrbm_epoch.py --models rnn_nade

Like for like: the RNN-RBM of Boulanger-Lewandowski et al. (2012) with the deeplearning.net
tutorial's sizes (150 hidden, 100 recurrent units, CD-15), minibatches of 10 padded, masked
chorales, Adam (lr 1e-3), float32; one epoch = every training chorale once.

* egm: :func:`egm.models.rnn_rbm.sequence_objective` with :func:`egm.train.make_step`, one
  epoch = one jitted ``lax.scan`` (the RNN a ``lax.scan`` over time, all frames' Gibbs chains
  in parallel, the gradient by back-propagation through time).
* torch (peer): the same computation written the straightforward way, as the Theano
  tutorial does it: a Python loop over time for the RNN, the frames' Gibbs chains batched,
  the free-energy-difference cost, ``backward()`` and ``torch.optim.Adam``.

The RNN-NADE (same sizes, exact log-likelihood, no Gibbs): egm's
:func:`egm.models.rnn_nade.sequence_objective` (the NADE's O(DH) custom VJP with one bias row
per frame) against PyTorch autograd of the same masked mean, the RNN a Python loop and every
frame's 88 NADE pre-activations at once as an exclusive cumulative sum.

Seconds per epoch (lower is better); ratio = torch / egm.  Recorded, no target.
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from egm.data import polyphonic  # noqa: E402
from egm.models import rnn_nade  # noqa: E402
from egm.models import rnn_rbm as seq  # noqa: E402
from egm.train import adam, epoch_key, init_state, make_epoch, make_step  # noqa: E402

FULL = dict(n_hidden=150, n_recurrent=100, k=15, batch=10, repeats=3, n_pieces=None)
QUICK = dict(n_hidden=16, n_recurrent=8, k=2, batch=4, repeats=1, n_pieces=8)


def make_egm_epoch(rolls, mask, s, seed, model="rnn_rbm"):
    if model == "rnn_nade":
        p = rnn_nade.rnn_nade_init(jax.random.key(seed), 88, s["n_hidden"], s["n_recurrent"])
        objective = rnn_nade.sequence_objective()
    else:
        p = seq.rnn_rbm_init(jax.random.key(seed), 88, s["n_hidden"], s["n_recurrent"])
        objective = seq.sequence_objective(s["k"])
    opt = adam(1e-3)
    epoch = jax.jit(make_epoch(make_step(objective, opt), s["batch"]), donate_argnums=0)
    data = {"rolls": jnp.asarray(rolls), "mask": jnp.asarray(mask)}
    box = {"state": init_state(p, opt), "i": 0}
    root = jax.random.key(seed + 1)

    def go():
        state, m = epoch(box["state"], data, epoch_key(root, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, m))

    return go


def _torch_rnn(torch, v, u0, b_u, W_uu, W_vu):
    """The states before each frame, ``(B, T, U)``: the RNN step by step, a Python loop."""
    u, before = u0.expand(v.shape[0], u0.shape[0]), []
    for t in range(v.shape[1]):
        before.append(u)
        u = torch.tanh(b_u + u @ W_uu + v[:, t] @ W_vu)
    return torch.stack(before, 1)


def make_torch_epoch(rolls, mask, s, seed):
    import torch

    torch.manual_seed(seed)
    V, H, U, k = 88, s["n_hidden"], s["n_recurrent"], s["k"]
    g = lambda *shape: torch.nn.Parameter(0.01 * torch.randn(*shape))
    z = lambda n: torch.nn.Parameter(torch.zeros(n))
    W, W_uv, W_uh, W_vu, W_uu = g(V, H), g(U, V), g(U, H), g(V, U), g(U, U)
    b_v, b_h, b_u, u0 = z(V), z(H), z(U), z(U)
    params = [W, b_v, b_h, W_uv, W_uh, W_vu, W_uu, b_u, u0]
    opt = torch.optim.Adam(params, lr=1e-3)
    R, M = torch.from_numpy(rolls), torch.from_numpy(mask)

    def free_energy(v, bv, bh):
        return -(v * bv).sum(-1) - torch.nn.functional.softplus(bh + v @ W).sum(-1)

    def go():
        perm = torch.randperm(R.shape[0])
        for i in range(0, R.shape[0] - s["batch"] + 1, s["batch"]):
            v, m = R[perm[i : i + s["batch"]]], M[perm[i : i + s["batch"]]]
            u = _torch_rnn(torch, v, u0, b_u, W_uu, W_vu)
            bv, bh = b_v + u @ W_uv, b_h + u @ W_uh
            with torch.no_grad():
                neg = v
                for _ in range(k):
                    h = torch.bernoulli(torch.sigmoid(bh + neg @ W))
                    neg = torch.bernoulli(torch.sigmoid(bv + h @ W.T))
            cost = ((free_energy(v, bv, bh) - free_energy(neg, bv, bh)) * m).sum() / m.sum()
            opt.zero_grad()
            cost.backward()
            opt.step()

    return go


def make_torch_nade_epoch(rolls, mask, s, seed):
    import torch

    torch.manual_seed(seed)
    V, H, U = 88, s["n_hidden"], s["n_recurrent"]
    g = lambda *shape: torch.nn.Parameter(0.01 * torch.randn(*shape))
    z = lambda n: torch.nn.Parameter(torch.zeros(n))
    W, Vo, W_uv, W_uh, W_vu, W_uu = g(V, H), g(V, H), g(U, V), g(U, H), g(V, U), g(U, U)
    b_v, b_h, b_u, u0 = z(V), z(H), z(U), z(U)
    opt = torch.optim.Adam([W, Vo, b_v, b_h, W_uv, W_uh, W_vu, W_uu, b_u, u0], lr=1e-3)
    R, M = torch.from_numpy(rolls), torch.from_numpy(mask)

    def go():
        perm = torch.randperm(R.shape[0])
        for i in range(0, R.shape[0] - s["batch"] + 1, s["batch"]):
            v, m = R[perm[i : i + s["batch"]]], M[perm[i : i + s["batch"]]]
            u = _torch_rnn(torch, v, u0, b_u, W_uu, W_vu)
            bv, bh = b_v + u @ W_uv, b_h + u @ W_uh  # (B, T, V), (B, T, H)
            xw = v[..., None] * W  # (B, T, V, H): a_i = b_h + Σ_{j<i} v_j W_j
            a = bh[..., None, :] + torch.cumsum(xw, -2) - xw
            logits = bv + (torch.sigmoid(a) * Vo).sum(-1)
            ll = -torch.nn.functional.binary_cross_entropy_with_logits(
                logits, v, reduction="none").sum(-1)  # fmt: skip
            cost = -(ll * m).sum() / m.sum()
            opt.zero_grad()
            cost.backward()
            opt.step()

    return go


def _line(name, times, s, n, mask, missing, quick, env):
    egm_s = _bench.median(times["egm"])
    peer_s = _bench.median(times["torch"]) if "torch" in times else None
    return _bench.seconds_line(
        name, egm=egm_s, peer="torch" if peer_s else None, peer_value=peer_s,
        stat="median seconds per training epoch", target="recorded (no target)",
        target_met=None, quick=quick, pieces=n, frames=int(mask.sum()),
        egm_runs=_bench.runs(times["egm"]), peer_runs=_bench.runs(times.get("torch", [])),
        skipped_peer=missing, **env,
    )  # fmt: skip


def main() -> None:
    p = _bench.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="rnn_rbm,rnn_nade", help="comma list: rnn_rbm, rnn_nade")
    args = p.parse_args()
    s = dict(QUICK if args.quick else FULL)
    env = _bench.environment()  # before the work: the background load
    tr = polyphonic.load_polyphonic("jsb").splits["train"]
    n = s["n_pieces"] or len(tr.lengths)
    rolls, mask = tr.rolls[:n], tr.mask[:n]
    sizes = f"88x{s['n_hidden']}x{s['n_recurrent']}"
    peers = {"rnn_nade": (make_torch_nade_epoch, f"rnnnade_epoch_jsb_{sizes}_exact"),
             "rnn_rbm": (make_torch_epoch, f"rnnrbm_epoch_jsb_{sizes}_cd{s['k']}")}  # fmt: skip
    for model in args.models.split(","):
        make_peer, name = peers[model]
        with _bench.rng_mode():
            contenders = {"egm": make_egm_epoch(rolls, mask, s, args.seed, model)}
            missing = _bench.peer_available("torch")
            if missing is None:
                contenders["torch"] = make_peer(rolls, mask, s, args.seed)
            times = _bench.interleaved(contenders, args.repeats or s["repeats"])
        _bench.emit(_line(name, times, s, n, mask, missing, bool(args.quick), env))


if __name__ == "__main__":
    main()
