"""Stopping a run cleanly: Ctrl-C, SIGTERM (a scheduler's preemption) or SIGHUP (the terminal of
an SSH session went away) finishes the step and saves last.pt; a second one aborts at once."""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopSignals:
    """While active, the first SIGINT/SIGTERM/SIGHUP only sets ``signum`` (the loop then saves last.pt
    and returns); a second one raises KeyboardInterrupt at once. Main thread only (Python's rule)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
