"""Fit the tone guesser's confidence (models/plan/semantic.py) and write prompts/tone_confidence.json.

    .venv/bin/python bench/fit_tone_confidence.py [--lexicon prompts/tone_words.yaml] [--out PATH]

Examples, one per word:
- every anchor (label names, emotions.yaml synonyms, tone_words.yaml entries when the file exists) is
  predicted from all the OTHER anchors (leave-one-out): right label -> 1, wrong -> 0;
- the plain words (models/plan/semantic.py PLAIN_WORDS: ordinary words of scripts and briefs with no
  tone, an anchor class of their own), each read without itself: whatever label they get is wrong -> 0.

For each carrier template, the vote (per-label max, or a k-nearest vote) is chosen by leave-one-out
accuracy; then confidence = logistic(a*similarity + b*margin + c) is fitted, and the template with the
lowest out-of-fold log loss (5 folds, split by word) wins. The reliability table and Brier score are
out-of-fold too. HELD_OUT words (tone words in none of the tables, and more plain words) are read once
by the final model and never fitted on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import text_embedding  # noqa: E402
from models.plan.semantic import (  # noqa: E402
    CONFIDENCE_PATH,
    PLAIN,
    TEMPLATES,
    Anchor,
    Calibration,
    plain_anchors,
    tone_anchors,
    vote,
    words,
)
from models.vocabulary import load_vocabulary  # noqa: E402

# simplest first; max: k only picks the intensity voters
VOTES = [("max", 5), ("knn", 3), ("knn", 5), ("knn", 7)]
# A k-nearest vote must beat the per-label max by this much to be chosen: with ~800 anchors one standard
# error of the accuracy is ~0.016, and a vote of several can outvote the one close form of a word
# ("ecstatically" -> surprise by k=7 although "ecstatic" is happy), which leave-one-out cannot see.
VOTE_TOLERANCE = 0.015
# templates within this out-of-fold log loss of the best are tied; the tie goes to the best
# leave-family-out accuracy (words read without any other form of themselves, as unknown words often are)
TEMPLATE_TOLERANCE = 0.005
FOLDS = 5
SEED = 0

# tone words read once by the final model, never fitted on, with the label a voice director would give;
# the ones a table has meanwhile learnt are dropped at run time (they are anchors then)
HELD_OUT_TONE_WORDS = {
    "sad": words(
        """
        heartsore crestfallen despondent morose downhearted woeful doleful anguished bereaved tearfully
        sadly weepy mopey heavyhearted brokenhearted lugubrious disconsolate inconsolable desolate
        bummed teary mournfully sorrowfully
        """
    ),
    "happy": words(
        """
        ecstatically jubilant gleeful blissful exuberant giddy cheery buoyant happily chipper beaming
        radiant jovial exhilarated stoked chuffed elatedly gladly joyously rapturous gleefully
        """
    ),
    "angry": words(
        """
        incensed irked wrathful infuriated peeved riled belligerent angrily apoplectic ireful miffed
        huffy irascible choleric wrathfully furiously crabby grouchy
        """
    ),
    "fear": words(
        """
        spooked fretful skittish jumpy panicking frightful terrify fearfully petrifying nerve-racking
        creeped unnerved rattled frantic trembling quivering
        """
    ),
    "surprise": words(
        """
        gobsmacked thunderstruck staggered agog astounding surprisingly wide-eyed stupefied dazed
        nonplussed openmouthed startling
        """
    ),
    "disgust": words(
        """
        repelled repugnant revolting abhorrent distasteful loathsome nauseous icky yucky vile sickening
        odious squeamish queasy repellent
        """
    ),
    "neutral": words(
        """
        impassive dispassionate unruffled placid level-headed stoic unmoved poker-faced expressionless
        toneless impartial objective unbothered
        """
    ),
}
HELD_OUT_TONE = [(w, label) for label, ws in HELD_OUT_TONE_WORDS.items() for w in ws]
HELD_OUT_PLAIN = words(
    """
invoice-free modem postcode tablet sandwich umbrella carpet highway harbour factory museum library
transcript webinar checklist spreadsheet dashboard warranty receipt voucher catalogue broadband
thermostat bicycle wednesday afternoon quarter paragraphs figures statistics benchmark inventory
"""
)


@dataclass
class TemplateFit:
    """One carrier template's readings, vote and out-of-fold calibration."""

    name: str
    template: str
    vote: str
    k: int
    block: np.ndarray  # every word's vector in this template
    loo: dict[str, float]  # leave-one-out accuracy per vote
    accuracy: float
    family_accuracy: float
    x: np.ndarray  # (similarity, margin) per anchor
    y: np.ndarray  # 1 where the leave-one-out label is right
    oof: np.ndarray  # out-of-fold confidence
    log_loss: float
    brier: float
    plain_rejected: float


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, steps: int = 100) -> np.ndarray:
    """(a, b, c) by Newton's method on the log loss, a light ridge on a and b keeping it finite."""
    design = np.column_stack([x, np.ones(len(x))])
    w = np.zeros(design.shape[1])
    penalty = np.diag([ridge] * x.shape[1] + [0.0])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -50, 50)))
        gradient = design.T @ (p - y) + penalty @ w
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x @ w[:-1] + w[-1], -50, 50)))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    rows = []
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in itertools.pairwise(edges):
        inside = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if inside.any():
            rows.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "n": int(inside.sum()),
                    "mean_confidence": round(float(p[inside].mean()), 3),
                    "observed_accuracy": round(float(y[inside].mean()), 3),
                }
            )
    return rows


