"""Engines by name, as job options choose them. Heavy engines load once per process."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from kernel.errors import InputError
from kernel.jobs import JobOptions

# job option -> engine name -> "module:Class"; imported on first use, so choosing one engine
# never loads another's heavy dependencies. The names are kernel.settings' Literal engine names.
ENGINES: dict[str, dict[str, str]] = {
    "planner": {"rules": "models.plan.rules:RulePlanner", "llm": "models.plan.llm:LLMPlanner"},
    "tts_engine": {
        "piper": "models.tts.piper_engine:PiperEngine",
        "espeak": "models.tts.espeak_engine:EspeakEngine",
        "espeak-env": "models.tts.remote:EspeakEnvironmentEngine",  # `emoflow engines install espeak`
        "parler-env": "models.tts.remote:ParlerEnvironmentEngine",  # `emoflow engines install parler`
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

_instances: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def engine_class(option: str, name: str) -> type:
    choices = ENGINES[option]
    if name not in choices:
        raise InputError(f"unknown {option} {name!r}; choose one of: {', '.join(sorted(choices))}")
    module, _, attribute = choices[name].partition(":")
    engine: type = getattr(importlib.import_module(module), attribute)
    return engine


def shared_engine(option: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """One instance per process for each engine and constructor arguments."""
    key = (option, name, args, tuple(sorted(kwargs.items())))
    with _lock:
        if key not in _instances:
            _instances[key] = engine_class(option, name)(*args, **kwargs)
        return _instances[key]


def get_engine(option: str, name: str) -> Any:
    """A shared instance of an engine whose constructor takes no job-specific arguments."""
    return shared_engine(option, name)


def planner_for(options: JobOptions) -> Any:
    if options.planner == "llm":
        return shared_engine("planner", "llm", options.planner_model, device=options.device)
    return get_engine("planner", options.planner)


def tts_for(options: JobOptions) -> Any:
    return get_engine("tts_engine", options.tts_engine)


def aligner_for(options: JobOptions) -> Any:
    return get_engine("aligner", options.aligner)
