"""Properties of the learning-dynamics module beyond the notebook's checks: determinism under dropout, permutations,
the unbiasedness of projections, and the direction of the step (micro model, a few rows; each test a few seconds)."""
import numpy as np
import pytest
import torch

from jigsaw_forget.dynamics import gradient_kernel, influence, one_step_change, project, row_gradient
from jigsaw_forget.models import mini_world_model
from jigsaw_forget.world import example_messages, sample_examples


@pytest.fixture(scope="module")
def micro():
    torch.set_num_threads(1)       # tiny ops: threads only contend on a shared machine
    model, processor = mini_world_model("micro", seed=0)
    rows = [{"prompt": (m := example_messages(e))["prompt"], "images": m["images"], "response": e.completion}
            for e in sample_examples(3, seed=5)]
    rows.append({"prompt": [{"role": "user", "content": [{"type": "text", "text": "Count the shapes."}]}], "images": [],
                 "response": "<think>3 shapes.</think><answer>3</answer>"})
    return model, processor, rows


def test_dropout_is_off_and_modes_restored(micro):
    "A model left in train mode with attention dropout: every result is the eval-mode one, and train mode comes back."
    model, processor, rows = micro
    clean = influence(model, processor, rows[:2], rows[2:], lr=1e-4)
    attn = [m for n, m in model.named_modules() if n.endswith("self_attn") and hasattr(m, "attention_dropout")]
    assert attn, "no attention module with a dropout rate found"
    old = [m.attention_dropout for m in attn]
    try:
        for m in attn: m.attention_dropout = 0.5
        model.train()
        np.testing.assert_allclose(influence(model, processor, rows[:2], rows[2:], lr=1e-4), clean, rtol=1e-5)
        a = one_step_change(model, processor, rows[0], rows[1:], lr=1e-5)
        b = one_step_change(model, processor, rows[0], rows[1:], lr=1e-5)
        np.testing.assert_array_equal(a, b)                       # deterministic: no dropout inside
        assert model.training and all(m.training for m in model.modules())
    finally:
        for m, p in zip(attn, old): m.attention_dropout = p
        model.eval()


def test_permuting_and_repeating_rows_permutes_columns(micro):
    model, processor, rows = micro
    k = gradient_kernel(model, processor, rows[:3], rows[3:] + rows[:1]).K
    perm = [2, 0, 1, 2]                                           # a permutation with a repeat
    kp = gradient_kernel(model, processor, [rows[i] for i in perm], rows[3:] + rows[:1]).K
    np.testing.assert_allclose(kp, k[:, perm], rtol=1e-4, atol=1e-4 * np.abs(k).max())


def test_projection_is_unbiased(micro):
    "The mean of projected inner products over independent seeds approaches the exact one (error shrinking like 1/√seeds)."
    model, processor, rows = micro
    G = torch.stack([row_gradient(model, processor, r) for r in rows[:3]])
    exact = (G.double() @ G.double().T).numpy()
    ests = [(lambda P: (P @ P.T).numpy())(project(G, 64, seed=s).double()) for s in range(8)]
    err1 = np.mean([np.linalg.norm(e - exact) for e in ests]) / np.linalg.norm(exact)
    err8 = np.linalg.norm(np.mean(ests, 0) - exact) / np.linalg.norm(exact)
    assert err8 < err1 / 1.8, (err1, err8)                        # 1/√8 ≈ 1/2.8 expected
    # and a different projection kind is a different (but equally unbiased) estimate
    P = project(G, 64, seed=0, kind="gaussian").double()
    assert not np.allclose(ests[0], (P @ P.T).numpy())


def test_a_step_on_a_row_raises_its_own_likelihood(micro):
    "lr·‖∇ log π(u)‖² > 0: the step ascends u's log-likelihood, and the true change matches that to first order."
    model, processor, rows = micro
    for r in rows:
        self_change = one_step_change(model, processor, r, [r], lr=1e-5)[0]
        first = influence(model, processor, [r], [r], lr=1e-5)[0, 0]
        assert first > 0 and self_change > 0
        assert abs(self_change - first) < 0.05 * first
