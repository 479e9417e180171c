"""Batch manifests: many jobs in one CSV, YAML, or folder of job files, each row with its line number."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import InputError
from kernel.jobs import JobSpec, load_job_file, parse_job


@dataclass(frozen=True)
class ManifestRow:
    """One job of a manifest: its spec, or why it cannot be a job. `where` is 'file:line'."""

    row_id: str
    where: str
    spec: JobSpec | None = None
    error: str | None = None


def load_manifest(path: Path) -> list[ManifestRow]:
    """Rows in manifest order; a bad row carries its error, so the other rows can still run."""
    if path.is_dir():
        rows = [_from_job_file(job) for job in sorted(path.glob("*.y*ml"))]
    elif not path.exists():
        raise InputError(f"manifest {path} does not exist")
    elif path.suffix.lower() == ".csv":
        rows = _from_records(_csv_records(path), path)
    elif path.suffix.lower() in {".yaml", ".yml"}:
        rows = _from_records(_yaml_records(path), path)
    else:
        raise InputError(f"manifest {path} must be a .csv file, a .yaml/.yml file or a folder of job files")
    if not rows:
        raise InputError(f"manifest {path} holds no jobs")
    return rows


def _from_job_file(path: Path) -> ManifestRow:
    try:
        return ManifestRow(row_id=path.stem, where=f"{path.name}:1", spec=load_job_file(path))
    except InputError as exc:
        return ManifestRow(row_id=path.stem, where=f"{path.name}:1", error=str(exc))


def _from_records(records: list[tuple[int, Any]], path: Path) -> list[ManifestRow]:
    rows: list[ManifestRow] = []
    seen: dict[str, str] = {}
    for line, record in records:
        where = f"{path.name}:{line}"
        if not isinstance(record, dict):
            rows.append(
                ManifestRow(row_id=str(line), where=where, error="a row must be a mapping of job fields")
            )
            continue
        fields = {k: v for k, v in record.items() if v not in (None, "")}
        row_id = str(fields.pop("id", "") or fields.get("name") or f"row{line}")
        fields.setdefault("name", row_id)
        if row_id in seen:
            rows.append(
                ManifestRow(row_id, where, error=f"duplicated id {row_id!r} (first at {seen[row_id]})")
            )
            continue
        seen[row_id] = where
        try:
            rows.append(ManifestRow(row_id, where, spec=parse_job(fields, path.parent.resolve())))
        except InputError as exc:
            rows.append(ManifestRow(row_id, where, error=str(exc)))
    return rows


def _csv_records(path: Path) -> list[tuple[int, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "portrait" not in reader.fieldnames:
                raise InputError(
                    f"manifest {path} needs a header row with at least script and portrait columns"
                )
            # DictReader's line_num is the line the row ended on: right for one-line rows
            return [(reader.line_num, dict(row)) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest {path} is not readable CSV: {exc}") from exc


def _yaml_records(path: Path) -> list[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        data = data["jobs"]
        assert node is not None  # a non-empty document composed to a node
        node = next(value for key, value in node.value if key.value == "jobs")
    if not isinstance(data, list) or node is None:
        raise InputError(f"manifest {path} must be a list of jobs, or a mapping with a 'jobs' list")
    return [(item.start_mark.line + 1, record) for item, record in zip(node.value, data, strict=True)]
