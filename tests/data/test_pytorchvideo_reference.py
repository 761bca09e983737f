"""Our clip sampling and test views checked against pytorchvideo 0.1.5, an independent implementation.

pytorchvideo samples clips by time: a sampler returns ``[start, end)`` in seconds and a clip holds the
frames whose time ``i / fps`` lies in it (first frame ``ceil(fps * start)``), then
``uniform_temporal_subsample`` picks ``num_frames`` of them. Ours samples frame indices directly. With
exact (``Fraction``) times the two meet on a frame grid, so every relation below is asserted exactly.

``pytorchvideo.transforms`` does not import with the pinned torchvision (it imports the removed
``torchvision.transforms.functional_tensor``); its ``functional.py`` needs only torch and numpy and is
loaded here from its file, with nothing patched. pytorchvideo missing is an error, never a skip.
"""

from __future__ import annotations

import importlib.util
import math
import random
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import pytorchvideo
    from pytorchvideo.data import clip_sampling as pv_sampling
    from pytorchvideo.data.encoded_video import EncodedVideo
    from pytorchvideo.data.frame_video import FrameVideo
    from pytorchvideo.data.ssv2 import SSv2
except ImportError as e:  # a collection error, so a missing reference fails the run
    raise ImportError(
        f"{e}; install the reference: pip install --no-deps pytorchvideo==0.1.5 iopath==0.1.10 "
        "portalocker==4.4.2 (tools/setup_env.sh does)"
    ) from e

from video_sparse.data.clip_sampling import dense_indices, segment_indices
from video_sparse.data.video_dataset import build_video_dataset
from video_sparse.data.video_transforms import VideoEvalTransform


