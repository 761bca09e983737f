"""Image metadata that changes what the pixels mean, applied the same way by every image reader.

The reference of each file is the array it was made from (not a decode by the code under test):
EXIF orientations 1-8 written as a phone writes them (pixels stored turned, the tag says how to
show them), 16-bit greyscale PNGs (scaled to 8 bits, not clipped), transparency (LA, RGBA,
palette with a transparent colour: over white), CMYK and palette images. Every reader (image
datasets / VTAB, frame folders, prediction inputs) must show the same pixels. A 6000x4000 photo
given to a video model must cost memory in proportion to the clip, not to the photo.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_sparse.data.image_datasets import ImageFileDataset
from video_sparse.data.images import load_image
from video_sparse.data.readers import open_video
from video_sparse.inference.dataset import PredictionDataset
from video_sparse.inference.inputs import InputItem

ROOT = Path(__file__).resolve().parents[2]
# how a phone stores an upright picture for each EXIF orientation (the inverse of what a viewer does)
STORE = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),  # viewer turns 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),  # viewer turns 90 degrees counter-clockwise
}


def upright(height: int = 24, width: int = 40) -> np.ndarray:
    """An asymmetric picture: quadrants of different colours."""
    a = np.zeros((height, width, 3), np.uint8)
    a[: height // 2, : width // 2] = (255, 0, 0)
    a[: height // 2, width // 2 :] = (0, 255, 0)
    a[height // 2 :, : width // 2] = (0, 0, 255)
    a[height // 2 :, width // 2 :] = (255, 255, 0)
    return a


def save_as_phone(path: Path, orientation: int, picture: np.ndarray) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(STORE[orientation](picture))).save(path, exif=exif, quality=95)
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation, suffix):
    picture = upright()
    path = save_as_phone(tmp_path / f"photo{suffix}", orientation, picture)
    shown = np.asarray(load_image(path)).astype(float)
    assert shown.shape == picture.shape
    assert np.abs(shown - picture).mean() < (1e-9 if suffix == ".png" else 8.0)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
    Image.fromarray(values).save(tmp_path / "depth.png")
    with Image.open(tmp_path / "depth.png") as im:
        assert im.mode.startswith("I")  # the file is read as 16-bit
    shown = np.asarray(load_image(tmp_path / "depth.png"))
    expected = np.round(values / 257.0).astype(np.uint8)
    assert np.array_equal(shown, np.repeat(expected[..., None], 3, axis=2))


def test_transparency_is_shown_over_white(tmp_path):
    grey = np.full((8, 8), 40, np.uint8)
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:, :4] = 255
    Image.fromarray(np.stack([grey, alpha], -1), "LA").save(tmp_path / "la.png")
    palette = Image.fromarray(np.where(alpha > 0, 1, 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 40, 40, 40] + [0] * 762)
    palette.save(tmp_path / "p.png", transparency=0)
    for name in ("la.png", "p.png"):
        shown = np.asarray(load_image(tmp_path / name))
        assert (shown[:, :4] == 40).all() and (shown[:, 4:] == 255).all(), name


def test_cmyk_and_palette(tmp_path):
    picture = upright()
    Image.fromarray(picture).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    Image.fromarray(picture).convert("P").save(tmp_path / "gif.gif")
    for name in ("print.jpg", "gif.gif"):
        shown = np.asarray(load_image(tmp_path / name)).astype(float)
        assert np.abs(shown - picture).mean() < 8.0, name


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_every_reader_shows_the_same_pixels(tmp_path, orientation):
    picture = upright(32, 48)
    path = save_as_phone(tmp_path / "photo.png", orientation, picture)
    dataset = ImageFileDataset(tmp_path, [("photo.png", 0)], 1, transform=lambda im: im, train=False)
    assert np.array_equal(np.asarray(dataset.load_image(0)), picture)
    frames = tmp_path / "frames"
    frames.mkdir()
    save_as_phone(frames / "img_00001.png", orientation, picture)
    save_as_phone(frames / "img_00002.png", orientation, picture)
    with open_video(frames, filename_tmpl="img_{:05d}.png") as reader:
        assert np.array_equal(reader.get_frames([0, 1]), np.stack([picture, picture]))
    predict = PredictionDataset([InputItem(str(path), "image")], num_frames=2, input_size=32, short_side_size=32)
    clip = predict.read_frames(0)
    assert clip.shape == (2, 32, 48, 3)
    assert np.abs(clip.astype(float) - picture).mean() < 2.0
    image_model = PredictionDataset(
        [InputItem(str(path), "image")], num_frames=None, input_size=32, mean=(0,) * 3, std=(1,) * 3
    )
    tensor = image_model.load_view(0)
    assert tensor.shape == (3, 32, 32)
    assert torch.allclose(tensor[:, 0, 0], torch.tensor([1.0, 0, 0]), atol=0.02)  # red: top left


_MEASURE = """
import resource, sys
import numpy as np
from video_sparse.inference.dataset import PredictionDataset
from video_sparse.inference.inputs import InputItem
ds = PredictionDataset([InputItem(sys.argv[1], "image")], num_frames=16, input_size=224, short_side_size=224)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
clip = ds.load_view(0)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, clip.numel() * clip.element_size())
"""


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_large_photo_costs_memory_in_proportion_to_the_clip(tmp_path, suffix):
    """A 6000x4000 photo (72 MB decoded, 1.15 GB as 16 frames) given to a 16-frame video model."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    photo = tmp_path / f"photo{suffix}"
    Image.fromarray(small).resize((6000, 4000), Image.Resampling.NEAREST).save(photo, quality=80, compress_level=1)
    measure = tmp_path / "measure.py"
    measure.write_text(_MEASURE)
    result = subprocess.run(
        [sys.executable, str(measure), str(photo)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    grown, clip_bytes = (int(v) for v in result.stdout.split())
    decoded = 6000 * 4000 * 3
    # JPEG is decoded at a reduced scale; a PNG is decoded once at full size, then reduced before any copy
    bound = 8 * clip_bytes + (0 if suffix == ".jpg" else 2 * decoded)
    assert grown < bound, f"peak memory grew by {grown / 2**20:.0f} MiB for a {clip_bytes / 2**20:.0f} MiB clip"


def _hd_video(path: Path, frames: int = 12, width: int = 1920, height: int = 1080) -> Path:
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            small = rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8)
            big = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
            for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frames_reduced_at_decode_give_the_same_clip(tmp_path):
    """Reducing each frame as it is decoded changes no pixel of the evaluation clip."""
    from video_sparse.data.video_transforms import VideoEvalTransform

    path = _hd_video(tmp_path / "hd.mp4", frames=4, width=640, height=360)
    transform = VideoEvalTransform(224, 256, 3, (0.5,) * 3, (0.5,) * 3)
    with open_video(path, "pyav") as reader:
        full = reader.get_frames([0, 2, 3])
    with open_video(path, "pyav", short_side=256) as reader:
        reduced = reader.get_frames([0, 2, 3])
    assert reduced.shape == (3, 256, 455, 3)
    for crop in range(3):
        assert torch.equal(transform(full, crop), transform(reduced, crop))


_MEASURE_VIDEO = """
import resource, sys
from video_sparse.inference.dataset import PredictionDataset
from video_sparse.inference.inputs import InputItem
ds = PredictionDataset([InputItem(sys.argv[1], "video")], num_frames=12, frame_interval=1,
                       input_size=224, short_side_size=224, backend="pyav")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
clip = ds.load_view(0)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, clip.numel() * clip.element_size())
"""


def test_a_full_hd_clip_costs_memory_in_proportion_to_the_output(tmp_path):
    """12 frames of 1920x1080 are 75 MB decoded; the 224-pixel clip is 7 MB."""
    path = _hd_video(tmp_path / "hd.mp4")
    measure = tmp_path / "measure.py"
    measure.write_text(_MEASURE_VIDEO)
    result = subprocess.run(
        [sys.executable, str(measure), str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    grown, clip_bytes = (int(v) for v in result.stdout.split())
    one_frame = 1920 * 1080 * 3
    assert grown < 4 * clip_bytes + 8 * one_frame, f"peak grew by {grown / 2**20:.0f} MiB"
