"""Checkpoints: pre-trained backbone loading (Google .npz, timm, VideoMAE, DINOv2 from ONNX),
position-table resizing, atomic saves, adapter-only checkpoints and trained-weight loading."""

from .adapter_files import (
    adapter_state_dict,
    is_adapter_checkpoint,
    load_adapter_checkpoint,
    load_trained_weights,
    save_adapter_checkpoint,
)
from .convert import convert_npz, convert_torch
from .files import SUPPORTED_SUFFIXES, read_checkpoint
from .infer import create_model_from_checkpoint, infer_model_args
from .io import atomic_save, atomic_write
from .load import load_pretrained, read_converted
from .onnx_vit import dinov2_state_dict_from_onnx, packaged_dinov2_onnx, write_dinov2_safetensors
from .report import CheckpointError, LoadReport
from .resize_pos_embed import resize_pos_embed_2d, resize_pos_embed_3d

__all__ = [
    "CheckpointError",
    "LoadReport",
    "SUPPORTED_SUFFIXES",
    "adapter_state_dict",
    "atomic_save",
    "atomic_write",
    "convert_npz",
    "convert_torch",
    "create_model_from_checkpoint",
    "dinov2_state_dict_from_onnx",
    "infer_model_args",
    "is_adapter_checkpoint",
    "load_adapter_checkpoint",
    "load_pretrained",
    "load_trained_weights",
    "packaged_dinov2_onnx",
    "read_checkpoint",
    "read_converted",
    "resize_pos_embed_2d",
    "resize_pos_embed_3d",
    "save_adapter_checkpoint",
    "write_dinov2_safetensors",
]
