"""What Prefect prints on the terminal while the CLI runs a flow.

A stage that refuses bad input raises InputError; the CLI then prints one line saying what to fix. Prefect's
console handler would print the same error first as a page of traceback, which reads like a crash. Those
records are dropped from the console only: Prefect's API handler still sends them to the run's logs, and
`--debug` keeps them on the terminal too.
"""

from __future__ import annotations

import logging

from kernel.errors import InputError


class DropInputErrorTracebacks(logging.Filter):
    """Drops log records that carry an InputError (or one raised from it) as their exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, InputError):
                return False
            exc = exc.__cause__
        return True


def quiet_input_errors() -> None:
    """Adds the filter to the console handlers of the root logger (where Prefect's console handler sits),
    once; call after Prefect has configured logging."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not any(
            isinstance(f, DropInputErrorTracebacks) for f in handler.filters
        ):
            handler.addFilter(DropInputErrorTracebacks())
