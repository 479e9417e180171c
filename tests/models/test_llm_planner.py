"""LLMPlanner: the real load/generate path on a tiny random model, and reply validation on hand-written
answers placed by the shared placement code."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from kernel.errors import EngineError
from models.plan import llm as llm_module
from models.plan.llm import LLMPlanner, ReplyError, parse_reply
from models.plan.placement import END, FALLING, SENTENCE, Span
from models.plan.rules import RulePlanner
from models.vocabulary import load_vocabulary

SCRIPT = "I waited for you all day. I told you never again would I trust you. Now it is over."


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama with a word-level tokenizer and a chat template, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    corpus = ['{"cues": [{"emotion": "angry", "intensity": 0.8, "where": "all", "ramp": null}]}', SCRIPT]
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-planner-lm")
    fast.save_pretrained(path)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_generate_runs_and_unusable_answer_falls_back_to_rules(tiny_model: Path) -> None:
    planner = LLMPlanner(tiny_model, max_new_tokens=12)
    description = "calm at first, angry at 'never again', sad at the end"
    prompt = planner._messages("1. I waited", description)
    assert "never again" in prompt[-1]["content"] and "neutral, happy" in prompt[0]["content"]

    reply = planner.generate("1. I waited for you all day", description)
    assert isinstance(reply, str)  # random weights: whatever came out, it went through generate

    plan = planner.plan(SCRIPT, description)
    assert "the rule parser read the description" in plan.warnings[0]
    rules = RulePlanner().plan(SCRIPT, description)
    assert [(w.label, w.intensity) for w in plan.words] == [(w.label, w.intensity) for w in rules.words]
    assert planner.name == "llm" and "tiny-planner-lm" in planner.version


def test_tags_still_come_from_the_rules_code(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planner = LLMPlanner(tiny_model, max_new_tokens=4)
    answer = {"cues": [{"emotion": "sad", "intensity": 0.6, "where": "all", "ramp": None}]}
    monkeypatch.setattr(planner, "generate", lambda script, description: json.dumps(answer))
    plan = planner.plan("Hello there. [angry 0.9] Get out!", "sad")
    assert [(w.label, w.intensity, w.source) for w in plan.words] == [
        ("sad", 0.6, "description"),
        ("sad", 0.6, "description"),
        ("angry", 0.9, "tag"),
        ("angry", 0.9, "tag"),
    ]
    assert plan.warnings == []


def test_valid_answer_is_placed_like_the_rule_parser(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = LLMPlanner(tiny_model, max_new_tokens=4)
    answer = (
        'Sure! ```json\n{"cues": [{"emotion": "calm", "where": "start"}, '
        '{"emotion": "angry", "intensity": 0.75, "where": {"quote": "never again"}}, '
        '{"emotion": "sad", "intensity": 0.7, "where": "end", "ramp": null}]}\n```'
    )
    monkeypatch.setattr(planner, "generate", lambda script, description: answer)
    description = "calm at first, angry at 'never again', sad at the end"
    plan = planner.plan(SCRIPT, description)
    rules = RulePlanner().plan(SCRIPT, description)
    assert [(w.label, w.intensity) for w in plan.words] == [(w.label, w.intensity) for w in rules.words]
    assert plan.warnings == []


def test_unknown_label_falls_back_with_a_warning(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planner = LLMPlanner(tiny_model, max_new_tokens=4)
    monkeypatch.setattr(planner, "generate", lambda s, d: '{"cues": [{"emotion": "sleepy", "where": "all"}]}')
    plan = planner.plan("Hello there.", "sad")
    assert {w.label for w in plan.words} == {"sad"}
    assert "unknown emotion 'sleepy'" in plan.warnings[0] and "rule parser" in plan.warnings[0]


def test_parse_reply_reads_every_where_form() -> None:
    vocab = load_vocabulary()
    reply = json.dumps(
        {
            "cues": [
                {"emotion": "furious", "where": "all"},
                {"emotion": "sad", "intensity": 0.5, "where": "end", "ramp": "falling"},
                {"emotion": "happy", "intensity": 0.4, "where": {"sentences": [1, 2]}},
                {"emotion": "fear", "intensity": 1, "where": {"words": [-2, -1]}},
                {"emotion": "surprise", "where": {"quote": "over"}},
            ]
        }
    )
    first, second, third, fourth, fifth = parse_reply(reply, vocab)
    assert (first.label, first.intensity, first.position) == ("angry", 1.0, None)
    assert (second.position, second.ramp, second.intensity) == (END, FALLING, 0.5)
    assert third.span == Span(SENTENCE, 0, 1)
    assert fourth.span is not None and (fourth.span.first, fourth.span.last) == (-2, -1)
    assert fifth.anchors == ["over"] and fifth.intensity == 0.7


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        ("I think the speaker is angry.", "no JSON object"),
        ('{"cues": [{"emotion": "angry", "where": "all"', "invalid JSON"),
        ('{"emotions": []}', 'no "cues" list'),
        ('{"cues": ["angry"]}', "not an object"),
        ('{"cues": [{"emotion": "grumpy-ish"}]}', "unknown emotion"),
        ('{"cues": [{"emotion": "sad", "intensity": 2}]}', "intensity 2"),
        ('{"cues": [{"emotion": "sad", "intensity": "high"}]}', "intensity 'high'"),
        ('{"cues": [{"emotion": "sad", "ramp": "wobbly"}]}', "ramp 'wobbly'"),
        ('{"cues": [{"emotion": "sad", "where": "somewhere"}]}', "none of the allowed forms"),
        ('{"cues": [{"emotion": "sad", "where": {"sentences": [0, 2]}}]}', "counted from 1"),
        ('{"cues": [{"emotion": "sad", "where": {"quote": "  "}}]}', "none of the allowed forms"),
    ],
)
def test_parse_reply_rejects_bad_answers(reply: str, fragment: str) -> None:
    with pytest.raises(ReplyError, match=None) as caught:
        parse_reply(reply, load_vocabulary())
    assert fragment in str(caught.value)


def test_no_model_configured_says_what_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_module, "get_settings", lambda: SimpleNamespace(planner_model=None, device="cpu"))
    with pytest.raises(EngineError) as caught:
        LLMPlanner()
    message = str(caught.value)
    assert "Qwen/Qwen2.5-0.5B-Instruct" in message and "EMOFLOW_PLANNER_MODEL" in message


def test_settings_model_path_is_used(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = SimpleNamespace(planner_model=str(tiny_model), device="cpu")
    monkeypatch.setattr(llm_module, "get_settings", lambda: settings)
    assert LLMPlanner().model is not None


def test_missing_model_directory_is_an_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="could not load the planner model"):
        LLMPlanner(tmp_path / "nothing-here")
