"""Engine identities: digests of the tables, model files and source an engine's output depends on."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

import models.identity
from models.identity import (
    EngineIdentity,
    SourceFacts,
    SourceFactsCache,
    describe,
    fresh_source_digest,
    module_closure,
    path_digest,
    select,
    table_file,
)
from models.vocabulary import PLANNING_PARTS, PROSODY_PARTS, load_vocabulary, vocabulary_table

TABLE = """\
# a comment
version: 1
emotions:
  angry: {prosody: {rate: 1.1, pitch: 2}, synonyms: {furious: 0.9}}
  sad: {prosody: {rate: 0.9, pitch: -1}, synonyms: {gloomy: 0.6}}
"""


def digest_of(tmp_path: Path, text: str, *selectors: str) -> str:
    path = tmp_path / "emotions.yaml"
    path.write_text(text)
    identity = describe(_Engine(), tables=[table_file(path, *selectors)])
    return identity.digests["table:emotions.yaml"]


class _Engine:
    name = "probe"
    version = "1"


def test_comments_whitespace_and_key_order_change_no_table_digest(tmp_path: Path) -> None:
    base = digest_of(tmp_path, TABLE)
    reordered = TABLE.replace("{rate: 1.1, pitch: 2}", "{pitch: 2,   rate: 1.1}")
    assert digest_of(tmp_path, reordered + "# another comment\n\n") == base
    assert digest_of(tmp_path, TABLE.replace("rate: 1.1", "rate: 1.2")) != base


def test_a_part_the_engine_does_not_read_changes_nothing(tmp_path: Path) -> None:
    synonyms = digest_of(tmp_path, TABLE, "emotions.*.synonyms")
    assert digest_of(tmp_path, TABLE.replace("rate: 1.1", "rate: 1.5"), "emotions.*.synonyms") == synonyms
    assert (
        digest_of(tmp_path, TABLE.replace("furious: 0.9", "furious: 0.8"), "emotions.*.synonyms") != synonyms
    )


def test_select_follows_wildcards_and_misses_quietly() -> None:
    data = {"emotions": {"a": {"x": 1, "y": 2}, "b": {"x": 3}}}
    assert select(data, "emotions.*.x") == {"a": 1, "b": 3}
    assert select(data, "emotions.*.y") == {"a": 2, "b": None}
    assert select(data, "absent.part") is None and select(data, "") == data


def test_vocabulary_parts_split_planning_from_prosody(tmp_path: Path) -> None:
    before = load_vocabulary()
    document = yaml.safe_load(Path(before.source).read_text())
    document["emotions"]["angry"]["prosody"]["rate"] += 0.05
    edited = tmp_path / "emotions.yaml"
    edited.write_text(yaml.safe_dump(document))
    after = load_vocabulary(edited)
    assert before.document != after.document
    for parts, same in ((PLANNING_PARTS, True), (PROSODY_PARTS, False)):
        a = describe(_Engine(), tables=[vocabulary_table(before, *parts)]).digests
        b = describe(_Engine(), tables=[vocabulary_table(after, *parts)]).digests
        assert (a == b) is same


def test_model_files_count_by_content_not_by_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"weights")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert path_digest(tmp_path / "a") == path_digest(tmp_path / "b")
    assert path_digest(tmp_path / "a" / "w.bin") == path_digest(tmp_path / "b" / "w.bin")
    (tmp_path / "b" / "w.bin").write_bytes(b"retrained")
    assert path_digest(tmp_path / "a") != path_digest(tmp_path / "b")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway `models` package on sys.path, so its source can be edited."""
    root = tmp_path / "src" / "models"
    (root / "render").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "render" / "__init__.py").write_text("")
    (root / "render" / "engine.py").write_text(
        '"""An engine."""\nimport numpy\nfrom models.render import helper\n\n\ndef run():\n'
        "    return helper.K\n"
    )
    (root / "render" / "helper.py").write_text("K = 1  # a constant\n")
    (root / "unused.py").write_text("X = 1\n")
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    return root


def test_source_closure_follows_first_party_imports_only(package: Path) -> None:
    assert list(module_closure(["models.render.engine"])) == [
        "models",
        "models.render",
        "models.render.engine",
        "models.render.helper",
    ]


def test_source_digest_ignores_comments_and_docstrings_but_not_code(package: Path) -> None:
    base = fresh_source_digest("models.render.engine")
    engine = package / "render" / "engine.py"
    engine.write_text(engine.read_text().replace('"""An engine."""', '"""Reworded."""\n# why') + "\n\n")
    assert fresh_source_digest("models.render.engine") == base
    (package / "render" / "helper.py").write_text("K = 2  # a constant\n")
    assert fresh_source_digest("models.render.engine") != base
    (package / "unused.py").write_text("X = 2\n")  # not imported: not part of the engine


def _new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new process starts with: nothing memoised, the facts file on disk."""
    models.identity._file_source_facts.cache_clear()
    monkeypatch.setattr(models.identity, "_FACTS", SourceFactsCache())


def test_parsed_sources_are_kept_on_disk_by_content(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _new_process(monkeypatch)
    base = fresh_source_digest("models.render.engine")
    facts_file = models.identity._FACTS.path
    assert facts_file.is_file()

    _new_process(monkeypatch)
    parsed: list[str] = []
    real_parse = SourceFacts.parse
    monkeypatch.setattr(
        SourceFacts, "parse", lambda text, path: parsed.append(path) or real_parse(text, path)
    )
    assert fresh_source_digest("models.render.engine") == base and parsed == []  # nothing parsed again

    helper = package / "render" / "helper.py"
    helper.write_text("K = 3  # a constant\n")  # an edit is new content: parsed, whatever the file says
    assert fresh_source_digest("models.render.engine") != base and parsed == [str(helper)]


def test_a_damaged_facts_file_is_parsed_again(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _new_process(monkeypatch)
    base = fresh_source_digest("models.render.engine")
    models.identity._FACTS.path.write_text('{"ab": {"digest": 1}}')
    _new_process(monkeypatch)
    assert fresh_source_digest("models.render.engine") == base


def test_identity_lists_what_it_covers() -> None:
    identity = describe(_Engine(), packages=("numpy",))
    assert isinstance(identity, EngineIdentity) and identity.label == "probe@1"
    assert set(identity.digests) == {"source", "packages"}
    assert all(len(value) == 64 for value in identity.digests.values())
