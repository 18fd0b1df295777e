"""The run layer: experiment configs with declared checks, the run driver and its work
directory.  Experiments declare (:class:`Experiment`, :class:`Phase`); :func:`run` loops."""

from egm.run import config
from egm.run.config import field, parse_args, validate
from egm.run.driver import Experiment, Phase, main, nearest_preset, provenance, rng_mode, run
from egm.run.workdir import Workdir, log

__all__ = [
    "Experiment",
    "Phase",
    "Workdir",
    "config",
    "field",
    "log",
    "main",
    "nearest_preset",
    "parse_args",
    "provenance",
    "rng_mode",
    "run",
    "validate",
]
