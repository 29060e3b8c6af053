"""Inverse operators: from a lead field and covariances to a kernel applied to raw data.

Modules, in the order an operator is made:

- ``params``: typed parameters of every method (MinimumNormParams, LcmvParams) and the
  record a bundle keeps of them (OperatorRecord); the one place for every default.
- ``covariance``: noise and data covariances: estimation, ad hoc, files.
- ``reference``: re-referencing matrices (average, a channel).
- ``whitening``: the noise whitener, one block per sensor type.
- ``prepared_forward``: the lead field checked and in the sources' local frames.
- ``minimum_norm``: MNE, dSPM, sLORETA, eLORETA (``eloreta``: its weight iteration).
- ``beamformer``: LCMV.
- ``operator``: the LinearInverse every builder returns, and its plain application.
- ``make``: make_operator, the one entry point from typed parameters to an operator.
- ``rebuild``: a bundle's operator without some channels (the hot swap).
- ``_linalg``, ``_checks``, ``_kernels``: batched 3 x 3 algebra, argument checks, numba.
"""
