"""Non-finite scores never become an accuracy, and top-k is reported only where it can miss."""

import json
import math

import numpy as np
import pytest

from video_sparse.evaluation import ViewScores, merge_views
from video_sparse.evaluation.metrics import (
    NonFiniteScoresError,
    confusion_matrix,
    count_nonfinite,
    evaluation_summary,
    mean_class_accuracy,
    reported_ks,
    topk_accuracy,
)
from video_sparse.evaluation.multiview import MergedScores
from video_sparse.evaluation.vtab_table import collect_vtab_sweep, summarize_vtab

LABELS = np.array([0, 1, 2, 1])


def _scores(bad: float | None = None, rows=(0,), k: int = 8) -> np.ndarray:
    s = np.eye(k, dtype=np.float32)[LABELS]  # every sample right
    for r in rows:
        if bad is not None:
            s[r, 3] = bad
    return s


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("metric", [topk_accuracy, mean_class_accuracy, confusion_matrix])
def test_metrics_refuse_non_finite_scores(metric, bad):
    scores = _scores(bad, rows=(2,))
    with pytest.raises(NonFiniteScoresError, match=r"1 of 4 samples have non-finite scores .*row 2"):
        metric(scores, LABELS)


def test_all_nan_scores_are_not_100_percent():
    scores = np.full((4, 8), np.nan, dtype=np.float32)
    with pytest.raises(NonFiniteScoresError, match="4 of 4"):
        topk_accuracy(scores, LABELS)
    summary = evaluation_summary(MergedScores(np.arange(4), LABELS, scores, 1, "prob"))
    assert summary["top1"] is None and summary["top5"] is None and summary["mean_class_acc"] is None
    assert summary["num_nonfinite"] == 4 and "diverged" in summary["error"]
    assert json.loads(json.dumps(summary))["top1"] is None  # valid JSON, not NaN


@pytest.mark.parametrize("how", ["prob", "logit", "max"])
@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_one_bad_view_is_counted_through_every_merge(how, bad):
    """3 videos x 2 views; one view of video 1 has one non-finite logit (softmax of +inf is NaN; a
    -inf logit gives a finite softmax, but the model output is still not finite)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    logits[3, 2] = bad  # sample 1, view 1
    views = ViewScores(np.repeat(np.arange(3), 2), np.tile(np.arange(2), 3), np.array([0, 0, 1, 1, 2, 2]), logits)
    merged = merge_views(views, num_views=2, how=how)
    assert merged.num_nonfinite == 1
    summary = evaluation_summary(merged)
    assert summary["num_nonfinite"] == 1 and summary["top1"] is None and summary["error"]


def test_finite_scores_have_no_error_and_count_zero():
    merged = MergedScores(np.arange(4), LABELS, _scores(), 1, "prob")
    summary = evaluation_summary(merged)
    assert summary["num_nonfinite"] == 0 and "error" not in summary and summary["top1"] == 100.0
    assert count_nonfinite(_scores(float("nan"), rows=(0, 3))) == 2


@pytest.mark.parametrize(
    "num_classes,keys",
    [(2, ["top1"]), (3, ["top1"]), (4, ["top1"]), (5, ["top1"]), (6, ["top1", "top5"]), (400, ["top1", "top5"])],
)
def test_topk_reported_only_below_the_class_count(num_classes, keys):
    labels = np.arange(4) % num_classes
    scores = np.tile(np.arange(num_classes, dtype=np.float32), (4, 1))  # class c ranked K-1-c: label 0 last
    summary = evaluation_summary(MergedScores(np.arange(4), labels, scores, 1, "prob"))
    assert [k for k in summary if k.startswith("top")] == keys
    assert reported_ks(num_classes) == tuple(int(k[3:]) for k in keys)
    if "top5" in summary:
        assert summary["top5"] < 100.0


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -1.0, 100.5, "abc"])
def test_vtab_table_refuses_a_failed_task(tmp_path, value):
    good = tmp_path / "cifar" / "results.json"
    bad = tmp_path / "dtd" / "results.json"
    good.parent.mkdir()
    bad.parent.mkdir()
    good.write_text(json.dumps({"top1": 50.0}))
    bad.write_text(json.dumps({"top1": value}))  # NaN and inf are written as JSON's NaN / Infinity
    with pytest.raises(ValueError, match=r"dtd.*top1.*accuracy"):
        collect_vtab_sweep([good, bad])
    with pytest.raises(ValueError, match="task dtd"):
        summarize_vtab({"cifar": 50.0, "dtd": value}, allow_missing=True)
    assert math.isclose(summarize_vtab({"cifar": 50.0}, allow_missing=True).task_mean, 50.0)


def test_a_study_member_without_accuracy_has_no_row():
    from video_sparse.analysis.study_report import row_from_record

    record = {"name": "sparse", "test": {"top1": None, "num_videos": 8, "error": "8 of 8 videos have non-finite"}}
    with pytest.raises(ValueError, match="study member sparse: 8 of 8 videos have non-finite"):
        row_from_record(record)
