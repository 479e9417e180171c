"""The fast path: a job whose every step is in the store is narrated from the store alone, recorded as
a cached flow run would be (store and Prefect), without importing Prefect, torch or an engine; and it
declines, leaving the flow to decide, whenever an engine's identity or a stored output is in doubt.

Each narration is a fresh `emoflow narrate` process over a copy of the packages (as in
test_cache_truth.py), so edits made to the checkout while the tests run cannot reach them."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.identity import EngineIdentity, describe
from models.identity_memo import IdentityMemo, Witness, witnessed_identity
from stores.records import RunRecord, StepRecord
from stores.store import ArtifactStore
from tests.reliability.helpers import STAGES, Home, write_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "models", "stores", "tasks", "flows", "emoflow", "prompts")
RESOLVED = "resolved from the store"

# runs the CLI in-process, then reports what it imported (the last line of its output)
PROBE = """
import json, sys
from emoflow.cli import app
code = 0
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = ("prefect", "torch", "mediapipe", "onnxruntime", "models.tts", "models.render", "models.efp")
print(json.dumps({"code": code, "imported": sorted(m for m in heavy if m in sys.modules)}))
"""
# the resolver's keys for a stored job, stage by stage
KEYS = """
import json, sys
from kernel.settings import get_settings
from stores.store import ArtifactStore
from tasks.job import load_job
from tasks.resolve import resolve
store = ArtifactStore.from_settings(get_settings())
resolution = resolve(store, load_job(store, sys.argv[1]))
print(json.dumps({"keys": resolution.keys, "declined": resolution.declined}))
"""

# a long-lived process (emoflow serve) narrating a stored job, with the flow forbidden
SERVED = """
import json, sys
import flows.narrate as narrate
def no_flow(job_id):
    raise AssertionError("the flow ran")
narrate.narrate_job = no_flow
narration = narrate.narrate_resolved_or_flow(sys.argv[1])
print(json.dumps({"run_id": narration.run_id}))
"""

# a finished job narrated from the store through a recorder of the given kind and Prefect API
RECORDED = """
import json, sys
from flows.fast_path import narrate_from_store
from flows.prefect_api import PrefectRecorder

class SummaryRefused(PrefectRecorder):
    def markdown(self, flow_run_id, key, description, markdown):
        self._post("artifacts/no-such-endpoint", {})  # the real server refuses it

kind = {"plain": PrefectRecorder, "summary-refused": SummaryRefused}[sys.argv[2]]
recorder = kind(sys.argv[3]).warm()
try:
    narration, why = narrate_from_store(sys.argv[1], recorder)
    print(json.dumps({"run_id": narration and narration.run_id, "declined": why}))
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
finally:
    recorder.close()
"""


@dataclass
class Narrated:
    run_id: str
    stdout: str
    computed: dict[str, bool]  # stage -> computed (True) or a cache hit

    @property
    def resolved(self) -> bool:
        return RESOLVED in self.stdout


class Tree:
    def __init__(self, root: Path, prefect_api: str) -> None:
        self.root = root
        self.src = root / "src"
        for package in PACKAGES:
            shutil.copytree(ROOT / package, self.src / package, ignore=shutil.ignore_patterns("__pycache__"))
        settled = time.time() - 10  # the copy as of a while ago, whatever was edited just now
        for path in self.src.rglob("*"):
            os.utime(path, (settled, settled))
        self.home = Home(root)
        self.job = write_job(root / "job", "fast", "Good morning. [angry 0.9] This must never happen again!")
        self.env = self.home.env(prefect_api, PYTHONPATH=str(self.src))
        self.prefect_api = prefect_api

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, *args], env=self.env, cwd=self.root, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def narrate(self, *options: str, job: Path | None = None) -> Narrated:
        done = self.python("-m", "emoflow.cli", "narrate", str(job or self.job), *options)
        found = re.search(r"run (\S+): \d+ of \d+ steps computed", done.stdout)
        assert found, done.stdout
        steps = self.steps(found.group(1))
        assert [s.stage for s in steps] == STAGES
        return Narrated(found.group(1), done.stdout, {s.stage: not s.cache_hit for s in steps})

    def steps(self, run_id: str) -> list[StepRecord]:
        store = self.home.store()
        try:
            return list(store.run(run_id).steps)
        finally:
            store.close()

    def record(self, run_id: str) -> RunRecord:
        store = self.home.store()
        try:
            return store.run(run_id)
        finally:
            store.close()

    def events(self, run_id: str) -> list[tuple[str, str, str | None]]:
        """(action, actor, stage) of the run's audit events, in order."""
        store = self.home.store()
        try:
            return [(e.action, e.actor, e.details.get("stage")) for e in store.audit_events(run_id=run_id)]
        finally:
            store.close()

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.src / relative
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not unique in {relative}"
        path.write_text(text.replace(old, new), encoding="utf-8")
        # an edit made a while ago: the run after it may then remember the new identity (an edit
        # within START_MARGIN_NS of a process's start is treated as made after it)
        earlier = time.time() - 5
        os.utime(path, (earlier, earlier))


