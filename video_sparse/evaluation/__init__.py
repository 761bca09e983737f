"""Test-time evaluation: exact multi-view merging across ranks, metrics, score files, VTAB tables.

Typical use in a test loop::

    collector = ViewScoreCollector()
    for batch in loader:                       # items keyed by (sample_index, view_index)
        collector.add(batch["sample_index"], batch["view_index"], batch["label"], model(batch["input"]))
    records = gather_view_records(collector.result())
    failed = gather_failed(collector.failed)
    merged = merge_views(records, num_views=num_clips * num_crops, failed=failed, num_samples=len(dataset))
    summary = evaluation_summary(merged)       # top1, top5, mean_class_acc, num_videos, num_views, num_failed
"""

from video_sparse.evaluation.confusion_plot import plot_confusion_matrix
from video_sparse.evaluation.gather import gather_failed, gather_view_records
from video_sparse.evaluation.metrics import (
    confusion_matrix,
    evaluation_summary,
    format_flops_x_views,
    mean_class_accuracy,
    topk_accuracy,
)
from video_sparse.evaluation.multiview import (
    MergedScores,
    MissingViewsError,
    load_video_scores,
    merge_views,
    remerge_view_dump,
    save_video_scores,
    softmax,
)
from video_sparse.evaluation.records import ViewScoreCollector, ViewScores, load_view_scores, save_view_scores
from video_sparse.evaluation.vtab_table import (
    VTABResult,
    collect_vtab_sweep,
    format_vtab_markdown,
    summarize_vtab,
    write_vtab_table,
)

__all__ = [
    "MergedScores",
    "MissingViewsError",
    "VTABResult",
    "ViewScoreCollector",
    "ViewScores",
    "collect_vtab_sweep",
    "confusion_matrix",
    "evaluation_summary",
    "format_flops_x_views",
    "format_vtab_markdown",
    "gather_failed",
    "gather_view_records",
    "load_video_scores",
    "load_view_scores",
    "mean_class_accuracy",
    "merge_views",
    "plot_confusion_matrix",
    "remerge_view_dump",
    "save_video_scores",
    "save_view_scores",
    "softmax",
    "summarize_vtab",
    "topk_accuracy",
    "write_vtab_table",
]
