"""VTAB-1K sweep table: group means and overall mean, Markdown and CSV output."""

import csv
import json
import math

import pytest

from video_sparse.evaluation.vtab_table import (
    collect_vtab_sweep,
    format_vtab_markdown,
    summarize_vtab,
    write_vtab_table,
)

# Written out independently of the library's table.
NATURAL = ["cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"]
SPECIALIZED = ["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"]
STRUCTURED = [
    "clevr_count",
    "clevr_dist",
    "dmlab",
    "kitti",
    "dsprites_loc",
    "dsprites_ori",
    "smallnorb_azi",
    "smallnorb_ele",
]


def sweep() -> dict[str, float]:
    tasks = NATURAL + SPECIALIZED + STRUCTURED
    return {t: 40.0 + 2.5 * i + (0.25 if i % 3 else 0.0) for i, t in enumerate(tasks)}


def test_means_match_independent_computation():
    acc = sweep()
    nat = sum(acc[t] for t in NATURAL) / 7
    spe = sum(acc[t] for t in SPECIALIZED) / 4
    stru = sum(acc[t] for t in STRUCTURED) / 8
    row = summarize_vtab(acc, name="sparse")
    assert row.group_means["Natural"] == pytest.approx(nat)
    assert row.group_means["Specialized"] == pytest.approx(spe)
    assert row.group_means["Structured"] == pytest.approx(stru)
    assert row.mean == pytest.approx((nat + spe + stru) / 3)
    assert row.task_mean == pytest.approx(sum(acc.values()) / 19)
    assert row.mean != pytest.approx(row.task_mean)  # the two conventions differ on this sweep
    assert row.missing == ()


def test_markdown_and_csv(tmp_path):
    acc = sweep()
    row = summarize_vtab(acc, name="sparse")
    md = tmp_path / "vtab.md"
    text = write_vtab_table([row], md_path=md, csv_path=tmp_path / "vtab.csv")
    assert md.read_text() == text
    header, sep, line = text.splitlines()[:3]
    cols = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cols[0] == "Method" and cells[0] == "sparse"
    assert cols[1:8] == NATURAL and cols[8] == "Natural" and cols[-1] == "Mean"
    assert float(cells[cols.index("Mean")]) == pytest.approx(row.mean, abs=0.05)
    assert float(cells[cols.index("dtd")]) == pytest.approx(acc["dtd"], abs=0.05)
    assert "mean of the three group means" in text
    with open(tmp_path / "vtab.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert float(rows[0]["Structured"]) == pytest.approx(sum(acc[t] for t in STRUCTURED) / 8)
    assert float(rows[0]["mean"]) == pytest.approx(row.mean)
    assert float(rows[0]["task_mean"]) == pytest.approx(row.task_mean)


def test_missing_tasks():
    acc = sweep()
    del acc["dmlab"], acc["svhn"]
    with pytest.raises(ValueError, match="lacks 2 task"):
        summarize_vtab(acc)
    row = summarize_vtab(acc, allow_missing=True)
    assert row.missing == ("svhn", "dmlab")
    assert row.group_means["Structured"] == pytest.approx(sum(acc[t] for t in STRUCTURED if t != "dmlab") / 7)
    text = format_vtab_markdown([row])
    assert "| - |" in text and "'-' marks tasks" in text
    only_natural = summarize_vtab(dict.fromkeys(NATURAL, 50.0), allow_missing=True)
    assert math.isnan(only_natural.mean) and math.isnan(only_natural.group_means["Specialized"])
    with pytest.raises(ValueError, match="unknown VTAB-1K task"):
        summarize_vtab({"cifar100": 1.0})


def test_collect_sweep_from_json(tmp_path):
    acc = sweep()
    files = []
    for i, (task, value) in enumerate(acc.items()):
        d = tmp_path / "multirun" / str(i) / task
        d.mkdir(parents=True)
        record = {"top1": value} if i % 2 else {"task": task, "top1": value, "top5": 99.0}
        (d / "summary.json").write_text(json.dumps(record))
        files.append(d / "summary.json")
    assert collect_vtab_sweep(files) == acc
    with pytest.raises(ValueError, match="appears twice"):
        collect_vtab_sweep(files + [files[0]])
    bad = tmp_path / "x" / "summary.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"top1": 3.0}))
    with pytest.raises(ValueError, match="no 'task' key"):
        collect_vtab_sweep([bad])
