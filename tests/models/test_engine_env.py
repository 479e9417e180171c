"""Engine environments: espeak-ng in a second venv, driven over JSON lines, against espeak in-process.

One environment is built per session from engines/espeak/requirements.lock (about 12 s: a venv and
15 wheels, then a check that it speaks); every test here shares it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from emoflow.cli import app
from kernel.errors import EngineError, InputError
from models.tts import engine_server
from models.tts.environments import EngineEnvironment, environment, install, known_environments
from models.tts.espeak_engine import EspeakEngine
from models.tts.remote import EspeakEnvironmentEngine, RemoteSpeechEngine
from models.types import EmotionPlan, Speech, Timings
from tests.models.engine_env_fakes import FAULT_VARIABLE
from tests.models.test_tts import make_plan

SCRIPT = "The river was quiet at first. Then the storm broke over the hills! Nobody slept."
TWO_SENTENCES = "The river was quiet at first. Then the storm broke over the hills."
runner = CliRunner()


def plan_of(script: str = TWO_SENTENCES) -> EmotionPlan:
    return make_plan(script, lambda i: ("angry", 0.8) if i >= 6 else ("neutral", 0.0))


@pytest.fixture(scope="session")
def espeak_env(tmp_path_factory: pytest.TempPathFactory) -> EngineEnvironment:
    env = environment("espeak", root=tmp_path_factory.mktemp("engines"))
    started = time.perf_counter()
    install(env)
    print(f"espeak environment built in {time.perf_counter() - started:.1f} s")
    return env


@pytest.fixture
def remote(espeak_env: EngineEnvironment) -> Iterator[RemoteSpeechEngine]:
    engine = RemoteSpeechEngine(espeak_env, timeout_s=60)
    yield engine
    engine.close()


@pytest.fixture
def engines_dir(espeak_env: EngineEnvironment, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """EMOFLOW_ENGINES_DIR pointing at the session's environment, as `emoflow engines install` leaves it."""
    from kernel.settings import get_settings

    monkeypatch.setenv("EMOFLOW_ENGINES_DIR", str(espeak_env.root.parent))
    get_settings.cache_clear()
    yield espeak_env.root.parent
    get_settings.cache_clear()


def fake(espeak_env: EngineEnvironment, monkeypatch: pytest.MonkeyPatch, fault: str) -> RemoteSpeechEngine:
    monkeypatch.setenv(FAULT_VARIABLE, fault)
    return RemoteSpeechEngine(espeak_env, timeout_s=60, server_module="tests.models.engine_env_fakes")


# -- the environment -----------------------------------------------------------------------------


def test_the_environment_is_built_from_the_lock_and_isolated(espeak_env: EngineEnvironment) -> None:
    assert "espeak" in known_environments()
    record = espeak_env.record()
    assert espeak_env.status() == "installed"
    assert record is not None and record["lock_sha256"] == espeak_env.lock_digest()
    # its own packages, not this venv's: numpy from its site-packages, torch absent
    probe = "import numpy, sys; print(numpy.__file__); import torch"
    done = subprocess.run([str(espeak_env.python), "-c", probe], capture_output=True, text=True, check=False)
    assert done.stdout.startswith(str(espeak_env.venv)) and "No module named 'torch'" in done.stderr


