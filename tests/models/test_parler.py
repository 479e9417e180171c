"""The parler engine's parts that run without its environment: descriptions, pieces, errors, the lock.

Its speech is tested inside its own environment, on a tiny random-weight checkpoint, by
`make test-neural-tts` (tests/neural_tts/).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kernel.errors import EngineError, InputError
from models.tts import get_speech_engine
from models.tts.common import split_sentences
from models.tts.environments import LOCKS_ROOT, known_environments, source_builds
from models.tts.parler_engine import Descriptions, ParlerEngine, pieces
from models.vocabulary import load_vocabulary
from tests.models.test_tts import make_plan

LOCK = LOCKS_ROOT / "parler" / "requirements.lock"


@pytest.fixture(scope="module")
def descriptions() -> Descriptions:
    return Descriptions.load()


def test_every_emotion_has_a_style_in_expressos_wording(descriptions: Descriptions) -> None:
    assert set(descriptions.styles) == set(load_vocabulary().labels)
    assert descriptions.describe("sad", 1.0, 0.9) == (
        "Thomas speaks moderately slowly in a sad tone with emphasis and high quality audio."
    )
    assert descriptions.describe("neutral", 0.0, 1.0) == (
        "Thomas speaks in a default tone with high quality audio."
    )


def test_rate_picks_the_speed_words_and_intensity_the_emphasis(descriptions: Descriptions) -> None:
    assert " slowly in" in descriptions.describe("sad", 0.4, 0.80)
    assert "speaks fast in" in descriptions.describe("happy", 0.4, 1.3)
    assert "emphasis" not in descriptions.describe("happy", descriptions.emphasis_from - 0.01, 1.0)
    assert "emphasis" in descriptions.describe("happy", descriptions.emphasis_from, 1.0)
    with pytest.raises(InputError, match="no style for emotion 'grumpy'"):
        descriptions.describe("grumpy", 1.0, 1.0)


def test_a_broken_table_is_an_engine_error(tmp_path: Path) -> None:
    table = tmp_path / "parler.yaml"
    table.write_text("speaker: Thomas\n", encoding="utf-8")
    with pytest.raises(EngineError, match="cannot read the Parler descriptions"):
        Descriptions.load(table)


def test_a_sentence_is_cut_where_the_emotion_changes(descriptions: Descriptions) -> None:
    script = "Hello there, my friends. This must never happen again, not ever!"
    plan = make_plan(script, lambda i: ("angry", 0.6 + 0.1 * (i % 2)) if 5 <= i <= 8 else ("neutral", 0.0))
    sentences = split_sentences(plan)
    assert len(sentences) == 2
    assert [p.text for p in pieces(plan, sentences[0], descriptions, load_vocabulary())] == [
        "Hello there, my friends."
    ]
    second = pieces(plan, sentences[1], descriptions, load_vocabulary())
    assert [(p.first, p.stop) for p in second] == [(4, 5), (5, 9), (9, 11)]
    assert [p.text for p in second] == ["This", "must never happen again,", "not ever!"]
    # each piece's text starts at its char_start in the script
    assert all(script[p.char_start :].startswith(p.text) for p in second)
    assert "angry tone with emphasis" in second[1].description  # mean intensity 0.65
    assert "default tone" in second[0].description


def test_without_a_checkpoint_the_engine_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="EMOFLOW_PARLER_MODEL=DIR"):
        ParlerEngine().identity()
    with pytest.raises(EngineError, match="is not a Parler-TTS checkpoint"):
        ParlerEngine(tmp_path).identity()


def test_outside_its_environment_the_engine_names_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    engine = get_speech_engine("parler", model_dir=tmp_path)
    assert engine.identity().digests["model:checkpoint"]  # the checkpoint's files key the cache
    with pytest.raises(EngineError, match=re.escape("emoflow engines install parler")):
        engine.synthesize(make_plan("Hello there."))


def test_the_lock_pins_every_package_with_a_hash_and_names_its_source_builds() -> None:
    assert "parler" in known_environments()
    entries = re.findall(
        r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", LOCK.read_text(), re.M
    )
    names = {name for name, _ in entries}
    assert {
        "torch",
        "torchaudio",
        "transformers",
        "parler-tts",
        "espeakng-loader",
        "pydantic-settings",
    } <= names
    assert dict(entries)["transformers"] == "4.46.1"
    built = source_builds(LOCK)
    assert "parler-tts" in built and set(built) <= names
    assert source_builds(LOCKS_ROOT / "espeak" / "requirements.lock") == []


def test_another_description_table_is_read_and_keys_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernel.settings import get_settings

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    table = tmp_path / "large-v1.yaml"
    default = (LOCKS_ROOT.parent / "prompts" / "parler.yaml").read_text(encoding="utf-8")
    table.write_text(default.replace("speaker: Thomas", "speaker: Jon"), encoding="utf-8")
    monkeypatch.setenv("EMOFLOW_PARLER_DESCRIPTIONS", str(table))
    get_settings.cache_clear()
    try:
        engine = ParlerEngine(tmp_path)
        assert engine.descriptions.describe("happy", 0.0, 1.0).startswith("Jon speaks")
        assert "table:large-v1.yaml" in engine.identity().digests
    finally:
        monkeypatch.delenv("EMOFLOW_PARLER_DESCRIPTIONS")
        get_settings.cache_clear()
    assert "table:parler.yaml" in ParlerEngine(tmp_path).identity().digests


def test_a_long_install_reports_progress_and_a_failure_quotes_its_last_lines() -> None:
    import sys

    from models.tts.environments import _PipProgress, _run

    said: list[str] = []
    progress = _PipProgress(122, said.append)
    for n in range(122):
        progress(f"Collecting package{n}==1.0")
        if n == 4:
            progress("Building wheel for parler-tts (pyproject.toml): started")
    progress("Installing collected packages: a, b")
    assert said[1] == "13/122 packages fetched" and said[-2] == "122/122 packages fetched"
    assert said[0] == "building parler-tts from its sdist" and said[-1] == "unpacking them into the venv"
    assert len(said) == 12  # every 13 packages and the last, one build, one unpack: not a line each

    lines: list[str] = []
    failing = "print('WARNING: ignored'); print('ERROR: no matching distribution'); raise SystemExit(3)"
    with pytest.raises(EngineError, match=r"failed \(exit 3\): ERROR: no matching distribution$"):
        _run([sys.executable, "-c", failing], "installing", on_line=lines.append)
    assert lines == ["WARNING: ignored", "ERROR: no matching distribution"]
