"""Bad input at submission: one-line error, exit 1, a job.reject audit event and nothing else written."""

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from emoflow.cli import app
from tasks.context import open_store

runner = CliRunner()


def job(tmp_path: Path, **fields: str) -> Path:
    values = {"script": "Hello there.", "portrait": "skimage:astronaut", **fields}
    path = tmp_path / "job.yaml"
    path.write_text("".join(f"{k}: {v!r}\n" for k, v in values.items()), encoding="utf-8")
    return path


def rows(table: str) -> int:
    with open_store().engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"script": "   "}, "script is empty"),
        ({"script": "... !!! ???"}, "no words to speak (punctuation is not spoken)"),
        ({"script": "[angry] [sad]"}, "no words to speak once inline [tags] are removed"),
        ({"script": "[grumpy] Hello."}, "unknown emotion in tag [grumpy]"),
        ({"script": "[angry 1.5] Hello."}, "intensity 1.5 in tag [angry 1.5] is outside 0..1"),
        ({"portrait": "missing.png"}, "missing.png"),
        ({"portrait": "not-an-image.png"}, "not-an-image.png"),
        ({"portrait": "skimage:chelsea"}, "no human face"),
        ({"portrait": "skimage:nobody"}, "unknown built-in portrait"),
        ({"output_dir": "blocker/out"}, "not writable"),
        ({"efp_engine": "learned"}, "efp_engine=learned needs a model"),
        ({"efp_engine": "learned", "efp_model": "nosuchmodel"}, "no EFP model named 'nosuchmodel'"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(
    emoflow_home: Path, tmp_path: Path, fields: dict[str, str], fragment: str
) -> None:
    (tmp_path / "not-an-image.png").write_text("plain text, not pixels", encoding="utf-8")
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    result = runner.invoke(app, ["narrate", str(job(tmp_path, **fields))])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("error:") and fragment in message
    assert len(message.splitlines()) == 1
    assert (rows("jobs"), rows("runs"), rows("steps"), rows("artifacts")) == (0, 0, 0, 0)
    (event,) = open_store().audit_events()
    assert event.action == "job.reject" and fragment in event.details["error"]


def test_a_job_that_does_not_validate_touches_no_store(emoflow_home: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["narrate", str(job(tmp_path, tts_engine="gramophone"))])
    assert result.exit_code == 1
    choices = "'piper', 'espeak', 'espeak-env' or 'parler-env'"
    assert f"tts_engine: Input should be {choices}, not 'gramophone'" in result.stderr
    assert (rows("jobs"), rows("artifacts"), rows("audit_events")) == (0, 0, 0)


def test_show_unknown_run_is_a_clean_error(emoflow_home: Path) -> None:
    result = runner.invoke(app, ["show", "deadbeef"])
    assert result.exit_code == 1
    assert "no run 'deadbeef'" in result.stderr


def test_missing_job_file_is_a_clean_error(emoflow_home: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["narrate", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 1 and "does not exist" in result.stderr
