"""Reading a free-text emotion description into Instructions (placement.py puts them on words).

Understood:
- one plain emotion for the whole script: "sad", "very angry", "slightly happy", "furious", "angry 0.8";
- temporal phases: "at first"/"at the start", "then"/"later", "in the middle", "by the end"/"finally";
- spans: "for the last sentence", "in the first two sentences", "the second sentence", "the last word",
  "in the second half";
- quoted anchors: angry at "never again" (or 'never again', “…”, ‘…’) on every matching run of words;
- ramps: "gradually/increasingly angry", "growing angrier" rise across their span to the emotion's intensity;
  "calming down", "fading", "less and less" fall from the emotion named (or the one before) to a low level;
- blends from the vocabulary ("bittersweet" = sad + happy): the dominant part is used, and a warning says so;
- delivery words ("whispering", "sobbing", "shouting") stand for the vocabulary's nearest emotion when the
  same part names none; on an anchor they keep the script's named emotion ("excited, shouting 'we won'");
- two emotions joined by "and"/"but" for the same words ("angry and sad"): one emotion per word, so the
  stronger wins (the first named on a tie), with a warning;
- an emotion word one or two letters off ("angyr") is read as the nearest one, with a warning.
Anything else is reported in the warnings and ignored; placement.py documents where each part lands.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from models.plan.phrases import NEGATIONS, Phrase, read_phrase
from models.plan.placement import (
    END,
    FALLING,
    HALF,
    MIDDLE,
    NEXT,
    RISING,
    SENTENCE,
    START,
    WORD,
    Cue,
    Instruction,
    Span,
    place,
)
from models.vocabulary import Vocabulary

# Longest phrases first so "at the very end" is removed before "end".
_POSITION_PATTERNS: list[tuple[str, str]] = [
    (START, r"at the very (?:start|beginning)|at the (?:start|beginning|outset)|in the beginning"),
    (START, r"at first|to (?:begin|start) with|initially|first|starts?(?: (?:out|off))?|begins?|beginning"),
    (MIDDLE, r"in the middle|midway(?: through)?|halfway(?: through)?|middle"),
    (END, r"at the very end|(?:at|by|towards?|near) the end|in the end|at last|finally|lastly|eventually"),
    (END, r"ends?(?: up)?|ending|end"),
    (NEXT, r"then|later(?: on)?|afterwards?|after that|next|soon after"),
]
_POSITION_RES = [(kind, re.compile(rf"\b(?:{pattern})\b")) for kind, pattern in _POSITION_PATTERNS]

_ORDINALS = {
    "first": 1, "1st": 1, "opening": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10,
    "last": -1, "final": -1, "closing": -1, "penultimate": -2, "next-to-last": -2, "second-to-last": -2,
    "second-last": -2,
}  # fmt: skip
_COUNTS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "few": 3, "couple of": 2, "couple": 2,
}  # fmt: skip
_ORD = "|".join(sorted(map(re.escape, _ORDINALS), key=len, reverse=True))
_NUM = r"\d+|" + "|".join(sorted(_COUNTS, key=len, reverse=True))
_UNIT = r"sentences?|lines?|words?"
_SPAN_RE = re.compile(
    rf"\b(?:(?:for|in|during|on|over|throughout|across)\s+)?(?:the\s+)?(?:very\s+)?(?:"
    rf"(?P<ord_a>{_ORD})\s+(?:and|to|through|till|until)\s+(?P<ord_b>{_ORD})\s+(?P<unit_ab>{_UNIT})"
    rf"|(?P<ord>{_ORD})(?:\s+(?P<num>{_NUM}))?\s+(?P<unit>{_UNIT})"
    rf"|(?P<unit_n>sentence|line|word)\s+(?P<n>\d+|{'|'.join(c for c in _COUNTS if ' ' not in c)})"
    rf"|(?P<half>first|second|last|latter|former|1st|2nd)\s+half"
    rf")\b"
)
_REPEAT_RE = re.compile(r"\b(\w+)\s+and\s+\1\b", re.IGNORECASE)
_SPAN_AND_RE = re.compile(rf"\b({_ORD})\s+and\s+((?:{_ORD})\s+(?:{_UNIT}))\b", re.IGNORECASE)

# Ramps. Falling phrases are removed from the text first so "calming"/"calmer" do not read as neutral.
_FALLING_RE = re.compile(
    r"\b(?:calm(?:s|ing|ed)? down|calming|calmer|quieter|softer|cool(?:s|ing|ed)?(?: down| off)?|"
    r"fad(?:e|es|ing|ed)(?: away| out)?|soften(?:s|ing|ed)?|subsid(?:e|es|ing|ed)|less and less|"
    r"decreasingly|di(?:e|es|ing) down|dying down|settl(?:e|es|ing|ed)(?: down)?|relax(?:es|ing|ed)|"
    r"wind(?:s|ing)? down|eas(?:e|es|ing|ed)(?: off)?|diminish(?:es|ing|ed)?|wan(?:e|es|ing)|ebb(?:s|ing)?|"
    r"trail(?:s|ing)? off|taper(?:s|ing)?(?: off)?|dwindl(?:e|es|ing)|less)\b"
)
_RISING_RE = re.compile(
    r"\b(?:gradually|increasingly|progressively|steadily|more and more|more|"
    r"grow(?:s|ing)?|build(?:s|ing)?(?: up)?|escalat(?:e|es|ing)|ris(?:e|es|ing)|mount(?:s|ing)|"
    r"swell(?:s|ing)?|intensif(?:y|ies|ying)|ramp(?:s|ing)? up|work(?:s|ing)? (?:up|into)|"
    r"heat(?:s|ing)? up)\b"
)

# Clause boundaries: punctuation, conjunctions, and just before a sequencing word.
_CLAUSE_SPLIT_RE = re.compile(
    # a full stop between digits is a decimal point ("angry 0.8"), not a boundary
    r"((?:[,;!?:]|\.(?!\d))+|\s+(?:and|but|yet|while|whereas)\s+"
    r"|\s+(?=(?:then|later|finally|afterwards|eventually)\b))"
)
_CONJUNCTION_RE = re.compile(r"\b(?:and|but|yet|while|whereas)\b")

# Quoted anchors; a single quote only counts when it is not an apostrophe inside a word.
_QUOTE_RE = re.compile(r"\"([^\"]*)\"|“([^”]*)”|(?<!\w)'(.*?)'(?!\w)|‘(.*?)’(?!\w)")
_PLACEHOLDER_RE = re.compile(r"\x01(\d+)\x01")
_TOKEN_RE = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)%?|\x01\d+\x01|[^\W_]+(?:['’\-][^\W_]+)*")

# Words that carry no emotion information but are normal in a description.
_FILLER_WORDS = """a an the at on in of to for as by with about from into over during around throughout
    through across all whole entire overall mostly mainly and but or so it its this that these those there
    he she they we i you his her their our my your one someone person man woman speaker narrator
    voice tone mood emotion emotions feeling feelings manner delivery style way time part parts
    is are was were be being been becomes become becoming gets get getting grows grow growing
    turns turn turning goes go going stays stay staying remains remain remaining sounds sound sounding
    seems seem seeming feels feel speaks speak speaking says say saying said talks talk talking
    reads read reading delivers deliver delivered when where while word words phrase line lines
    sentence sentences script text speech narration more less increasingly gradually slowly suddenly
    like up down out off away very bit little quite rather almost just still even then now until till
    throughout until toward towards whole rest remainder again each every"""
_FILLER = frozenset(_FILLER_WORDS.split())


@dataclass
class _Clause:
    instruction: Instruction
    joined: bool = False  # joined to the previous clause by "and"/"but"/…, not by a comma or "then"
    unclear: bool = False  # it had words that were neither emotions, positions nor filler
    explicit: bool = False  # an intensity word or number was given
    manner_only: bool = False  # the emotion came from a delivery word ("whispering"), not an emotion word


def interpret(
    description: str,
    words: list[str],
    sentence_of: list[int],
    vocab: Vocabulary,
) -> tuple[list[Cue | None], list[str]]:
    """Per-word cues (None where the description says nothing) and warnings for what was not understood."""
    instructions, warnings = read_description(description, vocab)
    cues, placement_warnings = place(instructions, words, sentence_of)
    return cues, warnings + placement_warnings


def read_description(description: str, vocab: Vocabulary) -> tuple[list[Instruction], list[str]]:
    """The description's instructions, in the order written, and warnings about what was not understood."""
    warnings: list[str] = []
    text = " ".join(description.split())
    if not text:
        return [], warnings

    quotes: list[str] = []

    def _stash(match: re.Match[str]) -> str:
        quotes.append(next(g for g in match.groups() if g is not None))
        return f" \x01{len(quotes) - 1}\x01 "

    stashed = _QUOTE_RE.sub(_stash, text)
    # "second and third sentences" is one span, "more and more" and "angrier and angrier" one ramp
    stashed = _SPAN_AND_RE.sub(r"\1 to \2", stashed)
    stashed = _REPEAT_RE.sub(_one_ramp, stashed)
    pieces = _CLAUSE_SPLIT_RE.split(stashed)

    clauses: list[_Clause] = []
    dangling: _Clause | None = None  # "finally, very sad": a bare position belongs to the next part
    separator = ""
    for k, piece in enumerate(pieces):
        if k % 2:  # a separator
            separator += piece
            continue
        clause = _read_clause(piece.strip(), quotes, vocab, warnings)
        if clause is None:
            continue
        clause.joined = bool(_CONJUNCTION_RE.search(separator))
        separator = ""
        ins = clause.instruction
        placed_only = (ins.position or ins.span) and not ins.anchors and not ins.ramp and not clause.unclear
        if ins.label is None and placed_only:
            dangling = clause
            continue
        if dangling is not None and ins.position is None and ins.span is None:
            ins.position, ins.span = dangling.instruction.position, dangling.instruction.span
        dangling = None
        clauses.append(clause)
    if dangling is not None:
        warnings.append(f'no emotion follows "{dangling.instruction.text}" in the description; ignored')

    _inherit(clauses, warnings)
    clauses = _merge_mixed(clauses, vocab, warnings)
    return [
        c.instruction for c in clauses if c.instruction.label is not None or c.instruction.anchors
    ], warnings


