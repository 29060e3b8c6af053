"""Commands to a running loop from other processes, over an LSL marker stream.

``rtsource mark-bad Cz`` publishes ``NAME-control``; the loop's :class:`ControlListener`
finds it in a background thread, reads JSON commands and queues them; the loop executes
them between two chunks (so nothing it owns is touched from another thread) and answers on
its events stream. See :mod:`rtsource.stream.outputs` for the format.
"""

from __future__ import annotations

import json
import logging
import queue
import threading

from .outputs import COMMANDS, CONTROL_SUFFIX, CONTROL_TYPE

logger = logging.getLogger(__name__)


class ControlListener:
    """Listens for ``NAME-control`` streams (any number, appearing any time) in a thread."""

    def __init__(self, output_name: str):
        self.name = output_name + CONTROL_SUFFIX
        self.commands: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rtsource-control")
        self._thread.start()

    def _run(self) -> None:
        import pylsl

        resolver = pylsl.ContinuousResolver(pred=f"name='{self.name}' and type='{CONTROL_TYPE}'", forget_after=5.0)
        inlets: dict[str, object] = {}
        while not self._stop.is_set():
            for info in resolver.results():
                if info.uid() not in inlets:
                    inlet = pylsl.StreamInlet(info, recover=False)
                    try:
                        inlet.open_stream(timeout=2.0)
                    except Exception as exc:  # the sender went away before we connected
                        logger.debug("control stream %s not opened: %s", info.uid(), exc)
                        continue
                    inlets[info.uid()] = inlet
            if not inlets:
                self._stop.wait(0.2)
                continue
            for uid, inlet in list(inlets.items()):
                try:
                    sample, _ = inlet.pull_sample(timeout=0.1 / len(inlets))
                except Exception:  # lost: the sender exited
                    inlets.pop(uid, None)
                    continue
                if sample:
                    self.commands.put(self._parse(sample[0]))

    @staticmethod
    def _parse(text: str) -> dict:
        try:
            cmd = json.loads(text)
        except json.JSONDecodeError as exc:
            return {"command": "?", "error": f"not JSON ({exc})", "text": text[:200]}
        if not isinstance(cmd, dict) or cmd.get("command") not in COMMANDS or not isinstance(cmd.get("channel"), str):
            return {"command": str(cmd.get("command", "?")) if isinstance(cmd, dict) else "?", "error": f"expected {{'command': one of {COMMANDS}, 'channel': name}}", "text": text[:200]}
        return cmd

    def pending(self) -> list[dict]:
        """Commands received since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.commands.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()


def send_commands(output_name: str, commands: list[dict], *, wait_s: float = 10.0) -> bool:
    """Publish commands on ``NAME-control`` once a loop listens; False if none did in time."""
    import time

    import pylsl

    info = pylsl.StreamInfo(output_name + CONTROL_SUFFIX, CONTROL_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{output_name}-control-{time.time_ns()}")
    outlet = pylsl.StreamOutlet(info)
    if not outlet.wait_for_consumers(wait_s):
        return False
    for cmd in commands:
        outlet.push_sample([json.dumps(cmd)])
    time.sleep(0.5)  # let the samples leave before the outlet closes
    return True
