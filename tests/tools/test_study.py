"""The method study: idx reading, the grid, the interval, and tools/study.py --quick end to end."""

import csv
import gzip
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_sparse.analysis import study
from video_sparse.data.prepare import fashion_mnist as fm

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_idx(path, array, compress=False):
    """An idx file written field by field from the format's description (independent of read_idx)."""
    payload = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload += array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def test_read_idx_plain_and_gzip(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    _write_idx(tmp_path / "a", images)
    _write_idx(tmp_path / "b.gz", np.array([7, 0, 9], dtype=np.uint8), compress=True)
    assert np.array_equal(fm.read_idx(tmp_path / "a"), images)
    assert fm.read_idx(tmp_path / "b.gz").tolist() == [7, 0, 9]
    (tmp_path / "bad").write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))  # declares 5 bytes, holds 2
    with pytest.raises(ValueError, match="declares"):
        fm.read_idx(tmp_path / "bad")
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="not uint8"):
        fm.read_idx(tmp_path / "float")


def test_vtab_layout_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "src"
    source.mkdir()
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(source / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), compress=True)
        _write_idx(source / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10, compress=True)
    task = fm.write_fashion_mnist_vtab(tmp_path / "vtab", n_train=30, seed=1, source=source)
    train = [ln.split() for ln in (task / "train800val200.txt").read_text().splitlines()]
    test = [ln.split() for ln in (task / "test.txt").read_text().splitlines()]
    assert len(train) == 30 and len(test) == 20
    assert sorted(np.bincount([int(y) for _, y in train]).tolist()) == [3] * 10  # class-balanced
    x, y = fm.load_fashion_mnist("test", source)
    rel, label = test[5]
    index = int(rel.split("_")[-1].split(".")[0])
    assert int(label) == y[index]
    assert np.array_equal(np.asarray(Image.open(task / rel)), x[index])  # lossless
    assert len((task / "train800.txt").read_text().splitlines()) == 24
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        fm.load_fashion_mnist("train", tmp_path / "nowhere")


def test_grid_selection_and_interval():
    grid = study.image_grid()
    names = [m.name for m in grid]
    assert names == [
        "linear",
        "full",
        "adaptformer",
        "dense_adapter",
        "evit_0.7",
        "sparse_0.5",
        "sparse_0.6",
        "sparse_0.7",
        "sparse_0.8",
        "sparse_0.9",
        "dense_paper_0.7",
        "released_0.7",
    ]
    assert [m.name for m in grid if m.keep_curve] == ["sparse_0.7"]
    assert [m.name for m in study.select(grid, ["sparse_*", "linear"])] == ["linear"] + names[5:10]
    with pytest.raises(ValueError, match="matches no member"):
        study.select(grid, ["nope"])
    assert "released_0.7" not in [m.name for m in study.video_grid()]
    low, high = study.wilson_interval(50, 100)  # textbook value: 40.38 .. 59.62
    assert abs(low - 40.38) < 0.01 and abs(high - 59.62) < 0.01
    assert study.wilson_interval(0, 10)[0] == 0.0


def _records(out):
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "members").glob("*/study.json")}