def _one_ramp(match: re.Match[str]) -> str:
    word = match.group(1).lower()
    return {"more": "increasingly", "less": "decreasingly"}.get(word, f"increasingly {match.group(1)}")


def _inherit(clauses: list[_Clause], warnings: list[str]) -> None:
    """Parts that lean on another part: a ramp without an emotion ("then calming down") continues the
    previous emotion, a ramp of the same emotion starts where the previous part left it ("irritated, growing
    angrier"), a bare anchor after an anchored emotion takes that emotion ("angry at 'no' and 'never'"), and a
    delivery word takes the whole script's emotion when one is named ("excited, shouting 'we won'")."""
    whole = next((c.instruction for c in clauses if _is_plain(c.instruction) and not c.manner_only), None)
    previous: Instruction | None = None
    for clause in clauses:
        ins = clause.instruction
        if ins.label is None and ins.ramp and previous is not None:
            ins.label = previous.label
            if not clause.explicit:
                ins.intensity = previous.intensity
        elif ins.label is None and ins.ramp:
            warnings.append(f'"{ins.text}" changes an emotion but none is named before it; ignored')
            ins.ramp = None
        elif ins.label is None and ins.anchors and previous is not None and previous.anchors:
            ins.label, ins.intensity = previous.label, previous.intensity
        elif clause.manner_only and whole is not None and ins.position is None and ins.span is None:
            ins.label = whole.label  # shouting for joy is happy: the delivery word only sets intensity
        if previous is not None and ins.ramp and ins.label == previous.label:
            if ins.ramp == RISING and previous.intensity < ins.intensity:
                ins.ramp_low = previous.intensity  # rise from where the previous part left off
            elif ins.ramp == FALLING and not clause.explicit:
                ins.intensity = max(ins.intensity, previous.intensity)  # fall from where it was
        if ins.label is not None:
            previous = ins


