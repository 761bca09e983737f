"""Prediction on user inputs with an adapter trained on the demo task: API and tools/predict.py agree,
good clips get their class, a corrupt file and a missing path are reported, the exit status says so."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from video_sparse.checkpoint import save_adapter_checkpoint
from video_sparse.data import (
    DEMO_CLASSES,
    PyAVReader,
    build_video_dataset,
    collate_samples,
    make_demo_dataset,
)
from video_sparse.engine.builders import build_model
from video_sparse.inference import (
    VideoClassifier,
    discover_inputs,
    load_experiment_config,
)

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ROOT / "assets" / "demo_backbone_nano.safetensors"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An adapter trained for a few epochs on 96 demo clips (about 30 s on two cores)."""
    from omegaconf import OmegaConf

    tmp = tmp_path_factory.mktemp("predict")
    data = make_demo_dataset(tmp / "demo", num_train=96, num_val=4, num_test=12, seed=5)
    cfg = load_experiment_config("demo", [f"data.root={tmp / 'demo'}"])
    torch.manual_seed(0)
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.sparsity, resolve=True),
        str(BACKBONE),
    )
    train = build_video_dataset(
        data["root"],
        data["train"],
        "train",
        backend="pyav",
        num_frames=16,
        frame_interval=1,
        input_size=64,
        hflip=False,
        min_scale=0.64,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        for batch in DataLoader(train, 16, shuffle=True, collate_fn=collate_samples, generator=generator):
            loss = torch.nn.functional.cross_entropy(model(batch["input"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    adapter = save_adapter_checkpoint(model, tmp / "adapter.pth")

    # user inputs: 4 good clips (one per class, in a sub-folder), a corrupt .mp4, a frame folder
    inputs = tmp / "my videos"
    expected = {}
    for i in range(4):
        rel = f"videos/test/test_{i:05d}.mp4"
        target = inputs / "clips" / f"clip {i}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(data["root"]) / rel, target)
        expected[str(target)] = DEMO_CLASSES[i % 4]
    (inputs / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    frames_dir = inputs / "frames_clip"
    frames_dir.mkdir()
    with PyAVReader(Path(data["root"]) / "videos/test/test_00005.mp4") as reader:
        for t, frame in enumerate(reader.get_frames(range(reader.num_frames))):
            Image.fromarray(frame).save(frames_dir / f"img_{t + 1:05d}.jpg", quality=95)
    expected[str(frames_dir)] = DEMO_CLASSES[5 % 4]
    return {
        "tmp": tmp,
        "adapter": adapter,
        "inputs": inputs,
        "expected": expected,
        "overrides": [f"data.root={tmp / 'demo'}"],
    }


def test_discover_inputs_finds_clips_frame_folders_and_list_entries(trained, tmp_path):
    items = discover_inputs([trained["inputs"]])
    kinds = {Path(i.path).name: i.kind for i in items}
    assert kinds == {"broken.mp4": "video", "frames_clip": "frames", **{f"clip {i}.mp4": "video" for i in range(4)}}
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{trained['inputs'] / 'clips' / 'clip 0.mp4'} 3\n{trained['inputs'] / 'frames_clip'} 16 1\n"
        "nowhere/missing.mp4 0\n"
    )
    listed = discover_inputs([listing])
    assert [Path(i.path).name for i in listed] == ["clip 0.mp4", "frames_clip", "missing.mp4 0"]
    assert [i.kind for i in listed] == ["video", "frames", "missing"]


def test_api_classifies_good_inputs_and_reports_bad_ones(trained):
    clf = VideoClassifier.from_experiment("demo", trained["adapter"], BACKBONE, trained["overrides"], device="cpu")
    missing = trained["tmp"] / "does_not_exist.mp4"
    preds = clf.predict([trained["inputs"], missing], topk=2, progress=False)
    by_path = {p.path: p for p in preds}
    assert len(preds) == 7
    for path, label in trained["expected"].items():
        p = by_path[path]
        assert p.ok and p.num_views == 6, p  # demo test protocol: 2 clips x 3 crops
        assert p.topk[0][0] == label, (path, p.topk)
        assert p.topk[0][1] >= p.topk[1][1] and 0 < sum(prob for _, prob in p.topk) <= 1 + 1e-6
    broken = by_path[str(trained["inputs"] / "broken.mp4")]
    assert not broken.ok and "broken.mp4" in broken.error and broken.topk == []
    assert not by_path[str(missing)].ok and "no such file" in by_path[str(missing)].error
    # the views and merge of testing: VideoClassificationDataset's test views, softmax per view, mean
    clip = next(iter(trained["expected"]))
    (trained["tmp"] / "one.txt").write_text(f"{clip} 0\n")
    views = build_video_dataset(
        "/",
        trained["tmp"] / "one.txt",
        "test",
        backend="pyav",
        num_frames=16,
        frame_interval=1,
        input_size=64,
        short_side_size=64,
        num_clips=2,
        num_crops=3,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    with torch.no_grad():
        reference = clf.model(torch.stack([views[i]["input"] for i in range(6)])).softmax(-1).mean(0)
    for name, prob in by_path[clip].topk:
        assert abs(prob - float(reference[DEMO_CLASSES.index(name)])) < 1e-5
    # single view: one centred view each, same classes on this easy task
    single = {p.path: p for p in clf.predict([trained["inputs"]], single_view=True, progress=False)}
    assert all(
        single[path].num_views == 1 and single[path].topk[0][0] == label for path, label in trained["expected"].items()
    )


def test_tool_matches_api_writes_json_csv_and_exits_nonzero(trained, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "predict.py"),
        str(trained["inputs"]),
        "--experiment",
        "demo",
        "--checkpoint",
        str(trained["adapter"]),
        "--pretrained",
        str(BACKBONE),
        "--out",
        str(out),
        "--topk",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--kept-tokens",
        "--",
        *trained["overrides"],
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "broken.mp4: FAILED" in result.stdout and "5/6 inputs classified, 1 failed" in result.stdout
    records = {r["path"]: r for r in json.loads((out / "predictions.json").read_text())}
    clf = VideoClassifier.from_experiment("demo", trained["adapter"], BACKBONE, trained["overrides"], device="cpu")
    api = {p.path: p for p in clf.predict([trained["inputs"]], topk=4, progress=False)}
    assert set(records) == set(api)
    for path, p in api.items():
        assert records[path]["ok"] == p.ok
        if p.ok:
            assert [t["class"] for t in records[path]["topk"]] == [c for c, _ in p.topk]
            np.testing.assert_allclose([t["prob"] for t in records[path]["topk"]], [q for _, q in p.topk], atol=1e-5)
    with open(out / "predictions.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    for path, label in trained["expected"].items():
        assert rows[path]["status"] == "ok" and rows[path]["class_1"] == label
    assert rows[str(trained["inputs"] / "broken.mp4")]["status"] == "failed"
    gifs = sorted((out / "kept_tokens").glob("*.gif"))
    assert len(gifs) == 5 and Image.open(gifs[0]).n_frames == 16


def test_tool_exits_2_on_a_missing_checkpoint(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_tool", ROOT / "tools" / "predict.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert (
        tool.main(
            [
                str(tmp_path),
                "--checkpoint",
                str(tmp_path / "nope.pth"),
                "--pretrained",
                str(BACKBONE),
                "--out",
                str(tmp_path / "o"),
                "--",
                f"data.root={tmp_path / 'demo'}",
            ]
        )
        == 2
    )


def test_image_model_predicts_images_and_reports_a_corrupt_one(tmp_path):
    """An image model: probabilities are the softmax of the model on the eval transform of each image."""
    import timm

    from video_sparse.data.image_transforms import eval_transform

    torch.manual_seed(0)
    model = timm.create_model("sparse_vit_nano_patch16_64", num_classes=3).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 10 * i, 80, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    clf = VideoClassifier(
        model,
        {
            "_target_": "video_sparse.data.VTABData",
            "input_size": 64,
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
            "batch_size": 2,
        },
        ["a", "b", "c"],
        device="cpu",
    )
    preds = {Path(p.path).name: p for p in clf.predict([tmp_path], topk=3, progress=False)}
    assert set(preds) == {"im0.png", "im1.png", "im2.png", "bad.jpg"}
    assert not preds["bad.jpg"].ok and "bad.jpg" in preds["bad.jpg"].error
    transform = eval_transform(64, mean=(0.5,) * 3, std=(0.5,) * 3)
    for i in range(3):
        with torch.no_grad():
            probs = model(transform(Image.open(tmp_path / f"im{i}.png").convert("RGB"))[None]).softmax(-1)[0]
        got = dict(preds[f"im{i}.png"].topk)
        assert preds[f"im{i}.png"].num_views == 1
        np.testing.assert_allclose([got[c] for c in "abc"], probs.numpy(), atol=1e-5)


def test_full_checkpoint_gives_the_adapter_predictions_and_image_kept_tokens(trained, tmp_path):
    """A full state dict (no backbone file needed) predicts as adapter + backbone; an image model's kept
    tokens are drawn as a PNG."""
    clf = VideoClassifier.from_experiment("demo", trained["adapter"], BACKBONE, trained["overrides"], device="cpu")
    full = tmp_path / "model_final.pth"
    torch.save({"model": clf.model.state_dict()}, full)
    clf_full = VideoClassifier.from_experiment(
        "demo", full, None, [*trained["overrides"], "pretrained=null"], device="cpu"
    )
    clip = next(iter(trained["expected"]))
    a, b = clf.predict([clip], progress=False)[0], clf_full.predict([clip], progress=False)[0]
    assert [c for c, _ in a.topk] == [c for c, _ in b.topk]
    np.testing.assert_allclose([p for _, p in a.topk], [p for _, p in b.topk], atol=1e-6)

    import timm

    from video_sparse.inference import InputItem
    from video_sparse.inference.outputs import save_kept_tokens

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    image_clf = VideoClassifier(
        timm.create_model("sparse_vit_nano_patch16_64", num_classes=2),
        {"_target_": "video_sparse.data.VTABData", "input_size": 64},
        ["a", "b"],
        device="cpu",
    )
    picture = save_kept_tokens(image_clf, 0, [InputItem(str(tmp_path / "x.png"), "image")], tmp_path / "kept", scale=1)
    assert picture.suffix == ".png" and Image.open(picture).width > 64 * 3  # input + one panel per dropping layer
