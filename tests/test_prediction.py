"""One prediction per image (qcore.metrics.measure.predicted_class), read by every count: top-1, top-5, agreement,
the images
lost and gained and the intervals of a row, the layer pages' paired deltas and the accuracy during training.

The oracle is a plain Python loop over each row of logits: the class of the highest value, and among tied highest
values the lowest class index; top-5 the first five classes ordered by (value descending, index ascending).
Dequantized int8 logits tie often; torch's ``topk`` orders ties its own way (on CPU, unlike ``argmax``, about half
the time), so a row could read top-1 -0.40 points next to "-7 of 2000 images".
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from qcore.layers.paired import correct
from qcore.metrics.measure import accuracy, correct_counts, predicted_class, ranked_classes
from qcore.metrics.paired_rows import decode
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec


def _tied(n: int = 400, c: int = 10, seed: int = 0):
    """Logits of three levels (ties everywhere), the label among the highest for about 60% of the images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)

    def logits():
        x = torch.randint(0, 3, (n, c), generator=g).float()
        half = torch.rand(n, generator=g) < 0.6
        x[half, labels[half]] = 2.0
        return x

    return logits(), labels, logits()


def _oracle_pred(row: list[float]) -> int:
    top = max(row)
    return min(j for j, v in enumerate(row) if v == top)


def _oracle_top5(row: list[float]) -> list[int]:
    return sorted(range(len(row)), key=lambda j: (-row[j], j))[:5]


def _oracle(logits, labels, ref):
    """Counts by hand: right, top-5 right, agree, lost, gained."""
    out = dict.fromkeys(("right", "top5", "agree", "lost", "gained", "both", "neither"), 0)
    for x, y, r in zip(logits.tolist(), labels.tolist(), ref.tolist()):
        p, q = _oracle_pred(x), _oracle_pred(r)
        out["right"] += p == y
        out["top5"] += y in _oracle_top5(x)
        out["agree"] += p == q
        out["lost"] += q == y and p != y
        out["gained"] += p == y and q != y
        out["both"] += p == y and q == y
        out["neither"] += p != y and q != y
    return out


def test_the_prediction_is_the_lowest_class_among_the_tied_highest():
    logits, _, _ = _tied()
    want = [_oracle_pred(row) for row in logits.tolist()]
    assert predicted_class(logits).tolist() == want
    assert sum(row.count(max(row)) > 1 for row in logits.tolist()) > 200  # ties are the rule here, not the exception
    ranked = ranked_classes(logits, 5)
    assert ranked.tolist() == [_oracle_top5(row) for row in logits.tolist()]
    assert torch.equal(ranked[:, 0], predicted_class(logits))  # top-1 of top-5 is the prediction
    wide = torch.randint(0, 4, (300, 1000), generator=torch.Generator().manual_seed(1)).float()  # ImageNet-wide
    assert torch.equal(ranked_classes(wide, 5)[:, 0], predicted_class(wide))
    assert predicted_class(wide).tolist() == [_oracle_pred(row) for row in wide.tolist()]


def test_every_count_reads_that_prediction_on_tied_logits():
    logits, labels, ref = _tied()
    o, n = _oracle(logits, labels, ref), labels.numel()
    acc = accuracy(logits, labels, ref)
    assert acc.top1 == 100.0 * o["right"] / n and acc.top5 == 100.0 * o["top5"] / n
    assert acc.agreement == 100.0 * o["agree"] / n
    counts = correct_counts(logits, labels, ref)
    assert counts == {k: o[k] for k in ("both", "lost", "gained", "neither")} == acc.counts
    # the row's two numbers of one change agree to the last bit: points and images
    assert acc.top1_delta == 100.0 * (o["gained"] - o["lost"]) / n
    assert acc.top1_delta == 100.0 * (counts["gained"] - counts["lost"]) / n
    # the layer pages' paired delta and the training-time accuracy read the same prediction
    assert correct(logits, labels).sum().item() == o["right"]


def test_a_sweep_row_on_tied_logits_says_one_change():
    from qcore.runs.sweep import accuracy_into

    logits, labels, ref = _tied(seed=3)
    q = lambda x: logits[x]  # noqa: E731  # the "model" returns the tied logits of the images asked for
    q.device = "cpu"
    idx = torch.arange(labels.numel())
    p = SimpleNamespace(eval_batches=[(idx[:150], labels[:150]), (idx[150:], labels[150:])], labels=labels,
                        ref_logits=ref, calib_draws=[[]], calib_seeds=[0], config=SimpleNamespace(dataset="d", seed=0))
    r = Result(QuantSpec("int8"), "m", "d")
    accuracy_into(r, p, q)
    o, n = _oracle(logits, labels, ref), labels.numel()
    assert (r.images_lost, r.images_gained, r.eval_images) == (o["lost"], o["gained"], n)
    assert r.top1_delta == 100.0 * (r.images_gained - r.images_lost) / r.eval_images  # exactly, ties and all
    assert r.top1 == 100.0 * o["right"] / n and r.calib_draws == 1
    assert int(decode(r.manifest["correct"], n).sum()) == o["right"]  # the bits kept for paired moves: the same rule


def test_training_accuracy_reads_the_same_prediction():
    from qcore.qat.finetune import top1

    logits, labels, _ = _tied(seed=5)
    model = torch.nn.Identity()
    assert top1(model, [(logits, labels)]) == 100.0 * _oracle(logits, labels, logits)["right"] / labels.numel()


def test_malformed_logits_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"logits of shape \(3,\) are not allowed; allowed: \(images, classes >= 1\)"):
        predicted_class(torch.zeros(3))
    with pytest.raises(ValueError, match="2 rows of logits for 3 labels"):
        accuracy(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))
