"""Test-only crash hook: kill the process at a named point to prove the store survives it.

Arm it with ``EMOFLOW_CRASH_AT=<point>[:mode][@n]`` (several, comma-separated):

- ``point``: ``<stage>.before`` (step opened, nothing computed), ``<stage>.after`` (step committed,
  not yet returned), ``blob.mid_write`` (temp file written, not yet renamed into place),
  ``blob.before_commit`` (blob in place, its artifact row not yet committed).
- ``mode``: ``exit`` (default, ``os._exit(137)``: no cleanup, no finally blocks) or ``kill``
  (SIGKILL to itself, what the OOM killer does).
- ``n``: crash on the n-th time this process reaches the point (default 1), e.g.
  ``blob.mid_write@2`` skips the portrait written at submission and dies writing the script.

Unarmed (the normal case) a crash point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "EMOFLOW_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a SIGKILLed process, so both modes look alike to callers
MODES = ("exit", "kill")

_hits: dict[str, int] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, tuple[str, int]]:
    """``"a:kill@2,b"`` -> ``{"a": ("kill", 2), "b": ("exit", 1)}``; malformed entries raise ValueError."""
    armed: dict[str, tuple[str, int]] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        entry, _, count = entry.partition("@")
        point, _, mode = entry.partition(":")
        mode = mode or "exit"
        if not point or mode not in MODES:
            raise ValueError(f"bad {ENV} entry {entry!r}: use <point>[:exit|kill][@n]")
        armed[point] = (mode, int(count) if count else 1)
    return armed


def crashpoint(point: str) -> None:
    """Die here if `point` is armed in EMOFLOW_CRASH_AT and this is its n-th hit in this process."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    armed = parse(spec).get(point)
    if armed is None:
        return
    mode, nth = armed
    with _lock:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] != nth:
            return
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(EXIT_CODE)
