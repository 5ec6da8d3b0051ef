"Properties of `jigsaw_forget.rewards`: nothing raises, every reward lies in [0, 1], format hacks score 0."
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jigsaw_forget.rewards import (
    JIGSAW_REWARD_FUNCS, accuracy_reward, accuracy_reward_fn, completion_text, format_reward, format_reward_fn,
    hit_reward, hit_reward_fn, parse_answer,
)

SETTINGS = settings(max_examples=200, deadline=None)
SCALARS = [lambda t, a: format_reward(t, len(a) if isinstance(a, list) else a), hit_reward, accuracy_reward]

# text biased towards the pieces a jigsaw answer is made of
pieces = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "[", "]", ",", " ", "\n", "0", "1", "2", "3", "-", "x", "é", "\x00", "٣"])
jigsaw_text = st.lists(pieces, max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=200), jigsaw_text)
objects = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=20), st.booleans(),
                    st.lists(st.integers(-3, 12), max_size=12), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                    st.lists(st.one_of(st.none(), st.text(max_size=5), st.floats()), max_size=5), any_text)
perms = st.integers(1, 16).flatmap(lambda n: st.permutations(list(range(n))))


def wellformed(pred, think="because", sep=", "):
    return f"<think>{think}</think>\n<answer>[{sep.join(map(str, pred))}]</answer>"


@SETTINGS
@given(text=objects, answer=objects)
def test_nothing_raises_and_rewards_in_unit_interval(text, answer):
    p = parse_answer(text)
    assert p is None or (isinstance(p, list) and all(type(i) is int for i in p))
    for r in [format_reward(text, answer), hit_reward(text, answer), accuracy_reward(text, answer)]:
        assert isinstance(r, float) and 0.0 <= r <= 1.0
    assert isinstance(completion_text(text), str)


@SETTINGS
@given(text=any_text, truth=perms)
def test_rewards_in_unit_interval_on_text(text, truth):
    for f in SCALARS:
        r = f(text, truth)
        assert isinstance(r, float) and 0.0 <= r <= 1.0


def test_extreme_inputs():
    huge = ["<answer>" * 100_000, "[" * 100_000, "[" + "9" * 10_000 + "]", "<think>" + "a" * 10**6 + "</think><answer>[0]</answer>",
            "<think></think><answer>[" + "0" * 10_000 + "]</answer>", "\ud800[0]", "[0]\x00"]
    for t in huge:
        for f in SCALARS: assert 0.0 <= f(t, [0]) <= 1.0
        parse_answer(t)
    assert format_reward("<think></think><answer>[" + "0" * 10_000 + "]</answer>", 1) == 1.0  # leading zeros are still 0
    assert parse_answer("\ud800[0]") == [0]


@SETTINGS
@given(truth=perms, think=st.text(max_size=30).filter(lambda s: "<" not in s), sep=st.sampled_from([",", ", ", " , ", ",\n"]))
def test_correct_wellformed_scores_one(truth, think, sep):
    text = wellformed(truth, think, sep)
    assert (format_reward(text, len(truth)), hit_reward(text, truth), accuracy_reward(text, truth)) == (1.0, 1.0, 1.0)
    assert parse_answer(text) == list(truth)
    assert parse_answer(f"[{sep.join(map(str, truth))}]") == list(truth)  # SFT answer-only form


@SETTINGS
@given(truth=perms, data=st.data())
def test_hit_is_fraction_of_matches(truth, data):
    pred = data.draw(st.permutations(truth))[: data.draw(st.integers(0, len(truth)))]
    text = wellformed(pred)
    expected = sum(1 for i in range(len(pred)) if pred[i] == truth[i]) / len(truth)
    assert hit_reward(text, truth) == pytest.approx(expected)
    assert accuracy_reward(text, truth) == (1.0 if list(pred) == list(truth) else 0.0)
    assert format_reward(text, len(truth)) == (1.0 if len(pred) == len(truth) else 0.0)


