"""Issue #17: `emoflow show` tells how the brief was read and every plan warning; --json has them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoflow import cli
from emoflow.cli import app
from tasks.context import open_store
from tests.web.test_plan_warnings import DESCRIPTION, READINGS, WARNINGS, record_planned_run

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rich sizes its console once, at import; wide enough here that no table cell wraps."""
    monkeypatch.setattr(cli.console, "_width", 240)
    yield


def show(*args: str) -> str:
    result = runner.invoke(app, ["show", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_show_lists_readings_then_warnings(emoflow_home: Path) -> None:
    metadata = {"warnings": WARNINGS, "readings": READINGS}
    run_id = record_planned_run(open_store(), "read", DESCRIPTION, metadata)
    out = show(run_id)
    assert out.index("How the brief was read") > out.index("stage")  # after the steps table
    assert "creepy for the storm part" in out and "→ fear 0.60" in out
    assert 'lexicon "creepy"' in out and 'sentences 2-3, matched "the storm part"' in out
    assert "18" in out
    # user text is printed as written, not read as Rich markup
    assert 'plan warning: could not read "<b>blorp</b> & calm" as an emotion' in out
    assert out.index("plan warning: contradiction") > out.index("creepy for the storm part")


def test_show_json_has_the_plan(emoflow_home: Path) -> None:
    metadata = {"warnings": WARNINGS, "readings": READINGS}
    run_id = record_planned_run(open_store(), "read", DESCRIPTION, metadata)
    document = json.loads(show(run_id, "--json"))
    assert document["plan"] == {"warnings": WARNINGS, "readings": READINGS}


def test_show_an_old_plan_without_readings(emoflow_home: Path) -> None:
    run_id = record_planned_run(open_store(), "old", DESCRIPTION, {"warnings": ["[angry 0.8] ignored"]})
    out = show(run_id)
    assert "How the brief was read" in out and "plan warning: [angry 0.8] ignored" in out
    assert "No part of the description" not in out
    assert json.loads(show(run_id, "--json"))["plan"] == {
        "warnings": ["[angry 0.8] ignored"],
        "readings": None,
    }


def test_show_says_plainly_when_nothing_was_read(emoflow_home: Path) -> None:
    run_id = record_planned_run(open_store(), "unread", "blorp", {"warnings": [], "readings": []})
    out = show(run_id)
    assert "No part of the description was read as an emotion" in out
    assert "plan warning" not in out


def test_show_an_old_plan_with_nothing_to_report(emoflow_home: Path) -> None:
    run_id = record_planned_run(open_store(), "bare", "", {})
    assert "planned before readings were recorded" in show(run_id)
    assert json.loads(show(run_id, "--json"))["plan"] == {"warnings": [], "readings": None}
