"""What a finished narration leaves beside the store: its files in the output folder and a markdown
summary for Prefect. Without Prefect, so the publish task and the store-only resolver share them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kernel.settings import get_settings
from stores.records import ArtifactRef, RunRecord
from stores.store import ArtifactStore


@dataclass(frozen=True)
class RunSummary:
    key: str  # the Prefect artifact key
    description: str
    markdown: str


def export_files(
    store: ArtifactStore, run_id: str, output_dir: Path, files: Mapping[str, ArtifactRef]
) -> dict[str, str]:
    """Export each artifact to `output_dir/<name>` (an audited export each, their events written in one
    transaction); name -> absolute path."""
    paths = store.export_many([(ref.sha256, output_dir / name) for name, ref in files.items()], run_id=run_id)
    return {name: str(path) for name, path in zip(files, paths, strict=True)}


def run_summary(record: RunRecord, published: Mapping[str, str]) -> RunSummary:
    return RunSummary(
        key=f"narration-{record.id[:8]}",
        description=f"emoflow run {record.id} of job {record.job.name}",
        markdown=summary_markdown(record, published),
    )


def summary_markdown(record: RunRecord, published: Mapping[str, str]) -> str:
    lines = [
        f"# emoflow run `{record.id}`",
        "",
        f"Job **{record.job.name}** submitted by {record.job.submitter}. "
        f"[Open it in the inspector]({get_settings().inspector_url.rstrip('/')}/ui/runs/{record.id}).",
        "",
        "| stage | engine | version | cache hit | seconds | outputs (sha256) |",
        "|---|---|---|---|---|---|",
    ]
    for step in record.steps:
        outputs = ", ".join(f"{name} `{ref.sha256[:12]}`" for name, ref in step.outputs.items())
        seconds = f"{step.seconds:.2f}" if step.seconds is not None else ""
        lines.append(
            f"| {step.stage} | {step.engine} | {step.engine_version} | {'yes' if step.cache_hit else 'no'} "
            f"| {seconds} | {outputs} |"
        )
    lines += ["", "## Published files", ""]
    lines += [f"- `{name}`: {path}" for name, path in published.items()]
    return "\n".join(lines)