@SETTINGS
@given(truth=perms, pred=st.lists(st.integers(0, 20), max_size=20))
def test_hit_and_accuracy_ignore_format(truth, pred):
    for text in [f"[{', '.join(map(str, pred))}]", f"<answer>[{','.join(map(str, pred))}]</answer> trailing",
                 f"<answer>[{','.join(map(str, pred))}]</answer><think>x</think>"]:
        expected = sum(p == t for p, t in zip(pred, truth)) / len(truth)
        assert hit_reward(text, truth) == pytest.approx(expected)
        assert accuracy_reward(text, truth) == float(pred == list(truth))


def hacks(truth):
    n, body = len(truth), ", ".join(map(str, truth))
    ans = f"<answer>[{body}]</answer>"
    yield f"<think>a</think>{ans}{ans}"                           # answer repeated
    yield f"<think>a</think><think>b</think>{ans}"                # think repeated
    yield f"<think>a</think>{ans}</think>"                        # stray closing tag
    yield f"{ans}<think>a</think>"                                # out of order
    yield f"<think>a{ans}</think>"                                # answer inside think
    yield f"{ans}"                                                # no think
    yield f"<think>a</think>[{body}]"                             # no answer tags
    yield "<think>a</think><answer></answer>"                     # empty answer
    yield "<think>a</think><answer>[]</answer>"                   # empty list
    yield f"<think>a</think><answer>{body}</answer>"              # no brackets
    yield f"<think>a</think><answer>[{body}] done</answer>"       # words in the answer
    yield f"hello <think>a</think>{ans}"                          # text outside the tags
    yield f"<think>a</think> and {ans}"
    yield f"<think>a</think>{ans} ok"
    yield f"<think>a</think><answer>[{', '.join(map(str, list(truth) + [0]))}]</answer>"   # too long (and a repeat)
    yield f"<think>a</think><answer>[{', '.join(map(str, list(truth) + [n]))}]</answer>"   # too long
    if n > 1:
        yield f"<think>a</think><answer>[{', '.join(map(str, truth[:-1]))}]</answer>"      # too short
        yield f"<think>a</think><answer>[{', '.join(map(str, [truth[0]] + list(truth[:-1])))}]</answer>"  # repeated index
    yield f"<think>a</think><answer>[{', '.join(map(str, [n] + list(truth[1:])))}]</answer>"   # out of range
    yield f"<think>a</think><answer>[{', '.join(map(str, [-1] + list(truth[1:])))}]</answer>"  # negative


@SETTINGS
@given(truth=perms)
def test_format_hacks_score_zero(truth):
    for text in hacks(truth):
        assert format_reward(text, len(truth)) == 0.0, text


@SETTINGS
@given(texts=st.lists(any_text, min_size=1, max_size=6), data=st.data())
def test_trl_wrappers_match_scalars(texts, data):
    answers = [data.draw(perms) for _ in texts]
    conv = [[{"role": "assistant", "content": t}] for t in texts]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in texts]
    expected = [[format_reward(t, len(a)) for t, a in zip(texts, answers)],
                [hit_reward(t, a) for t, a in zip(texts, answers)],
                [accuracy_reward(t, a) for t, a in zip(texts, answers)]]
    for comps in (texts, conv, parts):
        got = [f(comps, answers, prompts=[None] * len(texts), trainer_state=None) for f in JIGSAW_REWARD_FUNCS]
        assert got == expected


def test_wrappers_accept_numpy_answers_and_split_parts():
    comp = [{"role": "assistant", "content": [{"type": "text", "text": "<think>x</think>"}, {"type": "text", "text": "<answer>[1, 0]</answer>"}]}]
    assert completion_text(comp) == "<think>x</think><answer>[1, 0]</answer>"
    answers = [np.array([1, 0])]
    assert [f([comp], answers)[0] for f in (format_reward_fn, hit_reward_fn, accuracy_reward_fn)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="answers"):
        hit_reward_fn(["a", "b"], [[0]])