def _merge_mixed(clauses: list[_Clause], vocab: Vocabulary, warnings: list[str]) -> list[_Clause]:
    """ "angry and sad": two plain emotions joined by a conjunction ask for both on the same words."""
    merged: list[_Clause] = []
    for clause in clauses:
        ins = clause.instruction
        last = merged[-1].instruction if merged else None
        if (
            last is not None
            and clause.joined
            and _is_plain(ins)
            and _is_plain(last)
            and ins.position is None  # no place of its own: it applies where the previous part does
        ):
            assert ins.label is not None and last.label is not None
            if ins.label != last.label:
                named = [(last.label, last.intensity, last.text), (ins.label, ins.intensity, ins.text)]
                label, intensity = _choose(named, vocab, f"{last.text}; {ins.text}", warnings)
            else:
                label, intensity = ins.label, max(ins.intensity, last.intensity)
            last.label, last.intensity = label, intensity
            last.text = f"{last.text} and {ins.text}"
            continue
        merged.append(clause)
    return merged


def _is_plain(ins: Instruction) -> bool:
    return ins.label is not None and not ins.anchors and ins.span is None and ins.ramp is None


def _choose(
    named: list[tuple[str, float, str]], vocab: Vocabulary, shown: str, warnings: list[str]
) -> tuple[str, float]:
    """One emotion for words asked to carry several: a real emotion beats neutral, then the strongest,
    then the first named."""
    real = [e for e in named if e[0] != vocab.neutral] or named
    best = max(real, key=lambda e: e[1])  # max keeps the first on a tie
    others = sorted({e[0] for e in named if e[0] != best[0]})
    if others:
        reason = "a real emotion beats neutral" if best[0] != vocab.neutral and len(real) < len(named) else ""
        reason = reason or "the stronger one wins; on a tie the first named"
        warnings.append(
            f'"{shown}" asks for {" and ".join([best[0], *others])} on the same words; '
            f"one emotion per word, so {best[0]} wins ({reason})"
        )
    return best[0], best[1]


