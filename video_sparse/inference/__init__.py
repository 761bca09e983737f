"""Use a trained model: classify user videos, frame folders and images (``tools/predict.py``)."""

from video_sparse.inference.classifier import (
    Prediction,
    VideoClassifier,
    load_experiment_config,
)
from video_sparse.inference.dataset import PredictionDataset
from video_sparse.inference.inputs import InputItem, discover_inputs
from video_sparse.inference.labels import class_names_for
from video_sparse.inference.outputs import write_predictions

__all__ = [
    "InputItem",
    "Prediction",
    "PredictionDataset",
    "VideoClassifier",
    "class_names_for",
    "discover_inputs",
    "load_experiment_config",
    "write_predictions",
]
