"""What the CLI prints while a flow runs: a refused input is one line, not Prefect's traceback, and a
failed stage's message keeps its brackets."""

from __future__ import annotations

import io
import logging
import sys

from rich.console import Console

from emoflow.console import StageProgress
from emoflow.console_logs import DropInputErrorTracebacks, quiet_input_errors
from kernel.errors import EngineError, InputError


def record_of(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, info)


def test_input_error_tracebacks_are_dropped_from_the_console_and_engine_errors_kept() -> None:
    keep = DropInputErrorTracebacks()
    assert not keep.filter(record_of(InputError("unknown emotion in tag [grumpy]")))
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = InputError("script is empty")
    assert not keep.filter(record_of(wrapped))
    assert keep.filter(record_of(EngineError("the voice crashed")))  # a crash keeps its traceback
    plain = logging.LogRecord(
        "prefect", logging.INFO, __file__, 1, "Finished in state Completed()", None, None
    )
    assert keep.filter(plain)


def test_the_filter_goes_on_the_console_handler_once_and_only_there() -> None:
    console = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(console)
    try:
        quiet_input_errors()
        quiet_input_errors()
        assert sum(isinstance(f, DropInputErrorTracebacks) for f in console.filters) == 1
        logging.getLogger("emoflow.test.stage").error("stage failed", exc_info=InputError("bad tag"))
        logging.getLogger("emoflow.test.stage").error("stage crashed", exc_info=EngineError("voice crashed"))
        shown = console.stream.getvalue()
        assert "bad tag" not in shown and "voice crashed" in shown
    finally:
        root.removeHandler(console)


def test_a_failed_stage_shows_its_message_with_brackets() -> None:
    screen = Console(file=io.StringIO(), width=160, record=True)
    with StageProgress(screen) as progress:
        progress.stage_failed("plan", "unknown emotion in tag [grumpy]")
    assert "unknown emotion in tag [grumpy]" in screen.export_text()
