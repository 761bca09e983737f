"""Classify user videos (or images) with a trained model: the experiment's test views, merged as in testing.

    clf = VideoClassifier.from_experiment("demo", checkpoint="outputs/demo/adapter.pth")
    for p in clf.predict(["my_clip.mp4", "folder_of_clips/"]):
        print(p.path, p.topk[:1] if p.ok else p.error)

Views (``clips x crops`` from the data config, or one centred view) are scored in batches and merged
per input with :func:`video_sparse.evaluation.merge_views` (softmax per view, then mean, by default).
An input that cannot be read is reported with its reason (``Prediction.error``); the others go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from video_sparse.data import default_multiprocessing_context, resolve_backend
from video_sparse.data.collate import collate_samples
from video_sparse.data.datamodules import data_module_class
from video_sparse.evaluation import ViewScoreCollector, merge_views, softmax
from video_sparse.inference.dataset import PredictionDataset
from video_sparse.inference.inputs import InputItem, discover_inputs
from video_sparse.inference.labels import class_names_for

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Prediction:
    """The result for one input.

    Attributes:
        path: the input file or folder.
        kind: ``"video"``, ``"frames"``, ``"image"``, ``"missing"`` or ``"unknown"``.
        topk: ``(class name, probability)`` pairs, most likely first; empty when the input failed.
        error: why the input could not be classified, or None.
        num_views: views merged.
    """

    path: str
    kind: str
    topk: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    num_views: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "error": self.error,
            "num_views": self.num_views,
            "topk": [{"class": c, "prob": p} for c, p in self.topk],
        }


class VideoClassifier:
    """A trained model with its test-time data settings and class names.

    Args:
        model: a ``SparseViT`` (any module mapping a batch to logits).
        data_cfg: the experiment's ``data`` config as a plain dict (``num_frames`` for video models,
            ``input_size``, ``short_side_size``, ``mean``, ``std``, ``sampling``, ``frame_interval``,
            ``test_num_clips``, ``test_num_crops``, ``batch_size``, ``backend``).
        class_names: one name per output class.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (bf16 on GPUs that support it, fp32 on the CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
        merge: view merge, ``"prob"``, ``"logit"`` or ``"max"`` (see ``merge_views``).
    """

    def __init__(
        self,
        model: nn.Module,
        data_cfg: dict[str, Any],
        class_names: Sequence[str],
        device: str = "auto",
        precision: str = "auto",
        merge: str = "prob",
    ) -> None:
        from video_sparse.engine.builders import resolve_precision
        from video_sparse.engine.distributed import resolve_device

        self.device = resolve_device(device)
        self.dtype = _DTYPES[resolve_precision(precision, self.device)]
        self.model = model.to(self.device).eval()
        self.data_cfg = dict(data_cfg)
        self.class_names = list(class_names)
        num_classes = getattr(model, "num_classes", len(self.class_names))
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a model with {num_classes} classes")
        self.merge = merge
        self.is_video = getattr(getattr(model, "patch_embed", None), "tubelet_size", None) is not None or (
            "_target_" in self.data_cfg and data_module_class(self.data_cfg).is_video
        )

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        checkpoint: str | os.PathLike | None = None,
        pretrained: str | os.PathLike | None = None,
        labels: str | os.PathLike | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> VideoClassifier:
        """Build from a composed experiment config (``DictConfig`` or dict with ``model``, ``sparsity``, ``data``).

        Args:
            checkpoint: adapter-only file or full state dict (default: ``cfg.checkpoint``).
            pretrained: backbone weights (default: ``cfg.pretrained``); not needed with a full state dict.
            labels: label-map file overriding the config's class names.
        """
        from omegaconf import OmegaConf

        from video_sparse.checkpoint import load_trained_weights
        from video_sparse.engine.builders import build_model
        from video_sparse.engine.preflight import find_file
        from video_sparse.engine.targets import check_targets

        check_targets(OmegaConf.create(cfg))  # a config is data: only the project's own targets are built
        plain = OmegaConf.to_container(OmegaConf.create(cfg), resolve=False)
        resolved = {
            key: OmegaConf.to_container(OmegaConf.create(cfg)[key], resolve=True)
            for key in ("model", "sparsity", "data")
        }
        checkpoint = checkpoint if checkpoint is not None else plain.get("checkpoint")
        pretrained = pretrained if pretrained is not None else plain.get("pretrained")
        # the path rules of tools/train.py and tools/test.py: ~, the current folder, then the repository
        pretrained = find_file(pretrained, "pretrained") if pretrained not in (None, "", "???") else None
        if checkpoint not in (None, "", "???"):
            checkpoint = find_file(checkpoint, "checkpoint")
        model = build_model(resolved["model"], resolved["sparsity"], str(pretrained) if pretrained else None)
        if checkpoint not in (None, "", "???"):
            kind = load_trained_weights(model, checkpoint)
            logger.info("loaded %s weights from %s", kind, checkpoint)
        else:
            logger.warning("no checkpoint given: the head is untrained")
        names = class_names_for(resolved["data"], model.num_classes, str(plain.get("name", "")), labels)
        test = plain.get("test") or {}
        return cls(
            model,
            resolved["data"],
            names,
            device or str(plain.get("device", "auto")),
            precision or str(plain.get("precision", "auto")),
            str(test.get("merge", "prob")),
        )

    @classmethod
    def from_experiment(
        cls,
        experiment: str,
        checkpoint: str | os.PathLike | None = None,
        pretrained: str | os.PathLike | None = None,
        overrides: Sequence[str] = (),
        **kwargs: Any,
    ) -> VideoClassifier:
        """Build from an experiment name (``configs/experiment/NAME.yaml``) or a saved run's ``config.yaml``.

        Args:
            overrides: Hydra overrides such as ``"data.test_num_clips=2"``.
            kwargs: ``labels``, ``device``, ``precision`` of :meth:`from_config`.
        """
        return cls.from_config(load_experiment_config(experiment, overrides), checkpoint, pretrained, **kwargs)

    def dataset(self, items: Sequence[InputItem], single_view: bool = False) -> PredictionDataset:
        """The test views of ``items`` under this classifier's data settings."""
        d = self.data_cfg
        return PredictionDataset(
            items,
            int(d.get("num_frames", 16)) if self.is_video else None,
            d.get("sampling", "dense"),
            int(d.get("frame_interval", 4)),
            1 if single_view else int(d.get("test_num_clips") or 1),
            1 if single_view else int(d.get("test_num_crops") or 1),
            int(d.get("input_size", 224)),
            int(d.get("short_side_size") or d.get("input_size", 224)),
            d.get("mean", (0.5,) * 3),
            d.get("std", (0.5,) * 3),
            d.get("backend") or "auto",
        )

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Model logits of one batch, float32 on the CPU: ``(B, K)``."""
        x = x.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.model(x).float().cpu()

    def predict(
        self,
        inputs: Sequence[str | os.PathLike | InputItem],
        topk: int = 5,
        single_view: bool = False,
        batch_size: int | None = None,
        num_workers: int = 0,
        progress: bool = True,
        root: str | os.PathLike | None = None,
    ) -> list[Prediction]:
        """Classify files, folders and list files (see :func:`discover_inputs`).

        Returns:
            One :class:`Prediction` per discovered input, in discovery order.
        """
        items = [i if isinstance(i, InputItem) else None for i in inputs]
        if any(i is None for i in items):
            items = discover_inputs(
                [str(i.path if isinstance(i, InputItem) else i) for i in inputs], images=not self.is_video, root=root
            )
        dataset = self.dataset(items, single_view)
        probs, errors = self.score(dataset, batch_size, num_workers, progress)
        k = min(topk, len(self.class_names))
        out = []
        for index, item in enumerate(dataset.items):
            if index in errors:
                out.append(Prediction(item.path, item.kind, error=errors[index]))
                continue
            order = np.argsort(-probs[index], kind="stable")[:k]
            out.append(
                Prediction(
                    item.path,
                    item.kind,
                    [(self.class_names[c], float(probs[index][c])) for c in order],
                    num_views=dataset.num_views,
                )
            )
        return out

    def score(
        self, dataset: PredictionDataset, batch_size: int | None = None, num_workers: int = 0, progress: bool = True
    ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Merged class probabilities per readable input ``{index: (K,)}`` and reasons per failed one."""
        batch_size = int(batch_size or self.data_cfg.get("batch_size") or 8)
        context = None
        if num_workers > 0 and dataset.is_video:  # decord may hang in forked workers
            context = default_multiprocessing_context(resolve_backend(dataset.backend))
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_samples,
            multiprocessing_context=context,
        )
        collector, errors = ViewScoreCollector(), {}
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            for item in batch["failed"]:
                errors.setdefault(int(item["sample_index"]), str(item["error"]))
            collector.add_failed(int(item["sample_index"]) for item in batch["failed"])
            if "input" in batch:
                collector.add(batch["sample_index"], batch["view_index"], batch["label"], self.logits(batch["input"]))
        for index, reason in sorted(errors.items()):
            logger.warning("cannot classify %s: %s", dataset.video_paths[index], reason)
        records = collector.result()
        if len(records) == 0:
            return {}, errors
        merged = merge_views(
            records, dataset.num_views, how=self.merge, failed=errors.keys(), num_samples=len(dataset.items)
        )
        scores = softmax(merged.scores) if self.merge == "logit" else merged.scores
        return {int(s): scores[i] for i, s in enumerate(merged.sample_index)}, errors


