"""The fine-tuning recipe: DeepSpeed ZeRO training with validation, checkpoints and a final test.

Reads top to bottom: ``setup()`` builds everything from the config, ``train()`` runs the epochs
(resuming exactly where a checkpoint left off), ``test()`` runs multi-view testing and
``cleanup()`` exports the adapter-only weights. ``tools/train.py`` is a thin wrapper around it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..adapters import count_parameters
from ..checkpoint import atomic_save, save_adapter_checkpoint
from ..checkpoint.adapter_files import with_digest
from ..checkpoint.io import atomic_write
from ..data.collate import collate_samples
from ..evaluation.metrics import NonFiniteScoresError
from ..sparsify import keep_units
from . import checkpointing
from .builders import DTYPES, build_model, build_optimizer, compile_backend, instantiate_group, resolve_precision
from .config import save_run_config
from .distributed import all_reduce_sum, barrier, broadcast_object, init_distributed
from .evaluate import evaluate
from .logging_utils import MetricWriter, setup_logging
from .mixup import MixupCutmix
from .preemption import PreemptionFlag
from .preflight import prepare_run
from .run_lock import RunLock, lock_run_folder
from .sample_order import Layout, ResumableSampler, SeededDataset, check_layout, resume_micro_step
from .schedules import keep_rate_at
from .testing import MultiViewTest

log = logging.getLogger(__name__)
#: Without a terminal progress bar, a progress line at least this often (seconds), however few the steps.
PROGRESS_SECONDS = 30.0


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite (the step is not applied; checkpoints stay as they were)."""


