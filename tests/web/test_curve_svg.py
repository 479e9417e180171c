"""The run page's curve SVG (emoflow/web/views.py): neutral words stay visible, word labels never overlap."""

from __future__ import annotations

import itertools
import random
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from emoflow.web import views

SVG = "{http://www.w3.org/2000/svg}"
COLORS = {"neutral": "#8c8c8c", "angry": "#d62728", "sad": "#1f77b4"}
SCRIPT = (
    "Good evening and thank you for being here They promised us the harbour would be safe and they "
    "broke that promise Never again will we stay silent We lost three friends that night and we miss "
    "them every single day Extraordinarily"
)
WORDS = SCRIPT.split(" ")


def curve(words: list[str], seconds_per_word: float = 0.3, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    points, t = [], 0.0
    for i, text in enumerate(words):
        length = seconds_per_word * rng.uniform(0.4, 1.6)
        label = ("neutral", "angry", "sad")[i * 3 // len(words)]
        intensity = 0.0 if label == "neutral" else rng.uniform(0.3, 1.0)
        points.append(
            {"index": i, "text": text, "start": t, "end": t + length, "label": label, "intensity": intensity}
        )
        t += length + rng.choice((0.0, 0.0, 0.2))
    return {"points": points}


def label_boxes(svg: str) -> list[tuple[float, float, float, float, str]]:
    """(left, top, right, bottom, text) of every word label, with the width views.text_width gives
    (checked against Chromium's own layout in test_delivery_page) and the font's full line height."""
    boxes = []
    for text in ET.fromstring(svg).iter(f"{SVG}text"):
        if "wordlabel" not in text.get("class", ""):
            continue
        assert text.get("text-anchor") == "middle" and text.text
        x, y, width = float(text.get("x", 0)), float(text.get("y", 0)), views.text_width(text.text)
        boxes.append((x - width / 2, y - 0.95 * views.FONT, x + width / 2, y + 0.25 * views.FONT, text.text))
    return boxes


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("seconds_per_word", [0.3, 0.15, 0.05])  # comfortable, crowded, far too crowded
def test_no_two_word_labels_overlap_on_a_40_word_curve(seconds_per_word: float) -> None:
    words = WORDS[:40]
    assert len(words) == 40
    drawn = curve(words, seconds_per_word)
    svg = views.curve_svg(drawn, COLORS)
    boxes = label_boxes(svg)
    for a, b in itertools.combinations(boxes, 2):
        assert not overlap(a, b), (a, b)
    assert all(box[0] >= 0 and box[2] <= views.WIDTH for box in boxes)  # inside the picture
    root = ET.fromstring(svg)
    height = float(root.get("viewBox", "0 0 0 0").split()[3])
    assert all(box[3] <= height for box in boxes)
    if seconds_per_word == 0.3:  # with room enough, every word is labelled
        assert len(boxes) == 40
    else:  # thinned out, the words that carry the most emotion first
        strongest = max(drawn["points"], key=lambda p: p["intensity"])
        assert strongest["text"] in {box[4] for box in boxes}
        assert len(boxes) >= 10


def test_a_neutral_word_has_a_visible_grey_bar() -> None:
    svg = views.curve_svg(curve(WORDS[:40]), COLORS)
    groups = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "word"]
    assert len(groups) == 40
    neutral = [g for g in groups if g.get("data-label") == "neutral"]
    assert neutral
    for group in neutral:
        bar = group.find(f"{SVG}rect")
        assert bar is not None
        assert float(bar.get("height", 0)) >= 6 and float(bar.get("width", 0)) >= 1.5
        assert bar.get("fill") == COLORS["neutral"] and float(bar.get("fill-opacity", 0)) >= 0.6


def test_text_width_is_an_upper_bound_by_class_of_letter() -> None:
    assert views.text_width("mmmm") > views.text_width("iiii") * 2
    assert views.text_width("WORD") > views.text_width("word")
    assert views.text_width("日本") >= 2 * views.FONT  # CJK: a full em per character
    assert views.text_width("") == 0.0


def test_labels_escape_the_word_text() -> None:
    svg = views.curve_svg(curve(["<b>&", "fine"]), COLORS)
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg
    ET.fromstring(svg)  # still well-formed
