"""Inference throughput, training-step time, peak memory and GMACs of dense and sparse variants.

One run compares, for one model size and input: the plain backbone (``dense_vit``), the backbone
with Dense Adapters and no token dropping (``dense_adapter``), Sparse-Tuning at several keep rates
(``sparse_<k>``), the same sparsification with explicit attention matrices in every layer, the
way EViT-derived reference code computes it (``explicit_<k>``), and optionally with the exact score
from the chunked explicit kernel instead of the fused kernels (``chunked_<k>``).

Method:

- all variants share one set of backbone weights; a sparse variant is the adapter model called
  with its keep rate, so the only differences are the ones being measured;
- timed calls are interleaved round-robin over the variants (``warmup`` rounds first, then ``reps``
  rounds), so machine noise hits every variant alike; the median is reported. Each call is timed
  in wall-clock seconds (``torch.cuda.synchronize`` around it on GPU); on CPU the process CPU
  time is recorded too, a figure less sensitive to other load on the machine;
- the training step is forward + backward + AdamW step on the trainable parameters only (all of
  them for the plain backbone, i.e. full fine-tuning), cross-entropy on fixed random labels;
- peak memory is measured per variant in a fresh process (CPU: RSS high-water mark; GPU:
  ``max_memory_allocated``), inference and training separately, training after one warm-up step so
  the optimizer state is included; see :mod:`video_sparse.analysis.memory`;
- on GPU the calls run under bf16 autocast by default;
- every variant runs in the same mode: all eager, or all ``torch.compile``\\ d (``compile``), and,
  with ``sdpa_backend``, with the same attention backend pinned
  (``torch.nn.attention.sdpa_kernel``) for the timed calls, the memory and the profile;
- with ``profile_dir``, one ``torch.profiler`` trace per variant (an inference call and a training
  step, after the timed rounds) is written there as Chrome-trace JSON.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..adapters import set_trainable
from ..layers import Attention
from ..layers.attention import received_kernel
from .flops import count_gmacs, input_shape_of
from .memory import current_mib, peak_mib, reset_peak, return_freed_memory_at_once

logger = logging.getLogger(__name__)

DEFAULT_KEEP_RATES = (0.5, 0.6, 0.7, 0.8, 0.9)
PAPER_KEEP_RATE = 0.7
#: ``sdpa_backend`` names and the backends they pin.
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


@dataclass(frozen=True)
class Variant:
    """One row of the benchmark.

    Attributes:
        name: row name (``dense_vit``, ``dense_adapter``, ``sparse_0.7``, ``explicit_0.7`` ...).
        keep_rate: keep rate passed to every forward call (1.0 = no dropping).
        adapter: True for the adapter model, False for the plain backbone.
        attn_impl: ``"sdpa"`` or ``"explicit"`` (full attention matrices in every layer).
        score_kernel: how the sparsifying layers compute a whole-matrix score (``"auto"``,
            ``"fused"``, ``"chunked"``; see :func:`video_sparse.layers.attention.received_kernel`).
        static_tubes: static-tube threshold passed to every forward call (None: the model's own).
    """

    name: str
    keep_rate: float
    adapter: bool = True
    attn_impl: str = "sdpa"
    score_kernel: str = "auto"
    static_tubes: float | None = None

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every forward call."""
        extra = {} if self.static_tubes is None else {"static_tubes": self.static_tubes}
        return {"keep_rate": self.keep_rate, **extra}

    @property
    def model_key(self) -> tuple[bool, str, str]:
        """Variants with the same key share one model instance."""
        return self.adapter, self.attn_impl, self.score_kernel


def default_variants(
    keep_rates: Sequence[float] = DEFAULT_KEEP_RATES,
    explicit_keep_rates: Sequence[float] = (PAPER_KEEP_RATE,),
    chunked_keep_rates: Sequence[float] = (),
) -> list[Variant]:
    """Plain backbone, dense adapters, Sparse-Tuning at ``keep_rates``, explicit attention at
    ``explicit_keep_rates``, Sparse-Tuning with the chunked score kernel at ``chunked_keep_rates``."""
    for k in (*keep_rates, *explicit_keep_rates, *chunked_keep_rates):
        if not 0.0 < k <= 1.0:
            raise ValueError(f"keep rates must be in (0, 1], got {k}")
    return [
        Variant("dense_vit", 1.0, adapter=False),
        Variant("dense_adapter", 1.0),
        *(Variant(f"sparse_{k:g}", float(k)) for k in keep_rates),
        *(Variant(f"explicit_{k:g}", float(k), attn_impl="explicit") for k in explicit_keep_rates),
        *(Variant(f"chunked_{k:g}", float(k), score_kernel="chunked") for k in chunked_keep_rates),
    ]


def static_tube_variants(threshold: float, keep_rate: float = PAPER_KEEP_RATE) -> list[Variant]:
    """Sparse-Tuning at ``keep_rate`` without and with the static-tube filter at ``threshold``
    (measure them on real clips: ``BenchmarkConfig.clips``)."""
    return [
        Variant(f"sparse_{keep_rate:g}", keep_rate, static_tubes=0.0),
        Variant(f"static_{threshold:g}_sparse_{keep_rate:g}", keep_rate, static_tubes=threshold),
    ]


@dataclass
class BenchmarkConfig:
    """What to measure and how.

    Attributes:
        model: registered model name (``timm.create_model``).
        batch_size: samples per call.
        reps: timed rounds (median reported).
        warmup: untimed rounds before the timed ones.
        train_reps: timed rounds of the training step; None = ``reps``, 0 = no training timing.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: ``torch.set_num_threads`` (None = the cores available to this process).
        amp: autocast dtype name (``"bfloat16"``) or None for fp32; ``"auto"`` = bf16 on CUDA only.
        memory: measure peak memory (one fresh process per variant and mode).
        compile: time ``torch.compile``\\ d models (every variant).
        sdpa_backend: pin one attention backend for every variant: ``"flash"``, ``"efficient"``,
            ``"cudnn"`` or ``"math"`` (:data:`SDPA_BACKENDS`); None leaves PyTorch's choice.
        profile_dir: write one profiler trace per variant there (None: no profile).
        num_classes: classifier outputs (random labels are drawn in this range).
        model_kwargs: extra constructor arguments for every variant.
        seed: seed for weights, inputs and labels.
        clips: video files whose centre test clips (normalised as VideoMAE) make the batch instead
            of random inputs, repeated in turn up to ``batch_size``.
    """

    model: str
    batch_size: int = 16
    reps: int = 5
    warmup: int = 1
    train_reps: int | None = None
    device: str = "cpu"
    threads: int | None = None
    amp: str | None = "auto"
    memory: bool = True
    compile: bool = False
    sdpa_backend: str | None = None
    profile_dir: str | None = None
    num_classes: int = 1000
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    clips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.reps < 1 or self.warmup < 0:
            raise ValueError(
                f"need batch_size >= 1, reps >= 1, warmup >= 0; got {self.batch_size}, {self.reps}, {self.warmup}"
            )
        if self.sdpa_backend is not None and self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend must be one of {sorted(SDPA_BACKENDS)}, got {self.sdpa_backend!r}")
        if self.train_reps is None:
            self.train_reps = self.reps
        if self.threads is None:
            self.threads = available_cores()
        if self.amp == "auto":
            self.amp = "bfloat16" if torch.device(self.device).type == "cuda" else None

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return getattr(torch, self.amp) if self.amp else None


@dataclass
class VariantResult:
    """Measurements of one variant.

    Times are seconds per call (``*_cpu_s``: process CPU time, CPU runs only). ``memory`` holds MiB:
    the peak per mode (``"infer"``, ``"train"``) and the memory in use before the calls
    (``"infer_base"``, ``"train_base"``: runtime, weights and batch on CPU; weights and batch on GPU).
    """

    variant: Variant
    gmacs: float
    infer_s: list[float] = field(default_factory=list)
    infer_cpu_s: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    train_cpu_s: list[float] = field(default_factory=list)
    memory: dict[str, float | None] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        """Median of a list of timings (``"infer_s"`` ...), None when empty."""
        values = getattr(self, key)
        return statistics.median(values) if values else None

    def step_memory(self, mode: str) -> float | None:
        """Peak minus base memory of ``mode``: what the calls themselves needed, in MiB."""
        peak, base = self.memory.get(mode), self.memory.get(f"{mode}_base")
        return peak - base if peak is not None and base is not None else None


@dataclass
class BenchmarkResult:
    """A whole run: environment, settings and one :class:`VariantResult` per variant."""

    config: BenchmarkConfig
    environment: dict[str, Any]
    input_shape: list[int]
    results: list[VariantResult]

    def get(self, name: str) -> VariantResult | None:
        return next((r for r in self.results if r.variant.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "environment": self.environment,
            "input_shape": self.input_shape,
            "results": [asdict(r) for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        results = [VariantResult(**{**r, "variant": Variant(**r["variant"])}) for r in data["results"]]
        config = {**data["config"], "clips": tuple(data["config"].get("clips", ()))}  # JSON keeps lists
        return cls(BenchmarkConfig(**config), data["environment"], list(data["input_shape"]), results)


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment_info(config: BenchmarkConfig) -> dict[str, Any]:
    """Device, library versions and thread count of this run."""
    device = torch.device(config.device)
    on_gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_gpu else _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cores_available": available_cores(),
        "cuda": torch.version.cuda if on_gpu else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "memory_meter": "cuda max_memory_allocated"
        if on_gpu
        else "process RSS high-water mark (freed blocks >= 128 KiB returned to the OS at once)",
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_variant_model(config: BenchmarkConfig, variant: Variant, device: str | None = None) -> nn.Module:
    """The model a variant runs, on ``device`` (default ``config.device``), weights from ``config.seed``."""
    kwargs = dict(config.model_kwargs)
    kwargs.setdefault("adapter", "dense")
    if not variant.adapter:
        kwargs["adapter"] = "none"
    torch.manual_seed(config.seed)
    model = timm.create_model(config.model, num_classes=config.num_classes, attn_impl=variant.attn_impl, **kwargs)
    received_kernel(variant.score_kernel, torch.device("cpu"))  # validates the name
    for module in model.modules():
        if isinstance(module, Attention):
            module.score_kernel = variant.score_kernel
    set_trainable(model)  # as in training: the backbone frozen when there are adapters
    return model.to(device or config.device)


def make_batch(config: BenchmarkConfig, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the model's shape and random labels, on the device."""
    gen = torch.Generator().manual_seed(config.seed)
    shape = input_shape_of(model, config.batch_size)
    x = torch.randn(shape, generator=gen)
    if config.clips:
        from .static_tubes import load_clip

        clips = [load_clip(path, num_frames=shape[2], size=shape[3]) for path in config.clips]
        x = torch.cat([clips[i % len(clips)] for i in range(config.batch_size)])
    y = torch.randint(0, config.num_classes, (config.batch_size,), generator=gen)
    return x.to(config.device), y.to(config.device)


def pinned_backend(config: BenchmarkConfig) -> Any:
    """A context pinning ``config.sdpa_backend`` (a no-op when None)."""
    if config.sdpa_backend is None:
        return contextlib.nullcontext()
    return sdpa_kernel(SDPA_BACKENDS[config.sdpa_backend])


def _autocast(config: BenchmarkConfig) -> Any:
    device_type = torch.device(config.device).type
    return torch.autocast(device_type, dtype=config.amp_dtype, enabled=config.amp_dtype is not None)


def make_inference_step(
    model: nn.Module, x: torch.Tensor, keep_rate: float, config: BenchmarkConfig, **forward_kwargs: Any
) -> Callable[[], None]:
    """A call running one inference batch (eval mode, no autograd); ``forward_kwargs`` go to the model."""

    def step() -> None:
        model.eval()
        with torch.inference_mode(), _autocast(config):
            model(x, keep_rate=keep_rate, **forward_kwargs)

    return step


def make_train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    keep_rate: float,
    config: BenchmarkConfig,
    optimizer: torch.optim.Optimizer | None = None,
    **forward_kwargs: Any,
) -> Callable[[], None]:
    """A call running one training step: forward, cross-entropy, backward, AdamW step.

    Args:
        model: the model; only parameters with ``requires_grad`` are optimised.
        x: (B, ...) inputs; y: (B,) labels.
        keep_rate: keep rate of the forward pass.
        config: device and autocast settings.
        optimizer: an AdamW over the trainable parameters is made when None (share one between
            variants that share the model).
    """
    optimizer = optimizer or make_optimizer(model)

    def step() -> None:
        model.train()
        with _autocast(config):
            logits = model(x, keep_rate=keep_rate, **forward_kwargs)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW over the parameters that require gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)


def _timed(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def measure_peak_memory(config: BenchmarkConfig, variant: Variant, mode: str) -> dict[str, float | None]:
    """Peak memory of one variant in this process (call it in a fresh one).

    The peak covers two calls, so that it includes everything a steady-state call holds (the
    optimizer state appears in the first training step). On CPU the C allocator is first told to
    return freed blocks to the OS at once (:func:`~.memory.return_freed_memory_at_once`), so the RSS
    follows the live tensors; this changes the process for good, hence the fresh process.

    Args:
        config: the run's settings.
        variant: what to build.
        mode: ``"infer"`` (inference batches) or ``"train"`` (training steps).

    Returns:
        ``{"base_mib", "peak_mib", "allocator_set"}``: memory in use once the model and batch exist
        (RSS on CPU, allocated tensors on GPU), the peak during the two calls, and whether the C
        allocator setting took effect (None on GPU).
    """
    device = torch.device(config.device)
    allocator_set = return_freed_memory_at_once() if device.type == "cpu" else None
    if allocator_set is False:
        logger.warning("glibc not found: the RSS peak includes memory the allocator keeps after frees")
    torch.set_num_threads(config.threads)
    model = build_variant_model(config, variant)
    x, y = make_batch(config, model)
    extra = _extra_kwargs(variant)
    if mode == "infer":
        step = make_inference_step(model, x, variant.keep_rate, config, **extra)
    elif mode == "train":
        step = make_train_step(model, x, y, variant.keep_rate, config, **extra)
    else:
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    base = current_mib(device)
    if not reset_peak(device):
        logger.warning("cannot reset the RSS high-water mark: the peak includes model construction")
    with pinned_backend(config):
        step()
        step()
    return {"base_mib": base, "peak_mib": peak_mib(device), "allocator_set": allocator_set}


def measure_peak_memory_isolated(config: BenchmarkConfig, variant: Variant, mode: str) -> dict[str, float | None]:
    """:func:`measure_peak_memory` in a freshly spawned process; None values if that process dies.

    On CUDA it runs in this process (after the other models are freed): ``max_memory_allocated``
    counts live tensors only, so no process state leaks between variants, and a new process per
    variant would cost a CUDA start each.
    """
    if torch.device(config.device).type == "cuda":
        torch.cuda.empty_cache()
        result = measure_peak_memory(config, variant, mode)
        torch.cuda.empty_cache()
        return result
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            return pool.submit(measure_peak_memory, config, variant, mode).result()
    except (BrokenProcessPool, RuntimeError, MemoryError) as err:
        logger.warning("%s %s: memory measurement failed (%s)", variant.name, mode, err)
        return {"base_mib": None, "peak_mib": None, "allocator_set": None}


def planned_calls(config: BenchmarkConfig, variants: Sequence[Variant]) -> int:
    """Number of progress ticks :func:`run_benchmark` will make."""
    per_variant = 1 + config.warmup + config.reps + (1 if config.profile_dir else 0)
    if config.train_reps:
        per_variant += config.warmup + config.train_reps
    if config.memory:
        per_variant += 2 if config.train_reps else 1
    return per_variant * len(variants)


def run_benchmark(
    config: BenchmarkConfig, variants: Sequence[Variant] | None = None, progress: Callable[[str], None] | None = None
) -> BenchmarkResult:
    """Measure every variant (see the module docstring for the method).

    Args:
        config: model, input and measurement settings.
        variants: rows to measure; :func:`default_variants` when None.
        progress: called with a short description after every measured call.

    Returns:
        the result, ready for :func:`video_sparse.analysis.benchmark_report.to_markdown`.
    """
    variants = list(variants or default_variants())
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    if config.compile and config.warmup < 1:
        raise ValueError("compile=True needs warmup >= 1 (the first call compiles)")
    tick = progress or (lambda _: None)
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    env = environment_info(config)
    logger.info(
        "benchmark %s batch %d on %s (%s), %d threads, torch %s",
        config.model,
        config.batch_size,
        env["device"],
        env["device_name"],
        env["threads"],
        env["torch"],
    )

    models = build_shared_models(config, variants)
    x, y = make_batch(config, next(iter(models.values())))
    results = []
    for v in variants:  # counted on CPU: the count does not depend on the device's kernels
        gmacs = count_gmacs(models[v.model_key], x[:1].cpu(), **v.forward_kwargs).gmacs
        results.append(VariantResult(v, gmacs))
        tick(f"{v.name}: {gmacs:.2f} GMACs")
    x, y = x.to(device), y.to(device)
    for model in models.values():
        model.to(device)

    with _compile_settings(config.compile, len(variants)), pinned_backend(config):
        runners = {key: (torch.compile(m) if config.compile else m) for key, m in models.items()}
        infer = [
            make_inference_step(runners[v.model_key], x, v.keep_rate, config, **_extra_kwargs(v)) for v in variants
        ]
        _round_robin(results, infer, config.warmup, config.reps, device, "infer", tick)
        train: list[Callable[[], None]] = []
        if config.train_reps:
            optimizers = {key: make_optimizer(m) for key, m in models.items()}
            train = [
                make_train_step(
                    runners[v.model_key], x, y, v.keep_rate, config, optimizers[v.model_key], **_extra_kwargs(v)
                )
                for v in variants
            ]
            _round_robin(results, train, config.warmup, config.train_reps, device, "train", tick)
        if config.profile_dir:
            for index, result in enumerate(results):
                steps = [infer[index], *train[index : index + 1]]
                path = profile_steps(steps, device, Path(config.profile_dir) / f"{result.variant.name}.json")
                tick(f"{result.variant.name}: trace {path}")
        del infer, train, runners
    del models
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if config.memory:
        for r in results:
            for mode in ("infer", "train") if config.train_reps else ("infer",):
                measured = measure_peak_memory_isolated(config, r.variant, mode)
                r.memory[mode], r.memory[f"{mode}_base"] = measured["peak_mib"], measured["base_mib"]
                tick(f"{r.variant.name}: {mode} peak {r.memory[mode]} MiB")
    return BenchmarkResult(config, env, list(x.shape), results)


def profile_steps(steps: Sequence[Callable[[], None]], device: torch.device, path: Path) -> Path:
    """One ``torch.profiler`` trace (CPU, and CUDA kernels on a GPU) of ``steps`` run once each (an
    inference call, then a training step), written as Chrome-trace JSON to ``path`` (Perfetto,
    ``chrome://tracing``)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for index, step in enumerate(steps):
            with torch.profiler.record_function(("inference", "train_step")[min(index, 1)]):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    prof.export_chrome_trace(str(path))
    return path


def _extra_kwargs(variant: Variant) -> dict[str, Any]:
    """The variant's forward arguments besides the keep rate."""
    return {k: v for k, v in variant.forward_kwargs.items() if k != "keep_rate"}


def _compile_settings(enabled: bool, num_variants: int) -> Any:
    """Allow one compiled graph per keep rate and mode (dynamo specialises on the float keep rate)."""
    if not enabled:
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(recompile_limit=4 * num_variants + 8)


def build_shared_models(config: BenchmarkConfig, variants: Sequence[Variant]) -> dict[tuple[bool, str, str], nn.Module]:
    """One CPU model per (adapter, attention implementation), all holding the same backbone weights."""
    models: dict[tuple[bool, str, str], nn.Module] = {}
    reference: dict[str, torch.Tensor] | None = None
    for v in variants:
        if v.model_key in models:
            continue
        model = build_variant_model(config, v, device="cpu")
        if reference is None:
            reference = model.state_dict()
        else:  # strict=False: the plain backbone has no adapter weights
            model.load_state_dict(reference, strict=False)
        models[v.model_key] = model
    return models


def _round_robin(
    results: list[VariantResult],
    steps: list[Callable[[], None]],
    warmup: int,
    reps: int,
    device: torch.device,
    phase: str,
    tick: Callable[[str], None],
) -> None:
    """Call every step once per round; record the rounds after ``warmup`` in ``<phase>_s`` and
    (on CPU) ``<phase>_cpu_s``."""
    for round_index in range(warmup + reps):
        for result, step in zip(results, steps):
            wall, cpu = _timed(step, device)
            if round_index >= warmup:
                getattr(result, f"{phase}_s").append(wall)
                if device.type == "cpu":
                    getattr(result, f"{phase}_cpu_s").append(cpu)
            when = "warm-up" if round_index < warmup else f"round {round_index - warmup + 1}/{reps}"
            tick(f"{result.variant.name} {phase} {when}: {wall:.3f}s")
