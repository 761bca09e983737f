"""tools/visualize.py: checkpoints are really loaded, images give a PNG, videos a GIF / MP4 / sheet."""

import importlib.util
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import video_sparse  # noqa: F401
from video_sparse.adapters import is_add_on_key, set_trainable
from video_sparse.analysis.token_maps import center_crop, compute_kept_tokens, render_image, to_model_input
from video_sparse.checkpoint import atomic_save, save_adapter_checkpoint
from video_sparse.data.demo import write_video

REPO = Path(__file__).resolve().parents[2]
IMAGE_MODEL = "sparse_vit_nano_patch16_64"
VIDEO_MODEL = "sparse_videomae_nano_patch16_64"


def _tool():
    spec = importlib.util.spec_from_file_location("tool_visualize", REPO / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _trained_like(name, seed=0, **kwargs):
    """A model whose adapters are not at their zero start, so they change which tokens are kept."""
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=4, **kwargs)
    set_trainable(model)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "adapter" in pname:
                p.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def clip(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (24, 72, 72, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    return path


def _expected_picture(model, photo):
    pixels = center_crop(Image.open(photo), 64)
    tokens = compute_kept_tokens(model, to_model_input(pixels, (0.5,) * 3, (0.5,) * 3))
    return np.asarray(render_image(pixels, tokens, scale=3))


def test_backbone_plus_adapter_checkpoint(tmp_path, photo):
    model = _trained_like(IMAGE_MODEL)
    backbone = {k: v for k, v in model.state_dict().items() if not is_add_on_key(k)}
    torch.save(backbone, tmp_path / "backbone.pth")
    save_adapter_checkpoint(model, tmp_path / "adapters.pth")
    out = _tool()(
        [
            "--model",
            IMAGE_MODEL,
            "--arg",
            "num_classes=4",
            "--backbone",
            str(tmp_path / "backbone.pth"),
            "--checkpoint",
            str(tmp_path / "adapters.pth"),
            "--input",
            str(photo),
            "--out",
            str(tmp_path / "kept.png"),
        ]
    )
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), _expected_picture(model, photo))


def test_full_checkpoint_rebuilds_the_model(tmp_path, photo):
    model = _trained_like(IMAGE_MODEL, seed=1, keep_rate=0.5)
    atomic_save({"model": model.state_dict(), "model_args": model.model_args}, tmp_path / "model_final.pth")
    out = _tool()(
        ["--checkpoint", str(tmp_path / "model_final.pth"), "--input", str(photo), "--out", str(tmp_path / "kept.png")]
    )
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), _expected_picture(model, photo))


def test_video_gif_mp4_and_sheet_without_checkpoint(tmp_path, clip, caplog):
    main = _tool()
    with caplog.at_level(logging.WARNING):
        gif = main(
            ["--model", VIDEO_MODEL, "--random-weights", "--input", str(clip), "--out", str(tmp_path / "kept.gif")]
        )
    assert "random" in caplog.text
    with Image.open(gif) as image:
        assert image.n_frames == 16
        width = image.width
    mp4 = main(
        [
            "--model",
            VIDEO_MODEL,
            "--random-weights",
            "--input",
            str(clip),
            "--out",
            str(tmp_path / "kept.mp4"),
            "--stride",
            "1",
            "--start",
            "4",
        ]
    )
    with av.open(str(mp4)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16
    sheet = main(
        [
            "--model",
            VIDEO_MODEL,
            "--random-weights",
            "--input",
            str(clip),
            "--out",
            str(tmp_path / "kept.png"),
            "--keep-rate",
            "0.5",
        ]
    )
    with Image.open(sheet) as image:
        assert image.width == width and image.height % 8 == 0 and image.height > 8 * 64


def test_image_model_on_a_video_uses_one_frame(tmp_path, clip):
    out = _tool()(
        ["--model", IMAGE_MODEL, "--random-weights", "--input", str(clip), "--out", str(tmp_path / "frame.png")]
        + ["--frame", "3"]
    )
    with Image.open(out) as image:
        assert image.size == (4 * 192 + 3 * 4, 192 + 16)


def test_bad_inputs(tmp_path, photo):
    main = _tool()
    with pytest.raises(SystemExit, match="not found"):
        main(
            ["--model", IMAGE_MODEL, "--random-weights", "--input", str(tmp_path / "missing.jpg")]
            + ["--out", str(tmp_path / "a.png")]
        )
    with pytest.raises(SystemExit, match="video model needs a video"):
        main(["--model", VIDEO_MODEL, "--random-weights", "--input", str(photo), "--out", str(tmp_path / "a.gif")])
    with pytest.raises(SystemExit, match="--model"):
        main(["--random-weights", "--input", str(photo), "--out", str(tmp_path / "a.png")])


def test_a_model_with_random_weights_is_drawn_only_when_asked(tmp_path, photo, caplog):
    """An adapter-only file without its backbone, or no weights at all: refused, nothing written; the
    explicit flag draws it with a warning; a missing --backbone names the kind of file."""
    main = _tool()
    model = _trained_like(IMAGE_MODEL)
    save_adapter_checkpoint(model, tmp_path / "adapters.pth")
    adapter_only = ["--model", IMAGE_MODEL, "--arg", "num_classes=4", "--checkpoint", str(tmp_path / "adapters.pth")]
    out = tmp_path / "kept.png"
    with pytest.raises(SystemExit, match="adapters and head only; give the backbone .* --random-weights"):
        main([*adapter_only, "--input", str(photo), "--out", str(out)])
    with pytest.raises(SystemExit, match="every weight would be random"):
        main(["--model", IMAGE_MODEL, "--input", str(photo), "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit, match="--backbone=nowhere.pth: backbone weights not found"):
        main([*adapter_only, "--backbone", "nowhere.pth", "--input", str(photo), "--out", str(out)])
    with caplog.at_level(logging.WARNING):
        assert main([*adapter_only, "--random-weights", "--input", str(photo), "--out", str(out)]) == out
    assert out.is_file() and "backbone is random" in caplog.text
