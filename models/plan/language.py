"""A cheap "is this English?" check: the embedded speech, text and lexicon engines only handle English."""

from __future__ import annotations

import unicodedata
from collections import Counter

from simplemma import langdetect

# simplemma's English dictionary (one ~0.1 s load) decides whether a text is English. Naming the other
# language with simplemma would load one dictionary per candidate (several seconds on a busy machine), so
# common function words, written out here, name it instead.
_COMMON_WORDS = {
    "German": "der die das und ist nicht ich du wir ihr sie es ein eine auf mit den dem zu von für auch"
    " aber wie dich mich mir dir habe hat sind war nur noch schon jetzt am im dann bei zum nach sehr",
    "French": "le la les et est ne pas je tu nous vous ils elle un une des du de au avec pour que qui"
    " mais dans sur ce cette moi toi suis sont était très puis à au aux",
    "Spanish": "el la los las y es no yo tú nosotros ellos ella un una de del con para por que pero"
    " en muy esto esta estoy soy está todo ahora",
    "Italian": "il lo la gli le e è non io tu noi voi loro un una di del con per che ma in molto"
    " sono questo questa sei ho hai anche",
    "Portuguese": "o a os as e é não eu tu nós vocês ele ela um uma de do da com para por que mas em"
    " muito isso esta estou sou você",
    "Dutch": "de het een en is niet ik jij wij zij hij met voor van op maar dat die dit ook nog al"
    " naar heb hebben ben was",
}
_COMMON = {language: frozenset(words.split()) for language, words in _COMMON_WORDS.items()}
_ENGLISH_ENOUGH = 0.7  # share of sampled words found in the English dictionary
_MIN_WORDS = 3  # shorter texts ("Hola amigo", "furious") are too short to judge
_SAMPLE_CHARS = 20_000  # detection on a long script's opening is as good and stays fast


def language_warning(text: str, what: str) -> str | None:
    """A warning when `text` (called `what` in the message) looks like another language, else None."""
    sample = text[:_SAMPLE_CHARS]
    letters = [ch for ch in sample if ch.isalpha()]
    if not letters:
        return None
    scripts = Counter(_script_of(ch) for ch in letters)
    other = sum(scripts.values()) - scripts["LATIN"]
    if other / len(letters) > 0.5:
        script = next(name for name, _ in scripts.most_common() if name != "LATIN")
        return (
            f"{what} is mostly written in {'CJK' if script == 'CJK' else script.title()} letters, not Latin; "
            "the embedded engines speak and read English"
        )
    if len(sample.split()) < _MIN_WORDS:
        return None
    english = dict(langdetect(sample, lang=("en",))).get("en", 0.0)
    if english >= _ENGLISH_ENOUGH:
        return None
    words = sample.lower().split()
    counts = {
        language: sum(w.strip(".,;:!?¿¡\"'()") in common for w in words)
        for language, common in _COMMON.items()
    }
    language, hits = max(counts.items(), key=lambda item: item[1])
    if hits < max(2, 0.15 * len(words)):
        hits = 0  # too few to name a language
    if hits < 2 and (len(words) < 8 or english >= 0.5):
        return None  # a few names or odd words in an English text
    guess = f"looks {language}" if hits >= 2 else "does not look English"
    share = f"{hits} of {len(words)} words are common {language} words; " if hits >= 2 else ""
    return (
        f"{what} {guess} ({share}en {english:.2f} by simplemma); the embedded engines speak and read English"
    )


def _script_of(ch: str) -> str:
    """LATIN, CYRILLIC, CJK, ARABIC, … from the character's Unicode name."""
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else "UNKNOWN"
