"""Class names of a trained model, from a label map, the data config or the shipped label maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from video_sparse.data.datamodules import DemoData, data_module_class
from video_sparse.data.lists import load_label_map

DATA_LISTS = Path(__file__).resolve().parents[2] / "data_lists"
#: label maps shipped in data_lists/, used when the data config names none: (name prefix, classes, file)
SHIPPED_LABEL_MAPS = (("k400", 400, "kinetics400_labels.txt"), ("ssv2", 174, "ssv2_labels.txt"))


def class_names_for(
    data_cfg: dict[str, Any], num_classes: int, experiment: str = "", labels: str | os.PathLike | None = None
) -> list[str]:
    """One name per class, first found of: ``labels``, ``data.label_map``, the demo's classes, a shipped map.

    Args:
        data_cfg: the experiment's ``data`` config (plain dict).
        num_classes: outputs of the model.
        experiment: the experiment name (``k400_...``/``ssv2_...`` pick the shipped maps).
        labels: a label-map file given by the user.

    Returns:
        The names; ``class_0 ... class_{K-1}`` when nothing names the classes.

    Raises:
        ValueError: a label map whose length differs from ``num_classes`` (the message names the file).
    """
    source: Any = labels or data_cfg.get("label_map")
    if source:
        names = load_label_map(source)
        if names is None or len(names) != num_classes:
            raise ValueError(
                f"{source}: {0 if names is None else len(names)} class names for a model with {num_classes} classes"
            )
        return names
    if "_target_" in data_cfg and issubclass(data_module_class(data_cfg), DemoData):
        from video_sparse.data.demo import CLASS_SETS

        demo = data_cfg.get("demo") or {}
        names = list(CLASS_SETS[demo.get("classes", "axis")][:num_classes])
        if len(names) == num_classes:
            return names
    for prefix, count, file in SHIPPED_LABEL_MAPS:
        if experiment.startswith(prefix) and num_classes == count:
            return list(load_label_map(DATA_LISTS / file) or [])
    return [f"class_{i}" for i in range(num_classes)]
