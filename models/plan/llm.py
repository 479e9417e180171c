"""Optional planner that lets an instruct LM read the description (prompt in prompts/planner_llm.yaml).

The LM answers with JSON cues; they are validated against the vocabulary and placed on words by the same
code as the rule parser (placement.place), and inline [tags] still come from the rules code. When the
answer is not valid JSON, names an unknown emotion or places a cue nowhere we understand, the rule parser
reads the description instead and the plan records a warning saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import EngineError
from kernel.settings import get_settings
from models.identity import EngineIdentity, describe, prompt_table
from models.plan.placement import (
    END,
    MIDDLE,
    NEXT,
    RAMPS,
    SENTENCE,
    START,
    WORD,
    Instruction,
    Placed,
    Span,
    place,
)
from models.plan.rules import RulePlanner
from models.types import EmotionPlan
from models.vocabulary import PLANNING_PARTS, Vocabulary, load_vocabulary, vocabulary_table

SUGGESTED_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
_WHERE_WORDS = {"all": None, "start": START, "middle": MIDDLE, "end": END, "next": NEXT}


class ReplyError(ValueError):
    """The LM's answer cannot be used; the message says why."""


@dataclass(frozen=True)
class PromptTemplate:
    system: str
    user: str
    examples: list[dict[str, str]]
    version: int


@lru_cache(maxsize=2)
def load_prompt(path: Path | None = None) -> PromptTemplate:
    path = path or Path(str(resources.files("prompts") / "planner_llm.yaml"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return PromptTemplate(
        system=data["system"],
        user=data["user"],
        examples=list(data["examples"]),
        version=int(data["version"]),
    )


def parse_reply(reply: str, vocab: Vocabulary) -> list[Instruction]:
    """Instructions from the LM's JSON answer; ReplyError when any part of it is unusable."""
    start = reply.find("{")
    if start < 0:
        raise ReplyError("no JSON object in the reply")
    try:
        data, _ = json.JSONDecoder().raw_decode(reply[start:])
    except json.JSONDecodeError as exc:
        raise ReplyError(f"invalid JSON: {exc.msg}") from None
    cues = data.get("cues") if isinstance(data, dict) else None
    if not isinstance(cues, list):
        raise ReplyError('the JSON has no "cues" list')
    return [_instruction(number, cue, vocab) for number, cue in enumerate(cues, start=1)]


def _instruction(number: int, cue: Any, vocab: Vocabulary) -> Instruction:
    if not isinstance(cue, dict):
        raise ReplyError(f"cue {number} is not an object")
    name = cue.get("emotion")
    hit = vocab.lookup(name) if isinstance(name, str) else None
    if hit is None:
        raise ReplyError(f"cue {number} names unknown emotion {name!r} (valid: {', '.join(vocab.labels)})")
    label, implied = hit
    intensity = cue.get("intensity", implied)
    if intensity is None:
        intensity = implied
    if isinstance(intensity, bool) or not isinstance(intensity, int | float) or not 0.0 <= intensity <= 1.0:
        raise ReplyError(f"cue {number} has intensity {intensity!r}; it must be a number from 0 to 1")
    ramp = cue.get("ramp")
    if ramp is not None and ramp not in RAMPS:
        raise ReplyError(f"cue {number} has ramp {ramp!r}; use rising, falling or null")
    where = cue.get("where", "all")
    text = f"llm cue {number}: {label} {json.dumps(where, ensure_ascii=False)}"
    instruction = Instruction(
        text=text, label=label, intensity=0.0 if label == vocab.neutral else float(intensity), ramp=ramp
    )
    if isinstance(where, str) and where in _WHERE_WORDS:
        instruction.position = _WHERE_WORDS[where]
    elif isinstance(where, dict) and isinstance(where.get("quote"), str) and where["quote"].strip():
        instruction.anchors = [where["quote"]]
    elif isinstance(where, dict) and ("sentences" in where or "words" in where):
        unit = SENTENCE if "sentences" in where else WORD
        bounds = where.get("sentences", where.get("words"))
        instruction.span = _span(number, unit, bounds)
    else:
        raise ReplyError(f"cue {number} has where {where!r}, which is none of the allowed forms")
    return instruction


def _span(number: int, unit: str, bounds: Any) -> Span:
    """1-based (or negative from the end) [first, last] as the prompt shows them -> a 0-based Span."""
    valid = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int) and not isinstance(b, bool) and b != 0 for b in bounds)
    )
    if not valid:
        raise ReplyError(f"cue {number} has {unit}s {bounds!r}; use [first, last] counted from 1 (or -1)")
    first, last = (b - 1 if b > 0 else b for b in bounds)
    return Span(unit, first, last)


