"""The text-domain loaders on `datasets` built with the exact features of each hub dataset card (as test_schemas.py does
for the vision benchmarks), and the scorers' promise never to raise on model output.

Features, from the cards' `dataset_info` (openai/gsm8k `main`, EleutherAI/hendrycks_math, allenai/sciq,
allenai/ai2_arc `ARC-Challenge`): every column a string, except ARC's `choices`, a `sequence` of the struct
{text, label}, which `datasets` hands back as a dict of two lists.
"""
import json
from pathlib import Path

import datasets
import pytest
from datasets import Features, Sequence, Value
from hypothesis import given, settings, strategies as st

from jigsaw_forget.text_benchmarks import (arc_rows, gsm8k_rows, gsm8k_score, math_rows, math_score, mc_score,
                                           sciq_rows)

FIX = Path(__file__).parent / "fixtures" / "text"
S = Value("string")
CARD = {
    "gsm8k": Features(question=S, answer=S),
    "math": Features(problem=S, level=S, type=S, solution=S),
    "sciq": Features(question=S, distractor3=S, distractor1=S, distractor2=S, correct_answer=S, support=S),
    "arc_challenge": Features(id=S, question=S, choices=Sequence({"text": S, "label": S}), answerKey=S),
}
LOADERS = {"gsm8k": gsm8k_rows, "math": math_rows, "sciq": sciq_rows, "arc_challenge": arc_rows}


def raw(name):
    return [json.loads(line) for line in (FIX / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", list(CARD))
def test_loader_reads_the_card_schema(name):
    "The fixture rows cast to the card's exact features load to the same rows as the jsonl file."
    ds = datasets.Dataset.from_list(raw(name), features=CARD[name])
    assert ds.features == CARD[name]
    rows = LOADERS[name](ds)
    assert rows == LOADERS[name](FIX / f"{name}.jsonl")
    assert len(rows) == len(ds) and all(r["question"] and r["answer"] for r in rows)


@pytest.mark.parametrize("name", list(CARD))
def test_missing_column_is_named(name):
    "Dropping any column the loader needs gives a ValueError naming the dataset, row 0 and that column."
    needed = {"gsm8k": ["question", "answer"], "math": ["problem", "solution"],
              "sciq": ["question", "correct_answer", "distractor1", "distractor2", "distractor3"],
              "arc_challenge": ["question", "choices", "answerKey"]}[name]
    for col in needed:
        ds = datasets.Dataset.from_list(raw(name), features=CARD[name]).remove_columns(col)
        with pytest.raises(ValueError, match=rf"row 0 lacks the field '{col}'"):
            LOADERS[name](ds)


_ROWS = {}


def first_rows():
    "One row of each kind, loaded once (loading goes through `datasets`: too slow for every hypothesis example)."
    if not _ROWS:
        _ROWS.update({gsm8k_score: gsm8k_rows(FIX / "gsm8k.jsonl")[0], math_score: math_rows(FIX / "math.jsonl")[0],
                      mc_score: arc_rows(FIX / "arc_challenge.jsonl")[0]})
    return _ROWS


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=300), st.integers(), st.binary(max_size=50),
                 st.text(alphabet="\\{}$#0123456789boxedfrac<>/answer -.,", max_size=200)))
def test_scorers_never_raise(response):
    "Any model output gets a score in [0, 1] from every scorer; an unreadable one is counted as unparsed."
    for scorer, row in first_rows().items():
        out = scorer(response, row)
        assert set(out) >= {"parsed"} and all(0.0 <= v <= 1.0 for v in out.values()), (scorer, response, out)
