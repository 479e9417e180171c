"""Text evidence: MiniLM zero-shot emotion per word, read in its context, against prototype sentences."""

from __future__ import annotations

import threading

import numpy as np

from models.efp.params import EFPConfig
from models.plan.tokens import sentence_ids
from models.text_embedding import embed, load_text_model
from models.types import EmotionPlan
from models.vocabulary import Vocabulary

__all__ = ["SENTENCE_BLOCK", "TextEvidence", "embed", "load_text_model", "softmax"]

SENTENCE_BLOCK = 64  # words; longer sentences are read in blocks (MiniLM truncates at 256 word pieces)


class TextEvidence:
    """p_text(label | word in context) for every word of a plan."""

    def __init__(self, vocabulary: Vocabulary, config: EFPConfig) -> None:
        self.vocabulary = vocabulary
        self.config = config
        self._prototypes: tuple[np.ndarray, np.ndarray] | None = None  # (embeddings, label index per row)
        self._lock = threading.Lock()

    def _prototype_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._prototypes is None:
                sentences: list[str] = []
                owners: list[int] = []
                for j, label in enumerate(self.vocabulary.labels):
                    for sentence in self.vocabulary.emotions[label].prototypes:
                        sentences.append(sentence)
                        owners.append(j)
                self._prototypes = (embed(sentences), np.asarray(owners))
            return self._prototypes

    def contexts(self, plan: EmotionPlan) -> tuple[list[str], list[str]]:
        """(window text, sentence text) per word; windows stay inside the word's sentence.

        A sentence longer than SENTENCE_BLOCK words (an unpunctuated script) is read in blocks of that
        many words: MiniLM truncates long inputs anyway, and each text is then built once, not per word.
        """
        words = plan.words
        sentence_of = sentence_ids(plan.script, [w.char_start for w in words])
        bounds: dict[int, tuple[int, int]] = {}
        for i, s in enumerate(sentence_of):
            first, _ = bounds.get(s, (i, i))
            bounds[s] = (first, i + 1)
        c = self.config.context_words
        windows: list[str] = []
        sentences: list[str] = []
        blocks: dict[tuple[int, int], str] = {}
        for i, s in enumerate(sentence_of):
            first, stop = bounds[s]
            a, b = max(first, i - c), min(stop, i + c + 1)
            windows.append(plan.script[words[a].char_start : words[b - 1].char_end])
            start = first + (i - first) // SENTENCE_BLOCK * SENTENCE_BLOCK
            end = min(stop, start + SENTENCE_BLOCK)
            if (start, end) not in blocks:
                blocks[(start, end)] = plan.script[words[start].char_start : words[end - 1].char_end]
            sentences.append(blocks[(start, end)])
        return windows, sentences

    def scores(self, plan: EmotionPlan) -> np.ndarray:
        """[words, labels] zero-shot scores (blended cosines) before the softmax."""
        if not plan.words:
            return np.zeros((0, len(self.vocabulary.labels)))
        windows, sentences = self.contexts(plan)
        # repeated windows are embedded once; `embed` batches them, so a long script is a few hundred batches
        unique = list(dict.fromkeys(windows + sentences))
        vectors = embed(unique)
        row = {text: i for i, text in enumerate(unique)}
        mix = self.config.sentence_mix
        words = (1 - mix) * vectors[[row[w] for w in windows]] + mix * vectors[[row[s] for s in sentences]]
        words /= np.clip(np.linalg.norm(words, axis=1, keepdims=True), 1e-8, None)
        protos, owners = self._prototype_matrix()
        cosines = words @ protos.T
        k = len(self.vocabulary.labels)
        m = self.config.prototype_max_mix
        out = np.zeros((len(words), k))
        for j in range(k):
            own = cosines[:, owners == j]
            if own.shape[1]:  # a label without prototypes keeps score 0 (an unrelated sentence)
                out[:, j] = m * own.max(axis=1) + (1 - m) * own.mean(axis=1)
        return out

    def distributions(self, plan: EmotionPlan) -> np.ndarray:
        """[words, labels] probabilities: softmax of the scores at the configured temperature."""
        return softmax(self.scores(plan) / self.config.text_temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
