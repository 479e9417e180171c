"""Placing description instructions on the script's words; shared by the rule and LLM description readers.

An Instruction says which emotion, how strong, and where: the whole script, a temporal phase
(start/middle/end/next), a span of sentences or words, or quoted anchors. Placement resolves every
instruction to word runs. Where several instructions cover a word, the more specific one wins:

    whole script < temporal phase < sentence/word span < quoted anchor   (inline tags beat all; rules.py)

At the same level the later-mentioned instruction wins, and when the two ask for different emotions the
plan records a warning that names both and the winner (the paper's failure case: incompatible emotions
asked of the same words).

Phases: a plain sequence ("happy, then sad, then angry") splits the script into equal parts, by sentence
when there are enough sentences. Explicit positions use thirds (start/middle/end), each phase holding until
the next one begins; "then" takes the third after the previous phase. An emotion named first with no place
of its own, followed only by explicitly placed phases, is the base for the whole script ("sad, but angry in
the middle" is sad again after the middle). Halves follow the same sentence rule.

Ramps run linearly over each run an instruction covers: rising from `ramp_low` (default RAMP_LOW) up to the
instruction's intensity, falling from its intensity down to `ramp_low`. The label stays the same throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.plan.tokens import WORD_RE, normalise_word

START, MIDDLE, END, NEXT = "start", "middle", "end", "next"
POSITIONS = (START, MIDDLE, END, NEXT)
RISING, FALLING = "rising", "falling"
RAMPS = (RISING, FALLING)
SENTENCE, WORD, HALF = "sentence", "word", "half"
UNITS = (SENTENCE, WORD, HALF)

# Ramps run between this floor and the instruction's intensity.
RAMP_LOW = 0.2

# Specificity levels; a higher level overrides a lower one without a warning.
_WHOLE, _PHASE, _SPAN, _ANCHOR = 0, 1, 2, 3


@dataclass(frozen=True)
class Span:
    """Sentences, words or halves `first..last` (inclusive, 0-based; negative counts from the end)."""

    unit: str
    first: int
    last: int


@dataclass
class Instruction:
    """One thing the description asks for."""

    text: str  # as written, for messages
    label: str | None
    intensity: float = 0.0
    position: str | None = None  # START, MIDDLE, END, NEXT or None
    span: Span | None = None
    anchors: list[str] = field(default_factory=list)
    ramp: str | None = None  # RISING, FALLING or None (flat)
    ramp_low: float | None = None  # a ramp's low end (default RAMP_LOW); `intensity` is its high end


@dataclass(frozen=True)
class Cue:
    """The emotion the description gives one word."""

    label: str
    intensity: float
    source: str  # "description" (whole script) or "cue" (phase, span or anchor)


def place(
    instructions: list[Instruction], words: list[str], sentence_of: list[int]
) -> tuple[list[Cue | None], list[str]]:
    """Per-word cues (None where no instruction reaches) and warnings about conflicts and misses."""
    n = len(words)
    cues: list[Cue | None] = [None] * n
    owner: list[tuple[int, int] | None] = [None] * n  # (level, instruction number) that set each word
    warnings: list[str] = []
    conflicts: dict[tuple[int, int], list[int]] = {}  # (loser, winner) -> words

    def write(number: int, level: int, first: int, stop: int, source: str) -> None:
        instruction = instructions[number]
        assert instruction.label is not None
        values = _ramp(instruction, stop - first)
        for offset, i in enumerate(range(first, stop)):
            previous = owner[i]
            if previous is not None and previous[0] > level:
                continue  # a more specific instruction already holds this word
            if previous is not None and previous[0] == level and previous[1] != number:
                old = instructions[previous[1]]
                if old.label != instruction.label:
                    conflicts.setdefault((previous[1], number), []).append(i)
            cues[i] = Cue(instruction.label, values[offset], source)
            owner[i] = (level, number)

    labelled = [(k, ins) for k, ins in enumerate(instructions) if ins.label is not None]
    for ins in instructions:
        if ins.label is None:
            quoted = ", ".join(f'"{q}"' for q in ins.anchors)
            warnings.append(
                f"no emotion given for {quoted or 'it'} in description part '{ins.text}'; ignored"
            )

    phases = [(k, ins) for k, ins in labelled if not ins.anchors and ins.span is None]
    later = [p.position for _, p in phases[1:]]
    if phases and phases[0][1].position is None and all(p in (START, MIDDLE, END) for p in later):
        # "sad, but angry in the middle": the first, unplaced emotion is the base for the whole script
        write(phases[0][0], _WHOLE, 0, n, "description")
        phases = phases[1:]
    for k, first, stop in _place_phases(phases, sentence_of, n):
        write(k, _PHASE, first, stop, "cue")

    for k, ins in labelled:
        if ins.span is not None and not ins.anchors:
            run = _span_run(ins.span, sentence_of, n)
            if run is None:
                warnings.append(
                    f'description part "{ins.text}" asks for {_span_text(ins.span)} but the script has only '
                    f"{_count(ins.span.unit, sentence_of, n)}; ignored"
                )
                continue
            write(k, _SPAN, run[0], run[1], "cue")

    normalised = [normalise_word(w) for w in words]
    for k, ins in labelled:
        for quote in ins.anchors:
            target = [normalise_word(m.group()) for m in WORD_RE.finditer(quote)]
            hits = _find_runs(normalised, target)
            if not hits:
                warnings.append(f'anchor "{quote}" from the description was not found in the script; ignored')
            for start in hits:
                write(k, _ANCHOR, start, start + len(target), "cue")

    for (loser, winner), where in conflicts.items():
        old, new = instructions[loser], instructions[winner]
        shown = " ".join(words[i] for i in where[:6]) + (" …" if len(where) > 6 else "")
        warnings.append(
            f'contradiction: "{old.text}" asks for {old.label} and "{new.text}" asks for {new.label} '
            f'on the same words ("{shown}"); {new.label} wins (at the same level the later part wins)'
        )
    return cues, warnings


def _ramp(instruction: Instruction, length: int) -> list[float]:
    top = instruction.intensity
    low = RAMP_LOW if instruction.ramp_low is None else instruction.ramp_low
    if instruction.ramp is None or length < 2 or top <= low:
        return [round(top, 4)] * length
    values = np.linspace(low, top, length)
    if instruction.ramp == FALLING:
        values = values[::-1]
    return [round(float(v), 4) for v in values]


def _parts(sentence_of: list[int], n_words: int, k: int) -> list[int]:
    """k+1 word boundaries splitting the script into k runs: by sentence when there are enough."""
    n_sentences = (max(sentence_of) + 1) if sentence_of else 0
    if n_sentences >= k:
        groups = np.array_split(np.arange(n_sentences), k)
        first_sentence = [int(g[0]) for g in groups]
        bounds = [sentence_of.index(s) for s in first_sentence]
    else:
        bounds = [int(g[0]) if len(g) else n_words for g in np.array_split(np.arange(n_words), k)]
    return [*bounds, n_words]


def _place_phases(
    phases: list[tuple[int, Instruction]], sentence_of: list[int], n_words: int
) -> list[tuple[int, int, int]]:
    """(instruction number, first, stop) word runs for each phase, in the order they should be written."""
    if not phases:
        return []
    opening = phases[0][1].position in (None, START, NEXT)
    if opening and all(p.position in (None, NEXT) for _, p in phases[1:]):
        # a plain sequence ("happy, then sad, then angry"): equal parts, one per phase
        bounds = _parts(sentence_of, n_words, len(phases))
        return [(k, bounds[i], bounds[i + 1]) for i, (k, _) in enumerate(phases)]

    # explicit positions: thirds; relative phases take the third after the previous phase
    slot_of = {START: 0, MIDDLE: 1, END: 2}
    slots: dict[int, list[tuple[int, Instruction]]] = {}
    previous = -1
    for k, phase in phases:
        explicit = slot_of.get(phase.position or "")
        slot = explicit if explicit is not None else min(previous + 1, 2)
        slots.setdefault(slot, []).append((k, phase))
        previous = slot
    bounds = _parts(sentence_of, n_words, 3)
    ordered = sorted(slots.items())
    placed: list[tuple[int, int, int]] = []
    for i, (slot, members) in enumerate(ordered):
        last = members[-1][1]
        if i + 1 < len(ordered):
            stop_slot = ordered[i + 1][0]  # hold until the next phase begins
        elif last.position in (START, MIDDLE):
            stop_slot = slot + 1  # "calm at first" says nothing about later parts
        else:
            stop_slot = 3
        # every member is written so that a second emotion for the same part is reported as a conflict
        placed += [(k, bounds[slot], bounds[stop_slot]) for k, _ in members]
    return placed


def _count(unit: str, sentence_of: list[int], n_words: int) -> str:
    if unit == SENTENCE:
        n = (max(sentence_of) + 1) if sentence_of else 0
        return f"{n} sentence" + ("" if n == 1 else "s")
    if unit == HALF:
        return "2 halves"
    return f"{n_words} word" + ("" if n_words == 1 else "s")


def _span_text(span: Span) -> str:
    return (
        f"{span.unit}s {span.first}..{span.last}" if span.first != span.last else f"{span.unit} {span.first}"
    )


def _span_run(span: Span, sentence_of: list[int], n_words: int) -> tuple[int, int] | None:
    """(first, stop) words of a span, or None when the script is too short for it."""
    if span.unit == HALF:
        bounds = _parts(sentence_of, n_words, 2) if n_words >= 2 else [0, n_words, n_words]
        first, last = span.first % 2, span.last % 2
        return (bounds[first], bounds[last + 1]) if first <= last else None
    count = ((max(sentence_of) + 1) if sentence_of else 0) if span.unit == SENTENCE else n_words
    first = span.first + count if span.first < 0 else span.first
    last = span.last + count if span.last < 0 else span.last
    first, last = max(first, 0), min(last, count - 1)
    if first > last or first >= count:
        return None
    if span.unit == WORD:
        return first, last + 1
    starts = [sentence_of.index(s) for s in (first, last)]
    stop = sentence_of.index(last + 1) if last + 1 < count else n_words
    return starts[0], stop


def _find_runs(words: list[str], target: list[str]) -> list[int]:
    if not target:
        return []
    n = len(target)
    return [i for i in range(len(words) - n + 1) if words[i : i + n] == target]
