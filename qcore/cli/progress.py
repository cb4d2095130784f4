"""The command line's one progress bar: training a baseline and measuring a sweep both draw it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


def _eta(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressBar:
    """``[#####.....]  45%  4/9  ETA 3m10s  INT8 per-channel ...`` on one refreshed line of a terminal; on a
    pipe or a log file, one plain line every 10% or 30 seconds instead.

    It is a ``progress(done, total, message)`` callback. ``eta=False`` when the messages carry their own ETA
    (a baseline's training estimates it from its steps); otherwise the time left is the time so far scaled
    by the share left: 2 of 8 done after 30 s leaves 6 x 15 s = 1m30s.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, *, eta: bool = True):
        self.stream = stream or sys.stderr
        self.width, self.eta = width, eta
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last_draw, self.last_pct, self.shown = 0.0, -10, False

    def __call__(self, done: float, total: int, message: str) -> None:
        now, frac = time.monotonic(), done / max(total, 1)
        pct = int(frac * 100)
        text = message
        if self.eta:
            elapsed = now - self.start
            left = f"ETA {_eta(elapsed / frac * (1 - frac))}" if 0 < frac < 1 else f"{_eta(elapsed)} so far"
            text = f"{int(done)}/{total}  {left}  {message}"
        if self.tty:
            if now - self.last_draw < 0.2 and done < total:
                return
            filled = int(frac * self.width)
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}%  {text}\033[K")
            self.shown = True
        else:
            if pct < self.last_pct + 10 and now - self.last_draw < 30 and done < total:
                return
            self.stream.write(f"{pct:3d}%  {text}\n")
            self.last_pct = pct
        self.stream.flush()
        self.last_draw = now

    def close(self) -> None:
        """End the refreshed line (on a terminal), so what is printed next starts on its own."""
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