def _read_span(lowered: str, shown: str, warnings: list[str]) -> tuple[Span | None, str]:
    match = _SPAN_RE.search(lowered)
    if match is None:
        return None, lowered
    rest = lowered[: match.start()] + " " + lowered[match.end() :]
    span = _span_of(match)
    if span is None:
        warnings.append(f'"{match.group().strip()}" in description part "{shown}" counts nothing; ignored')
    return span, rest


def _span_of(match: re.Match[str]) -> Span | None:
    """The span a _SPAN_RE match names; None for "sentence 0" or "the last 0 words"."""
    g = match.groupdict()
    if g["half"]:
        half = 0 if g["half"] in ("first", "1st", "former") else 1
        return Span(HALF, half, half)
    if g["unit_n"]:
        raw = g["n"]
        n = int(raw) if raw.isdigit() else _COUNTS[raw]
        return Span(_unit(g["unit_n"]), n - 1, n - 1) if n > 0 else None
    if g["ord_a"]:
        a, b = (_index(_ORDINALS[g[key]]) for key in ("ord_a", "ord_b"))
        return Span(_unit(g["unit_ab"]), a, b)
    ordinal = _ORDINALS[g["ord"]]
    raw = g["num"]
    count = 1 if raw is None else (int(raw) if raw.isdigit() else _COUNTS[raw])
    unit = _unit(g["unit"])
    if count < 1:
        return None
    if ordinal < 0:  # the last two sentences
        last = ordinal
        return Span(unit, last - count + 1, last)
    if raw is not None and ordinal == 1:  # the first two sentences
        return Span(unit, 0, count - 1)
    return Span(unit, ordinal - 1, ordinal - 1 + count - 1)


def _index(ordinal: int) -> int:
    return ordinal - 1 if ordinal > 0 else ordinal


def _unit(word: str) -> str:
    return WORD if word.startswith("word") else SENTENCE  # a line is a sentence


