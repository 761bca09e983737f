"""Confusion-matrix picture is written and shows the matrix."""

import numpy as np
import pytest
from PIL import Image

from video_sparse.evaluation.confusion_plot import plot_confusion_matrix


def test_plot_confusion_matrix_writes_png(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 2, 2, 0]]
    path = plot_confusion_matrix(tmp_path / "cm" / "cm.png", scores, labels, class_names=["a", "b", "c"], title="t")
    with Image.open(path) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"), dtype=np.int32)
    # the diagonal cell of class "b" (row 1, 1/1 correct) is the darkest blue; the picture is not blank
    assert pixels.std() > 10
    assert ((pixels[..., 2] - pixels[..., 0]) > 100).any()


def test_plot_confusion_matrix_checks_names(tmp_path):
    with pytest.raises(ValueError, match="class_names has 2 entries for 3 classes"):
        plot_confusion_matrix(tmp_path / "cm.png", np.eye(3), [0, 1, 2], class_names=["a", "b"])
