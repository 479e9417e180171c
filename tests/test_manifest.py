from pathlib import Path

import pytest

from kernel.errors import InputError
from kernel.manifest import load_manifest


def test_csv_rows_keep_their_line_numbers_and_bad_rows_their_error(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "id,script,portrait,fps\n"
        "a,Hello.,skimage:astronaut,25\n"
        "b,Hi.,,25\n"
        "a,Again.,skimage:astronaut,25\n"
        "c,Bye.,skimage:astronaut,0\n",
        encoding="utf-8",
    )
    rows = load_manifest(manifest)
    assert [(r.row_id, r.where) for r in rows] == [
        ("a", "jobs.csv:2"),
        ("b", "jobs.csv:3"),
        ("a", "jobs.csv:4"),
        ("c", "jobs.csv:5"),
    ]
    assert rows[0].spec is not None and rows[0].spec.name == "a"
    assert "portrait" in (rows[1].error or "")
    assert rows[2].error == "duplicated id 'a' (first at jobs.csv:2)"
    assert "fps" in (rows[3].error or "")


def test_yaml_manifest_lines_point_at_each_job(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "jobs:\n"
        "  - id: one\n"
        "    script: Hello.\n"
        "    portrait: skimage:astronaut\n"
        "  - id: two\n"
        "    script: Bye.\n"
        "    portrait: face.png\n",
        encoding="utf-8",
    )
    rows = load_manifest(manifest)
    assert [(r.row_id, r.where) for r in rows] == [("one", "jobs.yaml:2"), ("two", "jobs.yaml:5")]
    assert rows[1].spec is not None and rows[1].spec.portrait == str(tmp_path / "face.png")


def test_folder_of_job_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("script: B.\nportrait: skimage:astronaut\n", encoding="utf-8")
    (tmp_path / "a.yml").write_text("script: A.\n", encoding="utf-8")
    rows = load_manifest(tmp_path)
    assert [r.row_id for r in rows] == ["a", "b"]
    assert rows[0].error and "portrait" in rows[0].error and rows[1].spec is not None


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("jobs.txt", "whatever", "must be a .csv file"),
        ("jobs.yaml", "just a string", "must be a list of jobs"),
        ("jobs.yaml", "- [unclosed", "not valid YAML"),
        ("jobs.csv", "name,script\nx,Hi.\n", "header row"),
        ("jobs.csv", "id,script,portrait\n", "holds no jobs"),
    ],
)
def test_unusable_manifests_fail_at_start(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=fragment):
        load_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_manifest(tmp_path / "nope.csv")
