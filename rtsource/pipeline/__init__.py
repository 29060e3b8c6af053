"""The pipeline: configuration -> bundle (:mod:`.setup`), configuration -> loop (:mod:`.run`,
with ``rtsource.session``), a bundle applied in this process (:mod:`.estimator`), the demo.

These modules compose the offline side and ``stream/``; nothing below them imports them.
The public names are re-exported lazily by :mod:`rtsource`.
"""
