"""A VTAB test split with one unreadable image flows through collate, merge and summary."""

import numpy as np
import torch
from torch.utils.data import DataLoader

from video_sparse.data.collate import collate_samples
from video_sparse.data.vtab import VTABDataset, make_digits_vtab
from video_sparse.evaluation import ViewScoreCollector, evaluation_summary, merge_views, topk_accuracy


def test_test_split_with_corrupt_image(tmp_path):
    task = make_digits_vtab(tmp_path, n_train=10, n_test=12, size=16, seed=3)
    (task / "images" / "test_0005.jpg").write_bytes(b"\xff\xd8 truncated")
    ds = VTABDataset(tmp_path, "digits", split="test", image_size=16)
    torch.manual_seed(0)
    head = torch.nn.Linear(3 * 16 * 16, 10)
    collector = ViewScoreCollector()
    all_logits = {}
    for batch in DataLoader(ds, batch_size=5, collate_fn=collate_samples):
        collector.add_failed(f["sample_index"] for f in batch["failed"])
        if "input" not in batch:
            continue
        with torch.no_grad():
            logits = head(batch["input"].flatten(1))
        collector.add(batch["sample_index"], batch["view_index"], batch["label"], logits)
        all_logits.update(zip(batch["sample_index"].tolist(), logits.numpy()))
    assert collector.failed == {5}
    merged = merge_views(collector.result(), num_views=ds.num_views, failed=collector.failed, num_samples=len(ds))
    summary = evaluation_summary(merged)
    assert (summary["num_videos"], summary["num_views"], summary["num_failed"]) == (11, 11, 1)
    kept = [i for i in range(len(ds)) if i != 5]
    direct = topk_accuracy(np.stack([all_logits[i] for i in kept]), [ds.labels[i] for i in kept], ks=(1, 5))
    assert summary["top1"] == direct[1] and summary["top5"] == direct[5]
