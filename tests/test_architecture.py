"""The import graph of ``rtsource/`` keeps the house's shape (DESIGN.md, "Rules that keep the
house livable").

Every module of the package is parsed (``ast``, so nothing is imported or executed) and every
``import`` statement counts, including the ones inside functions: a lazy import is still a
dependency, it only moves the cost. Relative imports are resolved; ``from X import name``
counts as an import of ``X.name`` when that is a module. An import of an ancestor package's
``__init__`` (``from .. import __version__``) is not counted: package faces re-export their
children.

Floors, from the ground up (a module may import its own floor and the floors below it, never
one above; :data:`LAYERS` is the table the test reads)::

    ground      errors, arrays, lsl_config, channel_names, cache
                  - small modules that import nothing of rtsource but each other
    geometry    frames, units, transforms, meshes, point sets, sphere fits
    anatomy     template head, FreeSurfer surfaces, source spaces, volumes, ROI definitions
    sensors     EEG montages and readers, MEG coils and arrays
    recordings  lab recordings read for setup and replay (XDF, EDF/BDF, BrainVision, FIF):
                offline input, which may use sensors but which nothing below the pipeline needs
    forward     spheres, BEM, OpenMEEG: lead fields
    inverse     covariance, operator types and builders, ROI builders; coreg (+ its QC plots)
    artifacts   artifact calibration (data for the bundle) and per-chunk correction kernels
    bundle      the operator bundle (the contract between offline and online) and the ROI
                operator (``roi_operator``): the data both sides apply
    stream      the online side: inlet -> operator -> kernels -> features -> outlets
    pipeline    consumers of both sides: pipeline/ (setup, open_loop, the Estimator),
                config, build, session, simulator (+ sim_events, its artifacts), replay (the LSL
                player of recordings), evaluation, bench (one module per benchmark), interop (MNE bridge)
    display     pyqtgraph live views
    apps        the command line, the demo (``pipeline/demo.py``: it opens the viewer), the
                package face (``rtsource/__init__``)

Four more rules:

- No import circles between modules (an import circle inside one floor is still a circle).
- ``stream/`` imports only its own modules, the bundle floor and the ground and geometry
  floors (:data:`STREAM_MAY_IMPORT`): nothing from ``forward/``, ``inverse/`` (builders or
  otherwise), ``sensors/``, ``build.py`` or ``config.py``. What it needs from the offline side
  (an operator rebuilt without some channels) is injected by the pipeline as the
  :class:`rtsource.stream.services.OperatorRebuilder` protocol.
- Only ``display/`` imports Qt (PySide6, PyQt, pyqtgraph, qtpy).
- One module makes every LSL outlet of the stream side: ``stream/outlets.py`` is the only
  module of ``stream/`` that calls ``StreamOutlet``.

Known violations that other branches are removing at the time of writing are listed, edge by
edge and circle by circle, in :data:`KNOWN_UPWARD`, :data:`KNOWN_CIRCLES`,
:data:`KNOWN_STREAM_IMPORTS` and :data:`KNOWN_OUTLET_MAKERS`. The lists are exact: an entry
that no longer occurs fails the test too, so they shrink to nothing as the branches land.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rtsource

PACKAGE_DIR = Path(rtsource.__file__).resolve().parent
PKG = "rtsource"

#: Floors from the ground up: (floor name, module prefixes). A prefix names a module or a
#: package (``geometry`` covers ``rtsource.geometry`` and everything below it); a module
#: matched by several prefixes is on the highest of their floors (``pipeline.demo``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("errors", "arrays", "lsl_config", "channel_names", "cache")),
    ("geometry", ("geometry",)),
    ("anatomy", ("anatomy",)),
    ("sensors", ("sensors",)),
    ("recordings", ("recordings",)),
    ("forward", ("forward",)),
    ("inverse", ("inverse", "coreg", "qc_plot")),
    ("artifacts", ("artifacts",)),
    ("bundle", ("bundle", "roi_operator")),
    ("stream", ("stream",)),
    ("pipeline", ("pipeline", "config", "build", "session", "simulator", "sim_events", "simulation_artifacts", "replay", "evaluation", "bench", "interop")),
    ("display", ("display",)),
    ("apps", ("cli", "pipeline.demo", "")),  # "" is the package face, rtsource/__init__.py
)

#: What ``stream/`` may import (module prefixes).
STREAM_MAY_IMPORT = ("stream", "bundle", "roi_operator", "errors", "arrays", "lsl_config", "channel_names", "geometry")

QT_MODULES = ("PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "qtpy")

# ---- known violations: the integrator removes these after merging the branches -----------
# `inverse` (issue 13, item 3) is removing the last one. Each entry is checked to still occur,
# so a stale entry fails the test.

#: Imports that run up a floor: (importer, imported), without the ``rtsource.`` prefix (none
#: left since branch forward moved cache_dir, fit_sphere and the template head transform).
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()

#: Import circles: the exact set of modules of each strongly connected component.
KNOWN_CIRCLES: frozenset[frozenset[str]] = frozenset(
    {
    }
)

#: Imports from stream/ outside :data:`STREAM_MAY_IMPORT` (none left since branch sensors moved
#: match_labels to channel_names).
KNOWN_STREAM_IMPORTS: frozenset[tuple[str, str]] = frozenset()


#: Modules of stream/ besides stream/outlets.py that make an LSL outlet.
KNOWN_OUTLET_MAKERS: frozenset[str] = frozenset()


# ---- the graph ---------------------------------------------------------------------------


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imported_names(module: str, path: Path, node: ast.AST) -> list[str]:
    """Fully qualified names an import statement refers to (modules or module.attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]  # a module's "." is its package
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def _graph(root: Path = PACKAGE_DIR) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between rtsource modules, top-level third-party packages each module imports)."""
    mods = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    external: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported_names(m, path, node):
                if name != PKG and not name.startswith(PKG + "."):
                    external[m].add(name.split(".")[0])
                    continue
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != m and not m.startswith(name + "."):  # own package faces don't count
                    edges[m].add(name)
    return edges, external


def _short(module: str) -> str:
    return module[len(PKG) + 1 :] if module.startswith(PKG + ".") else ("" if module == PKG else module)


def _matches(module: str, prefix: str) -> bool:
    short = _short(module)
    if prefix == "":
        return short == ""
    return short == prefix or short.startswith(prefix + ".")


def _floor(module: str) -> int:
    found = [i for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes if _matches(module, p)]
    if not found:
        raise AssertionError(f"module {module} has no floor in LAYERS (tests/test_architecture.py); add it to the floor it belongs to")
    return max(found)


def _circles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[frozenset[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


# ---- the checks (each a function of the graph, so the tests can feed them a broken one) ----


def upward_imports(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where the imported module is on a higher floor."""
    return {(_short(m), _short(d)) for m, ds in edges.items() for d in ds if _floor(d) > _floor(m)}


