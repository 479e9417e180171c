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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from models.plan.phrases import NEGATIONS, Phrase, lookup_emotion, read_phrase
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
    Extent,
    Instruction,
    Locate,
    Placed,
    Span,
    place,
)
from models.plan.references import (
    PLACEHOLDER_RE,
    QUOTE,
    SPAN,
    WHOLE_RE,
    Stash,
    attributed,
    join_following,
    read_extent,
    set_aside_contents,
    set_aside_for_the,
)
from models.types import PlanReading
from models.vocabulary import Vocabulary

if TYPE_CHECKING:
    from models.plan.lexicon import ToneLexicon

# Longest phrases first so "at the very end" is removed before "end".
_POSITION_PATTERNS: list[tuple[str, str]] = [
    (START, r"at the very (?:start|beginning)|at the (?:start|beginning|outset)|in the beginning"),
    (START, r"at first|to (?:begin|start) with|initially|first|starts?(?: (?:out|off))?|begins?|beginning"),
    (START, r"(?:the |an )?(?:opening|opener|intro|introduction)|open(?:s|ing)? with|lead(?:s|ing)? with"),
    (MIDDLE, r"in the middle|midway(?: through)?|halfway(?: through)?|middle"),
    (END, r"at the very end|(?:at|by|towards?|near) the end|in the end|at last|finally|lastly|eventually"),
    (
        END,
        r"ends?(?: up)?|ending|end|(?:the |a )?(?:close|closing|outro|sign-off|sign off)|finish(?:es|ing)?",
    ),
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
_SPAN_AND_RE = re.compile(rf"\b({_ORD})\s+and\s+(({_ORD})\s+({_UNIT}))\b", re.IGNORECASE)

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
# "even the part about X", "even though": the focusing adverb, not the calm "keep it even"
_FOCUS_EVEN_RE = re.compile(
    r"\beven\s+(?=(?:the|a|an|this|that|these|those|though|if|when|while|as|so|more|less|after|before|"
    r"during|in|on|at|for|with|his|her|their|our|your|its|my|we|you|they|he|she|it|i)\b)",
    re.IGNORECASE,
)

_BASE_RE = re.compile(r"\b(?:otherwise|everywhere else|elsewhere|the rest of the time|for everything else)\b")

# Quoted anchors; a single quote only counts when it is not an apostrophe inside a word.
_QUOTE_RE = re.compile(r"\"([^\"]*)\"|“([^”]*)”|(?<!\w)'(.*?)'(?!\w)|‘(.*?)’(?!\w)")
_PLACEHOLDER_RE = re.compile(r"\x01(\d+)\x01")
_TOKEN_RE = re.compile(
    r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)%?|[\x01\x02\x03]\d+[\x01\x02\x03]|[^\W_]+(?:['’\-][^\W_]+)*"
)

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
    throughout until toward towards whole rest remainder again each every
    okay ok so hey keep keeps want wants wanted like go switch switches drop drops lead leads let lets make
    makes should can could would need needs please sense kind sort actually also here one us it's that's
    i'd we're we'd you're they're let's bring bounce back otherwise teaching normal energy vibe register
    land lands hit hits come comes some any much enough thing things moment section stuff side note act
    except plus stress stressing emphasise emphasize emphasis highlight punch pitch play plays keeping
    making going sounding reading definitely bring brings maybe perhaps slightly especially particularly
    specially mainly notably which who whose"""
_FILLER = frozenset(_FILLER_WORDS.split())


@dataclass
class _Clause:
    instruction: Instruction
    joined: bool = False  # joined to the previous clause by "and"/"but"/…, not by a comma or "then"
    unclear: bool = False  # it had words that were neither emotions, positions nor filler
    explicit: bool = False  # an intensity word or number was given
    manner_only: bool = False  # the emotion came from a delivery word ("whispering"), not an emotion word
    candidates: list[str] = field(default_factory=list)  # unknown words MiniLM may read as an emotion
    extent_only: bool = False  # nothing but an extent ("and stays that way")
    relative: bool = False  # "which is upbeat": about the place the previous part named last
    more_spans: list[Span] = field(default_factory=list)  # the other spans of "first and last sentences"
    attributed: bool = False  # it named someone else's feeling ("the customer is furious")
    bare_and: bool = False  # joined by a plain "and", no comma: "bright and upbeat for the news"
    bare_comma: bool = False  # joined by a comma alone: "gentle, sombre"


@dataclass
class Understanding:
    """What the rule reader made of a description, before it is placed on words."""

    instructions: list[Instruction]
    warnings: list[str]
    notes: list[PlanReading]  # parts that place nothing on purpose: negated or someone else's feeling


class Guess(Protocol):
    """A MiniLM guess for a word neither the vocabulary nor the tone lexicon knows."""

    @property
    def word(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def intensity(self) -> float: ...
    @property
    def similarity(self) -> float: ...
    @property
    def nearest(self) -> str: ...
    @property
    def confidence(self) -> float: ...


# all unknown words of a description -> one guess (or None) each, in one batched call
Guesser = Callable[[list[str]], Sequence["Guess | None"]]

# named beside a calm word ("calm and sleepy"), a weaker emotion than this is read as colour, not feeling
WEAK_BESIDE_NEUTRAL = 0.45

# a guess is used when at least this sure, and marked as a guess in the warnings below CONFIDENT
GUESS_ACCEPT = 0.5
GUESS_CONFIDENT = 0.8


def interpret(
    description: str,
    words: list[str],
    sentence_of: list[int],
    vocab: Vocabulary,
    lexicon: ToneLexicon | None = None,
    guess: Guesser | None = None,
    locate: Locate | None = None,
    clause_of: list[int] | None = None,
) -> Placed:
    """Per-word cues (None where the description says nothing), warnings, and how each part was read."""
    understood = read_description(description, vocab, lexicon, guess)
    placed = place(understood.instructions, words, sentence_of, locate, understood.notes, clause_of)
    placed.warnings[:0] = understood.warnings
    return placed


def read_description(
    description: str,
    vocab: Vocabulary,
    lexicon: ToneLexicon | None = None,
    guess: Guesser | None = None,
) -> Understanding:
    """The description's instructions, in the order written, and warnings about what was not understood."""
    warnings: list[str] = []
    notes: list[PlanReading] = []
    text = " ".join(description.split())
    if not text:
        return Understanding([], warnings, notes)

    stash = Stash(quotes=[], contents=[], spans=[])

    def _stash(match: re.Match[str]) -> str:
        stash.quotes.append(next(g for g in match.groups() if g is not None))
        return f" {QUOTE}{len(stash.quotes) - 1}{QUOTE} "

    stashed = _FOCUS_EVEN_RE.sub("", _QUOTE_RE.sub(_stash, text))
    if lexicon is not None:
        stashed = lexicon.join_phrases(stashed)  # "fed up" -> "fed-up", one token
    stashed = join_following(set_aside_contents(stashed, stash), stash)
    # "second and third sentences" is one span, "more and more" and "angrier and angrier" one ramp
    stashed = _SPAN_AND_RE.sub(_span_and, stashed)
    stashed = _REPEAT_RE.sub(_one_ramp, stashed)
    pieces = _CLAUSE_SPLIT_RE.split(stashed)

    clauses: list[_Clause] = []
    dangling: _Clause | None = None  # "finally, very sad": a bare position belongs to the next part
    separator = ""
    for k, piece in enumerate(pieces):
        if k % 2:  # a separator
            separator += piece
            continue
        clause = _read_clause(piece.strip(), stash, vocab, lexicon, warnings, notes)
        if clause is None:
            continue
        clause.joined = bool(_CONJUNCTION_RE.search(separator))
        clause.bare_and = separator.strip().lower() == "and"
        clause.bare_comma = separator.strip() == ","
        separator = ""
        ins = clause.instruction
        if ins.label is None and clause.extent_only and clauses and clauses[-1].instruction.label is not None:
            _extend(clauses[-1].instruction, ins)  # "..., and stays that way"
            continue
        placed_only = (ins.position or ins.region) and not ins.anchors and not ins.ramp
        if ins.label is None and placed_only:
            if clause.candidates:
                warnings.append(f'did not understand {clause.candidates} in description part "{ins.text}"')
            dangling = (
                clause  # "From the bit about the course, switch to upbeat": the place is the next part's
            )
            continue
        if dangling is not None and ins.position is None and not ins.region:
            _take_place(ins, dangling.instruction)
        elif clause.relative and not ins.region and clauses:
            _take_place(
                ins, clauses[-1].instruction, stop_only=True
            )  # "until the final sentence, which is upbeat"
        dangling = None
        clauses.append(clause)
        for span in clause.more_spans:  # "calm for the first and last sentences"
            clauses.append(_Clause(replace(ins, span=span, anchors=list(ins.anchors))))
    if dangling is not None:
        warnings.append(f'no emotion follows "{dangling.instruction.text}" in the description; ignored')

    _guess_unknown(clauses, vocab, guess, warnings)
    clauses = _join_parts(clauses, _shares_forward, vocab, warnings)
    clauses = _join_parts(clauses, _shares_backward, vocab, warnings)
    _inherit(clauses, warnings)
    clauses = _join_parts(clauses, _mixes, vocab, warnings, separator="; ")
    instructions = [
        c.instruction for c in clauses if c.instruction.label is not None or c.instruction.anchors
    ]
    return Understanding(instructions, warnings, notes)


# how one part joins its neighbour: into the later part (FORWARD) or into the earlier one (BACKWARD)
FORWARD, BACKWARD = "forward", "backward"
JoinRule = Callable[[Instruction, _Clause], str | None]


def _shares_forward(last: Instruction, clause: _Clause) -> str | None:
    """ "bright and upbeat for the marathon news": an unplaced emotion joined by a plain "and" to a placed
    one is read at the same place, as one part."""
    ins = clause.instruction
    placed = ins.region or ins.anchors or ins.position not in (None, NEXT)
    unplaced = not last.region and not last.anchors and last.position in (None, NEXT) and last.ramp is None
    labelled = ins.label is not None and last.label is not None
    # "urgent, alarmed for the warning": a register word listed before an emotion says how to speak it
    listed = clause.bare_and or (clause.bare_comma and last.register and ins.position in (None, NEXT))
    return FORWARD if listed and placed and labelled and unplaced else None


def _shares_backward(last: Instruction, clause: _Clause) -> str | None:
    """ "keep the opening two sentences soft and sorrowful": a plain emotion joined by a plain "and" to a
    placed one is read at the same place, as one part."""
    ins = clause.instruction
    placed = last.region or last.position not in (None, NEXT)
    follows = _is_plain(ins) and ins.position is None and last.label is not None
    return (
        BACKWARD
        if clause.bare_and and follows and placed and not last.anchors and last.ramp is None
        else None
    )


def _mixes(last: Instruction, clause: _Clause) -> str | None:
    """ "angry and sad": two plain emotions joined by a conjunction ask for both on the same words."""
    ins = clause.instruction
    # the later one has no place of its own: it applies where the previous part does
    both_plain = _is_plain(ins) and _is_plain(last) and ins.position is None
    # "gentle, sombre": a comma lists a register word with an emotion for the same words
    listed = clause.joined or (
        clause.bare_comma and (last.register or ins.register) and last.position is None
    )
    return BACKWARD if listed and both_plain else None


def _join_parts(
    clauses: list[_Clause], rule: JoinRule, vocab: Vocabulary, warnings: list[str], separator: str = " and "
) -> list[_Clause]:
    """Neighbouring parts that `rule` joins become one part: one emotion (the stronger, see _choose) at
    one place. `separator` joins the two texts in the warning when their emotions differ."""
    kept: list[_Clause] = []
    for clause in clauses:
        way = rule(kept[-1].instruction, clause) if kept else None
        if way is None:
            kept.append(clause)
            continue
        last, ins = kept[-1].instruction, clause.instruction
        target = ins if way == FORWARD else last
        assert last.label is not None and ins.label is not None
        if last.label == ins.label:
            target.intensity = max(ins.intensity, last.intensity)
        else:
            named = [(last.label, last.intensity, last.text), (ins.label, ins.intensity, ins.text)]
            target.label, target.intensity = _choose(
                named, vocab, f"{last.text}{separator}{ins.text}", warnings
            )
        target.how = "; ".join(h for h in dict.fromkeys((last.how, ins.how)) if h)
        target.register = target.label == vocab.neutral and last.register and ins.register
        target.text = f"{last.text} and {ins.text}"
        if way == FORWARD:
            if last.position == NEXT and ins.position is None:
                ins.position = NEXT
            kept[-1] = clause
    return kept


def _extend(target: Instruction, extent_part: Instruction) -> None:
    """An extent said on its own ("and stays that way") stretches the part before it."""
    assert extent_part.extent is not None
    if target.extent is None:
        target.extent = Extent()
    target.extent.to_end = target.extent.to_end or extent_part.extent.to_end
    if extent_part.extent.stop is not None:
        target.extent.stop = extent_part.extent.stop
        target.extent.stop_inclusive = extent_part.extent.stop_inclusive
    target.text = f"{target.text}, {extent_part.text}"


def _take_place(ins: Instruction, source: Instruction, stop_only: bool = False) -> None:
    """A part with no place of its own takes one from a neighbour."""
    if stop_only:
        stop = source.extent.stop if source.extent is not None else None
        if stop is not None and stop.span is not None:
            ins.span = stop.span
        elif stop is not None and stop.content is not None:
            ins.content = stop.content
        elif stop is None and source.span is not None:
            ins.span = source.span
        return
    ins.position, ins.span, ins.content = source.position, source.span, source.content
    ins.extent = source.extent


def _guess_unknown(
    clauses: list[_Clause], vocab: Vocabulary, guess: Guesser | None, warnings: list[str]
) -> None:
    """Parts that name no known emotion but have unknown words: MiniLM's nearest emotion, all in one call."""
    asking = [c for c in clauses if c.instruction.label is None and c.candidates]
    if not asking:
        return
    if guess is None:
        for clause in asking:
            _warn_unknown(clause, vocab, warnings)
        return
    words = list(dict.fromkeys(w for c in asking for w in c.candidates))
    guesses = dict(zip(words, guess(words), strict=True))
    for clause in asking:
        ins = clause.instruction
        found = [g for w in clause.candidates if (g := guesses[w]) is not None]
        best = max(found, key=lambda g: g.confidence, default=None)
        if best is not None and best.label == vocab.neutral and ins.anchors:
            best = None  # "especially at 'liar'": a calm guess would only undo the emotion around it
        if best is None or best.confidence < GUESS_ACCEPT:
            _warn_unknown(clause, vocab, warnings, best)
            continue
        ins.label = best.label
        ins.intensity = 0.0 if best.label == vocab.neutral else float(best.intensity)
        ins.how = (
            f'"{best.word}" by similarity {best.similarity:.2f} to "{best.nearest}" '
            f"(confidence {best.confidence:.2f})"
        )
        clause.unclear = False
        if best.confidence < GUESS_CONFIDENT:
            warnings.append(
                f'read "{best.word}" in description part "{ins.text}" as {best.label} '
                f'{ins.intensity:g}, a guess by similarity to "{best.nearest}" '
                f"(confidence {best.confidence:.2f}); name the emotion to be sure"
            )


def _warn_unknown(clause: _Clause, vocab: Vocabulary, warnings: list[str], best: Guess | None = None) -> None:
    ins = clause.instruction
    if ins.anchors:
        return  # anchors without an emotion are reported when placed
    nearest = ""
    if best is not None:
        nearest = (
            f'; nearest guess "{best.word}" -> {best.label} (confidence {best.confidence:.2f}, too unsure)'
        )
    warnings.append(
        f'no known emotion in description part "{ins.text}"; ignored{nearest} '
        f"(valid emotions: {', '.join(vocab.labels)})"
    )


def _span_and(match: re.Match[str]) -> str:
    """ "second and third sentences" is one run; "first and last sentences" is two spans of one part."""
    a, b = (_ORDINALS[match.group(k).lower()] for k in (1, 3))
    if b == a + 1:
        return f"{match.group(1)} to {match.group(2)}"
    return f"{match.group(1)} {match.group(4)} plus {match.group(2)}"


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


def _is_plain(ins: Instruction) -> bool:
    return ins.label is not None and not ins.anchors and not ins.region and ins.ramp is None


def _choose(
    named: list[tuple[str, float, str]], vocab: Vocabulary, shown: str, warnings: list[str]
) -> tuple[str, float]:
    """One emotion for words asked to carry several: a real emotion beats neutral unless it is only a weak
    colouring of a calm read ("calm and sleepy"), then the strongest, then the first named."""
    # only the vocabulary's own calm words ("calm", "matter-of-fact") hold a read calm; a register word
    # such as "reassuring" does not cancel "warm"
    calm = [e for e in named if e[0] == vocab.neutral and _names_calm(e[2], vocab)]
    real = [e for e in named if e[0] != vocab.neutral and (not calm or e[1] >= WEAK_BESIDE_NEUTRAL)]
    if not real and not calm:
        real = [e for e in named if e[0] != vocab.neutral]
    has_neutral = any(e[0] == vocab.neutral for e in named)
    best = max(real, key=lambda e: e[1]) if real else calm[0] if calm else named[0]
    others = sorted({e[0] for e in named if e[0] != best[0]})
    if others:
        if best[0] == vocab.neutral:
            reason = f"a calm read with a weak colouring (below {WEAK_BESIDE_NEUTRAL:g}) stays calm"
        elif has_neutral:
            reason = "a real emotion beats neutral"
        else:
            reason = "the stronger one wins; on a tie the first named"
        warnings.append(
            f'"{shown}" asks for {" and ".join([best[0], *others])} on the same words; '
            f"one emotion per word, so {best[0]} wins ({reason})"
        )
    return best[0], best[1]


def _names_calm(text: str, vocab: Vocabulary) -> bool:
    return any((hit := vocab.lookup(w)) is not None and hit[0] == vocab.neutral for w in text.lower().split())


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


def _read_clause(
    part: str,
    stash: Stash,
    vocab: Vocabulary,
    lexicon: ToneLexicon | None,
    warnings: list[str],
    notes: list[PlanReading],
) -> _Clause | None:
    if not part:
        return None
    shown = stash.shown(part)
    ins = Instruction(text=shown, label=None)
    clause = _Clause(instruction=ins)
    lowered = part.lower()
    clause.relative = bool(re.match(r"(?:which|that|where|when it)\b", lowered))
    if _BASE_RE.search(lowered):
        ins.base = True  # "otherwise a plain teaching voice": everything no other part claims
        lowered = _BASE_RE.sub(" ", lowered)

    lowered = WHOLE_RE.sub(" ", lowered)  # "throughout" is what no place at all means
    lowered = _SPAN_RE.sub(lambda m: _stash_span(m, stash, shown, warnings), lowered)
    ins.extent, lowered = read_extent(lowered, stash)
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
    lowered = set_aside_for_the(lowered, stash)
    more, lowered = read_extent(lowered, stash)  # "from the storm warning" once the warning is set aside
    if more is not None:
        ins.extent = more if ins.extent is None else _combined(ins.extent, more)

    if _FALLING_RE.search(lowered):
        ins.ramp = FALLING
        lowered = _FALLING_RE.sub(" ", lowered)
    rising = bool(_RISING_RE.search(lowered))
    lowered = _RISING_RE.sub(" ", lowered)
    tokens = _TOKEN_RE.findall(lowered)
    places = [stash.place(t) for t in tokens if PLACEHOLDER_RE.fullmatch(t)]
    tokens = [t for t in tokens if not PLACEHOLDER_RE.fullmatch(t)]
    ins.anchors = [p.anchor for p in places if p.anchor is not None]
    spans = [p.span for p in places if p.span is not None]
    ins.span = spans[0] if spans else None
    clause.more_spans = spans[1:]
    if ins.span is None:
        ins.content = next((p.content for p in places if p.content is not None), None)

    kept = _drop_attributed(tokens, shown, vocab, lexicon, notes)
    clause.attributed, tokens = len(kept) < len(tokens), kept
    phrase = read_phrase(tokens, vocab, lexicon)
    if not phrase.emotions and not phrase.manners and (guessed := _guess_spelling(tokens, vocab)) is not None:
        typo, word = guessed
        warnings.append(
            f'read "{typo}" in description part "{shown}" as "{word}" (a guess: check the spelling)'
        )
        tokens = [word if t == typo else t for t in tokens]
        phrase = read_phrase(tokens, vocab, lexicon)
    if ins.ramp is None and (rising or phrase.comparatives or _repeated(phrase)):
        ins.ramp = RISING

    _read_emotion(clause, phrase, vocab, warnings)  # a ramp with no emotion inherits one later (_inherit)
    for word in phrase.negated:
        hit = lookup_emotion(word, vocab, lexicon) or vocab.manner(word)
        label = (
            hit[0] if hit is not None else (vocab.blends[word].dominant[0] if word in vocab.blends else "")
        )
        notes.append(PlanReading(shown, label, 0.0, f'"{word}" is negated: what to avoid', "nowhere"))

    leftovers = [t for t in phrase.unknown if t.lower() not in _FILLER]
    clause.unclear = bool(leftovers or phrase.numbers or phrase.intensities)
    clause.extent_only = (
        ins.extent is not None
        and ins.extent.start is None  # "from X" is a place of its own, for the next part
        and ins.label is None
        and not leftovers
        and ins.span is None
        and ins.content is None
        and not ins.anchors
    )
    if ins.label is None and not phrase.negated and not ins.ramp:
        # nothing to guess where the part negates ("not skeptical") or names someone else's feeling
        # "not ...", "rather than the usual fire-and-brimstone": what follows is what to avoid
        settled = phrase.negates or clause.attributed
        clause.candidates = [] if settled else [t for t in leftovers if t.isalpha() and len(t) > 2]
        if clause.unclear and not ins.anchors and not clause.candidates:
            warnings.append(
                f'no known emotion in description part "{shown}"; ignored '
                f"(valid emotions: {', '.join(vocab.labels)})"
            )
    elif leftovers and ins.label is not None:
        warnings.append(f'did not understand {leftovers} in description part "{shown}"; ignored those words')
    return clause


def _combined(first: Extent, second: Extent) -> Extent:
    return Extent(
        start=first.start or second.start,
        stop=first.stop or second.stop,
        stop_inclusive=first.stop_inclusive if first.stop else second.stop_inclusive,
        to_end=first.to_end or second.to_end,
    )


def _stash_span(match: re.Match[str], stash: Stash, shown: str, warnings: list[str]) -> str:
    span = _span_of(match)
    if span is None:
        warnings.append(f'"{match.group().strip()}" in description part "{shown}" counts nothing; ignored')
        return " "
    stash.spans.append(span)
    return f" {SPAN}{len(stash.spans) - 1}{SPAN} "


def _drop_attributed(
    tokens: list[str], shown: str, vocab: Vocabulary, lexicon: ToneLexicon | None, notes: list[PlanReading]
) -> list[str]:
    """The tokens without emotion words that name someone else's feeling ("the customer is furious")."""
    is_emotion = [lookup_emotion(t, vocab, lexicon) is not None or t.lower() in vocab.blends for t in tokens]
    taken, party = attributed(tokens, is_emotion)
    for q in sorted(taken):
        hit = lookup_emotion(tokens[q], vocab, lexicon)
        label = hit[0] if hit is not None else vocab.blends[tokens[q].lower()].dominant[0]
        notes.append(
            PlanReading(
                shown, label, 0.0, f"\"{tokens[q]}\" is the {party}'s feeling, not the voice's", "nowhere"
            )
        )
    return [t for q, t in enumerate(tokens) if q not in taken]


def _guess_spelling(tokens: list[str], vocab: Vocabulary) -> tuple[str, str] | None:
    """(typo, emotion word) for the first unknown token that is one or two letters off an emotion word."""
    known = [*vocab.labels, *(s for e in vocab.emotions.values() for s in e.synonyms), *vocab.blends]
    for token in tokens:
        if len(token) < 5 or token in _FILLER or token in vocab.intensity_words or token in NEGATIONS:
            continue
        if lookup_emotion(token, vocab) is not None:
            continue  # known, and negated or someone else's: not a typo
        # typos keep the first letter; "bright" is not a misspelt "fright"
        close = difflib.get_close_matches(token, [k for k in known if k[:1] == token[:1]], n=1, cutoff=0.8)
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
    word = next((w for lbl, _, w in named if lbl == label), named[0][2])
    kind = "delivery" if clause.manner_only else "tone" if word in phrase.from_lexicon else "emotion"
    ins.how = f'{kind} word "{word}"' + (f" at {intensity:g}" if clause.explicit else "")
    ins.register = label == vocab.neutral and kind != "emotion"
