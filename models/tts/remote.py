"""A speech engine running in its own environment, driven over JSON lines: same interface, same errors.

`RemoteSpeechEngine` is a `StreamingSpeechEngine` whose work happens in a child process,
`models.tts.engine_server` run by the environment's Python (models/tts/environments.py). One child
per engine instance, started on first use and kept; requests go one at a time. Audio travels as WAV
files in a temporary folder this process owns; timings and progress travel as JSON lines.

Whatever goes wrong in the child becomes an EngineError that names the engine and what happened: a
crash (exit or closed output), a hang (no line for `timeout_s` seconds: the child is killed), a line
that is not JSON or has the wrong shape, another protocol version, timings that do not fit the plan,
audio that is missing or unreadable. The child is then discarded (the next call starts a new one),
and `synthesize_to` leaves nothing at its destination: the file is moved there only once checked.
InputError and EngineError raised by the engine in the child come back as the same classes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import EngineError, InputError
from models.identity import EngineIdentity
from models.tts.engine_server import PROTOCOL_VERSION
from models.tts.environments import REPO_ROOT, EngineEnvironment, environment
from models.types import EmotionPlan, ProgressFn, Speech, Timings

SERVER_MODULE = "models.tts.engine_server"
# a child's first answer waits for its imports and identity, which a cold disk can slow well past a request's
STARTUP_TIMEOUT_S = 60.0
# timings are rounded to 0.1 ms by the engines; a word may end that much past the last sample
TIMING_TOLERANCE_S = 1e-3
# how much of the child's stderr an error message quotes
STDERR_TAIL_CHARS = 600
# variables that would make the child's Python look somewhere other than its own venv and the repository
_ISOLATED = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")

Message = dict[str, Any]


@dataclass(frozen=True)
class Hello:
    """What the child said it is."""

    engine: str
    version: str
    identity: EngineIdentity
    pid: int


class RemoteSpeechEngine:
    """The engine of `environment`, spoken to over models.tts.engine_server's protocol."""

    def __init__(
        self,
        environment: EngineEnvironment,
        *,
        timeout_s: float | None = None,
        python: Path | None = None,
        server_module: str = SERVER_MODULE,
        environment_overrides: dict[str, str] | None = None,
    ) -> None:
        if timeout_s is None:
            from kernel.settings import get_settings

            timeout_s = get_settings().engine_timeout
        self.environment = environment
        self.name = environment.option
        self.timeout_s = float(timeout_s)  # longest silence from the child during a request
        self._python = python  # None: the installed environment's, checked at start
        self._server_module = server_module
        self._overrides = dict(environment_overrides or {})  # variables set for the child only
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._hello: Hello | None = None
        self._ids = itertools.count(1)

    # -- the SpeechEngine interface ----------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._handshake().version

    def identity(self) -> EngineIdentity:
        """The child's own identity (its code, tables and packages) plus the digest of the lock."""
        hello = self._handshake()
        digests = dict(hello.identity.digests) | {"environment": self.environment.lock_digest()}
        return EngineIdentity(self.name, hello.version, digests)

    def synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech:
        import soundfile as sf

        _check_is_plan(plan)
        with self._lock:
            child = self._started()
            request_id = next(self._ids)
            audio = child.workdir / f"speech-{request_id}.wav"
            try:
                reply = self._request(child, request_id, "synthesize", plan, audio, progress)
                try:
                    samples, sample_rate = sf.read(str(audio), dtype="float32", always_2d=False)
                except (OSError, RuntimeError) as exc:
                    raise self._bad_output(f"its audio file {audio} is missing or unreadable: {exc}") from exc
                if (
                    samples.ndim != 1
                    or len(samples) != reply["samples"]
                    or sample_rate != reply["sample_rate"]
                ):
                    raise self._bad_output(
                        f"its audio file holds {samples.shape} samples at {sample_rate} Hz, "
                        f"not the {reply['samples']} mono samples at {reply['sample_rate']} Hz it reported"
                    )
                timings = self._timings(plan, reply, len(samples) / sample_rate)
            finally:
                audio.unlink(missing_ok=True)
        return Speech(samples=samples, sample_rate=int(sample_rate), timings=timings)

    def synthesize_to(
        self, plan: EmotionPlan, path: str | Path, progress: ProgressFn | None = None
    ) -> Timings:
        import soundfile as sf

        _check_is_plan(plan)
        target = Path(path).absolute()
        if not target.parent.is_dir():
            raise InputError(f"cannot write speech to {target}: folder {target.parent} does not exist")
        with self._lock:
            child = self._started()
            request_id = next(self._ids)
            audio = child.workdir / f"speech-{request_id}.wav"
            try:
                reply = self._request(child, request_id, "synthesize_to", plan, audio, progress)
                try:
                    info = sf.info(str(audio))
                except (OSError, RuntimeError) as exc:
                    raise self._bad_output(f"its audio file {audio} is missing or unreadable: {exc}") from exc
                if info.channels != 1 or info.frames != reply["samples"] or info.frames == 0:
                    raise self._bad_output(
                        f"its audio file holds {info.frames} frames in {info.channels} channels, "
                        f"not the {reply['samples']} mono samples it reported"
                    )
                timings = self._timings(plan, reply, info.frames / info.samplerate)
                _place(audio, target)  # only now does anything appear at the destination
            finally:
                audio.unlink(missing_ok=True)
        return timings

    def close(self) -> None:
        """Stop the child (it also stops by itself when this process exits and its stdin closes)."""
        with self._lock:
            self._discard()

    @property
    def child_pid(self) -> int | None:
        """The running child's process id, for diagnostics."""
        return self._child.process.pid if self._child is not None and self._child.alive() else None

    # -- the child ---------------------------------------------------------------------------------

    def _handshake(self) -> Hello:
        with self._lock:
            if self._hello is None:
                self._started()
            assert self._hello is not None
            return self._hello

    def _started(self) -> _Child:
        """The running child, started (and its hello checked) if there is none. Hold `_lock`."""
        if self._child is not None and self._child.alive():
            return self._child
        self._discard()
        python = self._python or self.environment.require_installed()
        command = [str(python), "-P", "-m", self._server_module, "--engine", self.environment.name]
        child = _Child(command, child_environment() | self._overrides, self.environment.name)
        self._child = child
        try:
            self._hello = self._check_hello(child.receive(max(self.timeout_s, STARTUP_TIMEOUT_S), "start-up"))
        except BaseException:
            self._discard()
            raise
        return child

    def _check_hello(self, message: Message) -> Hello:
        if message.get("type") == "error":
            raise self._failure(f"could not start its engine: {message.get('message')}")
        if message.get("type") != "hello":
            raise self._bad_output(f"its first line is not a hello: {_quote(message)}")
        if message.get("protocol") != PROTOCOL_VERSION:
            raise self._failure(
                f"speaks protocol version {message.get('protocol')!r}, this emoflow speaks "
                f"{PROTOCOL_VERSION}; rebuild it with `emoflow engines install {self.environment.name}`"
            )
        if message.get("engine") != self.environment.name:
            raise self._bad_output(f"serves engine {message.get('engine')!r}, not {self.environment.name!r}")
        try:
            raw = message["identity"]
            identity = EngineIdentity(str(raw["name"]), str(raw["version"]), dict(raw["digests"]))
            return Hello(str(message["engine"]), str(message["version"]), identity, int(message["pid"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_output(f"its hello lacks {exc}: {_quote(message)}") from exc

    def _request(
        self,
        child: _Child,
        request_id: int,
        method: str,
        plan: EmotionPlan,
        audio: Path,
        progress: ProgressFn | None,
    ) -> Message:
        """Send one request and wait for its result, forwarding progress. Hold `_lock`."""
        try:
            child.send({"id": request_id, "method": method, "plan": plan.to_dict(), "audio": str(audio)})
            while True:
                message = child.receive(self.timeout_s, method)
                if message.get("id") != request_id:
                    raise self._bad_output(f"answered request {message.get('id')!r} to request {request_id}")
                kind = message.get("type")
                if kind == "progress":
                    done, total = message.get("done"), message.get("total")
                    if not isinstance(done, int) or not isinstance(total, int):
                        raise self._bad_output(f"sent a progress line without counts: {_quote(message)}")
                    if progress:
                        progress(done, total)
                elif kind in ("result", "error"):
                    break
                else:
                    raise self._bad_output(f"sent a line of unknown type {kind!r}: {_quote(message)}")
        except BaseException:
            self._discard()  # mid-request, the child's state is unknown: never reuse it
            raise
        if kind == "error":  # the engine failed cleanly; the child goes on serving
            text = str(message.get("message") or "no message")
            if message.get("error") == "InputError":
                raise InputError(text)
            raise EngineError(f"speech engine {self.name}: {text}")
        if not isinstance(message.get("samples"), int) or not isinstance(message.get("sample_rate"), int):
            raise self._bad_output(f"sent a result without sample counts: {_quote(message)}")
        return message

    def _timings(self, plan: EmotionPlan, reply: Message, duration: float) -> Timings:
        try:
            timings = Timings.from_dict(reply["timings"])
        except (KeyError, TypeError) as exc:
            raise self._bad_output(f"sent timings of the wrong shape: {exc}") from exc
        problem = timings_problem(plan, timings, duration)
        if problem:
            raise self._bad_output(f"returned timings that do not match the plan: {problem}")
        return timings

    def _discard(self) -> None:
        """Stop and forget the child, if any. Hold `_lock`."""
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def _failure(self, what: str) -> EngineError:
        stderr = self._child.stderr_tail() if self._child is not None else ""
        self._discard()
        return EngineError(f"speech engine {self.name}: {what}" + (f" (stderr: {stderr})" if stderr else ""))

    def _bad_output(self, what: str) -> EngineError:
        return self._failure(f"bad output from its process: {what}")


class EnvironmentEngine(RemoteSpeechEngine):
    """An installed environment chosen by `tts_engine` (e.g. espeak-env), built with today's settings."""

    environment_name = ""

    def __init__(self) -> None:
        super().__init__(environment(self.environment_name))


class EspeakEnvironmentEngine(EnvironmentEngine):
    """espeak-ng in its own environment (engines/espeak): `tts_engine: espeak-env`."""

    environment_name = "espeak"


class ParlerEnvironmentEngine(EnvironmentEngine):
    """Parler-TTS in its own environment (engines/parler): `tts_engine: parler-env`."""

    environment_name = "parler"


def timings_problem(plan: EmotionPlan, timings: Timings, duration: float) -> str | None:
    """What is wrong with `timings` as the speech of `plan` lasting `duration` seconds, or None.

    The SpeechEngine contract: one WordTiming per plan word, same index and text, in order, finite,
    non-overlapping and inside the audio.
    """
    if len(timings.words) != len(plan.words):
        return f"{len(timings.words)} word timings for {len(plan.words)} plan words"
    previous_end = 0.0
    for word, timing in zip(plan.words, timings.words, strict=True):
        if (timing.index, timing.text) != (word.index, word.text):
            return f"word {word.index} is {timing.index}:{timing.text!r}, expected {word.index}:{word.text!r}"
        if not all(isinstance(t, int | float) and math.isfinite(t) for t in (timing.start, timing.end)):
            return f"word {word.index} {word.text!r} has no finite start and end"
        if timing.start < previous_end - TIMING_TOLERANCE_S or timing.end < timing.start:
            return f"word {word.index} {word.text!r} at {timing.start}-{timing.end} s overlaps or goes back"
        if timing.end > duration + TIMING_TOLERANCE_S:
            return (
                f"word {word.index} {word.text!r} ends at {timing.end} s, after the audio's {duration:.3f} s"
            )
        previous_end = timing.end
    for phoneme in timings.phonemes:
        inside = 0.0 <= phoneme.start <= phoneme.end <= duration + TIMING_TOLERANCE_S
        if not inside or (phoneme.word_index is not None and not 0 <= phoneme.word_index < len(plan.words)):
            return f"phoneme {phoneme.phoneme!r} at {phoneme.start}-{phoneme.end} s lies outside the speech"
    return None


class _Child:
    """One engine server process: its pipes, a reader thread, its stderr file and its audio folder."""

    def __init__(self, command: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"emoflow-engine-{name}-"))
        # stderr goes to a file (a pipe that nobody reads fills up and blocks the child), appended to so
        # that reading it here never moves where the child writes
        self._stderr_path = self.workdir / "stderr.log"
        try:
            with open(self._stderr_path, "ab") as stderr:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    text=True,
                    encoding="utf-8",
                    bufsize=1,
                )
        except OSError as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise EngineError(f"speech engine {name}-env: cannot start {command[0]}: {exc}") from exc
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"engine-{name}-stdout", daemon=True).start()
        # a child nobody closes still goes when the engine is collected or this process exits
        self._finalizer = weakref.finalize(self, _stop_process, self.process, self.workdir)

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe closed under us when the child was stopped
            pass
        self._lines.put(None)

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Message) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n")
            self.process.stdin.flush()
        except OSError as exc:  # a child that died before reading: report it as the crash it is
            raise EngineError(self._crash_message("before reading its request", exc)) from exc

    def receive(self, timeout_s: float, during: str) -> Message:
        """The next message; EngineError on silence, exit or a line that is not a JSON object."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            self.process.kill()  # a hung child would not answer a polite end of input either
            self.stop()
            raise EngineError(
                f"speech engine {self.name}-env: no answer within {timeout_s:g} s during {during}; its "
                f"process was killed (set EMOFLOW_ENGINE_TIMEOUT higher if the engine is only slow)"
            ) from None
        if line is None:
            raise EngineError(self._crash_message(f"during {during}"))
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            stderr = self.stderr_tail()
            self.stop()
            raise EngineError(
                f"speech engine {self.name}-env: bad output from its process during {during}: a line that "
                f"is not a JSON object: {line.strip()[:200]!r}" + (f" (stderr: {stderr})" if stderr else "")
            )
        return message

    def _crash_message(self, when: str, exc: BaseException | None = None) -> str:
        try:
            code: int | None = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # output closed but still running: as good as dead
            code = None
        stderr = self.stderr_tail()
        self.stop()
        how = f"exited with code {code}" if code is not None else "closed its output"
        cause = f" ({exc})" if exc is not None else ""
        return f"speech engine {self.name}-env: its process {how} {when}{cause}" + (
            f"; stderr: {stderr}" if stderr else ""
        )

    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr, on one line."""
        try:
            with open(self._stderr_path, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4 * STDERR_TAIL_CHARS))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(lines)[-STDERR_TAIL_CHARS:]

    def stop(self) -> None:
        self._finalizer()


def _stop_process(process: subprocess.Popen[str], workdir: Path) -> None:
    """Close the child's stdin (it exits at end of input), kill it if it does not, remove its files."""
    if process.poll() is None:
        try:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    shutil.rmtree(workdir, ignore_errors=True)


def child_environment() -> dict[str, str]:
    """This process's environment, with the repository as the only extra import path."""
    env = {key: value for key, value in os.environ.items() if key not in _ISOLATED}
    env |= {"PYTHONPATH": str(REPO_ROOT), "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1"}
    return env


def _place(source: Path, target: Path) -> None:
    """Move a finished file to `target` in one step, copying beside it first across file systems."""
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise EngineError(f"cannot write speech to {target}: {exc.strerror or exc}") from exc
    partial = target.with_name(f".{target.name}.partial")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError as exc:
        raise EngineError(f"cannot write speech to {target}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _check_is_plan(plan: object) -> None:
    # the child checks everything else about the plan; this much it needs to be sent at all
    if not isinstance(plan, EmotionPlan):
        raise InputError(f"plan must be an EmotionPlan, got {type(plan).__name__}")


def _quote(message: Message) -> str:
    return json.dumps(message)[:200]
