"""Interoperability: MNE-Python objects (:mod:`.mne_bridge`, optional extra ``mne``).

Recordings replayed as LSL streams live in :mod:`rtsource.replay`; the FieldTrip buffer
input in :mod:`rtsource.stream.ftbuffer`. Importing this package imports nothing optional.
"""