def family(word: str) -> str:
    return word[:5]  # terror, terrified; despair, despairing; astonished, astonishment


def readings(
    vectors: np.ndarray,
    anchor_vectors: np.ndarray,
    anchors: list[Anchor],
    labels: list[str],
    method: str,
    k: int,
    exclude: np.ndarray | None = None,
) -> list[tuple[str, float, float, float, int]]:
    """(label, similarity, margin, intensity, nearest) per row of `vectors`; `exclude[i]` masks anchors."""
    owners = np.asarray([labels.index(a.label) if a.label else PLAIN for a in anchors])
    intensities = np.asarray([a.intensity for a in anchors])
    cosines = vectors @ anchor_vectors.T
    if exclude is not None:
        cosines = np.where(exclude, -np.inf, cosines)
    out = []
    for row in cosines:
        v = vote(row, owners, intensities, len(labels), method, k)
        out.append((labels[v.label], v.similarity, v.margin, v.intensity, v.nearest))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--lexicon", type=Path, default=ROOT / "prompts" / "tone_words.yaml")
    parser.add_argument("--out", type=Path, default=CONFIDENCE_PATH)
    args = parser.parse_args()

    vocabulary = load_vocabulary()
    lexicon: dict[str, tuple[str, float]] = {}
    if args.lexicon.is_file():
        from models.plan.lexicon import load_lexicon

        lexicon = load_lexicon(vocabulary, args.lexicon).words
    tone = tone_anchors(vocabulary, lexicon)
    plain = plain_anchors(tone)
    anchors = tone + plain
    labels = list(vocabulary.emotions)
    known = {a.word for a in anchors}
    held_tone = [(w, lab) for w, lab in HELD_OUT_TONE if w not in known]
    held_plain = [w for w in HELD_OUT_PLAIN if w not in known]
    print(
        f"anchors: {len(tone)} tone words ({len(lexicon)} lexicon entries), {len(plain)} plain words; "
        f"held out: {len(held_tone)} tone words, {len(held_plain)} plain words"
    )

    words = [a.word for a in anchors] + [w for w, _ in held_tone] + held_plain
    texts = [template.format(word=w) for template in TEMPLATES.values() for w in words]
    all_vectors = text_embedding.embed(texts)  # one call for every template's readings
    n, m = len(words), len(anchors)
    gold = [a.label for a in anchors]  # "" for a plain word: never right
    itself = np.eye(m, dtype=bool)
    # stricter: a tone word read without its whole family (terror, terrified) nor any other form of it
    families = np.asarray([family(a.word) for a in anchors])
    same_family = (families[:, None] == families[None, :]) | itself

    rng = np.random.default_rng(SEED)
    fold = rng.permutation(m) % FOLDS  # folds split by word
    results: list[TemplateFit] = []
    for t, (name, template) in enumerate(TEMPLATES.items()):
        block = all_vectors[t * n : (t + 1) * n]
        anchor_vectors = block[:m]
        # the vote by leave-one-out accuracy over the tone anchors
        loo = {}
        for method, k in VOTES:
            read = readings(anchor_vectors, anchor_vectors, anchors, labels, method, k, itself)
            right = np.asarray([r[0] == g for r, g in zip(read, gold, strict=True)], dtype=float)
            loo[(method, k)] = (float(right[: len(tone)].mean()), read, right)
        simplest = VOTES[0]
        better = max(loo.items(), key=lambda item: item[1][0])
        chosen = better[0] if better[1][0] > loo[simplest][0] + VOTE_TOLERANCE else simplest
        method, k = chosen
        accuracy, read, y = loo[chosen]
        x = np.asarray([[r[1], r[2]] for r in read])
        oof = np.zeros(m)
        for f in range(FOLDS):
            w = fit_logistic(x[fold != f], y[fold != f])
            oof[fold == f] = predict(w, x[fold == f])
        family_read = readings(
            anchor_vectors[: len(tone)], anchor_vectors, anchors, labels, method, k, same_family[: len(tone)]
        )
        family_accuracy = float(
            np.mean([r[0] == g for r, g in zip(family_read, gold[: len(tone)], strict=True)])
        )
        result = TemplateFit(
            name=name,
            template=template,
            vote=method,
            k=k,
            block=block,
            loo={f"{mm}{kk}": round(v[0], 3) for (mm, kk), v in loo.items()},
            accuracy=accuracy,
            family_accuracy=family_accuracy,
            x=x,
            y=y,
            oof=oof,
            log_loss=log_loss(oof, y),
            brier=float(np.mean((oof - y) ** 2)),
            plain_rejected=float((oof[len(tone) :] < 0.5).mean()),
        )
        results.append(result)
        print(
            f"{name:8s} {template!r:34s} LOO {loo_text(result.loo)} -> {method} k={k}: "
            f"acc {accuracy:.3f} (family out {family_accuracy:.3f}), out of fold: log loss "
            f"{result.log_loss:.3f}, Brier {result.brier:.3f}, "
            f"plain rejected {result.plain_rejected:.3f}"
        )

    lowest = min(r.log_loss for r in results)
    tied = [r for r in results if r.log_loss <= lowest + TEMPLATE_TOLERANCE]
    best = max(tied, key=lambda r: r.family_accuracy)
    w = fit_logistic(best.x, best.y)
    calibration = Calibration(best.template, best.vote, best.k, *map(float, w))
    table = reliability(best.oof, best.y)
    print(f"\nchosen: {best.template!r}, vote {best.vote} k={best.k}, a b c = {w.round(3)}")
    print("out-of-fold reliability (tone and plain anchors):")
    print(f"  {'confidence':10s} {'n':>5s} {'mean conf':>9s} {'observed':>9s}")
    for row in table:
        print(
            f"  {row['bin']:10s} {row['n']:5d} {row['mean_confidence']:9.3f} {row['observed_accuracy']:9.3f}"
        )
    oof, y = best.oof, best.y
    accepted = oof[: len(tone)] >= 0.5
    print(
        f"tone anchors with confidence >= 0.5: {accepted.mean():.3f}, right among them "
        f"{y[: len(tone)][accepted].mean():.3f}; plain anchors rejected (< 0.5): {best.plain_rejected:.3f}"
    )

    # held out: tone words in no table, plain words in no list, read by the final model
    block = best.block
    anchor_vectors = block[:m]
    tone_read = readings(block[m : m + len(held_tone)], anchor_vectors, anchors, labels, best.vote, best.k)
    plain_read = readings(block[m + len(held_tone) :], anchor_vectors, anchors, labels, best.vote, best.k)
    tone_conf = np.asarray([calibration.confidence(r[1], r[2]) for r in tone_read])
    tone_right = np.asarray([r[0] == g for r, (_, g) in zip(tone_read, held_tone, strict=True)])
    plain_conf = np.asarray([calibration.confidence(r[1], r[2]) for r in plain_read])
    print("\nheld-out tone words (gold -> guess, nearest, confidence):")
    for (word, gold_label), r, c in zip(held_tone, tone_read, tone_conf, strict=True):
        mark = "ok " if r[0] == gold_label else "BAD"
        print(f"  {mark} {word:15s} {gold_label:8s} -> {r[0]:8s} {anchors[r[4]].word:16s} {c:.2f}")
    print("held-out plain words (guess/nearest/confidence):")
    for word, r, c in zip(held_plain, plain_read, plain_conf, strict=True):
        print(f"  {'ok ' if c < 0.5 else 'BAD'} {word:15s} {r[0]:8s} {anchors[r[4]].word:16s} {c:.2f}")
    held: dict[str, float | int | None] = {
        "tone_words": len(held_tone),
        "tone_label_accuracy": round(float(tone_right.mean()), 3) if held_tone else None,
        "tone_accepted_share": round(float((tone_conf >= 0.5).mean()), 3) if held_tone else None,
        "tone_accuracy_when_accepted": round(float(tone_right[tone_conf >= 0.5].mean()), 3)
        if (tone_conf >= 0.5).any()
        else None,
        "tone_brier": round(float(np.mean((tone_conf - tone_right) ** 2)), 4) if held_tone else None,
        "plain_words": len(held_plain),
        "plain_rejected_share": round(float((plain_conf < 0.5).mean()), 3) if held_plain else None,
    }
    print(f"held out: {held}")

    document = {
        "template": calibration.template,
        "vote": calibration.vote,
        "k": calibration.k,
        "a": round(calibration.a, 4),
        "b": round(calibration.b, 4),
        "c": round(calibration.c, 4),
        "fitted_on": {
            "tone_anchors": len(tone),
            "lexicon_entries": len(lexicon),
            "tone_anchors_right_by_leave_one_out": int(y[: len(tone)].sum()),
            "plain_words": len(plain),
        },
        "leave_one_out_accuracy": round(best.accuracy, 3),
        "leave_family_out_accuracy": round(best.family_accuracy, 3),
        "brier": round(best.brier, 4),
        "log_loss": round(best.log_loss, 4),
        "plain_rejected_out_of_fold": round(best.plain_rejected, 3),
        "reliability": table,
        "held_out": held,
        "templates": {
            r.name: {
                "template": r.template,
                "leave_one_out": r.loo,
                "log_loss": round(r.log_loss, 4),
                "brier": round(r.brier, 4),
            }
            for r in results
        },
        "fitted_by": "bench/fit_tone_confidence.py",
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def loo_text(loo: dict[str, float]) -> str:
    return " ".join(f"{k}:{v:.2f}" for k, v in loo.items())


if __name__ == "__main__":
    main()
