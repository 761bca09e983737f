"""Metrics against hand-computed examples."""

import math

import numpy as np
import pytest
import torch

from video_sparse.evaluation.metrics import (
    confusion_matrix,
    evaluation_summary,
    format_flops_x_views,
    mean_class_accuracy,
    topk_accuracy,
)
from video_sparse.evaluation.multiview import MergedScores

# 4 samples, 6 classes. Class ranking (best first) written out per row in the comments.
SCORES = np.array(
    [
        [0.9, 0.5, 0.4, 0.3, 0.2, 0.1],  # label 0: rank 0 -> top-1 hit
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.9],  # label 1: classes 5,4,3,2 above it -> rank 4 -> top-5 hit
        [0.6, 0.1, 0.2, 0.3, 0.4, 0.5],  # label 1: rank 5 -> miss at 5
        [0.0, 0.0, 0.8, 0.0, 0.0, 0.2],  # label 5: class 2 above -> rank 1 -> top-2 hit
    ]
)
LABELS = np.array([0, 1, 1, 5])


def test_topk_hand_example():
    acc = topk_accuracy(SCORES, LABELS, ks=(1, 2, 5, 6, 10))
    assert acc[1] == pytest.approx(25.0)  # sample 0
    assert acc[2] == pytest.approx(50.0)  # samples 0, 3
    assert acc[5] == pytest.approx(75.0)  # samples 0, 1, 3
    assert acc[6] == pytest.approx(100.0)
    assert acc[10] == pytest.approx(100.0)  # k > K: all correct


def test_topk_accepts_tensors_and_breaks_ties_like_argmax():
    scores = torch.zeros(3, 4)  # all tied: argmax is class 0
    labels = torch.tensor([0, 1, 3])
    acc = topk_accuracy(scores, labels, ks=(1, 2))
    assert acc[1] == pytest.approx(100 / 3)
    assert acc[2] == pytest.approx(200 / 3)  # labels 0 and 1 are within the first two by index


def test_mean_class_accuracy_hand_example():
    # predictions (argmax): 0, 5, 0, 2 ; class 0: 1/1 correct, class 1: 0/2, class 5: 0/1
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx(100 * (1.0 + 0.0 + 0.0) / 3)
    scores = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    labels = np.array([0, 0, 1, 2, 2, 1])  # class 0: 2/2, class 1: 1/2, class 2: 2/2
    assert mean_class_accuracy(scores, labels) == pytest.approx(100 * (1 + 0.5 + 1) / 3)
    assert topk_accuracy(scores, labels, ks=(1,))[1] == pytest.approx(100 * 5 / 6)


def test_confusion_matrix_counts():
    cm = confusion_matrix(SCORES, LABELS)
    assert cm.shape == (6, 6)
    assert cm.sum() == 4
    assert cm[0, 0] == 1 and cm[1, 5] == 1 and cm[1, 0] == 1 and cm[5, 2] == 1


def test_bad_labels_raise():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
        topk_accuracy(SCORES, np.array([0, 1, 2, 6]))
    with pytest.raises(ValueError, match="must be"):
        topk_accuracy(SCORES[0], LABELS)


def test_evaluation_summary_fields():
    merged = MergedScores(np.arange(4), LABELS, SCORES.astype(np.float32), 15, "prob", num_failed=2)
    s = evaluation_summary(merged)
    assert s["top1"] == pytest.approx(25.0) and s["top5"] == pytest.approx(75.0)
    assert s["mean_class_acc"] == pytest.approx(100 / 3)
    assert (s["num_videos"], s["num_views"], s["num_failed"], s["views_per_video"]) == (4, 60, 2, 15)
    empty = MergedScores(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 6), np.float32), 1, "prob")
    assert math.isnan(evaluation_summary(empty)["top1"])


def test_format_flops_x_views():
    assert format_flops_x_views(180.4, 5, 3) == "180 x 15"
    assert format_flops_x_views(107.2, 5, 3, expand=True) == "107 x 5 x 3"
    assert format_flops_x_views(11.79, 1, 1) == "11.8 x 1"
    with pytest.raises(ValueError):
        format_flops_x_views(10.0, 0, 3)
