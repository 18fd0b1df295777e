"""The polyphonic piano-roll loader: JSB Chorales as shipped, and every bad input it refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from egm.data import polyphonic
from egm.errors import CorruptFileError, DataError, DatasetNotFoundError


def _write(tmp_path, obj, name="set.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_jsb_split_sizes_and_roll_content():
    """The shipped file: the 229/76/77 split of Boulanger-Lewandowski et al.; every roll row
    is exactly the notes of its time step (checked on the first piece against the JSON)."""
    d = polyphonic.load_polyphonic("jsb")
    assert [len(d.splits[s].lengths) for s in polyphonic.SPLITS] == [229, 76, 77]
    tr = d.splits["train"]
    assert tr.rolls.shape[1:] == (int(tr.lengths.max()), 88) and tr.n_frames == 13807
    raw = json.loads((polyphonic.DEFAULT_DATA_DIR / polyphonic.FILES["jsb"]).read_text())
    first = raw["train"][0]
    for t, step in enumerate(first):
        assert sorted(np.flatnonzero(tr.rolls[0, t]) + 21) == sorted(step)
    assert tr.mask[0].sum() == len(first) and not tr.rolls[0, len(first) :].any()
    assert tr.frames().shape == (13807, 88)
    assert set(d.train) == {"rolls", "mask"}


def test_piano_roll_keys():
    roll = polyphonic.piano_roll([[21, 108], [], [60]])
    assert roll.shape == (3, 88) and roll[0, 0] == roll[0, 87] == roll[2, 39] == 1
    assert roll.sum() == 3


@pytest.mark.parametrize(
    ("pieces", "match"),
    [
        ([[[60]], [[20, 60]]], r"piece 1 of split 'train', time step 0: MIDI note\(s\) \[20\]"),
        ([[[60]], [[109]]], r"piece 1 .*\[109\] outside the 88 piano keys"),
        ([[[60]], []], r"piece 1 of split 'train' has length 0"),
        ([[["C4"]]], r"piece 0 of split 'train', time step 0: expected a list of integer"),
    ],
)
def test_bad_pieces_name_the_piece(tmp_path, pieces, match):
    p = _write(tmp_path, {"train": pieces, "valid": [[[60]]], "test": [[[60]]]})
    with pytest.raises(DataError, match=match):
        polyphonic.load_polyphonic(file=p)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="jsb-chorales-quarter.json not found.*data_dir"):
        polyphonic.load_polyphonic("jsb", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [[[60]]')
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        polyphonic.load_polyphonic(file=bad)
    with pytest.raises(CorruptFileError, match="keys"):
        polyphonic.load_polyphonic(file=_write(tmp_path, {"train": []}))
    with pytest.raises(DataError, match="unknown polyphonic set"):
        polyphonic.load_polyphonic("bach")


def test_midi_note_events_hold_repeated_frames(tmp_path):
    """A key on in consecutive frames is one held note; a gap starts a new one (egm.eval.midi;
    the file round trip runs only where the optional pretty_midi is installed)."""
    from egm.eval import midi

    r = np.zeros((6, 88), np.float32)
    r[0:3, 39], r[2, 43], r[4:6, 39] = 1, 1, 1
    assert midi.note_events(r) == [(60, 0, 3), (64, 2, 3), (60, 4, 6)]
    with pytest.raises(DataError, match=r"\(T, 88\)"):
        midi.note_events(np.zeros((3, 12)))
    if midi.available():
        import pretty_midi

        midi.write_midi(r, str(tmp_path / "x.mid"), seconds_per_step=0.5)
        notes = pretty_midi.PrettyMIDI(str(tmp_path / "x.mid")).instruments[0].notes
        assert [(n.pitch, n.start, n.end) for n in notes] == [
            (60, 0, 1.5),
            (64, 1, 1.5),
            (60, 2, 3),
        ]
