"""Engine servers that misbehave on purpose, for tests/models/test_engine_env.py.

Run in the engine environment like the real one (`python -P -m tests.models.engine_env_fakes --engine
espeak`); the fault comes from EMOFLOW_TEST_ENGINE_FAULT:

- protocol: says hello in a protocol version the parent does not speak;
- garbage: answers every request with a line that is not JSON;
- exit: reads a request, writes to stderr and exits with code 3;
- bad-timings: answers with the real result less its last word timing;
- no-audio: answers with the real result after deleting its audio file.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from models.tts import engine_server, get_speech_engine

FAULT_VARIABLE = "EMOFLOW_TEST_ENGINE_FAULT"


def main() -> int:
    fault = os.environ[FAULT_VARIABLE]
    stream = engine_server.protocol_stream()
    send = engine_server.line_writer(stream)
    engine = get_speech_engine("espeak")
    hello = engine_server.hello(engine)
    if fault == "protocol":
        hello["protocol"] = engine_server.PROTOCOL_VERSION + 1
    send(hello)

    def faulty_send(message: dict[str, Any]) -> None:
        if message["type"] == "result" and fault == "bad-timings":
            message["timings"]["words"].pop()
        if message["type"] == "result" and fault == "no-audio":
            os.unlink(message["audio"])
        send(message)

    for line in sys.stdin:
        request = json.loads(line)
        if fault == "garbage":
            stream.write("this is not a protocol line\n")
            stream.flush()
        elif fault == "exit":
            sys.stderr.write("fake engine: crashed on purpose\n")
            sys.stderr.flush()
            os._exit(3)
        else:
            engine_server.handle(engine, request, faulty_send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
