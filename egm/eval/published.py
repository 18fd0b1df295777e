"""Published figures that egm's experiments reproduce, with their sources (DESIGN.md §8).

One entry per published number: what was measured, the value, its unit, the paper, and
whether the number was re-read from the paper (``recalled=False``) or recalled and still to
be checked (``recalled=True``; such entries say so wherever they are printed).  An
experiment names the entries its results compare with (``Experiment.published``); the run
driver copies them into ``results.json`` and :mod:`egm.run.report` prints them beside the
measured figure.  Published numbers use specific protocols (binarization, sample counts,
schedules): read ``protocol`` before comparing.
"""

from __future__ import annotations

import dataclasses

from egm.errors import ConfigError

__all__ = ["PUBLISHED", "Published", "lookup"]


@dataclasses.dataclass(frozen=True)
class Published:
    """A published figure: ``value`` in ``unit`` for ``model``, from ``source``."""

    model: str
    value: float
    unit: str
    metric: str
    source: str
    protocol: str = ""
    recalled: bool = False
    epochs: int | None = None  # the paper's training schedule, where it gives one

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        check = " (recalled, check the paper)" if self.recalled else ""
        return f"{self.value:g} {self.unit}, {self.source}{check}"


_LL = "test log-likelihood"
_BIN = "binarized MNIST"
_E = "test error"
_RATE = "error rate"  # a fraction of the test examples (0.0095 = 0.95 %)
PUBLISHED: dict[str, Published] = {
    "rbm_cd1": Published("RBM 500h, CD-1", -125.53, "nats", _LL, "Salakhutdinov & Murray 2008", f"{_BIN}, AIS"),
    "rbm_cd3": Published("RBM 500h, CD-3", -105.50, "nats", _LL, "Salakhutdinov & Murray 2008", f"{_BIN}, AIS"),
    "rbm_cd25": Published("RBM 500h, CD-25", -86.34, "nats", _LL, "Salakhutdinov & Murray 2008", f"{_BIN}, AIS"),
    "rbm_centered_pcd1": Published("centered RBM 500h, PCD-1", -84.86, "nats", _LL, "Melchior et al. 2016", f"{_BIN}, AIS"),
    "dbn_500_2000": Published("DBN 500-2000", -86.22, "nats", _LL, "Salakhutdinov & Murray 2008", f"{_BIN}, AIS lower bound"),
    "dbm_500_1000": Published("DBM 500-1000", -84.62, "nats", _LL, "Salakhutdinov & Hinton 2009", f"{_BIN}, AIS + variational bound", epochs=500),
    "dbm_500_1000_error": Published("DBM 500-1000", 0.0095, _RATE, _E, "Salakhutdinov & Hinton 2009", "MNIST, fine-tuned"),
    "mpdbm_error": Published("MP-DBM", 0.0088, _RATE, _E, "Goodfellow et al. 2013", "MNIST"),
    "drbm_error": Published("discriminative RBM", 0.0181, _RATE, _E, "Larochelle & Bengio 2008", "MNIST"),
    "hybrid_drbm_error": Published("hybrid discriminative RBM", 0.0128, _RATE, _E, "Larochelle & Bengio 2008", "MNIST"),
    "rnnrbm_jsb": Published("RNN-RBM, JSB Chorales", -6.27, "nats/step", "test log-likelihood per time step", "Boulanger-Lewandowski et al. 2012", "JSB Chorales"),
    "rnnnade_jsb": Published("RNN-NADE, JSB Chorales", -5.56, "nats/step", "test log-likelihood per time step", "Boulanger-Lewandowski et al. 2012", "JSB Chorales", recalled=True),
    "fvsbn": Published("FVSBN", -97.45, "nats", _LL, "Larochelle & Murray 2011", _BIN),
    "nade_500h": Published("NADE 500h", -88.86, "nats", _LL, "Larochelle & Murray 2011", _BIN),
    "eonade_2hl": Published("EoNADE 2hl, ensemble of orderings", -85.10, "nats", _LL, "Uria et al. 2014", _BIN),
    "made_1mask": Published("MADE, 1 mask", -88.40, "nats", _LL, "Germain et al. 2015", _BIN),
    "made_32masks": Published("MADE, 32 masks", -86.64, "nats", _LL, "Germain et al. 2015", _BIN),
    "sbn_wake_sleep": Published("SBN 200-200-200, wake-sleep", -101.3, "nats", _LL, "Mnih & Gregor 2014", _BIN, recalled=True),
    "sbn_nvil": Published("SBN 200-200-200, NVIL", -96.7, "nats", _LL, "Mnih & Gregor 2014", _BIN, recalled=True),
    "vae_1layer": Published("VAE, 1 stochastic layer", -86.76, "nats", _LL, "Burda et al. 2016", f"{_BIN} (dynamic), IS k=5000", epochs=3280),
    "iwae_k50_1layer": Published("IWAE k=50, 1 stochastic layer", -84.78, "nats", _LL, "Burda et al. 2016", f"{_BIN} (dynamic), IS k=5000", epochs=3280),
    "draw_no_attention": Published("DRAW without attention", -87.40, "nats", "test bound", "Gregor et al. 2015", _BIN),
    "draw_attention": Published("DRAW with attention", -80.97, "nats", "test bound", "Gregor et al. 2015", _BIN),
    "convdbn_error": Published("conv DBN features + classifier (SVM, recalled)", 0.0082, _RATE, _E, "Lee et al. 2009", "MNIST, all labels", recalled=True),
    "convdbn_error_1000": Published("conv DBN features", 0.0262, _RATE, _E, "Lee et al. 2009", "MNIST, 1,000 labels, mean of random subsets", recalled=True),
    "convdbn_error_2000": Published("conv DBN features", 0.0213, _RATE, _E, "Lee et al. 2009", "MNIST, 2,000 labels, mean of random subsets", recalled=True),
    "convdbn_error_5000": Published("conv DBN features", 0.0159, _RATE, _E, "Lee et al. 2009", "MNIST, 5,000 labels, mean of random subsets", recalled=True),
    "gan_parzen": Published("GAN", 225.0, "nats", "Parzen log-likelihood", "Goodfellow et al. 2014", "MNIST (not a likelihood)", recalled=True),
    "gmmn_parzen": Published("GMMN", 147.0, "nats", "Parzen log-likelihood", "Li et al. 2015", "MNIST (not a likelihood)", recalled=True),
    "gmmn_ae_parzen": Published("GMMN+AE", 282.0, "nats", "Parzen log-likelihood", "Li et al. 2015", "MNIST (not a likelihood)", recalled=True),
    "gsn_parzen": Published("deep GSN", 214.0, "nats", "Parzen log-likelihood", "Bengio et al. 2014, as tabulated in Goodfellow et al. 2014 Table 1", "MNIST test (grey levels), Gaussian Parzen window on model samples, sigma chosen on validation (not a likelihood)"),
    "realnvp_mnist": Published("RealNVP", 1.06, "bits/dim", "test bits/dim", "Dinh et al. 2017", "dequantised MNIST", recalled=True),
    "glow_mnist": Published("Glow", 1.05, "bits/dim", "test bits/dim", "Kingma & Dhariwal 2018", "dequantised MNIST", recalled=True),
    "maf5_mnist": Published("MAF(5)", -1300.5, "nats", _LL, "Papamakarios et al. 2017", "MNIST in logit space", recalled=True),
    "ddpm_cifar10": Published("DDPM (true-bound model)", 3.70, "bits/dim", "test bound", "Ho et al. 2020", "CIFAR-10"),
}  # fmt: skip


def lookup(key: str) -> Published:
    """The entry ``key`` of :data:`PUBLISHED`, or a :class:`ConfigError` listing the keys."""
    try:
        return PUBLISHED[key]
    except KeyError:
        raise ConfigError(
            f"no published figure {key!r}; known: {', '.join(sorted(PUBLISHED))}"
        ) from None
