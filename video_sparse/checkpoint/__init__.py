"""Checkpoints: pre-trained backbone loading (Google .npz, timm, VideoMAE, DINOv2 from ONNX),
position-table resizing, atomic saves and adapter-only checkpoints."""

from .convert import convert_npz, convert_torch
from .io import adapter_state_dict, atomic_save, atomic_write, load_adapter_checkpoint, save_adapter_checkpoint
from .infer import create_model_from_checkpoint, infer_model_args
from .load import load_pretrained, read_converted
from .onnx_vit import dinov2_state_dict_from_onnx, packaged_dinov2_onnx, write_dinov2_safetensors
from .resize_pos_embed import resize_pos_embed_2d, resize_pos_embed_3d
from .files import SUPPORTED_SUFFIXES, read_checkpoint
from .report import CheckpointError, LoadReport, is_add_on_key

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
    "is_add_on_key",
    "load_adapter_checkpoint",
    "load_pretrained",
    "packaged_dinov2_onnx",
    "read_checkpoint",
    "read_converted",
    "resize_pos_embed_2d",
    "resize_pos_embed_3d",
    "save_adapter_checkpoint",
    "write_dinov2_safetensors",
]
