"""SIGTERM and SIGINT during training: a flag the driver reads after each step, so it can save and stop."""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """Turns SIGTERM/SIGINT into `received` (the signal's name) while the context is open (main thread only).

    A second Ctrl-C stops at once (KeyboardInterrupt); the previous handlers come back on exit.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
