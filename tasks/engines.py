"""Engines by name, as settings and job files choose them. Heavy engines load once per process."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from kernel.errors import InputError

# job option -> engine name -> "module:Class"; imported on first use, so choosing one engine
# never loads another's heavy dependencies
ENGINES: dict[str, dict[str, str]] = {
    "planner": {"rules": "models.plan.rules:RulePlanner", "llm": "models.plan.llm:LLMPlanner"},
    "tts_engine": {
        "piper": "models.tts.piper_engine:PiperEngine",
        "espeak": "models.tts.espeak_engine:EspeakEngine",
    },
    "aligner": {
        "engine": "models.align.engine_timings:EngineTimingAligner",
        "dtw": "models.align.dtw:DtwAligner",
    },
    "efp_engine": {"embedded": "models.efp:EmbeddedEFP", "learned": "models.efp.learned:LearnedEFP"},
    "renderer": {
        "preview": "models.render.preview:PreviewRenderer",
        "diffusion": "models.render.diffusion:DiffusionRenderer",
    },
}

_instances: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def check_engine(option: str, name: str) -> None:
    choices = ENGINES[option]
    if name not in choices:
        raise InputError(f"unknown {option} {name!r}; choose one of: {', '.join(sorted(choices))}")


def check_engine_choices(options: dict[str, Any]) -> None:
    for option in ENGINES:
        check_engine(option, options[option])


def engine_class(option: str, name: str) -> type:
    check_engine(option, name)
    module, _, attribute = ENGINES[option][name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def get_engine(option: str, name: str) -> Any:
    """A shared instance of an engine whose constructor takes no job-specific arguments."""
    with _lock:
        key = (option, name)
        if key not in _instances:
            _instances[key] = engine_class(option, name)()
        return _instances[key]