def _read_clause(part: str, quotes: list[str], vocab: Vocabulary, warnings: list[str]) -> _Clause | None:
    if not part:
        return None
    shown = " ".join(_PLACEHOLDER_RE.sub(lambda m: f'"{quotes[int(m.group(1))]}"', part).split())
    ins = Instruction(text=shown, label=None)
    clause = _Clause(instruction=ins)
    lowered = part.lower()

    ins.span, lowered = _read_span(lowered, shown, warnings)
    positions: list[str] = []
    for kind, pattern in _POSITION_RES:
        if pattern.search(lowered):
            positions.append(kind)
            lowered = pattern.sub(" ", lowered)
    explicit_positions = [p for p in positions if p != NEXT]
    if len(set(explicit_positions)) > 1:
        warnings.append(
            f'description part "{shown}" names several positions; using "{explicit_positions[-1]}"'
        )
    ins.position = explicit_positions[-1] if explicit_positions else (NEXT if positions else None)

    if _FALLING_RE.search(lowered):
        ins.ramp = FALLING
        lowered = _FALLING_RE.sub(" ", lowered)
    rising = bool(_RISING_RE.search(lowered))
    lowered = _RISING_RE.sub(" ", lowered)
    tokens = _TOKEN_RE.findall(lowered)
    ins.anchors = [quotes[int(m.group(1))] for t in tokens if (m := _PLACEHOLDER_RE.fullmatch(t))]
    tokens = [t for t in tokens if not _PLACEHOLDER_RE.fullmatch(t)]
    phrase = read_phrase(tokens, vocab)
    if not phrase.emotions and not phrase.manners and (guessed := _guess_spelling(tokens, vocab)) is not None:
        typo, word = guessed
        warnings.append(
            f'read "{typo}" in description part "{shown}" as "{word}" (a guess: check the spelling)'
        )
        tokens = [word if t == typo else t for t in tokens]
        phrase = read_phrase(tokens, vocab)
    if ins.ramp is None and (rising or phrase.comparatives or _repeated(phrase)):
        ins.ramp = RISING

    _read_emotion(clause, phrase, vocab, warnings)  # a ramp with no emotion inherits one later (_inherit)
    if phrase.negated:
        warnings.append(f'negated emotion {phrase.negated} in description part "{shown}" is not supported')

    leftovers = [t for t in phrase.unknown if t.lower() not in _FILLER]
    clause.unclear = bool(leftovers or phrase.numbers or phrase.intensities or phrase.negated)
    if ins.label is None and not phrase.negated and not ins.ramp:
        if clause.unclear and not ins.anchors:  # anchors without an emotion are reported later
            warnings.append(
                f'no known emotion in description part "{shown}"; ignored '
                f"(valid emotions: {', '.join(vocab.labels)})"
            )
    elif leftovers:
        warnings.append(f'did not understand {leftovers} in description part "{shown}"; ignored those words')
    return clause


def _guess_spelling(tokens: list[str], vocab: Vocabulary) -> tuple[str, str] | None:
    """(typo, emotion word) for the first unknown token that is one or two letters off an emotion word."""
    known = [*vocab.labels, *(s for e in vocab.emotions.values() for s in e.synonyms), *vocab.blends]
    for token in tokens:
        if len(token) < 4 or token in _FILLER or token in vocab.intensity_words or token in NEGATIONS:
            continue
        close = difflib.get_close_matches(token, known, n=1, cutoff=0.8)
        if close:
            return token, close[0]
    return None


def _repeated(phrase: Phrase) -> bool:
    """ "angrier and angrier", "sad, sadder": the same emotion named twice in one part."""
    labels = [label for label, _, _ in phrase.emotions]
    return len(labels) > 1 and len(set(labels)) == 1


def _read_emotion(clause: _Clause, phrase: Phrase, vocab: Vocabulary, warnings: list[str]) -> None:
    ins = clause.instruction
    named = phrase.emotions or phrase.manners  # a delivery word counts only when no emotion is named
    if not named:
        return
    clause.manner_only = not phrase.emotions
    for blend in phrase.blends:
        parts = " + ".join(f"{label} {value:g}" for label, value in vocab.blends[blend].parts)
        dominant = vocab.blends[blend].dominant
        warnings.append(
            f'blend "{blend}" is {parts}; its words get {dominant[0]} {dominant[1]:g} '
            "(the dominant part: one emotion per word)"
        )
    if len({label for label, _, _ in named}) > 1:
        label, implied = _choose(named, vocab, ins.text, warnings)
    else:
        label, implied = named[0][0], max(value for _, value, _ in named)
    intensity = implied
    if phrase.intensities:
        intensity = phrase.intensities[-1][1]
        clause.explicit = True
    for token, value in phrase.numbers:
        if 0.0 <= value <= 1.0:
            intensity = value
            clause.explicit = True
        else:
            warnings.append(f'intensity {token} in description part "{ins.text}" is outside 0..1; ignored')
    ins.label = label
    ins.intensity = 0.0 if label == vocab.neutral else float(intensity)