def computed(*stages: str) -> dict[str, bool]:
    return {stage: stage in stages for stage in STAGES}


@pytest.fixture(scope="module")
def tree(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    made = Tree(tmp_path_factory.mktemp("fast-path"), prefect_api)
    yield made


@pytest.fixture(scope="module")
def first(tree: Tree) -> Narrated:
    narrated = tree.narrate()
    assert narrated.computed == computed(*STAGES) and not narrated.resolved
    return narrated


def test_resolver_keys_are_run_stages_keys(tree: Tree, first: Narrated) -> None:
    job_id = tree.record(first.run_id).job.id
    answer = json.loads(tree.python("-c", KEYS, job_id).stdout.strip().splitlines()[-1])
    assert answer["declined"] is None
    assert answer["keys"] == {step.stage: step.cache_key for step in tree.steps(first.run_id)}


def test_a_cached_narration_is_resolved_from_the_store_and_recorded_like_a_cached_flow_run(
    tree: Tree, first: Narrated
) -> None:
    fast = tree.narrate()
    assert fast.resolved and fast.computed == computed()
    full = tree.narrate("--no-fast-path")
    assert not full.resolved and full.computed == computed()

    # the same steps, keys, engines and lineage as the flow's cached run
    def shape(run_id: str) -> list[tuple[object, ...]]:
        return [
            (
                *(s.stage, s.status, s.cache_hit, s.cache_key, s.engine, s.engine_version),
                *(dict(s.engine_digests), s.params),
                {n: a.sha256 for n, a in s.inputs.items()},
                {n: a.sha256 for n, a in s.outputs.items()},
            )
            for s in tree.steps(run_id)
        ]

    assert shape(fast.run_id) == shape(full.run_id)
    assert [s.cache_key for s in tree.steps(fast.run_id)] == [s.cache_key for s in tree.steps(first.run_id)]
    fast_record, full_record = tree.record(fast.run_id), tree.record(full.run_id)
    assert fast_record.status == full_record.status == "succeeded"
    assert tree.events(fast.run_id) == tree.events(full.run_id)
    assert [a for a, _, _ in tree.events(fast.run_id)] == (
        ["run.start"] + ["step.cache_hit"] * 6 + ["artifact.export"] * 6 + ["run.finish"]
    )

    # the output reads as the flow's, plus the one line
    def lines(stdout: str) -> list[str]:
        return [
            re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "ID", line)
            for line in stdout.splitlines()
            if RESOLVED not in line
        ]

    assert lines(fast.stdout) == lines(full.stdout)

    # Prefect's record: a Completed `narrate` flow run with the flow's name and parameters, and its summary
    flow_run_id = fast_record.prefect_flow_run_id
    assert flow_run_id
    api = tree.prefect_api.rstrip("/")
    flow_run = httpx.get(f"{api}/flow_runs/{flow_run_id}").json()
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["name"] == f"narrate-{fast_record.job.id}"
    assert flow_run["parameters"] == {"job_id": fast_record.job.id}
    assert flow_run["start_time"] and flow_run["end_time"]
    assert httpx.get(f"{api}/flows/{flow_run['flow_id']}").json()["name"] == "narrate"
    artifacts = httpx.post(
        f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    )
    assert [a["key"] for a in artifacts.json()] == [f"narration-{fast.run_id[:8]}"]