def load_experiment_config(experiment: str | os.PathLike, overrides: Sequence[str] = ()) -> Any:
    """Compose ``configs/test.yaml`` with ``experiment=NAME``, or load a run's saved ``config.yaml``.

    Raises:
        FileNotFoundError: a ``.yaml`` path that does not exist.
        ConfigError: a ``_target_`` that is not one of the project's (:mod:`video_sparse.engine.targets`),
            naming its key; nothing is built.
    """
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from video_sparse.engine.config import compose_config
    from video_sparse.engine.overrides import quote_path_overrides
    from video_sparse.engine.preflight import find_file
    from video_sparse.engine.targets import check_targets

    if str(experiment).endswith((".yaml", ".yml")):
        path = find_file(experiment, "--experiment", "experiment config")
        import yaml

        from video_sparse.errors import ConfigError

        try:
            loaded = OmegaConf.load(path)  # a safe YAML loader: no Python tags
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not a plain YAML config ({' '.join(str(err).split())})") from None
        cfg = OmegaConf.merge(loaded, OmegaConf.from_dotlist(quote_path_overrides(overrides)))
        check_targets(cfg)  # someone else's config.yaml: refused before anything is built
        return cfg
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    cfg = compose_config([f"experiment={experiment}", *overrides], "test")
    check_targets(cfg)
    return cfg