class LLMPlanner:
    """Planner whose description reader is an instruct causal LM loaded with from_pretrained."""

    name = "llm"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        vocabulary: Vocabulary | None = None,
        max_new_tokens: int = 256,
        device: str | None = None,
    ) -> None:
        settings = get_settings()
        source = model_path if model_path is not None else settings.planner_model
        if not source:
            raise EngineError(
                "the llm planner needs an instruct language model and none is set: download one, e.g. "
                f"`huggingface-cli download {SUGGESTED_MODEL} --local-dir models/qwen-0.5b`, then set "
                "EMOFLOW_PLANNER_MODEL=models/qwen-0.5b (or pass the path to LLMPlanner); "
                "or use the rules planner"
            )
        self.vocabulary = vocabulary or load_vocabulary()
        self.rules = RulePlanner(self.vocabulary)
        self.prompt = load_prompt()
        self.max_new_tokens = max_new_tokens
        self.device = device or settings.device
        self.tokenizer, self.model = _load(str(source), self.device)
        self.source = str(source)
        # the cache key must change with the model and the prompt
        self.version = f"1+prompt{self.prompt.version}+{Path(str(source)).name or source}"

    def identity(self) -> EngineIdentity:
        """The prompt template, the planning vocabulary and, for a local model, its files by content."""
        local = Path(self.source)
        return describe(
            self,
            tables=[prompt_table("planner_llm.yaml"), vocabulary_table(self.vocabulary, *PLANNING_PARTS)],
            files={local.name: local} if local.exists() else {},
            packages=("transformers", "torch"),
            modules=("models.plan.rules",),
        )

    def plan(self, script: str, description: str = "") -> EmotionPlan:
        vocab = self.vocabulary

        def read_cues(words: list[str], sentence_of: list[int], clause_of: list[int]) -> Placed:
            if not description.strip():
                return Placed([None] * len(words), [])
            try:
                reply = self.generate(_numbered(words, sentence_of), description)
                instructions = parse_reply(reply, vocab)
            except ReplyError as exc:
                placed = self.rules.read_description(description, words, sentence_of, clause_of)
                note = f"the llm planner's answer was unusable ({exc}); the rule parser read the description"
                placed.warnings.insert(0, note)
                return placed
            return place(instructions, words, sentence_of, clause_of=clause_of)

        return self.rules.plan_with(script, description, read_cues)

    def generate(self, numbered_script: str, description: str) -> str:
        """The LM's raw answer for one script (one numbered sentence per line) and description."""
        import torch

        messages = self._messages(numbered_script, description)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        room = getattr(self.model.config, "max_position_embeddings", None)
        if room is not None and inputs["input_ids"].shape[1] + self.max_new_tokens > room:
            raise ReplyError(
                f"the prompt has {inputs['input_ids'].shape[1]} tokens, too many for the model's {room}"
            )
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
            )
        return str(self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))

    def _messages(self, numbered_script: str, description: str) -> list[dict[str, str]]:
        prompt = self.prompt
        messages = [
            {"role": "system", "content": prompt.system.format(labels=", ".join(self.vocabulary.labels))}
        ]
        for example in prompt.examples:
            user = prompt.user.format(script=example["script"], description=example["description"])
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": example["reply"]},
            ]
        messages.append(
            {"role": "user", "content": prompt.user.format(script=numbered_script, description=description)}
        )
        return messages


def _numbered(words: list[str], sentence_of: list[int]) -> str:
    lines: dict[int, list[str]] = {}
    for word, sentence in zip(words, sentence_of, strict=True):
        lines.setdefault(sentence, []).append(word)
    return "\n".join(f"{s + 1}. {' '.join(ws)}" for s, ws in sorted(lines.items()))


def _load(source: str, device: str) -> tuple[Any, Any]:
    try:
        from torch import nn
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise EngineError(f"the llm planner needs transformers: {exc}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # typed as a Module: transformers' functools.wraps-ed `to` does not bind self for mypy
        loaded: nn.Module = AutoModelForCausalLM.from_pretrained(source)
        model = loaded.to(device).eval()
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"could not load the planner model {source!r} ({exc}); point EMOFLOW_PLANNER_MODEL at a local "
            f"directory saved with save_pretrained or a hub id such as {SUGGESTED_MODEL}"
        ) from exc
    if getattr(tokenizer, "chat_template", None) is None:
        raise EngineError(f"the planner model {source!r} has no chat template; use an instruct model")
    return tokenizer, model