def test_the_fast_path_imports_neither_prefect_nor_torch_nor_an_engine(tree: Tree, first: Narrated) -> None:
    done = tree.python("-c", PROBE, "narrate", str(tree.job))
    assert RESOLVED in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "imported": []}


def test_a_long_lived_process_narrates_a_finished_job_from_the_store(tree: Tree, first: Narrated) -> None:
    # what `emoflow serve` runs for a submitted or retried job (emoflow/web/service.py)
    job_id = tree.record(first.run_id).job.id
    done = tree.python("-c", SERVED, job_id)
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    record = tree.record(run_id)
    assert run_id != first.run_id and record.status == "succeeded" and record.prefect_flow_run_id
    assert [(s.stage, s.cache_hit) for s in record.steps] == [(stage, True) for stage in STAGES]


def test_a_prefect_server_that_does_not_answer_declines_before_anything_is_written(
    tree: Tree, first: Narrated
) -> None:
    job_id = tree.record(first.run_id).job.id
    store = tree.home.store()
    try:
        runs_before = len(store.job_runs(job_id))
        closed_port = "http://127.0.0.1:9/api"  # nothing listens on the discard port here
        done = json.loads(tree.python("-c", RECORDED, job_id, "plain", closed_port).stdout.splitlines()[-1])
        assert done["run_id"] is None and "Prefect's server did not answer" in done["declined"]
        assert len(store.job_runs(job_id)) == runs_before  # the flow gets the job as it was
    finally:
        store.close()


def test_a_refused_prefect_record_is_the_jobs_error_and_its_run_keeps_its_flow_run(
    tree: Tree, first: Narrated
) -> None:
    job_id = tree.record(first.run_id).job.id
    done = tree.python("-c", RECORDED, job_id, "summary-refused", tree.prefect_api)
    assert "Prefect API artifacts/no-such-endpoint" in json.loads(done.stdout.splitlines()[-1])["error"]
    store = tree.home.store()
    try:
        run = store.job_runs(job_id)[-1]
    finally:
        store.close()
    # the store's run is whole; Prefect has its Completed flow run, without the summary it refused
    assert run.status == "succeeded" and [s.cache_hit for s in run.steps] == [True] * len(STAGES)
    assert run.prefect_flow_run_id
    flow_run = httpx.get(f"{tree.prefect_api.rstrip('/')}/flow_runs/{run.prefect_flow_run_id}").json()
    assert flow_run["state_type"] == "COMPLETED" and flow_run["name"] == f"narrate-{job_id}"


def test_an_engine_edit_declines_and_the_flow_recomputes(tree: Tree, first: Narrated) -> None:
    tree.edit("models/tts/espeak_engine.py", 'base_version = "1.1.0"', 'base_version = "1.1.1"')
    edited = tree.narrate()
    # the new version is a new key; espeak's samples are the same, so what follows speak is found again
    assert not edited.resolved and edited.computed == computed("speak")
    # the flow remembered the new identity: the next narration is resolved again
    again = tree.narrate()
    assert again.resolved and again.computed == computed()


def test_a_missing_blob_declines_and_the_flow_recomputes_it(tree: Tree, first: Narrated) -> None:
    latest = tree.narrate()
    frames = next(s for s in tree.steps(latest.run_id) if s.stage == "render").outputs["frames"]
    store = tree.home.store()
    try:
        store.blob_path(frames.sha256).unlink()
    finally:
        store.close()
    rerun = tree.narrate()
    assert not rerun.resolved and rerun.computed["render"]


# -- the witness, in this process ----------------------------------------------------------------


