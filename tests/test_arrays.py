"""Read-only arrays of the frozen data objects (rtsource.arrays)."""

from __future__ import annotations

import numpy as np

from rtsource.arrays import frozen, sealed


def test_frozen_copies_what_others_could_write():
    a = np.arange(6.0)
    f = frozen(a)
    assert f is not a and not f.flags.writeable
    a[0] = 99.0
    assert f[0] == 0.0
    view = np.arange(6.0)[::2]
    view.flags.writeable = False
    assert frozen(view) is not view  # a read-only view of a writable array is copied
    assert frozen(f, np.float32).dtype == np.float32  # another dtype: a converted copy


def test_frozen_shares_what_is_already_immutable():
    s = sealed(np.arange(6.0))
    assert not s.flags.writeable
    assert frozen(s) is s and frozen(s, np.float64) is s
