"""Live display: ``rtsource view`` (pyqtgraph; the only part of rtsource that imports Qt).

The viewer is an ordinary LSL consumer in its own process, so it can never stall the loop:

    loop process ──LSL: NAME, NAME-roi, NAME-bandpower, NAME-telemetry, NAME-events──> viewer process
                                                                                       ├─ cortex (3D mesh, per-vertex colours)
                                                                                       ├─ ROI / band-power traces
                                                                                       └─ health panel

Importing this package does not import Qt: only :func:`run_view` needs the GUI binding,
which comes from the ``gui`` extra (``pip install "rtsource[gui]"``). The command line
(``rtsource view``, :mod:`rtsource.cli`) parses the options and calls :func:`run_view`.

Modules without Qt: :mod:`.streams` (all streams of one output), :mod:`.readers` (one stream
followed in a thread), :mod:`.buffers` (sample ring, event log), :mod:`.layout` (a stream's
header), :mod:`.cortex_geometry` (the mesh behind the sources). With Qt: :mod:`.cortex`,
:mod:`.traces`, :mod:`.health`, :mod:`.app` (the window and its entry point).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

from ..errors import RtsourceError

logger = logging.getLogger(__name__)

#: The Qt bindings pyqtgraph can use, in the order it tries them.
QT_BINDINGS = ("PySide6", "PyQt6", "PyQt5", "PySide2")

INSTALL_HINT = 'pip install "rtsource[gui]"'

DEFAULT_OUTPUT = "rtsource-sources"


def gui_binding() -> str | None:
    """The installed Qt binding pyqtgraph will use (None if there is none)."""
    preferred = os.environ.get("PYQTGRAPH_QT_LIB")
    for name in ((preferred,) if preferred else ()) + QT_BINDINGS:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def opengl_available() -> bool:
    """Whether PyOpenGL (needed by the 3D cortex view) is installed."""
    return importlib.util.find_spec("OpenGL") is not None


def require_gui() -> str:
    """Return the Qt binding's name, or raise with the command that installs one.

    Raises
    ------
    RtsourceError
        No Qt binding is installed.
    """
    binding = gui_binding()
    if binding is None:
        raise RtsourceError(
            "the live display needs a Qt binding for pyqtgraph (PySide6, PyQt6, PyQt5 or PySide2) "
            f"and none is installed; install the display extra: {INSTALL_HINT}"
        )
    return binding


def run_view(name: str = DEFAULT_OUTPUT, **options) -> int:
    """Run the viewer until its window is closed; ``options`` as in
    :func:`rtsource.display.app.run_view` (mesh, view, threshold, size, duration, ...).

    Raises
    ------
    RtsourceError
        No Qt binding is installed (the message says how to install it), no display, bad options.
    """
    require_gui()
    from .app import run_view as _run

    return _run(name, **options)


def start_viewer_process(output_name: str = DEFAULT_OUTPUT, extra_args: list[str] | tuple[str, ...] = (), *,
                         stderr=None) -> subprocess.Popen:
    """Start the viewer in its own process (``python -m rtsource.display.app NAME ...``).

    Used by ``rtsource demo --gui``: the viewer waits for the output streams, so it can be
    started before the loop. Stop it with :func:`stop_viewer_process`.

    Parameters
    ----------
    output_name : str
        The loop's output name.
    extra_args : sequence of str
        More ``rtsource view`` arguments (e.g. ``["--mesh", "ico4"]``).
    stderr : file or None
        Where the viewer's errors go (default: this process's stderr).

    Raises
    ------
    RtsourceError
        No Qt binding is installed (the message says how to install it).
    """
    require_gui()
    cmd = [sys.executable, "-m", "rtsource.display.app", output_name, *extra_args]
    logger.info("starting the viewer: %s", " ".join(cmd))
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


def stop_viewer_process(proc: subprocess.Popen, timeout: float = 5.0) -> int | None:
    """Close a viewer started by :func:`start_viewer_process` (terminate, then kill)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


__all__ = [
    "DEFAULT_OUTPUT",
    "INSTALL_HINT",
    "gui_binding",
    "opengl_available",
    "require_gui",
    "run_view",
    "start_viewer_process",
    "stop_viewer_process",
]
