"""rtsource: real-time EEG/MEG source estimation over Lab Streaming Layer.

Importing the package is cheap: subpackages (and numba, pylsl, Qt) load only when used.
"""

__version__ = "0.1.0"
