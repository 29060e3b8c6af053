"""Channel-name matching (rtsource.channel_names), shared by the offline build and the stream."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtsource.channel_names import RENAMED_10_20, canonical_label, match_labels
from rtsource.errors import ChannelError


def test_aliases():
    assert match_labels(["Cz"], ["EEG 001", "EEG 002"], aliases={"EEG 002": "Cz"}) == [1]


def test_ambiguous_names_refused():
    with pytest.raises(ChannelError, match="more than one"):
        match_labels(["Cz"], ["Cz", "CZ"])


def test_old_10_20_names_match_both_ways():
    for old, new in RENAMED_10_20.items():
        assert canonical_label(old) == canonical_label(new.lower())
        assert match_labels([old.lower()], ["Fz", new]) == [1]
        assert match_labels([new], [old, "Fz"]) == [0]


def test_missing_names_are_listed_with_what_was_available():
    with pytest.raises(ChannelError) as exc:
        match_labels(["Cz", "XYZ1"], ["Fz", "Pz"], what="stream 'EEG'")
    msg = str(exc.value)
    assert "XYZ1" in msg and "stream 'EEG'" in msg and "Fz, Pz" in msg and "Cz" in msg


def test_two_names_onto_one_entry_refused():
    with pytest.raises(ChannelError, match="same entry"):
        match_labels(["T3", "T7"], ["T7", "Cz"])


def test_ground_floor_imports_no_other_rtsource_module():
    # the stream matches channels with this module; it must not pull in sensors/ or geometry/
    code = (
        "import sys, rtsource; before = set(sys.modules); import rtsource.channel_names; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('rtsource.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(eval(out)) <= {"rtsource.channel_names", "rtsource.errors"}
    assert "rtsource.channel_names" in out
