"""Kill `emoflow narrate` at every crash point, resume, and check the store lost nothing.

One job is driven through a chain of crashing processes (each armed with the next crash point),
then one clean run: every crash costs one process start, not one narration per point. Each point
is its own test case, asserting on what its crash left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kernel.crashpoints import EXIT_CODE
from stores.records import RunRecord
from stores.store import ArtifactStore
from stores.verify import VerifyReport, verify_store
from tests.reliability.helpers import STAGES, Home, narrate_cli, write_job

pytestmark = pytest.mark.slow

# (point, mode): both sides of every stage, the middle of a blob write and the gap before the commit.
# @4 skips the portrait (submission), script and description (the plan task's inputs):
# the blob crashes land inside the plan step.
CRASHES = [
    ("plan.before", "exit"),
    ("blob.mid_write@4", "kill"),
    ("blob.before_commit@4", "exit"),
    ("plan.after", "kill"),
    ("speak.before", "exit"),
    ("speak.after", "exit"),
    ("align.before", "kill"),
    ("align.after", "exit"),
    ("feel.before", "exit"),
    ("feel.after", "kill"),
    ("render.before", "kill"),
    ("render.after", "exit"),
    ("publish.before", "exit"),
    ("publish.after", "kill"),
]
STEP_OPEN = {"before", "mid_write@4", "before_commit@4"}  # crashes that leave a step "running"


@dataclass
class Crash:
    point: str
    returncode: int
    stderr: str
    finished_before: set[str]  # stages with a succeeded step when the process started
    run_steps: dict[str, tuple[str, bool]]  # the crashed run: stage -> (status, cache hit)
    run_status: str
    report: VerifyReport
    blob_files: int


@dataclass
class Chain:
    home: Home
    crashes: list[Crash] = field(default_factory=list)
    final_rc: int = -1
    final_out: str = ""
    final_steps: dict[str, tuple[str, bool]] = field(default_factory=dict)
    final_report: VerifyReport | None = None
    repair_report: VerifyReport | None = None
    after_repair: VerifyReport | None = None


def finished_stages(store: ArtifactStore) -> set[str]:
    from sqlalchemy import select

    from stores.schema import Step

    with store._session() as session:
        return set(session.scalars(select(Step.stage).where(Step.status == "succeeded")))


def newest_run(store: ArtifactStore) -> RunRecord:
    (run,) = store.list_runs(limit=1)
    return run


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[Chain]:
    home = Home(tmp_path_factory.mktemp("crash"))
    job = write_job(home.root, "crashy", "Hello there, my friends. [angry 0.9] This must never happen!")
    result = Chain(home)
    store = None
    for point, mode in CRASHES:
        name, _, nth = point.partition("@")
        armed = f"{name}:{mode}" + (f"@{nth}" if nth else "")
        before = finished_stages(store) if store else set()
        done = narrate_cli(job, home.env(prefect_api, EMOFLOW_CRASH_AT=armed))
        store = store or home.store()
        run = newest_run(store)
        result.crashes.append(
            Crash(
                point=point,
                returncode=done.returncode,
                stderr=done.stderr[-2000:],
                finished_before=before,
                run_steps={s.stage: (s.status, s.cache_hit) for s in run.steps},
                run_status=run.status,
                report=verify_store(store),
                blob_files=sum(1 for _ in store.blobs.iter_shas()),
            )
        )
    done = narrate_cli(job, home.env(prefect_api))
    result.final_rc, result.final_out = done.returncode, done.stdout + done.stderr
    run = newest_run(store)
    result.final_steps = {s.stage: (s.status, s.cache_hit) for s in run.steps}
    result.final_report = verify_store(store)
    result.repair_report = verify_store(store, repair=True, actor="test")
    result.after_repair = verify_store(store)
    yield result
    store.close()


@pytest.mark.parametrize("index", range(len(CRASHES)), ids=[p for p, _ in CRASHES])
def test_crash_point_leaves_a_resumable_store(chain: Chain, index: int) -> None:
    crash = chain.crashes[index]
    point, mode = CRASHES[index]
    assert crash.returncode == (EXIT_CODE if mode == "exit" else -9), crash.stderr
    assert crash.run_status == "running"  # died: nothing marked the run finished

    # only unfinished stages were recomputed: finished ones are cache hits, in order
    stage, _, where = point.partition(".")
    hits = [s for s, (_status, hit) in crash.run_steps.items() if hit]
    assert set(hits) == crash.finished_before
    computed = [s for s, (_status, hit) in crash.run_steps.items() if not hit]
    assert all(s not in crash.finished_before for s in computed)
    crashed_stage = computed[-1] if computed else None
    if stage != "blob":
        assert crashed_stage == stage
        expected_status = "running" if where == "before" else "succeeded"
        assert crash.run_steps[stage][0] == expected_status
    else:
        assert crashed_stage == "plan" and crash.run_steps["plan"][0] == "running"

    # the store: nothing corrupt or missing; leftovers are exactly what the crashes explain
    report = crash.report
    assert not report.by_kind("corrupt_blob") and not report.by_kind("missing_blob")
    assert not report.by_kind("dangling_lineage")
    orphans = report.by_kind("orphan_blob")
    assert len(orphans) == (1 if point == "blob.before_commit@4" else 0)  # the plan blob, not committed
    mid_writes = sum(1 for p, _ in CRASHES[: index + 1] if p.startswith("blob.mid_write"))
    assert len(report.by_kind("temp_file")) == mid_writes
    assert len(report.by_kind("abandoned_run")) == index + 1
    open_steps = sum(1 for p, _ in CRASHES[: index + 1] if p.partition(".")[2] in STEP_OPEN)
    assert len(report.by_kind("stuck_step")) == open_steps


def test_a_clean_rerun_finishes_from_cache_and_repair_leaves_a_clean_store(chain: Chain) -> None:
    assert chain.final_rc == 0, chain.final_out
    assert list(chain.final_steps) == STAGES
    # publish.after was the last crash: every stage was committed, the clean run only exports
    assert all(hit for _status, hit in chain.final_steps.values())
    assert "0 of 6 steps computed" in chain.final_out
    assert (chain.home.root / "out" / "video.mp4").stat().st_size > 0

    final = chain.final_report
    assert final is not None and not final.ok
    kinds = {p.kind for p in final.problems}
    assert kinds == {"temp_file", "abandoned_run", "stuck_step"}  # no lost, corrupt or orphan blob
    assert len(final.by_kind("abandoned_run")) == len(CRASHES)

    repaired = chain.repair_report
    assert repaired is not None and repaired.ok and all(p.repaired for p in repaired.problems)
    assert len(repaired.quarantined) == 1 and repaired.quarantined[0].endswith(".part")
    assert not repaired.invalidated_steps  # no committed output was lost
    after = chain.after_repair
    assert after is not None and after.ok and after.problems == []
    assert after.blobs_checked == chain.crashes[-1].blob_files  # every committed blob re-hashed fine
