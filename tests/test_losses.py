import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import rcl
from rcl.losses import LOSSES

# Toy taxonomy a, b benign; m malignant. alpha = 2, beta = 10:
# M = [[1, 1, 2], [1, 1, 2], [10, 10, 1]]
LOGITS = torch.tensor(
    [
        [2.0, 0.0, 0.0],  # y = m, predicted a: Type II (weight beta = 10)
        [0.0, 0.0, 1.0],  # y = a, predicted m: Type I (weight alpha = 2)
        [0.0, 1.0, 0.0],  # y = a, predicted b: visual ambiguity (weight 1)
        [0.0, 1.0, 0.0],  # y = b, correct (weight 1)
    ]
)
TARGETS = torch.tensor([2, 0, 0, 1])
WEIGHTS = [10, 2, 1, 1]


def softmax_row(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


PROBS = [softmax_row(r) for r in LOGITS.tolist()]
CE = [-math.log(p[y]) for p, y in zip(PROBS, TARGETS.tolist())]


def test_ce_by_hand():
    assert rcl.make_loss("ce")(LOGITS, TARGETS).item() == pytest.approx(sum(CE) / 4, rel=1e-6)
    # sample 0 by hand: -log(1 / (e^2 + 2))
    assert CE[0] == pytest.approx(math.log(math.e**2 + 2))


def test_rcl_by_hand(toy_taxonomy):
    loss = rcl.make_loss("rcl", taxonomy=toy_taxonomy, alpha=2, beta=10)
    expected = sum(w * c for w, c in zip(WEIGHTS, CE)) / 4
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(6.900293, rel=1e-5)  # worked through on paper


def test_rcl_with_explicit_matrix(toy_taxonomy):
    matrix = rcl.SeverityMatrix.from_penalties(toy_taxonomy, 2, 10).with_cell("m", "a", 30)
    loss = rcl.make_loss("rcl", matrix=matrix)
    expected = (30 * CE[0] + 2 * CE[1] + CE[2] + CE[3]) / 4
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_wce_by_hand():
    # counts 2, 1, 1 -> 1/n = .5, 1, 1 -> mean 5/6 -> weights .6, 1.2, 1.2
    loss = rcl.make_loss("wce", class_counts=[2, 1, 1])
    np.testing.assert_allclose(loss.weight.numpy(), [0.6, 1.2, 1.2], rtol=1e-6)
    w = [1.2, 0.6, 0.6, 1.2]
    expected = sum(wi * c for wi, c in zip(w, CE)) / sum(w)
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_focal_by_hand():
    loss = rcl.make_loss("focal", gamma=2, alpha=0.25)
    p_y = [p[y] for p, y in zip(PROBS, TARGETS.tolist())]
    expected = sum(-0.25 * (1 - p) ** 2 * math.log(p) for p in p_y) / 4
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_by_hand():
    eps, k = 0.1, 3
    per_sample = [
        -(1 - eps) * math.log(p[y]) - eps / k * sum(math.log(q) for q in p)
        for p, y in zip(PROBS, TARGETS.tolist())
    ]
    loss = rcl.make_loss("label_smoothing", epsilon=eps)
    assert loss(LOGITS, TARGETS).item() == pytest.approx(sum(per_sample) / 4, rel=1e-6)


def test_expected_risk_by_hand(toy_taxonomy):
    m = [[1, 1, 2], [1, 1, 2], [10, 10, 1]]
    weights = [sum(p[j] * m[y][j] for j in range(3)) for p, y in zip(PROBS, TARGETS.tolist())]
    expected = sum(w * c for w, c in zip(weights, CE)) / 4
    loss = rcl.make_loss("expected_risk", taxonomy=toy_taxonomy, alpha=2, beta=10)
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_expected_risk_equals_rcl_on_confident_predictions(toy_taxonomy):
    logits = LOGITS * 60  # near one-hot probabilities
    rcl_loss = rcl.make_loss("rcl", taxonomy=toy_taxonomy, alpha=2, beta=10)(logits, TARGETS)
    er_loss = rcl.make_loss("expected_risk", taxonomy=toy_taxonomy, alpha=2, beta=10)(logits, TARGETS)
    assert er_loss.item() == pytest.approx(rcl_loss.item(), rel=1e-4)


logit_batches = arrays(np.float32, st.tuples(st.integers(1, 8), st.just(3)), elements=st.floats(-8, 8, width=32))


@settings(max_examples=60, deadline=None)
@given(logits=logit_batches, data=st.data())
def test_rcl_equals_ce_when_alpha_beta_are_one(logits, data):
    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    targets = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=len(logits), max_size=len(logits))))
    logits = torch.from_numpy(logits)
    ce = rcl.make_loss("ce")(logits, targets)
    rcl_loss = rcl.make_loss("rcl", taxonomy=taxonomy, alpha=1, beta=1)(logits, targets)
    torch.testing.assert_close(rcl_loss, ce)


@settings(max_examples=60, deadline=None)
@given(
    row=arrays(np.float64, 3, elements=st.floats(-6, 6)),
    target=st.integers(0, 2),
    alpha=st.floats(0.1, 30),
    beta=st.floats(0.1, 30),
)
def test_rcl_gradient_is_severity_times_ce_gradient(row, target, alpha, beta):
    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    m = rcl.severity_matrix(taxonomy, alpha, beta)
    targets = torch.tensor([target])

    row32 = row.astype(np.float32)

    def grad(loss):
        logits = torch.tensor(row32[None, :], requires_grad=True)
        loss(logits, targets).backward()
        return logits.grad

    g_ce = grad(rcl.make_loss("ce"))
    g_rcl = grad(rcl.make_loss("rcl", taxonomy=taxonomy, alpha=alpha, beta=beta))
    weight = m[target, int(np.argmax(row32))]  # both argmaxes take the first of ties
    torch.testing.assert_close(g_rcl, weight * g_ce, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_a_step(name, toy_taxonomy):
    params = {"wce": dict(class_counts=[5, 3, 2]), "rcl": dict(taxonomy=toy_taxonomy),
              "expected_risk": dict(taxonomy=toy_taxonomy)}.get(name, {})
    loss = rcl.make_loss(name, **params)
    logits = LOGITS.clone().requires_grad_(True)
    value = loss(logits, TARGETS)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and logits.grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors(toy_taxonomy):
    loss = rcl.make_loss("rcl", taxonomy=toy_taxonomy)
    with pytest.raises(ValueError, match="target label 3 is out of range for 3 classes"):
        loss(LOGITS, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="empty batch"):
        loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="logits have 4 classes but the loss was built for 3"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must be"):
        loss(LOGITS, TARGETS[:2])
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        rcl.make_loss("dice")
    with pytest.raises(ValueError, match="needs a taxonomy"):
        rcl.make_loss("rcl")
    with pytest.raises(ValueError, match="unexpected parameters"):
        rcl.make_loss("ce", gamma=2)
    with pytest.raises(ValueError, match=r"must be 3 × 3"):
        rcl.make_loss("rcl", taxonomy=toy_taxonomy, matrix=np.ones((2, 2)))
    with pytest.raises(ValueError, match="class_counts"):
        rcl.make_loss("wce", class_counts=[0, 0])
