"""Where a brief points and whose feeling it names.

- Content references: "the part about shipping delays", "the HomeSafe line", "when the price is revealed",
  "about the fakes". Their text is set aside before the brief is split into parts (it may hold "and" or an
  emotion word: "the line about pride") and located in the script by meaning later.
- Extents: "from X onwards", "from X to the end", "until the final sentence", "right up to the last line",
  "and stays that way".
- Attribution: "the customer is furious" and "comforting a frightened child" name someone else's feeling,
  not the voice's; "make the audience feel scared" and "we want the listeners spooked" ask for it.

Placeholders keep the set-aside text in the brief: \\x01n\\x01 a quote, \\x02n\\x02 content,
\\x03n\\x03 a span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.plan.placement import NEXT_TOO, Extent, Place, Span

QUOTE, CONTENT, SPAN = "\x01", "\x02", "\x03"
PLACEHOLDER_RE = re.compile(r"([\x01\x02\x03])(\d+)\1")
_SHOWN_RE = re.compile(r"(\bfrom\s+)?([\x01\x02\x03])(\d+)\2")
_PLACE = r"(?:[\x01\x02\x03]\d+[\x01\x02\x03])"

_UNIT_NOUNS = (
    r"part|bit|section|passage|segment|stretch|portion|moment|line|lines|sentence|sentences|paragraph"
)
_CONTENT_NOUNS = (
    rf"{_UNIT_NOUNS}|stuff|story|news|figures?|facts|details|claim|tip|request|message|reveal|note"
)
# punctuation ends a reference, and so do a spaced dash and an aside in brackets: "the line about the
# closure - that's sombre", "the last sentence (assembly point)"
_MARK_END = r"[,;:.!?(]|\s[-–—]\s|$"
_MODAL = r"(?:can|could|should|would|will|must|needs? to|has to)"
# words that end a content reference: what follows is about delivery or extent, not content
_REFERENCE_END = (
    rf"(?=\s*(?:{_MARK_END}|"
    r"\b(?:then|onwards?|until|till|through|to the (?:very )?end|right up|up to|"
    r"all the way|"
    rf"(?:{_MODAL}|is|are)\s+"
    r"(?:be|sound|feel|get|go|stay|land|come|have)|"
    r"is|are|needs?|feels?|sounds?|stays?|goes?|go|sound|switch|turn|keep|be|"
    r"let|and then|and stays?|and keeps?|and remains?|which)\b))"
)
# a "when" reference runs on through its verbs: "when the resignation is announced"
_WHEN_END = (
    rf"(?=\s*(?:{_MARK_END}|"
    r"\b(?:then|onwards?|until|till|to the (?:very )?end|and then|and stays?|and keeps?|"
    r"and remains?|go|sound|switch|turn|keep|which)\b))"
)
_ORDINAL_START = (
    r"(?!(?:first|second|third|fourth|fifth|last|final|closing|opening|penultimate|next|previous|very|"
    r"same|whole|rest|end|start|beginning|middle|\d)\b)"
)
_REFERENCE_RES = [
    # "the line about the limited edition jar", "the sentence that says sorry", "the bit where he leaves"
    re.compile(
        rf"\b(?:the|this|that)\s+(?:{_UNIT_NOUNS})\s+(?:about|on|where|when|that\s+says|which\s+says|saying|"
        rf"that\s+mentions|mentioning|describing|covering|with|of)\s+(?P<x>.+?){_REFERENCE_END}",
        re.IGNORECASE,
    ),
    # "for the storm and flood part", "from the HomeSafe line onwards", "the stock up line"
    re.compile(
        rf"\bthe\s+{_ORDINAL_START}(?P<x>(?:[^\s,;:.!?\x01\x02\x03]+\s+){{0,4}}?[^\s,;:.!?\x01\x02\x03]+)\s+"
        rf"(?:{_UNIT_NOUNS})\b(?!\s+(?:about|on|where|that|which|saying|describing|covering|mentioning)\b)",
        re.IGNORECASE,
    ),
    # "once FitHub is introduced", "as soon as the prize is named": from there on
    re.compile(
        rf"\b(?P<from>once|as\s+soon\s+as|after|from\s+when)\s+(?P<x>(?!it\b|you\b|we\b|that\b).+?){_WHEN_END}",
        re.IGNORECASE,
    ),
    # "when the price is revealed", "when mentioning the recall"
    re.compile(
        rf"\b(?:when|whenever|while)\s+(?P<x>(?!it\b|you\b|we\b).+?){_WHEN_END}",
        re.IGNORECASE,
    ),
    # "exasperated about the old gyms", "stern about the fakes"
    re.compile(
        r"\babout\s+(?P<x>(?:the|this|that|our|your|his|her|their|losing|what|how)\b.+?)"
        rf"(?=\s*(?:{_MARK_END}|\b(?:then|and|but|onwards?|until|to the end)\b|"
        rf"\b{_MODAL}\s+(?:be|sound|feel|get|go|stay)\b))",
        re.IGNORECASE,
    ),
]
# inside one part, once spans and positions are gone: "for the features", "grave for the injury figures"
_FOR_THE_RE = re.compile(
    rf"\b(?:for|on|during|over|across|through|in|from|with|at)\s+the\s+{_ORDINAL_START}"
    rf"(?P<x>[^,;:.!?\x01\x02\x03]+?){_REFERENCE_END}",
    re.IGNORECASE,
)
_LEADING_RE = re.compile(
    r"^(?:(?:the|this|that|a|an|describing|mentioning|discussing|covering|talking about|talks about|"
    r"speaking about|we talk about|we mention|we get to|we reach|you get to|it gets to|it comes to|"
    r"we|you|he|she|they|it)\s+)+",
    re.IGNORECASE,
)
_TRAILING_RE = re.compile(rf"\s+(?:{_UNIT_NOUNS}|itself|bits?|stuff)$", re.IGNORECASE)

# "throughout", "from start to finish": the whole script, which is also what no place at all means
WHOLE_RE = re.compile(
    r"\b(?:from (?:the )?(?:start|beginning) to (?:the )?(?:finish|end)|start to finish|"
    r"all the way through|the whole way(?: through)?|all through(?: it)?|"
    r"the entire (?:time|way|script|thing)|"
    r"the whole (?:time|thing|script|read|piece)|throughout|overall|all over)\b",
    re.IGNORECASE,
)
_TO_END_RE = re.compile(
    r"\b(?:(?:right|all the way|straight)\s+)?(?:to|until|till|through to|up to)\s+the\s+(?:very\s+)?"
    r"(?:end|finish|close)\b|\bfrom\s+(?:then|there|here|now|that point)\s+on(?:wards?)?\b|"
    r"\b(?:and\s+)?(?:stays?|staying|keeps?|keep|remains?|remain)\s+(?:it\s+)?(?:that way|there|like that)\b|"
    r"\b(?:for\s+)?the\s+(?:rest|remainder)(?:\s+of\s+(?:it|the\s+\w+))?\b|\bonwards?\b",
    re.IGNORECASE,
)
_FROM_TO_RE = re.compile(
    rf"\bfrom\s+(?P<a>{_PLACE})\s+(?:to|until|till|through|thru|right\s+up\s+to|up\s+to|"
    rf"all\s+the\s+way\s+to|into)\s+(?P<b>{_PLACE})"
)
_FROM_ON_RE = re.compile(rf"\bfrom\s+(?P<a>{_PLACE})\s+on(?:wards?)?\b|\bfrom\s+(?P<b>{_PLACE})")
_UNTIL_RE = re.compile(rf"\b(?:until|till|up\s+until|before)\s+(?P<b>{_PLACE})")
_UP_TO_RE = re.compile(rf"\b(?:right\s+up\s+to|up\s+to|all\s+the\s+way\s+to|through\s+to)\s+(?P<b>{_PLACE})")

# someone other than the voice, and the verbs that say their feeling is a state, not a goal
_PARTIES = frozenset(
    [
        "audience",
        "audiences",
        "listener",
        "listeners",
        "viewer",
        "viewers",
        "customer",
        "customers",
        "caller",
        "callers",
        "client",
        "clients",
        "staff",
        "employee",
        "employees",
        "colleague",
        "colleagues",
        "people",
        "person",
        "community",
        "kid",
        "kids",
        "child",
        "children",
        "student",
        "students",
        "learner",
        "learners",
        "family",
        "families",
        "crowd",
        "crowds",
        "protester",
        "protesters",
        "fan",
        "fans",
        "parent",
        "parents",
        "reader",
        "readers",
        "user",
        "users",
        "team",
        "teams",
        "public",
        "commuter",
        "commuters",
        "victim",
        "victims",
        "resident",
        "residents",
        "passenger",
        "passengers",
        "everyone",
        "everybody",
        "they",
        "he",
        "she",
        "them",
        "patient",
        "patients",
        "guest",
        "guests",
        "shopper",
        "shoppers",
        "player",
        "players",
        "officials",
        "witnesses",
    ]
)
_STATE_VERBS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "feel",
        "feels",
        "felt",
        "get",
        "gets",
        "got",
        "seem",
        "seems",
        "seemed",
        "look",
        "looks",
        "looked",
        "may",
        "might",
        "will",
        "can",
        "could",
        "must",
        "probably",
        "often",
        "already",
        "all",
    ]
)
_CAUSATIVES = frozenset(
    [
        "make",
        "makes",
        "making",
        "let",
        "lets",
        "leave",
        "leaves",
        "want",
        "wants",
        "get",
        "gets",
        "have",
        "help",
        "helps",
    ]
)
_GOALS = frozenset({"should", "need", "needs", "ought", "to"})


@dataclass
class Stash:
    """Text set aside from the brief, by kind."""

    quotes: list[str]
    contents: list[str]
    spans: list[Span]
    written: list[str] = field(default_factory=list)  # each content reference as the brief wrote it
    starts_there: set[int] = field(default_factory=set)  # "once X": read as "from X", shown as written

    def shown(self, text: str) -> str:
        """`text` with every placeholder written out again, as in the brief, for messages."""

        def show(match: re.Match[str]) -> str:
            kind, number = match.group(2), int(match.group(3))
            if kind == QUOTE:
                return f'"{self.quotes[number]}"'
            if kind == CONTENT:
                lead = match.group(1) if match.group(1) and number not in self.starts_there else ""
                return lead + self.written[number]
            return str(Place(span=self.spans[number]))

        return " ".join(_SHOWN_RE.sub(show, text).split())

    def place(self, token: str) -> Place:
        match = PLACEHOLDER_RE.fullmatch(token)
        assert match is not None
        kind, number = match.group(1), int(match.group(2))
        if kind == QUOTE:
            return Place(anchor=self.quotes[number])
        if kind == CONTENT:
            return Place(content=self.contents[number])
        return Place(span=self.spans[number])


def set_aside_contents(text: str, stash: Stash, patterns: list[re.Pattern[str]] | None = None) -> str:
    """`text` with every content reference replaced by a placeholder (its cleaned text goes to `stash`)."""
    for pattern in _REFERENCE_RES if patterns is None else patterns:
        text = pattern.sub(lambda m: _stash_content(m, stash), text)
    return text


def set_aside_for_the(text: str, stash: Stash) -> str:
    return set_aside_contents(text, stash, [_FOR_THE_RE])


def _stash_content(match: re.Match[str], stash: Stash) -> str:
    content = _TRAILING_RE.sub("", _LEADING_RE.sub("", match.group("x").strip())).strip()
    if not content or PLACEHOLDER_RE.search(content) or len(content.split()) > 12:
        return match.group(0)
    stash.contents.append(content)
    keep = match.group(0)[: match.start("x") - match.start(0)]
    # keep the preposition ("from", "for") so extents can read it; drop "the part about"
    keep = re.sub(
        r"\b(?:the|this|that)\s+(?:\w+\s+)?(?:about|on|where|when|that says|which says|saying|"
        r"mentioning|describing|covering|with|of)?\s*$",
        " ",
        keep,
        flags=re.IGNORECASE,
    )
    keep = re.sub(r"\b(?:when|whenever|while|about)\s*$", " ", keep, flags=re.IGNORECASE)
    stash.written.append(match.group(0)[len(keep.rstrip()) :].strip())
    if "from" in match.groupdict() and match.group("from"):
        keep = " from "  # "once X" starts there and goes on
        stash.starts_there.add(len(stash.contents) - 1)
    return f"{keep} {CONTENT}{len(stash.contents) - 1}{CONTENT} "


_AND_NEXT_RE = re.compile(
    rf"(?P<p>{CONTENT}\d+{CONTENT})\s+and\s+the\s+(?:one|line|sentence|bit)\s+(?:after|following)\s+(?:it|that)\b"
)


def join_following(text: str, stash: Stash) -> str:
    """ "the fridge line and the one after it": one reference that also takes the next sentence."""

    def join(match: re.Match[str]) -> str:
        number = int(match.group("p")[1:-1])
        stash.contents[number] += NEXT_TOO
        stash.written[number] += match.group(0)[len(match.group("p")) :]
        return match.group("p")

    return _AND_NEXT_RE.sub(join, text)


def read_extent(text: str, stash: Stash) -> tuple[Extent | None, str]:
    """The extent a part names, and the part without it."""
    extent = Extent()
    found = False

    def take(pattern: re.Pattern[str], text: str, how: str) -> str:
        nonlocal found
        match = pattern.search(text)
        if match is None:
            return text
        found = True
        groups = match.groupdict()
        if how == "from-to":
            extent.start, extent.stop = stash.place(groups["a"]), stash.place(groups["b"])
        elif how == "from":
            extent.start = stash.place(groups["a"] or groups["b"])
            extent.to_end = extent.to_end or groups["a"] is not None
        elif how == "until":
            extent.stop, extent.stop_inclusive = stash.place(groups["b"]), False
        elif how == "up-to":
            extent.stop = stash.place(groups["b"])
        else:
            extent.to_end = True
        return text[: match.start()] + " " + text[match.end() :]

    text = take(_TO_END_RE, text, "to-end")
    text = take(_FROM_TO_RE, text, "from-to")
    text = take(_FROM_ON_RE, text, "from")
    text = take(_UNTIL_RE, text, "until")
    text = take(_UP_TO_RE, text, "up-to")
    return (extent if found else None), text


def attributed(tokens: list[str], is_emotion: list[bool]) -> tuple[set[int], str | None]:
    """Token positions of emotion words that name someone else's feeling, and whose it is.

    "the customer is furious", "staff are nervous", "comforting a frightened child", "angry protesters"
    are someone else's; "make the audience feel scared", "we want the listeners spooked" and "the audience
    should feel excited" ask for the feeling in the voice.
    """
    lowered = [t.lower() for t in tokens]
    taken: set[int] = set()
    party: str | None = None
    for p, token in enumerate(lowered):
        if token not in _PARTIES:
            continue
        before = lowered[max(0, p - 3) : p]
        if any(t in _CAUSATIVES for t in before):
            continue  # "make the audience feel scared": the voice should carry it
        if {"like", "as"} & set(lowered[max(0, p - 3) : p - 1]):
            continue  # "speak like a frightened child": the voice plays the part
        if p > 0 and is_emotion[p - 1]:
            taken.add(p - 1)  # "a frightened child", "angry protesters"
            party = party or token
        after = lowered[p + 1 : p + 4]
        if after and after[0] in _GOALS:
            continue  # "the audience should feel excited" is a goal for the voice
        for q in range(p + 1, min(len(tokens), p + 5)):
            if is_emotion[q]:
                if all(
                    t in _STATE_VERBS or t in {"so", "very", "really", "quite", "a", "bit"}
                    for t in lowered[p + 1 : q]
                ):
                    taken.add(q)
                    party = party or token
                    # "are nervous and tired": the state runs over the joined words
                    r = q + 1
                    while r + 1 < len(tokens) and lowered[r] in {"and", "or"} and is_emotion[r + 1]:
                        taken.add(r + 1)
                        r += 2
                break
    return taken, party
