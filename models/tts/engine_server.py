"""The child side of an engine environment: one speech engine answering JSON lines on stdin/stdout.

Run by `models.tts.remote` with the environment's own Python, the repository on PYTHONPATH:

    <env>/venv/bin/python -P -m models.tts.engine_server --engine espeak

It says `hello` (protocol version, engine name, version and identity), then answers one request per
line with progress lines and one `result` or `error` line, until stdin closes. docs/engines.md holds
the message shapes. Bad plans come back as `InputError`, everything else the engine raises as
`EngineError`; the server keeps serving after either.

Only the standard library is imported at module level: the parent imports `PROTOCOL_VERSION` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

# Bumped whenever a message shape changes; the parent refuses a child that speaks another version.
PROTOCOL_VERSION = 1

Message = dict[str, Any]
Send = Callable[[Message], None]


def hello(engine: Any) -> Message:
    """The first line the child sends: what it is, so the parent can check it and key its cache."""
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "engine": engine.name,
        "version": engine.version,
        "identity": engine.identity().to_dict(),
        "streaming": hasattr(engine, "synthesize_to"),
        "python": platform.python_version(),
        "pid": os.getpid(),
    }


def handle(engine: Any, request: Message, send: Send) -> None:
    """Answer one request: progress lines, then one result or error line."""
    from kernel.errors import EngineError, InputError

    request_id = request.get("id")
    try:
        result = _answer(engine, request, lambda done, total: send(_progress(request_id, done, total)))
    except InputError as exc:
        send({"type": "error", "id": request_id, "error": "InputError", "message": str(exc)})
    except Exception as exc:  # the engine's failures, whatever their class, are the parent's EngineError
        message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        send({"type": "error", "id": request_id, "error": "EngineError", "message": message})
    else:
        send({"type": "result", "id": request_id, **result})


def _answer(engine: Any, request: Message, progress: Callable[[int, int], None]) -> Message:
    import soundfile as sf

    from kernel.errors import InputError
    from models.types import EmotionPlan

    method = request.get("method")
    audio = request.get("audio")
    if method not in ("synthesize", "synthesize_to"):
        raise InputError(f"unknown method {method!r}; this server answers synthesize and synthesize_to")
    if not isinstance(audio, str) or not os.path.isabs(audio):
        raise InputError(f"request needs an absolute 'audio' path to write to, got {audio!r}")
    try:
        plan = EmotionPlan.from_dict(request["plan"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"request has no readable plan: {type(exc).__name__}: {exc}") from exc

    if method == "synthesize":
        speech = engine.synthesize(plan, progress)
        # float samples, so the parent gets exactly what the engine returned
        sf.write(audio, speech.samples, speech.sample_rate, subtype="FLOAT", format="WAV")
        sample_rate, samples, timings = speech.sample_rate, len(speech.samples), speech.timings
    else:
        timings = engine.synthesize_to(plan, audio, progress)
        info = sf.info(audio)
        sample_rate, samples = info.samplerate, info.frames
    return {"audio": audio, "sample_rate": sample_rate, "samples": samples, "timings": timings.to_dict()}


def _progress(request_id: Any, done: int, total: int) -> Message:
    return {"type": "progress", "id": request_id, "done": int(done), "total": int(total)}


def serve(engine: Any, lines: Iterable[str], send: Send) -> None:
    """Say hello, then answer every request line until the input ends."""
    send(hello(engine))
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            send({"type": "error", "id": None, "error": "InputError", "message": f"not a JSON line: {exc}"})
            continue
        if not isinstance(request, dict):
            send({"type": "error", "id": None, "error": "InputError", "message": "a request is an object"})
            continue
        handle(engine, request, send)


def protocol_stream() -> IO[str]:
    """The real stdout for protocol lines; fd 1 is pointed at stderr from here on.

    C libraries and stray prints write to fd 1; they must never land between two protocol lines.
    """
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


def line_writer(stream: IO[str]) -> Send:
    def send(message: Message) -> None:
        stream.write(json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n")
        stream.flush()

    return send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve one speech engine over JSON lines.")
    parser.add_argument("--engine", required=True, help="engine name, as models.tts.get_speech_engine takes")
    args = parser.parse_args(argv)
    send = line_writer(protocol_stream())
    try:
        from models.tts import get_speech_engine

        engine: Any = get_speech_engine(args.engine)  # both embedded engines have identity()
        engine.identity()  # loads what the engine reads now, so a broken environment fails before hello
    except Exception as exc:  # no hello: the parent reports this line and the exit code
        send({"type": "error", "id": None, "error": "EngineError", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    serve(engine, sys.stdin, send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
