"""Text the voices cannot speak: tidy it into something they can, or refuse it clearly.

The engines speak English voices through espeak-ng's phonemiser (Piper uses it too), which reads
digits, "%", "&", "$" and abbreviations well on its own ("1995" -> "nineteen ninety-five"), so numbers
are left to it. What goes wrong without help:

- URLs and e-mail addresses are spelled out symbol by symbol ("h t t p s colon slash slash ..."):
  each becomes the single word "link" (its plan words share that word's time);
- emoji and other pictographs are read by name ("smiling face with smiling eyes") or give noise:
  they are removed from the spoken text (they are never plan words, so nothing else changes);
- words in a script the voice has no rules for (Cyrillic, Han, Arabic, ...) come out as letter names
  or silence: they are refused with an InputError that names them.

`prepare` returns the plan to speak and, for every spoken word, the plan words it stands for;
`restore` maps the spoken plan's timings back onto the original plan words.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from kernel.errors import InputError
from models.types import EmotionPlan, PhonemeTiming, PlannedWord, Timings, WordTiming

URL_RE = re.compile(
    r"(?:https?://|ftp://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]"  # scheme or www. up to trailing punctuation
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail address
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|edu|gov|dev|ai)(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?\b",
    re.IGNORECASE,
)
LINK_WORD = "link"
# scripts whose letters the English voices have rules for
_SPEAKABLE_SCRIPTS = ("LATIN",)


@dataclass(frozen=True)
class Prepared:
    plan: EmotionPlan  # what the engine speaks
    origin: list[list[int]]  # spoken word i stands for original plan words origin[i]
    changed: bool  # False: plan is the original plan, untouched


def prepare(plan: EmotionPlan) -> Prepared:
    """The plan to speak; InputError for words in scripts the voice cannot read."""
    foreign = [w.text for w in plan.words if not _speakable_word(w.text)]
    if foreign:
        shown = ", ".join(repr(t) for t in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise InputError(
            f"{len(foreign)} word(s) are in a script the English voice cannot speak: {shown}; "
            "transliterate them into Latin letters or remove them from the script"
        )
    for w in plan.words:
        if not math.isfinite(w.intensity):
            raise InputError(f"word {w.index} ({w.text!r}) has intensity {w.intensity}; use a number in 0..1")
    urls = [(m.start(), m.end()) for m in URL_RE.finditer(plan.script)]
    emoji = {i for i, c in enumerate(plan.script) if _is_pictograph(c)}
    if not urls and not emoji:
        return Prepared(plan=plan, origin=[[w.index] for w in plan.words], changed=False)

    # rebuild the script: URL spans -> "link", pictographs -> nothing, everything else as it was
    pieces: list[str] = []
    new_offset: list[int] = [0] * (len(plan.script) + 1)  # old offset -> new offset
    position = 0
    i = 0
    url_at = {start: end for start, end in urls}
    while i < len(plan.script):
        if i in url_at:
            end = url_at[i]
            for k in range(i, end):
                new_offset[k] = position
            pieces.append(LINK_WORD)
            position += len(LINK_WORD)
            i = end
            continue
        new_offset[i] = position
        dropped = i in emoji or (
            unicodedata.category(plan.script[i]) in ("Cf", "Mn", "Sk") and _after_pictograph(plan.script, i)
        )
        if not dropped:
            pieces.append(plan.script[i])
            position += 1
        i += 1
    new_offset[len(plan.script)] = position
    script = "".join(pieces)

    words: list[PlannedWord] = []
    origin: list[list[int]] = []
    for w in plan.words:
        span = next(((s, e) for s, e in urls if s <= w.char_start < e), None)
        if span is not None:
            if origin and words[-1].text == LINK_WORD and words[-1].char_start == new_offset[span[0]]:
                origin[-1].append(w.index)  # another word of the same URL
                continue
            start = new_offset[span[0]]
            words.append(
                PlannedWord(
                    len(words), LINK_WORD, start, start + len(LINK_WORD), w.label, w.intensity, w.source
                )
            )
        else:
            words.append(
                PlannedWord(
                    len(words),
                    w.text,
                    new_offset[w.char_start],
                    new_offset[w.char_end],
                    w.label,
                    w.intensity,
                    w.source,
                )
            )
        origin.append([w.index])
    return Prepared(
        plan=EmotionPlan(script=script, words=words, warnings=list(plan.warnings)),
        origin=origin,
        changed=True,
    )


def restore(timings: Timings, original: EmotionPlan, prepared: Prepared) -> Timings:
    """Timings of the original plan words: words that became one spoken word share its span evenly."""
    if not prepared.changed:
        return timings
    words: list[WordTiming] = []
    members_of: dict[int, list[WordTiming]] = {}  # spoken word index -> the original words' timings
    for spoken, members in zip(timings.words, prepared.origin, strict=True):
        step = (spoken.end - spoken.start) / len(members)
        shares = [
            WordTiming(
                index=index,
                text=original.words[index].text,
                start=round(spoken.start + k * step, 4),
                end=round(spoken.start + (k + 1) * step, 4),
            )
            for k, index in enumerate(members)
        ]
        members_of[spoken.index] = shares
        words.extend(shares)
    phonemes: list[PhonemeTiming] = []
    for p in timings.phonemes:
        if p.word_index is None or p.word_index not in members_of:
            phonemes.append(p)
            continue
        # a phoneme of a merged word goes to the share its middle falls in, clipped to that share
        middle = (p.start + p.end) / 2
        shares = members_of[p.word_index]
        share = next((w for w in shares if w.start <= middle < w.end), shares[-1])
        start, end = max(p.start, share.start), min(p.end, share.end)
        if end > start:
            phonemes.append(PhonemeTiming(p.phoneme, start, end, share.index))
    return Timings(words=words, phonemes=phonemes)


def _speakable_word(text: str) -> bool:
    """True when every letter of the word is in a script the voice reads (digits always are)."""
    return all(unicodedata.name(c, "").startswith(_SPEAKABLE_SCRIPTS) for c in text if c.isalpha())


def _is_pictograph(c: str) -> bool:
    # So: emoji, dingbats, arrows...; Cs/Co: surrogates and private use (icon fonts)
    return unicodedata.category(c) in ("So", "Cs", "Co")


def _after_pictograph(script: str, i: int) -> bool:
    """Is this format/combining mark part of a pictograph (ZWJ sequences, variation selectors, skin tones)?"""
    k = i - 1
    while k >= 0 and unicodedata.category(script[k]) in ("Cf", "Mn", "Sk"):
        k -= 1
    return k >= 0 and _is_pictograph(script[k])