def test_a_changed_lock_makes_the_environment_stale(espeak_env: EngineEnvironment, tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(espeak_env.lock.read_text() + "# edited\n")
    edited = EngineEnvironment("espeak", lock, espeak_env.root)
    assert edited.status() == "stale"
    with pytest.raises(EngineError, match=r"was built from another requirements\.lock; run `emoflow engines"):
        edited.require_installed()


def test_an_environment_not_installed_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernel.settings import get_settings

    monkeypatch.setenv("EMOFLOW_ENGINES_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        engine = EspeakEnvironmentEngine()
        with pytest.raises(
            EngineError, match=r"espeak is not installed .*run `emoflow engines install espeak`"
        ):
            engine.identity()
    finally:
        get_settings.cache_clear()


# -- same interface, same output as in-process ----------------------------------------------------


def test_speech_matches_espeak_in_process(remote: RemoteSpeechEngine) -> None:
    plan = plan_of()
    local, far = EspeakEngine().synthesize(plan), remote.synthesize(plan)
    assert isinstance(far, Speech) and far.samples.dtype == np.float32
    assert far.sample_rate == local.sample_rate
    assert [(w.index, w.text) for w in far.timings.words] == [(w.index, w.text) for w in local.timings.words]
    # espeak's output length varies by about 1 % between identical calls
    assert far.duration == pytest.approx(local.duration, rel=0.03)
    for near, away in zip(local.timings.words, far.timings.words, strict=True):
        assert away.start == pytest.approx(near.start, abs=0.03 * local.duration)
        assert away.end - away.start == pytest.approx(near.end - near.start, abs=0.05)
    assert len(far.timings.phonemes) == pytest.approx(len(local.timings.phonemes), rel=0.05)
    level = [20 * np.log10(np.sqrt(np.mean(s.samples**2))) for s in (local, far)]
    assert level[1] == pytest.approx(level[0], abs=0.5)


def test_identity_is_the_childs_plus_the_lock(
    remote: RemoteSpeechEngine, espeak_env: EngineEnvironment
) -> None:
    local = EspeakEngine().identity()
    identity = remote.identity()
    assert (identity.name, identity.version, remote.name, remote.version) == (
        "espeak-env",
        local.version,
        "espeak-env",
        local.version,
    )
    assert dict(identity.digests) == dict(local.digests) | {"environment": espeak_env.lock_digest()}


def test_synthesize_to_writes_the_file_with_matching_timings(
    remote: RemoteSpeechEngine, tmp_path: Path
) -> None:
    plan = make_plan(SCRIPT)
    target = tmp_path / "speech.wav"
    calls: list[tuple[int, int]] = []
    timings = remote.synthesize_to(plan, target, lambda done, total: calls.append((done, total)))
    assert isinstance(timings, Timings)
    info = sf.info(str(target))
    assert (info.channels, info.subtype) == (1, "PCM_16")
    assert [w.text for w in timings.words] == [w.text for w in plan.words]
    assert timings.words[-1].end <= info.duration + 1e-3
    local = EspeakEngine().synthesize_to(plan, tmp_path / "local.wav")
    assert info.duration == pytest.approx(sf.info(str(tmp_path / "local.wav")).duration, rel=0.03)
    assert len(timings.words) == len(local.words)
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # one step per sentence, as in-process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.wav", "speech.wav"]


def test_progress_is_forwarded_as_in_process(remote: RemoteSpeechEngine) -> None:
    plan = plan_of()
    here: list[tuple[int, int]] = []
    there: list[tuple[int, int]] = []
    EspeakEngine().synthesize(plan, lambda done, total: here.append((done, total)))
    remote.synthesize(plan, lambda done, total: there.append((done, total)))
    assert there == here == [(0, 2), (1, 2), (2, 2)]


def test_bad_plans_come_back_as_input_error_and_the_child_stays(remote: RemoteSpeechEngine) -> None:
    empty = EmotionPlan(script="   ", words=[])
    with pytest.raises(InputError) as local:
        EspeakEngine().synthesize(empty)
    remote.identity()
    pid = remote.child_pid
    with pytest.raises(InputError) as far:
        remote.synthesize(empty)
    assert str(far.value) == str(local.value)
    assert remote.child_pid == pid  # a clean refusal does not cost the child
    assert remote.synthesize(plan_of("Still here.")).timings.words[-1].text == "here"


def test_a_missing_destination_folder_is_input_error(remote: RemoteSpeechEngine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        remote.synthesize_to(plan_of(), tmp_path / "absent" / "speech.wav")


def test_the_server_maps_engine_failures_to_its_two_error_kinds() -> None:
    class Failing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def synthesize(self, plan: EmotionPlan, progress: object) -> Speech:
            raise self.error

    request = {"id": 7, "method": "synthesize", "plan": plan_of().to_dict(), "audio": "/tmp/x.wav"}
    sent: list[dict[str, object]] = []
    for error in (EngineError("voice missing"), ValueError("bad shape"), InputError("no words")):
        engine_server.handle(Failing(error), request, sent.append)
    assert [(m["id"], m["error"], m["message"]) for m in sent] == [
        (7, "EngineError", "voice missing"),
        (7, "EngineError", "ValueError: bad shape"),
        (7, "InputError", "no words"),
    ]
    engine_server.handle(Failing(ValueError()), {"id": 8, "method": "sing", "audio": "/tmp/x"}, sent.append)
    assert sent[-1]["error"] == "InputError" and "unknown method 'sing'" in str(sent[-1]["message"])


# -- failures: a clear EngineError, nothing at the destination, a fresh child next time -------------


def test_a_child_killed_mid_request_is_an_engine_error_and_writes_nothing(
    remote: RemoteSpeechEngine, tmp_path: Path
) -> None:
    target = tmp_path / "speech.wav"
    remote.identity()
    pid = remote.child_pid
    assert pid is not None

    def kill_on_first_sentence(done: int, _total: int) -> None:
        if done == 1:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(EngineError, match=r"speech engine espeak-env: its process exited with code -9"):
        remote.synthesize_to(make_plan(SCRIPT), target, kill_on_first_sentence)
    assert list(tmp_path.iterdir()) == []
    # the next request starts a new child
    assert remote.synthesize_to(plan_of(), target).words[0].text == "The"
    assert remote.child_pid not in (None, pid)


def test_a_hung_child_is_killed_after_the_timeout(espeak_env: EngineEnvironment, tmp_path: Path) -> None:
    engine = RemoteSpeechEngine(espeak_env, timeout_s=1.5)
    engine.identity()
    pid = engine.child_pid
    assert pid is not None

    def freeze(done: int, _total: int) -> None:
        if done == 1:
            os.kill(pid, signal.SIGSTOP)

    started = time.perf_counter()
    with pytest.raises(
        EngineError, match=r"espeak-env: no answer within 1.5 s during synthesize_to; its process"
    ):
        engine.synthesize_to(make_plan(SCRIPT), tmp_path / "speech.wav", freeze)
    assert time.perf_counter() - started < 10
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)
    engine.close()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("protocol", r"speaks protocol version 2, this emoflow speaks 1; rebuild it with `emoflow engines"),
        ("garbage", r"bad output .* a line that is not a JSON object: 'this is not a protocol line'"),
        ("exit", r"its process exited with code 3 during synthesize_to; stderr: .*crashed on purpose"),
        ("bad-timings", r"timings that do not match the plan: 12 word timings for 13 plan words"),
        ("no-audio", r"its audio file .* is missing or unreadable"),
    ],
)
def test_a_misbehaving_child_is_an_engine_error_and_writes_nothing(
    espeak_env: EngineEnvironment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str, message: str
) -> None:
    engine = fake(espeak_env, monkeypatch, fault)
    target = tmp_path / "speech.wav"
    try:
        with pytest.raises(EngineError, match=r"^speech engine espeak-env: .*" + message):
            engine.synthesize_to(plan_of(), target)
        assert list(tmp_path.iterdir()) == []
        assert engine.child_pid is None  # discarded: the next call starts afresh
    finally:
        engine.close()


