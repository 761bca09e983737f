"""Data modules: built from the config files' values, checked arguments, the dataset contract,
frame folders numbered from 0, and the one substitution/exclusion policy for unreadable samples."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import get_object
from PIL import Image
from test_image_datasets import write_cifar100

from video_sparse.data import (
    CIFAR100Data,
    ClassificationDataset,
    DemoData,
    Food101Data,
    SVHNData,
    VideoData,
    VTABData,
    collate_samples,
)
from video_sparse.data.clip_sampling import sample_indices
from video_sparse.data.image_datasets import ImageFileDataset
from video_sparse.data.image_transforms import vtab_transform
from video_sparse.data.vtab import VTAB_TASKS, make_digits_vtab
from video_sparse.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"
NOT_ARGUMENTS = ("_target_", "defaults")


def config_values(name: str, root: Path) -> tuple[type, dict]:
    """The keys of ``configs/data/<name>.yaml`` (its defaults merged first), interpolations resolved by hand."""
    text = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    values: dict = {}
    for base in text.get("defaults", []):
        if base != "_self_":
            values.update(config_values(base, root)[1])
    values.update(text)
    values["root"] = str(root)
    if values.get("task") == "???":
        values["task"] = "dtd"
    for key, value in list(values.items()):
        if isinstance(value, str) and "${vtab_classes:" in value:
            values[key] = VTAB_TASKS[values["task"]][0]
        elif isinstance(value, str) and "${data.root}" in value:
            values[key] = value.replace("${data.root}", str(root))
    return get_object(values["_target_"]), values


def arguments(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in NOT_ARGUMENTS}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_config_file_builds_its_module(name, tmp_path):
    cls, values = config_values(name, tmp_path / "missing")  # no file is read at construction
    module = cls(**arguments(values))
    for key in ("num_classes", "batch_size", "num_workers", "input_size"):
        if values.get(key) is not None:
            assert getattr(module, key) == values[key], key
    for key in ("mean", "std"):
        if values.get(key) is not None:
            assert getattr(module, key) == tuple(float(v) for v in values[key]), key
    assert module.is_video == (cls in (VideoData, DemoData))
    assert module.num_frames == ((values.get("num_frames") or 16) if module.is_video else 1)
    if module.is_video:
        assert module.sampling == values["sampling"] and module.hflip == values["hflip"]
        assert module.test_num_clips == values.get("test_num_clips")
        assert module.multiprocessing_context() in (None, "spawn")
    else:
        assert module.check_lists() == {} and module.multiprocessing_context() is None


@pytest.mark.parametrize("cls", [VideoData, DemoData, VTABData, CIFAR100Data, SVHNData, Food101Data])
def test_unknown_keyword_is_refused(cls, tmp_path):
    kwargs = {"root": str(tmp_path), "num_classes": {CIFAR100Data: 100, Food101Data: 101}.get(cls, 10)}
    if cls is VTABData:
        kwargs["task"] = "svhn"
    cls(**kwargs)
    with pytest.raises(TypeError, match="strat_index"):
        cls(**kwargs, strat_index=0)


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_frames", 0),
        ("sampling", "uniform"),
        ("backend", "ffmpeg"),
        ("layout", "folders"),
        ("filename_tmpl", "img_{x}.jpg"),
        ("start_index", -1),
        ("short_side_size", 100),
        ("mean", [0.5, 0.5]),
        ("std", [0.2, 0.0, 0.2]),
        ("batch_size", 0),
        ("num_workers", -1),
        ("hflip", "yes"),
        ("min_scale", 0.0),
        ("test_num_crops", 0),
        ("num_classes", 2.5),
    ],
)
def test_bad_video_value_names_its_key(key, value, tmp_path):
    with pytest.raises(ConfigError, match=rf"data\.{key}\b"):
        VideoData(**{"root": str(tmp_path), "num_classes": 3, key: value})


def test_bad_image_values_name_their_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.train_split"):
        VTABData(root=str(tmp_path), task="dtd", train_split="train")
    with pytest.raises(ConfigError, match=r"data\.num_classes"):
        VTABData(root=str(tmp_path), task="my_task")
    with pytest.raises(ConfigError, match=r"data\.num_classes=10"):
        CIFAR100Data(root=str(tmp_path), num_classes=10)
    with pytest.raises(ConfigError, match=r"data\.root"):
        SVHNData(root="", num_classes=10)
    with pytest.raises(ConfigError, match=r"data\.input_size"):
        Food101Data(root=str(tmp_path), num_classes=101, input_size=-1)


def test_split_without_list_names_its_key(tmp_path):
    module = VideoData(root=str(tmp_path), num_classes=3)
    with pytest.raises(ConfigError, match=r"data\.val_list must be set"):
        module.dataset("val")
    with pytest.raises(FileNotFoundError, match=r"data\.train_list"):
        module.check_lists(("train",), require=True)
    assert module.check_lists() == {}


def paint(i: int, size: int = 32) -> np.ndarray:
    """A frame whose pixels encode ``i`` (bright blocks for set bits), robust to JPEG."""
    frame = np.full((size, size, 3), 40, np.uint8)
    for bit in range(8):
        if i >> bit & 1:
            frame[: size // 2, bit * size // 8 : (bit + 1) * size // 8] = 220
    return frame


@pytest.fixture
def zero_based_frames(tmp_path):
    """Two frame folders whose first file is ``f_000.jpg`` (frame 0), and a frame list."""
    counts = {"clip a": 12, "clip_b": 9}
    for folder, n in counts.items():
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(paint(i)).save(tmp_path / folder / f"f_{i:03d}.jpg", quality=95)
    lst = tmp_path / "frames.txt"
    lst.write_text("".join(f"{folder} {n} {label}\n" for label, (folder, n) in enumerate(counts.items())))
    return tmp_path, lst, counts


def test_frame_folders_numbered_from_zero(zero_based_frames):
    root, lst, counts = zero_based_frames
    module = VideoData(
        root=str(root),
        num_classes=2,
        train_list=str(lst),
        val_list=str(lst),
        test_list=str(lst),
        layout="frames",
        filename_tmpl="f_{:03d}.jpg",
        start_index=0,
        num_frames=4,
        frame_interval=2,
        input_size=32,
        short_side_size=32,
        test_num_clips=2,
        test_num_crops=1,
    )
    assert module.check_lists() == {"train": 2, "val": 2, "test": 2}
    for split in ("val", "test"):
        ds = module.dataset(split)
        transform = module.transform(split)
        for index in range(len(ds)):
            item = ds[index]
            video, clip = item["sample_index"], item["view_index"]
            folder, total = list(counts.items())[video]
            wanted = sample_indices("dense", total, 4, 2, split, clip, ds.num_clips)
            # the sequential read: every file of the folder in order, frame i = file f_{i:03d}
            frames = np.stack(
                [np.asarray(Image.open(root / folder / f"f_{i:03d}.jpg").convert("RGB")) for i in range(total)]
            )
            torch.testing.assert_close(item["input"], transform(frames[np.asarray(wanted)]), rtol=0, atol=0)
    one_based = VideoData(
        root=str(root),
        num_classes=2,
        val_list=str(lst),
        layout="frames",
        filename_tmpl="f_{:03d}.jpg",
        num_frames=4,
        frame_interval=4,
        input_size=32,
        short_side_size=32,
    )
    failed = one_based.dataset("val")[1]  # start_index=1 asks for f_009.jpg, which does not exist
    assert failed["failed"] and "f_009.jpg" in failed["error"]


def _contract(ds, num_samples: int, num_clips: int, num_crops: int, labels: list[int], ids: list[str]) -> None:
    assert isinstance(ds, ClassificationDataset)
    assert (ds.num_clips, ds.num_crops, ds.num_views) == (num_clips, num_crops, num_clips * num_crops)
    assert len(ds) == num_samples * num_clips * num_crops
    assert list(ds.labels) == labels and list(ds.sample_ids) == ids
    assert ds.failures.count == 0 and ds.failures.sample_ids == []
    item = ds[len(ds) - 1]
    assert {"input", "label", "sample_index", "view_index", "skipped"} <= set(item)
    assert (item["sample_index"], item["view_index"]) == (num_samples - 1, ds.num_views - 1)


def test_video_datasets_satisfy_the_protocol(zero_based_frames):
    root, lst, _ = zero_based_frames
    module = VideoData(
        root=str(root),
        num_classes=2,
        train_list=str(lst),
        test_list=str(lst),
        layout="frames",
        filename_tmpl="f_{:03d}.jpg",
        start_index=0,
        num_frames=4,
        input_size=24,
        short_side_size=32,
        test_num_clips=2,
        test_num_crops=3,
    )
    _contract(module.dataset("train"), 2, 1, 1, [0, 1], ["clip a", "clip_b"])
    _contract(module.dataset("test"), 2, 2, 3, [0, 1], ["clip a", "clip_b"])
    assert module.dataset("test").num_classes == 2


def test_image_datasets_satisfy_the_protocol(tmp_path):
    make_digits_vtab(tmp_path / "vtab", task="digits", n_train=10, n_test=6, size=16)
    vtab = VTABData(
        root=str(tmp_path / "vtab"),
        task="digits",
        num_classes=10,
        train_split="train800",
        val_split="val200",
        input_size=16,
    )
    for split, name in (("train", "train800"), ("val", "val200"), ("test", "test")):
        lines = (tmp_path / "vtab" / "digits" / f"{name}.txt").read_text().split("\n")[:-1]
        ds = vtab.dataset(split)
        _contract(
            ds, len(lines), 1, 1, [int(x.rsplit(None, 1)[1]) for x in lines], [x.rsplit(None, 1)[0] for x in lines]
        )
        assert ds.train == (split == "train") and ds.num_classes == 10
    write_cifar100(tmp_path / "cifar")
    cifar = CIFAR100Data(root=str(tmp_path / "cifar"), num_classes=100, input_size=16)
    ds = cifar.dataset("test")
    _contract(ds, 4, 1, 1, ds.labels, [f"cifar100-test/{i:06d}" for i in range(4)])
    assert ds[0]["input"].shape == (3, 16, 16) and cifar.dataset("train").train


def test_demo_module_writes_only_on_the_main_process(tmp_path):
    module = DemoData(
        root=str(tmp_path / "demo"),
        num_classes=4,
        num_frames=4,
        input_size=32,
        short_side_size=32,
        test_num_clips=2,
        test_num_crops=3,
        hflip=False,
        demo={"num_train": 4, "num_val": 2, "num_test": 2, "size": 32},
    )
    module.prepare(is_main=False)
    assert not (tmp_path / "demo").exists()
    module.prepare(is_main=True)
    assert module.check_lists(require=True) == {"train": 4, "val": 2, "test": 2}
    test = module.dataset("test")
    _contract(test, 2, 2, 3, [0, 1], ["videos/test/test_00000.mp4", "videos/test/test_00001.mp4"])
    assert test[0]["input"].shape == (3, 4, 32, 32)


def _corrupt_video_module(root: Path) -> VideoData:
    root.mkdir()
    for i in range(3):
        (root / f"v{i}").mkdir()
        for k in range(6):
            Image.fromarray(paint(k)).save(root / f"v{i}" / f"img_{k + 1:05d}.jpg")
    (root / "v1" / "img_00003.jpg").write_bytes(b"not a jpeg")
    lst = root / "list.txt"
    lst.write_text("v0 6 0\nv1 6 1\nv2 6 0\n")
    return VideoData(
        root=str(root),
        num_classes=2,
        train_list=str(lst),
        test_list=str(lst),
        num_frames=4,
        frame_interval=1,
        input_size=32,
        short_side_size=32,
        test_num_clips=2,
        test_num_crops=1,
    )


def _image_dataset(root: Path, train: bool) -> ImageFileDataset:
    root.mkdir(exist_ok=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(root / f"{i}.png")
    (root / "1.png").write_bytes(b"not an image")
    return ImageFileDataset(root, [("0.png", 0), ("1.png", 1), ("2.png", 0)], 2, vtab_transform(8), train=train)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_corrupt_sample_counted_once_in_training_and_excluded_in_test(kind, tmp_path):
    if kind == "video":
        module = _corrupt_video_module(tmp_path / "videos")
        train, test = module.dataset("train"), module.dataset("test")
        bad = "v1"
    else:
        train, test = _image_dataset(tmp_path, True), _image_dataset(tmp_path, False)
        bad = "1.png"
    torch.manual_seed(0)
    item = train[1]
    assert item["skipped"] >= 1 and item["sample_index"] != 1
    assert item["label"] == train.labels[item["sample_index"]]
    assert (train.failures.count, train.failures.sample_ids) == (1, [bad])
    assert train.failures.events == item["skipped"]
    assert train[0]["skipped"] == 0 and train.failures.count == 1

    batch = collate_samples([test[i] for i in range(len(test))])
    assert len(batch["failed"]) == test.num_views and {f["path"] for f in batch["failed"]} == {bad}
    assert {f["sample_index"] for f in batch["failed"]} == {1}
    assert 1 not in batch["sample_index"].tolist() and batch["input"].shape[0] == 2 * test.num_views
    assert batch["skipped"].sum() == 0
    assert (test.failures.count, test.failures.sample_ids, test.failures.events) == (1, [bad], test.num_views)