class _Engine:
    name = "probe"
    version = "1"

    def __init__(self, model: Path) -> None:
        self.model = model

    def identity(self) -> EngineIdentity:
        return describe(self, files={"model": self.model}, packages=("httpx",))


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if this process had started after every file of the checkout was last written (other work
    may edit the checkout while the tests run)."""
    monkeypatch.setattr("models.identity_memo.process_started_ns", lambda: time.time_ns() + 10**12)


def test_a_remembered_identity_holds_until_what_it_read_changes(
    tmp_path: Path, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    identity, witness = witnessed_identity(_Engine(model))
    assert witness is not None and str(model.resolve()) in witness.files and "httpx" in witness.packages
    memo = IdentityMemo(tmp_path / "memo.json")
    memo.remember("speak:x", identity, witness)
    assert IdentityMemo(tmp_path / "memo.json").recall("speak:x") == (identity, "")
    assert IdentityMemo(tmp_path / "memo.json").recall("speak:y")[0] is None

    model.write_bytes(b"other weights")
    assert memo.recall("speak:x")[0] is None
    model.write_bytes(b"weights")  # the same bytes, but a new stamp: in doubt, still declined
    assert memo.recall("speak:x")[0] is None

    fresh, witness = witnessed_identity(_Engine(model))
    assert witness is not None
    memo.remember("speak:x", fresh, witness)
    assert memo.recall("speak:x") == (fresh, "")
    monkeypatch.setattr("models.identity_memo._version", lambda name: "0.0-other")
    assert memo.recall("speak:x") == (None, "httpx is now 0.0-other")


def test_a_witness_breaks_on_a_tree_edit_and_on_another_python(tmp_path: Path, trusted: None) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    _, witness = witnessed_identity(_Engine(model))
    assert witness is not None and witness.broken() is None
    other_tree = Witness.from_dict(witness.to_dict() | {"tree": "0" * 64})
    assert other_tree.broken() == "engine code or tables changed"
    assert Witness.from_dict(witness.to_dict() | {"python": "2.7"}).broken() == "another Python"


def test_no_identity_is_remembered_by_a_process_older_than_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    monkeypatch.setattr("models.identity_memo.process_started_ns", lambda: 0)  # started before any edit
    assert witnessed_identity(_Engine(model))[1] is None


def test_builtin_portraits_read_with_pillow_are_skimages_pixels() -> None:
    import numpy as np
    import skimage.data

    from tasks.intake import builtin_portrait

    for name in ("astronaut", "chelsea"):
        assert np.array_equal(builtin_portrait(name), getattr(skimage.data, name)())


def test_a_manifest_fast_paths_its_cached_rows_and_flows_the_rest(tree: Tree, first: Narrated) -> None:
    import csv

    manifest = tree.root / "jobs.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "script", "portrait", "tts_engine", "size", "output_dir"])
        script = "Good morning. [angry 0.9] This must never happen again!"  # the narrated job's
        writer.writerow(["fast", script, "skimage:astronaut", "espeak", 128, "out/1"])
        writer.writerow(["other", "Another line entirely.", "skimage:astronaut", "espeak", 128, "out/2"])
    once = tree.python("-m", "emoflow.cli", "batch", str(manifest)).stdout
    assert "2 of 2 jobs narrated" in once and "1 of them resolved from the store" in once
    again = tree.python("-m", "emoflow.cli", "batch", str(manifest)).stdout
    assert "2 of 2 jobs narrated" in again and "2 of them resolved from the store" in again
    assert (tree.root / "out" / "2" / "video.mp4").is_file()
    flowed = tree.python("-m", "emoflow.cli", "batch", str(manifest), "--no-fast-path").stdout
    assert "2 of 2 jobs narrated" in flowed and "resolved" not in flowed


def test_engines_the_resolver_cannot_vouch_for_always_go_through_the_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernel.jobs import JobOptions
    from kernel.settings import get_settings
    from tasks.resolve import unsupported

    base = {
        "planner": "rules",
        "tts_engine": "espeak",
        "aligner": "engine",
        "efp_engine": "embedded",
        "renderer": "preview",
        "steps": 40,
        "guidance": 3.5,
        "device": "cpu",
        "fps": 25,
        "size": 128,
        "seed": 0,
        "head_motion": 1.0,
        "face_index": 0,
        "output_dir": "out",
    }
    assert unsupported(JobOptions.model_validate(base)) is None
    for option, name in [
        ("planner", "llm"),
        ("tts_engine", "espeak-env"),
        ("efp_engine", "learned"),
        ("renderer", "diffusion"),
    ]:
        assert unsupported(JobOptions.model_validate(base | {option: name})), option
    monkeypatch.setenv("EMOFLOW_RENDER_DEPLOYMENT", "render-stage/gpu")
    get_settings.cache_clear()
    try:
        assert "routed" in (unsupported(JobOptions.model_validate(base)) or "")
    finally:
        monkeypatch.delenv("EMOFLOW_RENDER_DEPLOYMENT")
        get_settings.cache_clear()


def test_a_manifest_resolved_in_bulk_records_what_one_job_at_a_time_records(
    tree: Tree, first: Narrated
) -> None:
    script = "Good morning. [angry 0.9] This must never happen again!"  # the tree's job: cached
    manifest = tree.root / "bulk.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "script", "portrait", "tts_engine", "size", "output_dir"])
        for n in range(3):
            # the narrated job's name too: the publish step's key covers it (the plot's title)
            writer.writerow([f"bulk-{n}", "fast", script, "skimage:astronaut", "espeak", 128, f"bulk/{n}"])
    done = tree.python("-m", "emoflow.cli", "batch", str(manifest)).stdout
    assert "3 of 3 jobs narrated" in done and "3 of them resolved from the store" in done, done
    # the same jobs one at a time: `emoflow narrate` of each row's job file
    singles = [
        tree.narrate(job=write_job(tree.root / f"single-{n}", "fast", script, f"single/{n}"))
        for n in range(3)
    ]
    assert all(single.resolved for single in singles)
    store = tree.home.store()
    try:
        # the manifest's runs: the three before the single narrations, oldest first
        newest = store.list_runs(6)
        assert [run.id for run in newest[:3]] == [single.run_id for single in reversed(singles)]
        bulk_runs = list(reversed(newest[3:]))
        folders = [Path(run.job.options["output_dir"]).name for run in bulk_runs]
        assert folders == ["0", "1", "2"] and len({run.job.id for run in bulk_runs}) == 3
        for bulk_run, single in zip(bulk_runs, singles, strict=True):
            single_run = store.run(single.run_id)
            assert bulk_run.status == single_run.status == "succeeded"
            assert _run_shape(store, bulk_run.id) == _run_shape(store, single_run.id)
            _assert_prefect_record(tree.prefect_api, bulk_run)
            _assert_prefect_record(tree.prefect_api, single_run)
            assert (Path(bulk_run.job.options["output_dir"]) / "video.mp4").is_file()
    finally:
        store.close()


def _run_shape(store: ArtifactStore, run_id: str) -> tuple[Any, ...]:
    """A run's steps (with lineage) and audit events, without ids, times, hosts or its output folder."""
    steps = [
        (
            *(s.stage, s.status, s.cache_hit, s.cache_key, s.engine, s.engine_version, s.attempts),
            *(dict(s.engine_digests), s.params, s.seconds),
            {n: a.sha256 for n, a in s.inputs.items()},
            {n: a.sha256 for n, a in s.outputs.items()},
        )
        for s in store.run(run_id).steps
    ]
    assert [step[0] for step in steps] == STAGES

    def details(action: str, found: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in found.items() if k not in ("host", "pid")}
        if "path" in kept:  # the same file name, in each job's own folder
            kept["path"] = Path(kept["path"]).name
        return kept

    events = [(e.action, e.actor, details(e.action, e.details)) for e in store.audit_events(run_id=run_id)]
    assert [e[0] for e in events] == ["run.start"] + ["step.cache_hit"] * 6 + ["artifact.export"] * 6 + [
        "run.finish"
    ]
    return steps, events


def _assert_prefect_record(api: str, run: Any) -> None:
    """A Completed `narrate` flow run named after the job, with its parameters, times and one summary."""
    api = api.rstrip("/")
    flow_run = httpx.get(f"{api}/flow_runs/{run.prefect_flow_run_id}").json()
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["name"] == f"narrate-{run.job.id}"
    assert flow_run["parameters"] == {"job_id": run.job.id}
    assert flow_run["tags"] == []
    assert flow_run["start_time"] and flow_run["end_time"] and flow_run["start_time"] <= flow_run["end_time"]
    assert httpx.get(f"{api}/flows/{flow_run['flow_id']}").json()["name"] == "narrate"
    artifacts = httpx.post(
        f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run.prefect_flow_run_id]}}}
    ).json()
    assert [(a["key"], a["type"]) for a in artifacts] == [(f"narration-{run.id[:8]}", "markdown")]
    assert re.search(rf"# emoflow run `{run.id}`", artifacts[0]["data"])
    assert artifacts[0]["data"].count("| yes |") == len(STAGES)
