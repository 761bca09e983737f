"""A config file is data, not code: someone else's ``config.yaml`` builds only the project's own targets."""

import builtins
import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from video_sparse.engine.builders import instantiate_group
from video_sparse.engine.config import compose_config
from video_sparse.engine.targets import ALLOWED_TARGETS, check_targets
from video_sparse.errors import ConfigError
from video_sparse.inference import VideoClassifier, load_experiment_config

REPO = Path(__file__).resolve().parents[2]


def _hostile(marker: Path) -> dict[str, tuple[str, object]]:
    """Where each hostile value goes (a dotted key) and the value; each would create ``marker`` if built."""
    touch = ["python", "-c", f"open({str(marker)!r}, 'w')"]
    return {
        "os.system": ("data._target_", "os.system"),
        "eval": ("model._target_", "builtins.eval"),
        "nested torch.load": ("data.root", {"_target_": "torch.load", "f": str(marker)}),
        "pickle.loads": ("optim.optimizer._target_", "pickle.loads"),
        "open for writing, unused key": ("extra.sink", {"_target_": "builtins.open", "file": str(marker), "mode": "w"}),
        "inside a list": ("deepspeed.config.hooks", [{"_target_": "subprocess.run", "args": touch}]),
        "a project function that writes": (
            "data.label_map",
            {"_target_": "video_sparse.safe_files.write_text", "path": str(marker), "text": "x"},
        ),
        "decoded from a string": (
            "data.label_map",
            "${oc.decode:'{_target_: subprocess.run, args: [touch, " + str(marker) + "]}'}",
        ),
        "a partial": ("optim.scheduler", {"_target_": "shutil.rmtree", "_partial_": True}),
    }


def _saved_config(tmp_path: Path, key: str, value: object) -> Path:
    """A run's saved config.yaml (the demo experiment, resolved) with ``key`` set to ``value``."""
    cfg = OmegaConf.to_container(compose_config(["experiment=demo"]), resolve=True)
    node = cfg
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("case", list(_hostile(Path("m"))))
def test_hostile_saved_config_is_refused_naming_the_key(tmp_path, case):
    marker = tmp_path / "marker"
    key, value = _hostile(marker)[case]
    path = _saved_config(tmp_path, key, value)
    with pytest.raises(ConfigError) as err:
        load_experiment_config(path)
    message = str(err.value)
    assert "\n" not in message and "is not one of the project's targets" in message
    assert message.startswith(key.split(".")[0] + ".")  # names the key
    with pytest.raises(ConfigError, match="is not one of the project's targets"):
        VideoClassifier.from_config(OmegaConf.load(path))  # the Python API checks too
    assert not marker.exists()


def test_python_yaml_tags_are_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "config.yaml"
    path.write_text(f"name: x\nmodel: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"config.yaml: not a plain YAML config") as err:
        load_experiment_config(path)
    assert "\n" not in str(err.value) and not marker.exists()


def test_nested_and_added_targets_are_refused_by_instantiate(tmp_path):
    marker = tmp_path / "marker"
    group = {"_target_": "video_sparse.data.VTABData", "root": {"_target_": "os.system", "_args_": [f"touch {marker}"]}}
    with pytest.raises(ConfigError, match=r"^data\.root\._target_='os\.system' is not one"):
        instantiate_group(group, "data")
    with pytest.raises(ConfigError, match=r"model_args\._target_='builtins\.exec'"):
        instantiate_group(
            {"_target_": "torch.optim.AdamW", "_partial_": True},
            "optim.optimizer",
            model_args={"_target_": "builtins.exec"},
        )
    assert not marker.exists()


def test_project_configs_and_a_real_saved_config_pass(tmp_path):
    for experiment in sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")):
        check_targets(compose_config([f"experiment={experiment}"]))
    path = _saved_config(tmp_path, "name", "mine")
    assert load_experiment_config(path).name == "mine"
    targets = {OmegaConf.load(path)[g]._target_ for g in ("model", "data", "deepspeed")}
    assert targets <= ALLOWED_TARGETS


def test_project_resolvers_do_no_io(monkeypatch):
    """``${repo:...}`` and ``${vtab_classes:...}`` compute values only: no file is opened while resolving."""
    import video_sparse.data.vtab  # noqa: F401  (imported before the I/O guard)

    def no_io(*args, **kwargs):
        raise AssertionError(f"I/O while resolving: {args[:1]}")

    cfg = OmegaConf.create({"a": "${repo:configs}", "b": "${vtab_classes:cifar}", "c": "${oc.env:HOME,x}"})
    monkeypatch.setattr(builtins, "open", no_io)
    monkeypatch.setattr(os, "open", no_io)
    monkeypatch.setattr(os, "stat", no_io)
    values = OmegaConf.to_container(cfg, resolve=True)
    monkeypatch.undo()
    assert values["a"] == str(REPO / "configs") and values["b"] == 100
    assert OmegaConf.has_resolver("repo") and OmegaConf.has_resolver("vtab_classes")


def _tool_main(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_predict_refuses_a_hostile_config_with_one_line(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = _saved_config(tmp_path, "data._target_", "os.system")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    code = _tool_main("predict")([str(tmp_path / "clip.mp4"), "--experiment", str(path), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code != 0 and "data._target_='os.system' is not one of the project's targets" in err
    assert not marker.exists() and not (tmp_path / "p").exists()
