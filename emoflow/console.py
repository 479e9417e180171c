"""Rich display of a narration in progress: one line per stage, a bar for long stages."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

STAGES = ("plan", "speak", "align", "feel", "render", "publish")


class StageProgress:
    """A kernel.progress.StageListener that draws the six stages with Rich."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[mark]}"),
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.rows: dict[str, TaskID] = {
            stage: self.progress.add_task(stage, total=None, start=False, mark="·", note="waiting")
            for stage in STAGES
        }

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def stage_started(self, stage: str) -> None:
        row = self._row(stage)
        self.progress.start_task(row)
        self.progress.update(row, mark="[yellow]▶", note="running")

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.update(self._row(stage), completed=done, total=total, note=f"{done}/{total}")

    def stage_finished(self, stage: str, cache_hit: bool, seconds: float) -> None:
        note = "[cyan]cached" if cache_hit else f"done in {seconds:.1f}s"
        self.progress.update(self._row(stage), total=1, completed=1, mark="[green]✔", note=note)
        self.progress.stop_task(self._row(stage))

    def stage_failed(self, stage: str, error: str) -> None:
        # escaped: an error quoting a tag ("[grumpy]") would otherwise be read as Rich markup and vanish
        note = f"[red]failed: {escape(error[:60])}"
        self.progress.update(self._row(stage), mark="[red]✘", note=note)
        self.progress.stop_task(self._row(stage))

    def _row(self, stage: str) -> TaskID:
        if stage not in self.rows:
            self.rows[stage] = self.progress.add_task(stage, total=None, mark="·", note="")
        return self.rows[stage]
