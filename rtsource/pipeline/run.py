"""From a configuration (or a bundle) to a streaming loop ready to connect (``rtsource run``)."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .setup import as_settings


def open_loop(
    target: Settings | str | Path | None = None,
    *,
    config: Settings | str | Path | None = None,
    bundle: str | Path | None = None,
    source: str | None = None,
    **overrides,
):
    """A :class:`~rtsource.stream.loop.StreamLoop` set up as ``rtsource run TARGET`` sets it up.

    Parameters
    ----------
    target : Settings, str or Path, optional
        A configuration (a ``.toml`` path or Settings; the bundle is its ``[bundle] path``)
        or a bundle file (``.npz``; stream and output settings from ``config``).
    config : Settings, str or Path, optional
        The configuration when ``target`` is a bundle (default: the defaults).
    bundle : str or Path, optional
        The bundle when ``target`` is a configuration (instead of ``[bundle] path``).
    source : str, optional
        ``ftbuffer://HOST:PORT`` reads a FieldTrip realtime buffer instead of LSL.
    **overrides
        :class:`~rtsource.stream.loop.LoopOptions` fields replacing the configured ones
        (``selector``, ``output_name``, ``idle_timeout``, ``threads``, ...; None keeps the
        configured value).

    Returns
    -------
    StreamLoop
        Not yet connected: call ``connect()`` then ``run()`` (and ``close()``).
    """
    from ..bundle import load_bundle
    from ..session import feature_options, loop_options, operator_rebuilder
    from ..stream.loop import StreamLoop

    if isinstance(target, (str, Path)) and Path(target).suffix != ".toml":
        settings = as_settings(config)
        bundle_path = Path(target)
    else:
        settings = as_settings(target if target is not None else config)
        bundle_path = Path(bundle) if bundle is not None else settings.resolve_path(settings.bundle.path)
    loaded = load_bundle(bundle_path)
    options = loop_options(settings, str(bundle_path), **overrides)
    inlet = None
    if source:
        from ..stream.ftbuffer import open_ftbuffer, parse_source_url

        if parse_source_url(source)[0] == "ftbuffer":
            inlet = open_ftbuffer(source, options.max_chunk, open_timeout=options.resolve_timeout, assume_unit=options.assume_unit or None)
    from .headmotion import headmotion_options

    return StreamLoop(loaded, options, source=inlet, features=feature_options(settings, loaded), rebuilder=operator_rebuilder(),
                      headmotion=headmotion_options(settings, loaded))  # fmt: skip
