"""tools/zero_memory.py counting: model states against hand arithmetic, activations against a real forward."""

import importlib.util
from pathlib import Path

import timm
import torch

import video_sparse  # noqa: F401
from video_sparse.adapters import set_trainable

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("tool_zero_memory", REPO / "tools" / "zero_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_states_apply_the_estimator_to_trainable_parameters_only():
    zm = _tool()
    counts = {"total": 1000, "trainable": 100, "frozen": 900, "largest_layer": 50}
    # ZeRO-2: 2 B 16-bit trainable + 18 B / 4 GPUs of gradients, master and moments, + 2 B frozen, replicated
    assert zm.model_states_bytes(counts, 2, gpus=4) == 200 + 450 + 1800
    # ZeRO-3: 4 B x largest layer (gathered) + 18 B / 4 GPUs, + 2 B frozen / 4 GPUs
    assert zm.model_states_bytes(counts, 3, gpus=4) == 200 + 450 + 450


def _model(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        model = timm.create_model(
            "sparse_videomae_base_patch16_224",
            num_classes=10,
            num_frames=4,
            img_size=64,
            depth=4,
            sparse_layers=(1, 2, 3),
        )
    set_trainable(model)  # as the tool measures it: the backbone frozen
    return model.train()


def test_activation_count_on_the_meta_device_equals_a_real_forward():
    zm = _tool()
    cpu, meta = _model("cpu"), _model("meta")
    x = torch.randn(2, 3, 4, 64, 64)
    for keep in (0.7, 1.0):
        saved = zm._SavedTensors()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            cpu(x, keep_rate=keep)  # the CPU's fused attention keeps q, k, v, output and log-sum-exp
        real = sum(saved.sizes.values())
        assert zm.activation_bytes(meta, x.to("meta"), keep, checkpointing=False) == real
    dense = zm.activation_bytes(meta, x.to("meta"), 1.0, checkpointing=False)
    sparse = zm.activation_bytes(meta, x.to("meta"), 0.7, checkpointing=False)
    ckpt = zm.activation_bytes(meta, x.to("meta"), 0.7, checkpointing=True)
    block_input = 2 * 32 * 768 * 4  # fp32, 2 clips x 32 tokens x 768: the first block's input alone
    assert block_input < ckpt < sparse < dense
