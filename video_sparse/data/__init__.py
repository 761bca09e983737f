"""Data: list files and label maps, video readers (decord, PyAV, frame folders), clip sampling
(dense for Kinetics-400, segment-based for SSv2), video transforms, the video classification
dataset with multi-view test items, image datasets, batching and the synthetic demo set; the data
modules (``VideoData``, ``DemoData``, ``VTABData``, ...) that build them from the ``data`` config
group; the dataset contract (``ClassificationDataset``). Offline preparation lives in ``prepare/``.
"""

from video_sparse.data.clip_sampling import dense_indices, segment_indices
from video_sparse.data.collate import collate_samples
from video_sparse.data.contract import ClassificationDataset
from video_sparse.data.datamodules import CIFAR100Data, DataModule, DemoData, Food101Data, SVHNData, VideoData, VTABData
from video_sparse.data.demo import DEMO_CLASSES, make_demo_dataset
from video_sparse.data.failures import FailureCount
from video_sparse.data.lists import VideoRecord, load_label_map, parse_list_file, write_label_map, write_list_file
from video_sparse.data.readers import (
    DecordReader,
    FrameFolderReader,
    PyAVReader,
    VideoReader,
    VideoReadError,
    decord_available,
    default_multiprocessing_context,
    open_video,
    resolve_backend,
)
from video_sparse.data.video_dataset import VideoClassificationDataset, build_video_dataset
from video_sparse.data.video_transforms import VideoEvalTransform, VideoTrainTransform

__all__ = [
    "CIFAR100Data",
    "ClassificationDataset",
    "DataModule",
    "DemoData",
    "FailureCount",
    "Food101Data",
    "SVHNData",
    "VTABData",
    "VideoData",
    "DEMO_CLASSES",
    "DecordReader",
    "FrameFolderReader",
    "PyAVReader",
    "VideoClassificationDataset",
    "VideoEvalTransform",
    "VideoReadError",
    "VideoReader",
    "VideoRecord",
    "VideoTrainTransform",
    "build_video_dataset",
    "collate_samples",
    "decord_available",
    "default_multiprocessing_context",
    "dense_indices",
    "load_label_map",
    "make_demo_dataset",
    "open_video",
    "parse_list_file",
    "resolve_backend",
    "segment_indices",
    "write_label_map",
    "write_list_file",
]