# -- chosen by a job -------------------------------------------------------------------------------


def test_a_job_speaks_through_the_environment_and_a_crash_commits_nothing(
    emoflow_home: Path, engines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernel.jobs import parse_job
    from kernel.settings import get_settings
    from stores.records import NewArtifact
    from tasks.context import open_store
    from tasks.engines import tts_for
    from tasks.speak import speak

    options = parse_job(
        {"script": TWO_SENTENCES, "portrait": "skimage:astronaut", "tts_engine": "espeak-env"}, tmp_path
    ).options(get_settings())
    store = open_store()

    def started_run(plan: EmotionPlan) -> tuple[str, object]:
        portrait = store.put_artifact(NewArtifact("p", "portrait", "image/png", data=b"png"))
        job_id = store.submit_job(
            name="e", submitter="t", script=plan.script, description="", portrait=portrait, options={}
        )
        data = json.dumps(plan.to_dict()).encode()
        return store.start_run(job_id, None), store.put_artifact(
            NewArtifact("plan", "plan", "application/json", data=data)
        )

    engine = tts_for(options)
    try:
        run_id, plan_ref = started_run(plan_of())
        spoken = speak.fn(run_id, plan_ref, options)
        (step,) = store.run(run_id).steps
        assert (step.status, step.engine, step.engine_digests["environment"]) == (
            "succeeded",
            "espeak-env",
            engine.environment.lock_digest(),
        )
        assert spoken.speech.metadata["engine"] == "espeak-env"

        # the same stage with a child that dies mid-request: the step fails and commits no output
        monkeypatch.setenv(FAULT_VARIABLE, "exit")
        engine.close()
        engine._server_module = "tests.models.engine_env_fakes"
        run_id, plan_ref = started_run(plan_of("A different script entirely."))
        with pytest.raises(EngineError, match="exited with code 3"):
            speak.fn(run_id, plan_ref, options)
        (step,) = store.run(run_id).steps
        assert (step.status, step.outputs) == ("failed", {})
    finally:
        engine._server_module = "models.tts.engine_server"
        engine.close()


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_lists_the_environment_and_keeps_an_install_from_the_same_lock(
    engines_dir: Path, espeak_env: EngineEnvironment
) -> None:
    listed = runner.invoke(app, ["engines", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "espeak-env" in line)
    assert "installed" in row and espeak_env.lock_digest()[:12] in row
    again = runner.invoke(app, ["engines", "install", "espeak"], terminal_width=200)
    assert again.exit_code == 0 and "already installed from this lock" in again.output


def test_cli_refuses_unknown_engines_and_removes_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernel.settings import get_settings

    monkeypatch.setenv("EMOFLOW_ENGINES_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        unknown = runner.invoke(app, ["engines", "install", "tortoise"])
        assert (
            unknown.exit_code == 1
            and "unknown engine environment 'tortoise'; known: espeak" in unknown.stderr
        )
        (tmp_path / "espeak" / "venv").mkdir(parents=True)
        listed = runner.invoke(app, ["engines", "list"], terminal_width=200)
        assert "not installed" in listed.output  # a venv without its install record does not count
        removed = runner.invoke(app, ["engines", "remove", "espeak"])
        assert removed.exit_code == 0 and not (tmp_path / "espeak").exists()
    finally:
        get_settings.cache_clear()