class FinetuneRecipe:
    """Sparse-Tuning fine-tuning driven by a composed Hydra config (see ``configs/train.yaml``)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.finished = False
        self.preempted = False  # set by train() when a signal stopped it after saving a step checkpoint
        self.preemption = PreemptionFlag()
        self._saved_step = -1  # the optimizer step of the last checkpoint saved by this process
        self.already_complete = False  # set by train() when output_dir already holds a finished run
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {"loss_sum": 0.0, "loss_count": 0, "skipped": 0}  # this rank's
        self.lock: RunLock | None = None

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Build everything from the config, one named step each, then resume if a checkpoint exists."""
        self._setup_run()
        self._setup_data()
        self._setup_model()
        self._setup_sampler()
        self._setup_optimizer()
        self._setup_engine()
        self._maybe_resume()
        self._setup_metrics()

    def _setup_run(self) -> None:
        """Process group, output lock, logging, the resolved config, precision and the initial seed."""
        cfg = self.cfg
        self.dist = init_distributed(cfg.device)
        self.lock = lock_run_folder(self.output_dir, self.dist.is_main)  # refuses a second live run
        setup_logging(self.output_dir, self.dist.is_main)
        if self.dist.is_main:
            save_run_config(self.output_dir, cfg)
        self.precision = resolve_precision(cfg.precision, self.dist.device)
        self.dtype = DTYPES[self.precision]
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank

    def _setup_data(self) -> None:
        """The data module (``data`` group): generated data on rank 0, every list checked, train/val sets."""
        self.data = instantiate_group(self.cfg.data, "data")
        self.data.prepare(self.dist.is_main)  # generated data (the demo set) on rank 0 only
        barrier()
        self.data.check_lists()
        self.train_set = self.data.dataset("train")
        self.val_set = self.data.dataset("val")

    def _setup_model(self) -> None:
        """The model (``model`` + ``sparsity`` groups), its trainable parameters and backbone weights."""
        cfg = self.cfg
        self.model = build_model(cfg.model, cfg.sparsity, cfg.pretrained, cfg.train.freeze_backbone)
        torch.manual_seed(cfg.seed + self.dist.rank)  # per-rank dropout / drop-path streams
        np.random.seed((cfg.seed + self.dist.rank) % 2**32)
        trainable, total = count_parameters(self.model)
        self.param_counts = {"trainable_params": trainable, "total_params": total}
        log.info(
            "model %s: %.3f M trainable of %.2f M parameters (%.2f%%)",
            cfg.model.model_name,
            trainable / 1e6,
            total / 1e6,
            100.0 * trainable / total,
        )

    def _setup_sampler(self) -> None:
        """The global sample order (fixed by world size, batch and accumulation) and steps per epoch."""
        cfg = self.cfg
        world, micro = self.dist.world_size, int(self.data.batch_size)
        accumulate = int(cfg.optim.accumulate_steps)
        self.layout = Layout(world, micro, accumulate, int(cfg.deepspeed.stage))
        self.sampler = ResumableSampler(len(self.train_set), world, self.dist.rank, shuffle=True, seed=cfg.seed)
        self.micro_steps_per_epoch = self.sampler.per_rank // micro
        if cfg.train.max_steps_per_epoch:
            self.micro_steps_per_epoch = min(
                self.micro_steps_per_epoch, int(cfg.train.max_steps_per_epoch) * accumulate
            )
        self.micro_steps_per_epoch -= self.micro_steps_per_epoch % accumulate
        if self.micro_steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.train_set)} training samples give no full step of batch {micro} x "
                f"{world} ranks x {accumulate} accumulation"
            )
        self.steps_per_epoch = self.micro_steps_per_epoch // accumulate

    def _setup_optimizer(self) -> None:
        """Optimizer and learning-rate schedule (``optim.optimizer``, ``optim.scheduler``); lr from blr."""
        optim = self.cfg.optim
        batch = self.layout.micro_batch * self.layout.world_size * self.layout.accumulate_steps
        self.base_lr = optim.lr if optim.lr is not None else optim.blr * batch / 256
        self.optimizer = build_optimizer(optim.optimizer, self.model, self.base_lr)
        self.scheduler = instantiate_group(optim.scheduler, "optim.scheduler")(
            self.optimizer, steps_per_epoch=self.steps_per_epoch, epochs=int(self.cfg.epochs)
        )
        self.mixup = MixupCutmix(
            self.data.num_classes,
            optim.mixup,
            optim.cutmix,
            optim.mixup_prob,
            optim.mixup_switch_prob,
            optim.label_smoothing,
        )

    def _setup_engine(self) -> None:
        """DeepSpeed (``deepspeed`` group) around model, optimizer and schedule; optional torch.compile."""
        cfg = self.cfg
        import deepspeed

        ds_config = instantiate_group(cfg.deepspeed, "deepspeed")(
            micro_batch=self.layout.micro_batch,
            accumulate=self.layout.accumulate_steps,
            clip_grad=cfg.optim.clip_grad,
            precision=self.precision,
        )
        self.model.to(self.dist.device)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=ds_config
        )
        backend = compile_backend(cfg.train.get("compile"))
        if backend:  # in place: training, validation and test run compiled; checkpoint keys unchanged
            self.engine.compile(backend=backend, compile_kwargs={"dynamic": True})
            log.info("torch.compile: backend %s, dynamic shapes", backend)
        log.info("DeepSpeed, %s, lr %.3g: %s", self.precision, self.base_lr, self.layout.describe())
        checkpointing.clean_stale(self.ckpt_dir, self.dist.is_main)

    def _setup_metrics(self) -> None:
        """TensorBoard writer; ``purge_step`` drops points logged after the checkpoint resumed from."""
        self.writer = MetricWriter(
            self.output_dir / "tensorboard", enabled=self.dist.is_main, purge_step=self.global_step + 1
        )

    def _maybe_resume(self) -> None:
        folder = self._resume_folder()
        if folder is None:
            if self.dist.is_main:  # later saves must not meet another run's checkpoints
                checkpointing.abandon_after(self.ckpt_dir, -1)
            barrier()
            if self.cfg.resume:
                log.info("resume=auto: no checkpoint in %s, starting fresh", self.ckpt_dir)
            return
        if (folder / checkpointing.META).is_file():  # refuse another layout before DeepSpeed reads anything
            check_layout(checkpointing.read_meta(folder), self.layout, str(folder))
        state = checkpointing.load_checkpoint(self.engine, folder, self.dist.rank, verify=False)
        self.epoch, self.step_in_epoch = int(state["epoch"]), resume_micro_step(state, self.layout)
        self.global_step = int(state["global_step"])
        self._saved_step = self.global_step
        self.history = list(state.get("history", []))
        self.epoch_sums.update(state["rank_state"].get("epoch_sums", {}))
        if self.dist.is_main:
            checkpointing.abandon_after(self.ckpt_dir, self.global_step, keep=folder)
        barrier()
        log.info(
            "resumed from %s: epoch %d, step %d of the epoch, %d optimizer steps done",
            folder,
            self.epoch,
            self.step_in_epoch,
            self.global_step,
        )

    def _resume_folder(self) -> Path | None:
        """The checkpoint to resume from, verified on rank 0 (damaged ones set aside) and agreed by all ranks.

        Raises:
            DamagedCheckpointError: the folder named by ``resume=`` is damaged, or no intact one is left.
        """
        resume = self.cfg.resume
        found: tuple[str | None, str | None] = (None, None)
        if resume and self.dist.is_main:
            try:
                if resume == "auto":
                    folder = checkpointing.find_latest(self.ckpt_dir)
                else:
                    folder = Path(resume)
                    if folder.is_dir():
                        checkpointing.verify_checkpoint(folder)
                found = (str(folder) if folder is not None else None, None)
            except checkpointing.DamagedCheckpointError as err:
                found = (None, str(err))
        folder_name, error = broadcast_object(found)
        if error is not None:
            raise checkpointing.DamagedCheckpointError(error)
        return Path(folder_name) if folder_name is not None else None

    # ------------------------------------------------------------------------------------------ train
    def _loader(self) -> DataLoader:
        workers = int(self.data.num_workers)
        context = self.data.multiprocessing_context() if workers > 0 else None
        return DataLoader(
            SeededDataset(self.train_set),
            batch_size=int(self.data.batch_size),
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_samples,
            drop_last=True,
            pin_memory=self.dist.device.type == "cuda",
            multiprocessing_context=context,
        )

    def _keep_rate(self, micro_step: int) -> float:
        sp = self.cfg.sparsity
        accumulate = self.layout.accumulate_steps  # one rate per optimizer step, whatever the accumulation
        epoch = self.epoch + (micro_step // accumulate) * accumulate / self.micro_steps_per_epoch
        return keep_rate_at(epoch, sp.keep_rate, sp.get("ramp_start_epoch", 0), sp.get("ramp_epochs", 0))

    def _client_state(self) -> dict[str, Any]:
        epoch_samples = self.step_in_epoch * self.layout.world_size * self.layout.micro_batch  # global positions
        return {
            **self.layout._asdict(),
            "epoch_samples": epoch_samples,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": self.history,
        }

    def _save(self) -> None:
        self._saved_step = self.global_step
        checkpointing.save_checkpoint(
            self.engine,
            self.ckpt_dir,
            self.global_step,
            self._client_state(),
            self.dist.rank,
            keep_last=int(self.cfg.train.keep_last),
            exclude_frozen=bool(self.cfg.train.exclude_frozen),
            rank_state={"epoch_sums": dict(self.epoch_sums)},
        )

    def _reduce_device(self) -> torch.device | None:
        return self.dist.device if self.dist.device.type == "cuda" else None

    def _stop_for_preemption(self) -> bool:
        """At an optimizer-step boundary: when any rank got a preemption signal, save this step (every rank
        takes part) and return True."""
        if not self.preemption.agreed(self._reduce_device()):
            return False
        if self._saved_step != self.global_step:
            self._save()
        self.preempted = True
        signal_name = self.preemption.received.name if self.preemption.received else "a signal on another rank"
        log.warning(
            "preempted (%s): stopped at epoch %d, step %d of %d, %d optimizer steps done; checkpoint %s saved; "
            "the same command (resume=auto) continues from there",
            signal_name,
            self.epoch + 1,
            self.step_in_epoch // self.layout.accumulate_steps,
            self.steps_per_epoch,
            self.global_step,
            self.ckpt_dir / checkpointing.step_tag(self.global_step),
        )
        return True

    def train(self) -> None:
        """Train until ``epochs`` (or ``train.max_steps``); a SIGTERM / SIGUSR1 on any rank saves a step
        checkpoint at the next step boundary and returns with ``preempted`` set."""
        with self.preemption.watch():
            self._train()

    def _train(self) -> None:
        cfg = self.cfg
        max_steps = cfg.train.max_steps
        save_every = int(cfg.train.save_every_steps or 0)
        accumulate = int(cfg.optim.accumulate_steps)
        start_time = time.time()
        last_line = start_time  # a progress line each epoch and every PROGRESS_SECONDS, however few the steps
        if self.epoch >= int(cfg.epochs):
            self.already_complete = True
            log.info(
                "training in %s is already complete (%d of epochs=%d done); to train again from the start "
                "use another output_dir=... or resume=null (overwrites its checkpoints); to train longer "
                "raise epochs=; its results: %s",
                self.output_dir,
                self.epoch,
                cfg.epochs,
                self.output_dir / "results.json",
            )
        while self.epoch < int(cfg.epochs):
            self.engine.train()
            self.sampler.set_epoch(self.epoch, start=self.step_in_epoch * self.layout.micro_batch)
            # disable=None: no bar (and no carriage returns) when stderr is a file; log lines report progress
            bar = tqdm(
                total=self.micro_steps_per_epoch,
                initial=self.step_in_epoch,
                disable=None if self.dist.is_main else True,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                mininterval=1.0,
                dynamic_ncols=True,
            )
            if self.step_in_epoch == 0:
                self.epoch_sums = {"loss_sum": 0.0, "loss_count": 0, "skipped": 0}
            tick = time.time()
            for batch in self._loader():
                if self.step_in_epoch >= self.micro_steps_per_epoch:
                    break
                keep_rate = self._keep_rate(self.step_in_epoch)
                x = batch["input"].to(self.dist.device, dtype=self.dtype, non_blocking=True)
                labels = batch["label"].to(self.dist.device)
                rng = np.random.default_rng([cfg.seed, self.epoch, self.step_in_epoch, self.dist.rank])
                x, target = self.mixup(x, labels, rng)
                # the keep rate as an integer of 1/10000: a compiled model keeps it symbolic (one graph
                # for every rate of a ramp)
                logits = self.engine(x, keep_units=keep_units(keep_rate))
                loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):  # before the step: no update and no checkpoint from it
                    raise DivergedError(
                        f"training diverged: loss is {loss_value} at epoch {self.epoch + 1}, micro-step "
                        f"{self.step_in_epoch + 1} of {self.micro_steps_per_epoch} (optimizer step "
                        f"{self.global_step + 1}); nothing of this step was applied or saved (lower optim.lr or "
                        f"set optim.clip_grad, then resume)"
                    )
                self.engine.backward(loss)
                self.engine.step()
                self.epoch_sums["skipped"] += int(batch["skipped"].sum())
                self.step_in_epoch += 1
                self.epoch_sums["loss_sum"] += loss_value
                self.epoch_sums["loss_count"] += 1
                if self.step_in_epoch % accumulate:
                    continue
                self.global_step += 1
                lr = self.optimizer.param_groups[0]["lr"]
                now = time.time()
                clips_per_s = accumulate * x.shape[0] * self.dist.world_size / max(now - tick, 1e-9)
                tick = now
                bar.update(accumulate)
                bar.set_postfix(
                    loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", keep=f"{keep_rate:.2f}", clips_s=f"{clips_per_s:.1f}"
                )
                log_point = self.global_step % int(cfg.train.log_every) == 0
                first = self.step_in_epoch == accumulate  # each epoch's first step: the run is moving
                if bar.disable and self.dist.is_main and (log_point or first or now - last_line >= PROGRESS_SECONDS):
                    last_line = now
                    log.info(
                        "epoch %d/%d step %d/%d: loss %.4f, lr %.2e, keep %.2f, %.1f clips/s",
                        self.epoch + 1,
                        cfg.epochs,
                        self.step_in_epoch // accumulate,
                        self.steps_per_epoch,
                        loss_value,
                        lr,
                        keep_rate,
                        clips_per_s,
                    )
                if log_point:
                    self.writer.scalars(
                        {
                            "train/loss": loss_value,
                            "train/lr": lr,
                            "train/keep_rate": keep_rate,
                            "train/clips_per_s": clips_per_s,
                        },
                        self.global_step,
                    )
                if (
                    save_every
                    and self.global_step % save_every == 0
                    and self.step_in_epoch < self.micro_steps_per_epoch
                ):  # the epoch end saves its last step
                    self._save()
                if self.step_in_epoch < self.micro_steps_per_epoch and self._stop_for_preemption():
                    bar.close()  # (at the epoch's last step the epoch end validates, saves and then stops)
                    return
                if max_steps and self.global_step >= int(max_steps):
                    bar.close()
                    log.info("stopping after train.max_steps=%d optimizer steps (resume with resume=auto)", max_steps)
                    return
            bar.close()
            self._end_epoch(**self.epoch_sums)
            if self._stop_for_preemption():
                return
        self.finished = True
        if not self.already_complete:
            log.info("training done in %.1f s", time.time() - start_time)

    def _end_epoch(self, loss_sum: float, loss_count: int, skipped: int) -> None:
        cfg = self.cfg
        total_skipped = int(all_reduce_sum(skipped, self._reduce_device()))
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "train_loss": loss_sum / max(loss_count, 1),
            "skipped_videos": total_skipped,
        }
        if total_skipped:
            log.warning(
                "epoch %d: %d unreadable training samples were replaced by others", self.epoch + 1, total_skipped
            )
        if cfg.train.eval_every and (self.epoch + 1) % int(cfg.train.eval_every) == 0:
            result = self.validate()
            nonfinite = int(all_reduce_sum(result.get("num_nonfinite", 0), self._reduce_device()))  # every rank
            if nonfinite:
                raise NonFiniteScoresError(
                    f"validation after epoch {self.epoch + 1}: {nonfinite} samples have non-finite scores "
                    f"(NaN or inf); the model diverged (lower optim.lr or set optim.clip_grad)"
                )
            record.update({f"val_{k}": v for k, v in result.items() if isinstance(v, (int, float))})
        self.history.append(record)
        self.writer.scalars({f"epoch/{k}": v for k, v in record.items() if k != "epoch"}, self.global_step)
        log.info(
            "epoch %d: %s",
            self.epoch + 1,
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "epoch"
            ),
        )
        self.epoch += 1
        self.step_in_epoch = 0
        self._save()

    # --------------------------------------------------------------------------------------- evaluate
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine(x)

    def validate(self) -> dict[str, Any]:
        """Single-view top-1/top-5 on the validation split."""
        self.engine.eval()
        result = evaluate(
            self._forward,
            self.val_set,
            self.dist,
            batch_size=int(self.data.batch_size),
            num_workers=int(self.data.num_workers),
            dtype=self.dtype,
            desc="val",
        )
        self.engine.train()
        return result.summary

    def test(self) -> dict[str, Any]:
        """Multi-view test on the test split; writes score files and ``results.json`` (rank 0)."""
        self.engine.eval()
        tester = MultiViewTest(self.cfg, self.data, self.dist, self.dtype, self.output_dir)
        return tester.run(self._forward, self.model, extra={"history": self.history, **self.param_counts})

    # ---------------------------------------------------------------------------------------- cleanup
    def export_adapters(self) -> Path | None:
        """Write ``adapter.pth`` (adapters + head, a few MB); with ``train.export_full`` also
        ``model_final.pth`` (every weight)."""
        path = self.output_dir / "adapter.pth"
        module = self.engine.module
        trainable = [p for p in module.parameters() if p.requires_grad]
        with _gathered(trainable):
            if self.dist.is_main:
                data = {  # the input settings a later test or prediction needs
                    "input_size": self.data.input_size,
                    "num_frames": self.data.num_frames if self.data.is_video else None,
                    "mean": list(self.data.mean),
                    "std": list(self.data.std),
                }
                extra = {"pretrained": self.cfg.pretrained, "global_step": self.global_step, "data": data}
                save_adapter_checkpoint(module, path, extra=extra)
                log.info("exported adapter-only weights to %s", path)
        if self.cfg.train.export_full:
            with _gathered(list(module.parameters())):
                if self.dist.is_main:
                    state = {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}
                    payload = with_digest({"model": state, "model_args": module.model_args})
                    atomic_save(payload, self.output_dir / "model_final.pth")
                    log.info("exported full weights to %s", self.output_dir / "model_final.pth")
        barrier()
        return path if self.dist.is_main else None

    def record_failure(self, err: BaseException) -> None:
        """Name a failed training in ``results.json`` (rank 0): ``error``, the epochs done and no metric."""
        if self.dist.is_main:
            record = {"name": self.cfg.name, "error": str(err), "history": self.history, **self.param_counts}
            text = json.dumps(record, indent=1, default=str).encode()
            atomic_write(self.output_dir / "results.json", lambda f: f.write(text))
            log.error("%s", err)

    def cleanup(self) -> None:
        self.writer.close()
        barrier()
        if self.lock is not None:
            self.lock.release()


def run_training(cfg: DictConfig) -> FinetuneRecipe:
    """What ``tools/train.py`` runs: checks, setup, training, then (once) the test and the export.

    Raises:
        RunLockedError: another live run writes to ``cfg.output_dir``.
        ConfigError, FileNotFoundError: a setting that cannot work (before anything expensive runs).
    """
    prepare_run(cfg, "train")  # paths, defaults and cheap checks before any expensive step
    recipe = FinetuneRecipe(cfg)
    recipe.setup()
    try:
        recipe.train()
    except (DivergedError, NonFiniteScoresError) as err:
        recipe.record_failure(err)
        raise
    # adapter.pth is written last (atomically): without it a kill cut the test or the export short, so redo both
    tested_before = recipe.already_complete and all(
        (recipe.output_dir / name).is_file() for name in ("results.json", "adapter.pth")
    )
    if recipe.finished and not tested_before:
        recipe.test()
        recipe.export_adapters()
    recipe.cleanup()
    return recipe


def _gathered(params: list[torch.nn.Parameter]):
    """Full parameters under ZeRO-3 (a no-op context otherwise)."""
    if params and hasattr(params[0], "ds_id"):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()
