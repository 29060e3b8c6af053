"""Interoperability: MNE-Python objects (:mod:`.mne_bridge`, optional extra ``mne``).

Recordings are read in :mod:`rtsource.recordings` and replayed as LSL streams by
:mod:`rtsource.replay`; the FieldTrip buffer input in :mod:`rtsource.stream.ftbuffer`.
Importing this package imports nothing optional.
"""