def circles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    return {frozenset(_short(m) for m in c) for c in _circles(edges)}


def stream_imports_outside(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Imports from stream/ of anything but :data:`STREAM_MAY_IMPORT`."""
    return {
        (_short(m), _short(d))
        for m, ds in edges.items()
        if _matches(m, "stream")
        for d in ds
        if not any(_matches(d, p) for p in STREAM_MAY_IMPORT)
    }


def qt_outside_display(external: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(_short(m), q) for m, pkgs in external.items() for q in pkgs & set(QT_MODULES) if not _matches(m, "display")}


def outlet_makers(root: Path = PACKAGE_DIR) -> set[str]:
    """Modules of stream/ other than stream/outlets.py that call ``StreamOutlet``."""
    found = set()
    for m, path in _modules(root).items():
        if not _matches(m, "stream") or _matches(m, "stream.outlets"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name == "StreamOutlet":
                    found.add(_short(m))
    return found


def _describe(item) -> str:
    if isinstance(item, frozenset):
        return " <-> ".join(sorted(item))
    if isinstance(item, tuple):
        return " -> ".join(item)
    return str(item)


def _explain(title: str, found: set, known: frozenset) -> str:
    new, stale = found - known, known - found
    lines = []
    if new:
        lines.append(f"{title}, new: " + "; ".join(sorted(_describe(x) for x in new)))
    if stale:
        lines.append(
            f"{title}, listed as known but gone (remove them from the list in tests/test_architecture.py): "
            + "; ".join(sorted(_describe(x) for x in stale))
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_every_module_has_a_floor(graph):
    edges, _ = graph
    missing = [m for m in edges if not any(_matches(m, p) for _, prefixes in LAYERS for p in prefixes)]
    assert not missing, f"modules without a floor in LAYERS: {missing}"


def test_no_import_from_a_lower_floor_to_a_higher_one(graph):
    found = upward_imports(graph[0])
    assert found == KNOWN_UPWARD, _explain("imports up a floor", found, KNOWN_UPWARD)


def test_no_import_circles(graph):
    found = circles(graph[0])
    assert found == KNOWN_CIRCLES, _explain("import circles", found, KNOWN_CIRCLES)


def test_stream_imports_only_the_bundle_and_the_ground(graph):
    found = stream_imports_outside(graph[0])
    assert found == KNOWN_STREAM_IMPORTS, _explain("stream/ imports outside the bundle and the ground floors", found, KNOWN_STREAM_IMPORTS)
    forbidden = ("forward", "inverse", "sensors", "build", "config", "session", "display")
    assert not {(m, d) for m, d in found - KNOWN_STREAM_IMPORTS if any(d == p or d.startswith(p + ".") for p in forbidden)}


def test_only_display_imports_qt(graph):
    assert not qt_outside_display(graph[1])


def test_one_module_makes_the_stream_outlets():
    found = outlet_makers()
    assert found == KNOWN_OUTLET_MAKERS, _explain("modules of stream/ that make LSL outlets besides stream/outlets.py", found, KNOWN_OUTLET_MAKERS)


# ---- the checks catch what they should (a broken copy of the package, real files) --------


def _copy_package(tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / PKG
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "data"))
    return dest


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + text + "\n", encoding="utf-8")


def test_checks_catch_a_broken_import(tmp_path):
    root = _copy_package(tmp_path)
    # an upward import hidden in a function, a stream module reaching for a builder, Qt in
    # the stream, and a circle between two stream modules
    _append(root / "stream" / "operator.py", "def _f():\n    from ..build import build_bundle\n    from ..inverse.rebuild import rebuild_without_channels\n    import pyqtgraph\n")
    _append(root / "stream" / "swap.py", "from .operator import StreamOperator\n")
    _append(root / "stream" / "operator.py", "from . import swap as _swap\n")
    _append(root / "stream" / "features.py", "def _g(info):\n    import pylsl\n    return pylsl.StreamOutlet(info)\n")
    edges, external = _graph(root)
    assert ("stream.operator", "build") in upward_imports(edges)
    assert {("stream.operator", "build"), ("stream.operator", "inverse.rebuild")} <= stream_imports_outside(edges)
    assert ("stream.operator", "pyqtgraph") in qt_outside_display(external)
    assert frozenset({"stream.operator", "stream.swap"}) in circles(edges)
    assert "stream.features" in outlet_makers(root)


def test_checks_pass_on_a_clean_graph_and_see_relative_imports(tmp_path):
    root = tmp_path / PKG
    (root / "stream").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "bundle.py").write_text("from .errors import *\nfrom . import errors\n")
    (root / "stream" / "__init__.py").write_text("")
    (root / "stream" / "loop.py").write_text("from .. import bundle\nfrom ..errors import X\nfrom . import events\n")
    (root / "stream" / "events.py").write_text("def f():\n    from ..bundle import OperatorBundle\n")
    edges, external = _graph(root)
    assert edges[f"{PKG}.stream.loop"] == {f"{PKG}.bundle", f"{PKG}.errors", f"{PKG}.stream.events"}
    assert edges[f"{PKG}.stream.events"] == {f"{PKG}.bundle"}
    assert not upward_imports(edges) and not circles(edges) and not stream_imports_outside(edges)