def _check_study(out, members, classes, width):
    with open(out / "study.csv") as handle:
        rows = list(csv.DictReader(handle))
    records = _records(out)
    failures = json.loads((out / "failures.json").read_text())
    assert failures == {}
    assert [r["method"] for r in rows] == members  # every member, in grid order
    for name, record in records.items():
        assert record["trainable_changed"] == 1.0, name  # every trainable tensor moved
        assert record["train_s_per_epoch"] > 0 and record["infer_img_s"] > 0 and record["gmacs"] > 0
        assert record["test"]["num_failed"] == 0
    if "full" in records:
        assert records["full"]["trainable_params"] == records["full"]["total_params"]
    assert records["linear"]["trainable_params"] == width * classes + classes  # the head alone
    assert records["sparse_0.5"]["gmacs"] < records["dense_adapter"]["gmacs"]
    table = (out / "study.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 + ("keep_curve" in records.get("sparse_0.7", {})) * 2
    assert "Claim" in table and (out / "study.png").read_bytes()[:8] == PNG_SIGNATURE
    return rows, records


@pytest.mark.slow
def test_quick_image_study_end_to_end(tmp_path):
    """The whole grid on real Fashion-MNIST images and the real DINOv2 backbone (tiny subset, 1 epoch)."""
    if not (fm.DEFAULT_ROOT / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed: {fm.INSTALL_HINT} (tools/setup_env.sh installs it as root)")
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "tools" / "study.py"), "--quick", "--out", str(out), "--workers", "0"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows, records = _check_study(out, [m.name for m in study.image_grid()], 10, 384)
    assert all(r["test_images"] == "40" for r in rows)
    curve = records["sparse_0.7"]["keep_curve"]
    assert sorted(map(float, curve)) == list(study.CURVE_KEEP_RATES)
    assert curve["0.7"] == records["sparse_0.7"]["test"]["top1"]  # the same model, the same keep rate
    released = (out / "members" / "released_0.7" / "config.yaml").read_text()
    assert "head_norm: batchnorm" in released and "dense_include_embedding: true" in released
    top1 = [float(r["top1"]) for r in rows]
    assert sum(top1) / len(top1) > 10.0, top1  # above chance (10 classes) on average
    again = subprocess.run(
        cmd + ["--methods", "linear", "full"], check=False, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert again.returncode == 0 and again.stdout.count(" done\n") == 2, again.stdout[-2000:]
    # the full study's default: each member in a fresh process (its own peak memory); a removed member reruns
    shutil.rmtree(out / "members" / "linear")
    isolated = [
        sys.executable,
        str(REPO / "tools" / "study.py"),
        "--out",
        str(out),
        "--resolution",
        "28",
        "--epochs",
        "1",
        "--train-images",
        "40",
        "--test-images",
        "40",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--threads",
        "1",
        "--methods",
        "linear",
    ]
    third = subprocess.run(isolated, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert _records(out)["linear"]["memory_isolated"] is True
    with open(out / "study.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)


@pytest.mark.slow
def test_quick_video_study_subset(tmp_path):
    """The video grid's plumbing on the demo backbone and demo clips (three members, 1 epoch)."""
    out = tmp_path / "video"
    members = ["linear", "dense_adapter", "sparse_0.5"]
    cmd = [
        sys.executable,
        str(REPO / "tools" / "study.py"),
        "--task",
        "video",
        "--quick",
        "--out",
        str(out),
        "--workers",
        "0",
        "--methods",
        *members,
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _, records = _check_study(out, members, 4, 96)
    assert records["sparse_0.5"]["trainable_params"] == records["dense_adapter"]["trainable_params"]


def _fake_study(folder, seed, top1, extra=(), seconds=None):
    """A study folder with finished members written as study.json records (name -> test top-1)."""
    for name, value in top1.items():
        member = folder / "members" / name
        member.mkdir(parents=True)
        record = {
            "name": name,
            "overrides": [f"seed={seed}", f"data.root={folder}/data", "data.input_size=84", *extra],
            "test": {"top1": value, "num_videos": 10000},
            "train_s_per_epoch": (seconds or {}).get(name),
        }
        (member / "study.json").write_text(json.dumps(record))
    return folder


def test_seed_summary_mean_spread_and_claim(tmp_path):
    from video_sparse.analysis import study_seeds

    values = {0: (80.0, 82.0), 1: (81.0, 81.5), 2: (82.5, 82.0)}  # seed -> (sparse, dense)
    folders = [
        _fake_study(
            tmp_path / f"s{seed}",
            seed,
            {"dense_adapter": d, "sparse_0.7": s},
            seconds={"dense_adapter": 30.0, "sparse_0.7": 15.0 + seed * 3},
        )
        for seed, (s, d) in values.items()
    ]
    summaries = {s.name: s for s in study_seeds.summarize_seeds(folders)}
    sparse = summaries["sparse_0.7"]
    assert sparse.top1 == {0: 80.0, 1: 81.0, 2: 82.5}
    assert sparse.mean == pytest.approx(243.5 / 3)
    # sample standard deviation by hand: deviations -1.1667, -0.1667, +1.3333
    assert sparse.sd == pytest.approx(((7 / 6) ** 2 + (1 / 6) ** 2 + (4 / 3) ** 2) ** 0.5 / 2**0.5)
    claim = study_seeds.seed_claim_check(list(summaries.values()))
    # gaps dense - sparse per seed: +2.00, +0.50, -0.50; mean +0.67 -> holds on the mean, at 2 of 3 seeds
    assert "+2.00, +0.50, -0.50" in claim[0] and "holds on the mean, holds at 2 of 3 seeds" in claim[0]
    assert "0.600 of dense_adapter" in claim[1] and "range 0.500-0.700" in claim[1]
    md = study_seeds.write_seed_table(list(summaries.values()), tmp_path / "s.md", tmp_path / "s.csv")
    assert "| sparse_0.7 | 0 1 2 | 80.00 81.00 82.50 | 81.17 |" in md
    with open(tmp_path / "s.csv") as handle:
        assert [r["method"] for r in csv.DictReader(handle)] == ["dense_adapter", "sparse_0.7"]
    one = study_seeds.summarize_seeds(folders[:1])
    assert all(np.isnan(s.sd) for s in one)  # one seed has no spread
    gap = study_seeds.seed_claim_check(study_seeds.summarize_seeds(folders[:1]))[0]
    assert "FAILS on the mean, holds at 0 of 1 seeds" in gap


def test_seed_summary_refuses_mixed_settings_and_repeated_seeds(tmp_path):
    from video_sparse.analysis import study_seeds

    a = _fake_study(tmp_path / "a", 0, {"dense_adapter": 82.0})
    b = _fake_study(tmp_path / "b", 1, {"dense_adapter": 83.0}, extra=["model.head_norm=batchnorm"])
    with pytest.raises(ValueError, match="differ in more than the seed.*head_norm=batchnorm"):
        study_seeds.summarize_seeds([a, b])
    again = _fake_study(tmp_path / "again", 0, {"dense_adapter": 81.0})
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        study_seeds.summarize_seeds([a, again])
    with pytest.raises(ValueError, match="no finished study member"):
        study_seeds.summarize_seeds([tmp_path / "empty"])
    (a / "members" / "broken").mkdir()
    (a / "members" / "broken" / "study.json").write_text("{")
    with pytest.raises(ValueError, match="broken/study.json: not a valid study record"):
        study_seeds.summarize_seeds([a])
    record = {"name": "x", "overrides": ["seed=3", "epochs=1", "seed=4"]}
    assert study_seeds.record_seed(record) == 4 and study_seeds.record_seed({**record, "seed": 7}) == 7
    with pytest.raises(ValueError, match="'x' states no seed"):
        study_seeds.record_seed({"name": "x", "overrides": []})


def test_seeds_command_line(tmp_path):
    folders = [_fake_study(tmp_path / f"s{k}", k, {"dense_adapter": 82.0 + k, "sparse_0.7": 81.0}) for k in range(2)]
    cmd = [sys.executable, str(REPO / "tools" / "study.py"), "--seeds", *map(str, folders)]
    result = subprocess.run(cmd + ["--out", str(tmp_path / "sum")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "sum" / "seeds.md").read_text()
    assert "| dense_adapter | 0 1 | 82.00 83.00 | 82.50 | 0.71 |" in text and "FAILS on the mean" in text
    assert (tmp_path / "sum" / "seeds.png").read_bytes()[:8] == PNG_SIGNATURE
    missing = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert missing.returncode != 0 and "--seeds needs --out" in missing.stderr


def test_regime_defaults_and_options():
    from video_sparse.analysis.study_run import StudyOptions

    assert StudyOptions().regime() == study.Regime(84, 4, 1000, None, 32)
    assert StudyOptions(quick=True, task="video").regime() == study.QUICK_REGIMES["video"]
    given = StudyOptions(resolution=224, epochs=3, test_images=2200).regime()
    assert given == study.Regime(224, 3, 1000, 2200, 32)