def _load_functional() -> types.ModuleType:
    path = Path(pytorchvideo.__file__).parent / "transforms" / "functional.py"
    spec = importlib.util.spec_from_file_location("pytorchvideo_transforms_functional", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PV_F = _load_functional()
FPS = (Fraction(25), Fraction(30), Fraction(30000, 1001))
CLIP_SHAPES = ((8, 1), (8, 4), (16, 2), (16, 4), (4, 8))  # (num_frames, frame_interval)
NUM_CLIPS = (2, 3, 4, 5, 7, 10)


def _lengths(span: int) -> list[int]:
    """Video lengths around the clip span: shorter, equal, a little and much longer."""
    candidates = (
        1,
        2,
        span - 1,
        span,
        span + 1,
        span + 2,
        span + 3,
        2 * span - 1,
        3 * span + 2,
        5 * span,
        5 * span + 3,
        10 * span + 7,
        300,
    )
    return sorted({n for n in candidates if n >= 1})


def _cases():
    for num_frames, interval in CLIP_SHAPES:
        span = (num_frames - 1) * interval + 1
        for num_total in _lengths(span):
            yield num_frames, interval, span, num_total


def _first_frame(fps: Fraction, time_sec: Fraction) -> int:
    """pytorchvideo's own time -> frame rule (``FrameVideo``; its PyAV reader agrees, see the end-to-end test)."""
    return FrameVideo._get_frame_index_for_time(types.SimpleNamespace(_fps=fps), time_sec)


def _pv_clip(start: Fraction, end: Fraction, fps: Fraction, num_total: int, num_frames: int) -> np.ndarray:
    """Frame indices of pytorchvideo's clip ``[start, end)``: frames in it, then uniform_temporal_subsample."""
    first, stop = _first_frame(fps, start), min(_first_frame(fps, end), num_total)
    frames = torch.arange(first, stop)
    return PV_F.uniform_temporal_subsample(frames, num_frames, temporal_dim=0).numpy()


def _pv_clips(sampler, duration: Fraction) -> list:
    clips = []
    last_end = Fraction(0)
    while True:
        info = sampler(last_end, duration, {})
        clips.append(info)
        last_end = info.clip_end_sec
        if info.is_last_clip or len(clips) > 1000:
            return clips


def test_pytorchvideo_transforms_package_does_not_import_with_this_torchvision():
    """Why ``functional.py`` is loaded from its file (the README says so too)."""
    with pytest.raises(ModuleNotFoundError, match="torchvision.transforms.functional_tensor"):
        import pytorchvideo.transforms  # noqa: F401


def test_frames_inside_a_dense_clip_are_uniform_temporal_subsample_of_its_span():
    """A clip that fits: ``interval``-strided frames are exactly uniform_temporal_subsample of the span.
    A video shorter than the span: pytorchvideo stretches the frames it has over the clip, ours repeats
    the last frame; both start at frame 0 and end at the last frame, and ours is never earlier."""
    for num_frames, interval, span, num_total in _cases():
        ours = dense_indices(num_total, num_frames, interval, "test", 0, 2)
        pv = PV_F.uniform_temporal_subsample(torch.arange(min(num_total, span)), num_frames, temporal_dim=0).numpy()
        case = (num_frames, interval, num_total)
        if num_total >= span:
            assert ours.tolist() == pv.tolist(), case
        else:
            assert ours[0] == pv[0] == 0 and ours[-1] == pv[-1] == num_total - 1, case
            assert np.all(ours >= pv), case


@pytest.mark.parametrize("fps", FPS, ids=str)
def test_dense_test_clips_vs_constant_clips_per_video_sampler(fps):
    """Multi-view test placement differs by design, with an exact relation.

    Ours: clip ``k`` of ``n`` starts at ``k / (n - 1)`` of the start range, so the first clip starts at
    frame 0 and the last ends at the last frame (VideoMAE's test clips are spread this way too). pytorchvideo's
    ConstantClipsPerVideoSampler with ``clips_per_video = m`` starts clip ``k`` at ``k / m`` of the range
    and never reaches its end. Hence ours for ``n`` clips = pytorchvideo's ``n - 1`` clips plus a clip
    ending at the last frame. Where a start time falls between frames, pytorchvideo takes the next frame
    (ceil), ours the nearest (round, ties to even). One clip (``n = 1``, and validation): ours is the
    middle start, i.e. pytorchvideo's second clip of ``clips_per_video = 2``, floored.
    """
    checked = 0
    for num_frames, interval, span, num_total in _cases():
        duration, clip_duration = Fraction(num_total) / fps, Fraction(span) / fps
        max_start = max(num_total - span, 0)
        for n in NUM_CLIPS:
            pv = _pv_clips(pv_sampling.ConstantClipsPerVideoSampler(clip_duration, n - 1), duration)
            assert len(pv) == n - 1 and [c.clip_index for c in pv] == list(range(n - 1))
            for k in range(n):
                ours = dense_indices(num_total, num_frames, interval, "test", k, n)
                case = (num_frames, interval, num_total, n, k)
                if k == n - 1:  # the start pytorchvideo's even steps reach next, but never emit
                    if n >= 3:
                        step = pv[1].clip_start_sec - pv[0].clip_start_sec
                        assert fps * (pv[-1].clip_start_sec + step) == max_start, case
                    assert ours[0] == max_start, case
                    assert ours[-1] == num_total - 1 or num_total < span, case
                    continue
                assert pv[k].clip_end_sec - pv[k].clip_start_sec == clip_duration
                exact = fps * pv[k].clip_start_sec  # start in frames, a Fraction
                pv_idx = _pv_clip(pv[k].clip_start_sec, pv[k].clip_end_sec, fps, num_total, num_frames)
                assert ours[0] == round(exact) and pv_idx[0] == math.ceil(exact), case
                if num_total >= span:
                    assert ours.tolist() == (pv_idx - (math.ceil(exact) - round(exact))).tolist(), case
                checked += 1
        two = _pv_clips(pv_sampling.ConstantClipsPerVideoSampler(clip_duration, 2), duration)
        middle = math.floor(fps * two[1].clip_start_sec)
        for mode, n in (("test", 1), ("val", 1), ("val", 5)):
            assert dense_indices(num_total, num_frames, interval, mode, 0, n)[0] == middle
    assert checked > 1600


@pytest.mark.parametrize("fps", FPS, ids=str)
def test_dense_test_clips_are_uniform_clip_sampler_windows(fps):
    """Where the clips overlap or touch (``span < num_total <= n * span``), our ``n`` test clips are the
    windows of pytorchvideo's UniformClipSampler with stride ``(num_total - span) / (n - 1)`` frames and
    back-padding: it gives exactly ``n`` clips, the last ending at the video's end. (A longer video
    would need a stride above the clip length, which that sampler refuses.) Start frames: ours rounds
    the window's start, pytorchvideo takes the next frame (ceil)."""
    checked = 0
    for num_frames, interval, span, num_total in _cases():
        if num_total <= span:
            continue
        duration, clip_duration = Fraction(num_total) / fps, Fraction(span) / fps
        for n in NUM_CLIPS:
            if num_total > n * span:
                continue
            stride = Fraction(num_total - span, n - 1) / fps
            clips = _pv_clips(pv_sampling.UniformClipSampler(clip_duration, stride, backpad_last=True), duration)
            assert len(clips) == n and clips[-1].clip_end_sec == duration, (num_total, n)
            for k, clip in enumerate(clips):
                ours = dense_indices(num_total, num_frames, interval, "test", k, n)
                exact = fps * clip.clip_start_sec
                pv_idx = _pv_clip(clip.clip_start_sec, clip.clip_end_sec, fps, num_total, num_frames)
                shift = math.ceil(exact) - round(exact)
                assert ours.tolist() == (pv_idx - shift).tolist(), (num_frames, interval, num_total, n, k)
                checked += 1
    assert checked > 900


@pytest.mark.parametrize("fps", FPS, ids=str)
def test_dense_training_start_range_is_random_clip_sampler_range(fps, monkeypatch):
    """Training clips: both draw the start uniformly over every start whose clip fits (all at frame 0
    when the video is shorter than the span). pytorchvideo's extremes are read by making its
    ``random.uniform`` return each end of the interval it is given (restored after the test)."""
    gen = torch.Generator().manual_seed(0)
    for num_frames, interval, span, num_total in _cases():
        duration, clip_duration = Fraction(num_total) / fps, Fraction(span) / fps
        max_start = max(num_total - span, 0)
        pv_range = []
        for pick in (lambda a, b: a, lambda a, b: b):
            monkeypatch.setattr(random, "uniform", pick)
            clip = pv_sampling.RandomClipSampler(clip_duration)(0, duration, {})
            pv_idx = _pv_clip(clip.clip_start_sec, clip.clip_end_sec, fps, num_total, num_frames)
            pv_range.append(int(pv_idx[0]))
        monkeypatch.undo()
        assert pv_range == [0, max_start], (num_frames, interval, num_total)
        draws = 400 if max_start <= 30 else 50
        starts = [int(dense_indices(num_total, num_frames, interval, "train", generator=gen)[0]) for _ in range(draws)]
        assert min(starts) >= 0 and max(starts) <= max_start
        if max_start <= 30:
            assert min(starts) == 0 and max(starts) == max_start, (num_frames, interval, num_total)


SEGMENTS = (4, 8, 16, 32)


def test_segment_sampling_vs_pytorchvideo_ssv2_sampler(monkeypatch):
    """SSv2 segment sampling differs by design and agrees within one frame.

    pytorchvideo (as SlowFast) cuts the ``num_total - 1`` gaps between the first and the last frame
    into ``num_segments`` parts with rounded ends ``[lo_j, hi_j]`` (neighbours share an end) and takes
    the integer midpoint, or a random frame of ``[lo_j, hi_j]`` in training. Ours cuts the
    ``num_total`` frames into equal segments ``[j L, (j + 1) L)`` and takes ``floor((j + offset) L)``.
    pytorchvideo's training range runs from frame 0 to the last frame; every centre of ours is within one
    frame of its centre, and every training draw and test view of ours lies in ``[lo_j - 1, hi_j + 1]``.
    """
    gen = torch.Generator().manual_seed(0)
    differ = 0
    for n in SEGMENTS:
        for num_total in range(n, 400, 3):
            frames = list(range(num_total))
            centre = np.array(SSv2._sample_clip_frames(frames, n, rand_sample=False))
            ours = segment_indices(num_total, n, "val")
            assert np.abs(ours - centre).max() <= 1, (n, num_total)
            differ += int(np.any(ours != centre))
            bounds = []
            for pick in (lambda a, b: a, lambda a, b: b):
                monkeypatch.setattr(random, "randint", pick)
                bounds.append(np.array(SSv2._sample_clip_frames(frames, n, rand_sample=True)))
            monkeypatch.undo()
            lo, hi = bounds
            assert lo[0] == 0 and hi[-1] == num_total - 1
            for _ in range(20):
                draw = segment_indices(num_total, n, "train", generator=gen)
                assert np.all(draw >= lo - 1) and np.all(draw <= hi + 1), (n, num_total, draw)
            for k, n_clips in ((0, 2), (1, 2), (2, 3)):
                view = segment_indices(num_total, n, "test", k, n_clips)
                assert np.all(view >= lo - 1) and np.all(view <= hi + 1), (n, num_total, k)
    assert differ > 0  # the protocols are not the same one


def _position_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3): channel 0 holds the row, channel 1 the column, channel 2 the frame."""
    rows = np.broadcast_to(np.arange(height)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width)[None, :], (height, width))
    frames = [np.stack([rows, cols, np.full_like(rows, t)], axis=-1) for t in range(num_frames)]
    return np.stack(frames).astype(np.uint8)


def _offsets(crop: torch.Tensor) -> tuple[int, int]:
    """(top, left) of a (C, T, S, S) crop of position frames, on the 0-255 scale."""
    return int(round(float(crop[0, 0, 0, 0]))), int(round(float(crop[1, 0, 0, 0])))


@pytest.mark.parametrize("num_crops", [1, 3])
def test_spatial_crops_vs_uniform_crop(num_crops):
    """Spatial test crops against pytorchvideo's ``uniform_crop`` (spatial index 0/1/2: start, centre,
    end of the long side; ``num_crops = 1`` is its centre crop). The end crops are identical. A centre
    on an odd margin differs by design: pytorchvideo takes ``ceil(margin / 2)`` on both sides; ours takes
    ``floor`` on the short side and, along the long side, ``floor`` for one crop and ``round`` (ties to
    even) for the middle one of three."""
    checked = 0
    for short in (56, 57, 64, 65, 66, 67):
        for size in sorted({short, short - 1, short - 2, short - 3, short - 8}):
            for long in range(short, min(short + 40, 256)):
                for height, width in ((short, long), (long, short)):
                    frames = _position_frames(2, height, width)
                    transform = VideoEvalTransform(size, short, num_crops, mean=(0, 0, 0), std=(1, 1, 1))
                    pv_in = torch.from_numpy(frames).permute(3, 0, 1, 2).float()
                    for k in range(num_crops):
                        ours = transform(frames, k) * 255
                        pv = PV_F.uniform_crop(pv_in, size, 1 if num_crops == 1 else k)
                        assert ours.shape == pv.shape == (3, 2, size, size)
                        top, left = _offsets(ours)
                        assert torch.equal(ours.round(), pv_in[:, :, top : top + size, left : left + size])
                        pv_top, pv_left = _offsets(pv)
                        long_room, short_room = long - size, short - size
                        if num_crops == 1 or k == 1:
                            long_ours = long_room // 2 if num_crops == 1 else round(long_room / 2)
                            long_shift = math.ceil(long_room / 2) - long_ours
                        else:
                            long_shift = 0
                        short_shift = math.ceil(short_room / 2) - short_room // 2
                        # ours tiles along the width when the frame is square, as pytorchvideo does
                        shifts = (long_shift, short_shift) if height > width else (short_shift, long_shift)
                        assert (pv_top - top, pv_left - left) == shifts, (height, width, size, k)
                        checked += 1
    assert checked > 2000


def test_pytorchvideo_decodes_the_frames_of_its_clips_as_our_test_views(tmp_path, painted):
    """End to end on a real MP4 whose frames carry their index: pytorchvideo's PyAV reader decodes the
    windows of its UniformClipSampler (as in the test above) and uniform_temporal_subsample picks the
    frames; our dataset's test views are the same clips, a frame earlier where a start falls exactly
    between two frames and rounds down (ties to even)."""
    num_total, fps, num_frames, interval, n = 100, 25, 8, 3, 5
    span = (num_frames - 1) * interval + 1
    painted.write_video(tmp_path / "a.mp4", num_total, fps=fps)
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    ds = build_video_dataset(
        tmp_path,
        tmp_path / "list.txt",
        "test",
        backend="pyav",
        sampling="dense",
        num_frames=num_frames,
        frame_interval=interval,
        input_size=64,
        short_side_size=64,
        num_clips=n,
        num_crops=1,
    )
    video = EncodedVideo.from_path(str(tmp_path / "a.mp4"), decode_audio=False, decoder="pyav")
    assert video.duration == Fraction(num_total, fps)
    stride = Fraction(num_total - span, n - 1) / fps
    clips = _pv_clips(pv_sampling.UniformClipSampler(Fraction(span, fps), stride, backpad_last=True), video.duration)
    assert len(clips) == n
    ours, theirs = [], []
    for k, clip in enumerate(clips):
        decoded = video.get_clip(clip.clip_start_sec, clip.clip_end_sec)["video"]  # (C, T, H, W) float
        assert decoded.shape[1] == span
        picked = PV_F.uniform_temporal_subsample(decoded, num_frames).permute(1, 2, 3, 0).numpy()
        theirs.append([painted.read_index(f) for f in picked])
        ours.append(painted.clip_indices(ds[k]["input"]))
    video.close()
    # starts in frames: 0, 19.5, 39, 58.5, 78 -> ours 0, 20, 39, 58, 78; pytorchvideo 0, 20, 39, 59, 78
    assert [t[0] for t in theirs] == [0, 20, 39, 59, 78]
    assert [o[0] for o in ours] == [0, 20, 39, 58, 78]
    for k in range(n):
        shift = theirs[k][0] - ours[k][0]
        assert ours[k] == [i - shift for i in theirs[k]] == list(range(ours[k][0], ours[k][0] + span, interval))
