"""Forward models: the lead field of sources at EEG electrodes and MEG coils.

One entry point, :func:`rtsource.forward.leadfield.make_leadfield`, takes the sources, the
sensors and a head model (:mod:`rtsource.forward.head_model`: ``SphereHead`` or ``BemHead``)
and picks the method per sensor kind: the concentric-sphere series (:mod:`.sphere`) or a BEM
(:mod:`.bem`, :mod:`.openmeeg_backend`) for EEG, Sarvas' sphere (:mod:`.meg_sphere`) or the
single-layer BEM for MEG. Numba kernels live in the ``_*_kernels`` modules.
"""
