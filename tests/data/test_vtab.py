"""VTAB-1K layout: real digit images, labels, counts, list-file errors, task table."""

import numpy as np
import pytest
import torch
from PIL import Image

from video_sparse.data.vtab import VTAB_TASKS, VTABDataset, make_digits_vtab, vtab_tasks_in_group

ITEM_KEYS = {"input", "label", "sample_index", "view_index", "skipped"}


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtab")
    make_digits_vtab(root, task="digits", n_train=60, n_test=40, size=32, seed=1)
    return root


def read_list(path):
    return [line.rsplit(None, 1) for line in path.read_text().splitlines() if line.strip()]


def test_layout_and_counts(digits_root):
    task = digits_root / "digits"
    counts = {s: len(read_list(task / f"{s}.txt")) for s in ("train800", "val200", "train800val200", "test")}
    assert counts == {"train800": 48, "val200": 12, "train800val200": 60, "test": 40}
    train = {p for p, _ in read_list(task / "train800val200.txt")}
    assert train == {p for s in ("train800", "val200") for p, _ in read_list(task / f"{s}.txt")}
    assert not train & {p for p, _ in read_list(task / "test.txt")}
    for split, n in counts.items():
        ds = VTABDataset(digits_root, "digits", split=split, image_size=32)
        assert len(ds) == n and ds.num_views == 1 and ds.num_classes == 10  # inferred from the lists


def test_labels_are_those_of_the_real_digits(digits_root):
    """Each saved image, shrunk back to 8x8, is nearest to a scikit-learn digit of its listed label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    bank = digits.images.reshape(len(digits.images), -1) / 16.0
    ds = VTABDataset(digits_root, "digits", split="test", image_size=32)
    agree = 0
    for path, label in zip(ds.paths, ds.labels):
        with Image.open(ds.root / path) as im:
            small = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64) / 255.0
        nearest = int(np.argmin(((bank - small.reshape(1, -1)) ** 2).sum(axis=1)))
        agree += int(digits.target[nearest] == label)
    assert agree >= 0.9 * len(ds)
    assert len(set(ds.labels)) >= 8  # several classes present


def test_items_follow_the_contract(digits_root):
    ds = VTABDataset(digits_root, "digits", split="train800", image_size=48)
    item = ds[5]
    assert set(item) == ITEM_KEYS
    assert item["input"].shape == (3, 48, 48) and item["input"].dtype == torch.float32
    assert item["label"] == ds.labels[5] and item["sample_index"] == 5
    assert item["view_index"] == 0 and item["skipped"] == 0
    assert float(item["input"].min()) >= -1.0 and float(item["input"].max()) <= 1.0  # (x - 0.5) / 0.5
    assert ds.train and not VTABDataset(digits_root, "digits", split="val200").train


def test_wrong_line_names_file_and_line(tmp_path):
    task = tmp_path / "digits"
    task.mkdir()
    (task / "test.txt").write_text("images/a.jpg 1\n\nimages/b.jpg\n")
    with pytest.raises(ValueError, match=r"test\.txt:3: expected 'relative/path LABEL'"):
        VTABDataset(tmp_path, "digits", split="test", num_classes=2)
    (task / "test.txt").write_text("images/a.jpg 1\nimages/b.jpg one\n")
    with pytest.raises(ValueError, match=r"test\.txt:2: label 'one' is not an integer"):
        VTABDataset(tmp_path, "digits", split="test", num_classes=2)
    (task / "test.txt").write_text("images/a.jpg 1\nimages/b.jpg 5\n")
    with pytest.raises(ValueError, match=r"test\.txt:2: label 5 out of range for data\.num_classes=2"):
        VTABDataset(tmp_path, "digits", split="test", num_classes=2)


def test_known_task_checks_labels_against_the_table(tmp_path):
    task = tmp_path / "kitti"
    task.mkdir()
    (task / "train800.txt").write_text("images/a.jpg 3\nimages/b.jpg 4\n")
    with pytest.raises(ValueError, match=r"train800\.txt:2: label 4 out of range for data\.num_classes=4"):
        VTABDataset(tmp_path, "kitti", split="train800")


def test_paths_with_spaces(digits_root, tmp_path):
    src = digits_root / "digits" / "images" / "train_0000.jpg"
    task = tmp_path / "spaced"
    (task / "my images").mkdir(parents=True)
    (task / "my images" / "a b.jpg").write_bytes(src.read_bytes())
    (task / "test.txt").write_text("my images/a b.jpg 7\n")
    ds = VTABDataset(tmp_path, "spaced", split="test", image_size=16)
    assert ds.paths == ["my images/a b.jpg"] and ds.labels == [7] and ds.num_classes == 8
    assert ds[0]["input"].shape == (3, 16, 16)


def test_missing_folder_and_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="VTAB-1K task folder not found"):
        VTABDataset(tmp_path, "cifar")
    (tmp_path / "cifar").mkdir()
    with pytest.raises(FileNotFoundError, match=r"list file not found: .*cifar/train800val200\.txt"):
        VTABDataset(tmp_path, "cifar")
    with pytest.raises(ValueError, match="split must be one of"):
        VTABDataset(tmp_path, "cifar", split="train")


def test_task_table():
    assert len(VTAB_TASKS) == 19
    assert [len(vtab_tasks_in_group(g)) for g in ("Natural", "Specialized", "Structured")] == [7, 4, 8]
    expected = {  # class counts of the 19 tasks
        "cifar": 100,
        "caltech101": 102,
        "dtd": 47,
        "oxford_flowers102": 102,
        "oxford_iiit_pet": 37,
        "svhn": 10,
        "sun397": 397,
        "patch_camelyon": 2,
        "eurosat": 10,
        "resisc45": 45,
        "diabetic_retinopathy": 5,
        "clevr_count": 8,
        "clevr_dist": 6,
        "dmlab": 6,
        "kitti": 4,
        "dsprites_loc": 16,
        "dsprites_ori": 16,
        "smallnorb_azi": 18,
        "smallnorb_ele": 9,
    }
    assert {t: n for t, (n, _) in VTAB_TASKS.items()} == expected
