"""CIFAR-100, SVHN and Food-101 from torchvision's folder layouts; unreadable images."""

import json
import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from video_sparse.data.image_datasets import (
    CIFAR100Dataset,
    Food101Dataset,
    ImageFileDataset,
    SVHNDataset,
    read_image_list,
)
from video_sparse.data.image_transforms import vtab_transform

ITEM_KEYS = {"input", "label", "sample_index", "view_index", "skipped"}


def write_cifar100(root, n_train=6, n_test=4, seed=0):
    """A few records in the pickle layout of cifar-100-python (rows: 1024 R, 1024 G, 1024 B)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    images = {}
    for split, n in (("train", n_train), ("test", n_test)):
        hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        record = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": [int(x) for x in rng.integers(0, 100, n)],
            "coarse_labels": [int(x) for x in rng.integers(0, 20, n)],
            "data": hwc.transpose(0, 3, 1, 2).reshape(n, 3072),
        }
        with open(base / split, "wb") as f:
            pickle.dump(record, f, protocol=2)
        images[split] = (hwc, record["fine_labels"])
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}, f)
    return images


def test_cifar100_loads(tmp_path):
    images = write_cifar100(tmp_path)
    ds = CIFAR100Dataset(tmp_path, split="train", image_size=64)
    hwc, labels = images["train"]
    assert len(ds) == 6 and ds.num_classes == 100 and ds.num_views == 1 and ds.labels == labels
    assert ds.classes[3] == "c3"
    np.testing.assert_array_equal(np.asarray(ds.load_image(2)), hwc[2])  # channel layout right
    item = ds[2]
    assert set(item) == ITEM_KEYS and item["input"].shape == (3, 64, 64) and item["label"] == labels[2]

    # test split with an identity-like transform: pixels come back exactly, normalised by 0.5/0.5
    test = CIFAR100Dataset(tmp_path, split="test", transform=vtab_transform(32))
    assert not test.train and test.labels == images["test"][1]
    expected = torch.from_numpy(images["test"][0][1]).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(test[1]["input"], expected)


def test_cifar100_refuses_code_in_pickles(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    with open(base / "train", "wb") as f:
        pickle.dump({"data": Evil(), "fine_labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        CIFAR100Dataset(tmp_path)


def test_missing_roots_say_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz.*Nothing is downloaded"):
        CIFAR100Dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"test_32x32\.mat"):
        SVHNDataset(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match=r"food-101\.tar\.gz"):
        Food101Dataset(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        CIFAR100Dataset(tmp_path, split="val")


def test_svhn_loads(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    ds = SVHNDataset(tmp_path, split="train", image_size=32)
    assert ds.labels == [0, 1, 2, 0, 9] and ds.num_classes == 10 and ds.train
    np.testing.assert_array_equal(np.asarray(ds.load_image(4)), x[..., 4])
    assert ds[0]["input"].shape == (3, 32, 32)


def write_food(root, classes=("pizza", "apple_pie"), per_class=2):
    base = root / "food-101"
    meta = {"train": {}, "test": {}}
    for c in classes:
        (base / "images" / c).mkdir(parents=True)
        for i in range(per_class * 2):
            Image.new("RGB", (40, 30), (i * 40, 100, 200)).save(base / "images" / c / f"{i}.jpg")
            meta["train" if i < per_class else "test"].setdefault(c, []).append(f"{c}/{i}")
    (base / "meta").mkdir()
    for split, index in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(index))
    return base


def test_food101_loads(tmp_path):
    write_food(tmp_path)
    ds = Food101Dataset(tmp_path, split="test", image_size=24)
    assert ds.classes == ["apple_pie", "pizza"]  # sorted, as torchvision
    assert ds.labels == [0, 0, 1, 1] and ds.paths[2] == "images/pizza/2.jpg"
    assert not ds.train and ds[3]["input"].shape == (3, 24, 24)
    assert ds.sample_ids[0] == "images/apple_pie/2.jpg"


def make_file_dataset(tmp_path, train):
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "1.png").write_bytes(b"not an image at all")
    entries = [("0.png", 0), ("1.png", 1), ("2.png", 2)]
    return ImageFileDataset(tmp_path, entries, 3, vtab_transform(8), train=train)


def test_unreadable_image_in_training_is_substituted_and_counted(tmp_path, caplog):
    ds = make_file_dataset(tmp_path, train=True)
    with caplog.at_level(logging.WARNING):
        item = ds[1]
    assert set(item) == ITEM_KEYS
    assert item["skipped"] == 1 and item["sample_index"] == 2 and item["label"] == 2
    assert "cannot read 1.png" in caplog.text and "substituting sample 2" in caplog.text
    assert ds[0]["skipped"] == 0


def test_unreadable_image_in_test_is_reported(tmp_path):
    ds = make_file_dataset(tmp_path, train=False)
    item = ds[1]
    assert item["failed"] is True and item["sample_index"] == 1 and item["view_index"] == 0
    assert item["path"] == "1.png" and "UnidentifiedImageError" in item["error"]
    assert ds[2]["label"] == 2


def test_all_unreadable_in_training_raises(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    ds = ImageFileDataset(tmp_path, [("a.jpg", 0), ("missing.jpg", 0)], 1, vtab_transform(8), train=True)
    with pytest.raises(RuntimeError, match="unreadable samples in a row"):
        ds[0]


def test_read_image_list(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a b/c d.jpg 3\n\n  x.jpg\t0  \n")
    assert read_image_list(path) == [("a b/c d.jpg", 3), ("x.jpg", 0)]
    path.write_text("x.jpg -1\n")
    with pytest.raises(ValueError, match=r"list\.txt:1: label -1 out of range"):
        read_image_list(path)
