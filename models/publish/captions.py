"""WebVTT captions from word timings: short lines that follow the speech, tagged with the emotion."""

from __future__ import annotations

from models.types import EmotionCurve


def _clock(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def webvtt(curve: EmotionCurve, max_words: int = 7, max_gap_s: float = 0.6) -> str:
    """One cue per run of up to `max_words` words, broken at long pauses and emotion changes."""
    cues: list[list] = []
    for point in curve.points:
        current = cues[-1] if cues else None
        if (
            current is None
            or len(current) >= max_words
            or point.start - current[-1].end > max_gap_s
            or point.label != current[-1].label
        ):
            cues.append([point])
        else:
            current.append(point)
    lines = ["WEBVTT", ""]
    for number, cue in enumerate(cues, start=1):
        lines += [
            str(number),
            f"{_clock(cue[0].start)} --> {_clock(max(cue[-1].end, cue[0].start + 0.2))}",
            f"<v {cue[0].label}>" + " ".join(p.text for p in cue),
            "",
        ]
    return "\n".join(lines)
