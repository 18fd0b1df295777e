"""Polyphonic music as 88-key piano rolls (§20.7; Boulanger-Lewandowski et al. 2012).

One loader for the four polyphonic sets of Boulanger-Lewandowski, Bengio & Vincent (2012):
JSB Chorales, Piano-midi.de, Nottingham and MuseData.  Each file holds the three splits
``{"train": [...], "valid": [...], "test": [...]}``; a piece is a list of time steps, a time
step a list of the MIDI note numbers sounding.  The JSON files (``jsb-chorales-quarter.json``
and its siblings) are read as they are.  The original distribution also has them as Python
pickles (``JSB Chorales.pickle``, ...): egm never unpickles a file a user did not create
(DESIGN.md §6), so convert those once yourself, e.g.
``json.dump({k: [[list(map(int, t)) for t in p] for p in v] for k, v in
pickle.load(open(f, "rb")).items() if k in ("train", "valid", "test")}, open(out, "w"))``.

A piece becomes a binary piano roll ``(T, 88)``, key ``i`` being MIDI note ``21 + i`` (A0 to
C8).  A split is stored padded: ``rolls (N, T_max, 88)`` with ``lengths (N,)`` and a
``mask (N, T_max)`` that is 1 on the real frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from egm.errors import CorruptFileError, DataError, DatasetNotFoundError

LOWEST_NOTE, HIGHEST_NOTE = 21, 108  # A0 .. C8: the 88 keys of a piano
N_KEYS = HIGHEST_NOTE - LOWEST_NOTE + 1
SPLITS = ("train", "valid", "test")

#: The four sets: the file each is read from by default, and where to get it.
FILES = {
    "jsb": "jsb_chorales/jsb-chorales-quarter.json",
    "piano_midi": "piano_midi/piano-midi-de.json",
    "nottingham": "nottingham/nottingham.json",
    "musedata": "musedata/musedata.json",
}
SOURCE_URL = "http://www-etud.iro.umontreal.ca/~boulanni/icml2012"
DEFAULT_DATA_DIR = Path(
    os.environ.get("EGM_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)


class PianoRolls(NamedTuple):
    """One split: binary rolls ``(N, T_max, 88)`` (float32, zero after each piece's end),
    ``lengths (N,)`` (int32) and ``mask (N, T_max)`` (float32, 1 on real frames)."""

    rolls: np.ndarray
    lengths: np.ndarray
    mask: np.ndarray

    @property
    def n_frames(self) -> int:
        """Number of real time steps in the split."""
        return int(self.lengths.sum())

    def frames(self) -> np.ndarray:
        """Every real frame of the split, ``(n_frames, 88)``, pieces concatenated in order."""
        return self.rolls[self.mask > 0]


class Polyphonic(NamedTuple):
    """A polyphonic data set: ``splits`` maps "train" / "valid" / "test" to
    :class:`PianoRolls`; ``source``: what was read (the file); ``name``: the set."""

    splits: dict[str, PianoRolls]
    source: str
    name: str

    @property
    def train(self) -> dict[str, np.ndarray]:
        """The training split as the pytree an epoch scans over: ``{"rolls", "mask"}``."""
        s = self.splits["train"]
        return {"rolls": s.rolls, "mask": s.mask}


def piano_roll(piece: list, index: int | str = 0) -> np.ndarray:
    """The binary piano roll ``(T, 88)`` of one piece (a list of time steps of MIDI numbers).

    Raises :class:`DataError` naming the piece ``index`` for an empty piece, a time step that
    is not a list of integers, or a note outside MIDI 21–108.
    """
    if not isinstance(piece, list | tuple) or len(piece) == 0:
        raise DataError(
            f"piece {index} has length 0 (or is not a list of time steps); every piece needs "
            f"at least one time step: remove empty pieces from the file"
        )
    roll = np.zeros((len(piece), N_KEYS), np.float32)
    for t, step in enumerate(piece):
        if not isinstance(step, list | tuple) or not all(
            isinstance(n, int | np.integer) or (isinstance(n, float) and n.is_integer())
            for n in step
        ):
            raise DataError(
                f"piece {index}, time step {t}: expected a list of integer MIDI note numbers, "
                f"got {step!r:.80}"
            )
        notes = np.asarray(step, np.int64)
        bad = notes[(notes < LOWEST_NOTE) | (notes > HIGHEST_NOTE)]
        if bad.size:
            raise DataError(
                f"piece {index}, time step {t}: MIDI note(s) {sorted(set(bad.tolist()))} outside "
                f"the 88 piano keys {LOWEST_NOTE}-{HIGHEST_NOTE}; transpose or drop them"
            )
        roll[t, notes - LOWEST_NOTE] = 1.0
    return roll


def pad_rolls(rolls: list[np.ndarray], max_len: int | None = None) -> PianoRolls:
    """Stack piano rolls ``(T_i, 88)`` into a padded :class:`PianoRolls` of length
    ``max_len`` (default the longest piece; longer pieces are an error)."""
    if not rolls:
        raise DataError("a split needs at least one piece, got none")
    lengths = np.asarray([r.shape[0] for r in rolls], np.int32)
    t_max = int(lengths.max()) if max_len is None else int(max_len)
    if lengths.max() > t_max:
        raise DataError(f"a piece has {lengths.max()} time steps, more than max_len={t_max}")
    out = np.zeros((len(rolls), t_max, N_KEYS), np.float32)
    for i, r in enumerate(rolls):
        out[i, : r.shape[0]] = r
    mask = (np.arange(t_max)[None, :] < lengths[:, None]).astype(np.float32)
    return PianoRolls(out, lengths, mask)


def rolls_from_pieces(pieces: list, split: str = "train") -> PianoRolls:
    """The padded :class:`PianoRolls` of a list of pieces (errors name ``split`` and the
    piece index)."""
    if not isinstance(pieces, list) or not pieces:
        raise DataError(f"split {split!r} must be a non-empty list of pieces")
    return pad_rolls([piano_roll(p, f"{i} of split {split!r}") for i, p in enumerate(pieces)])


def load_polyphonic(
    name: str = "jsb", data_dir: str | os.PathLike | None = None, *, file: str | None = None
) -> Polyphonic:
    """Load one of the four polyphonic sets (:data:`FILES`) as padded 88-key piano rolls with
    the train / valid / test split of Boulanger-Lewandowski et al. (2012).

    ``data_dir``: the folder holding ``FILES[name]`` (default ``../shared/data`` beside the
    repository, or ``$EGM_DATA_DIR``); ``file``: read this JSON file instead.
    """
    if name not in FILES:
        raise DataError(f"unknown polyphonic set {name!r}; choose one of {sorted(FILES)}")
    path = Path(file) if file is not None else Path(data_dir or DEFAULT_DATA_DIR) / FILES[name]
    if not path.exists():
        raise DatasetNotFoundError(
            f"{path} not found: the {name} piano rolls are read from that JSON file "
            f"({{'train', 'valid', 'test'}}: lists of time steps of MIDI numbers). Get the "
            f"set from {SOURCE_URL} (convert its pickle to JSON as egm.data.polyphonic says) "
            f"and pass data_dir=<folder holding {FILES[name]}> or file=<the JSON file>"
        )
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(
            f"{path} is not valid JSON ({e}); download it again or re-convert it"
        ) from None
    if not isinstance(raw, dict) or not set(SPLITS) <= set(raw):
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise CorruptFileError(f"{path} must be a JSON object with keys {list(SPLITS)}, got {keys}")
    splits = {s: rolls_from_pieces(raw[s], s) for s in SPLITS}
    return Polyphonic(splits, f"{name}:{path.name}", name)


def describe(d: Polyphonic) -> str:
    """E.g. ``"jsb:jsb-chorales-quarter.json (229/76/77 pieces)"``: the dataset of a record."""
    counts = "/".join(str(len(d.splits[s].lengths)) for s in SPLITS)
    return f"{d.source} ({counts} pieces)"
