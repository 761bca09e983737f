"""``train.compile``: torch.compile in training and testing, without a recompilation per keep rate.

Compilations are counted with a backend that records each graph dynamo hands it and runs it as
traced (no code generation, fast on a CPU). That is dynamo's graph capture, as the ``eager`` backend
sees it. The AOT backends (``aot_eager``, ``inductor``) specialise further on a float keep rate; the
recipe passes the rate as an integer of 1/10000 (``keep_units``), which they keep symbolic: the last
test checks that with ``aot_eager``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from recipe_helpers import run, tiny_cfg, tiny_overrides
from torch._dynamo.backends.registry import register_backend
from torch._dynamo.testing import CompileCounter

from video_sparse.engine.builders import ConfigError, compile_backend
from video_sparse.sparsify.functional import keep_units, num_kept_tokens

COUNTING_BACKEND = "video_sparse_test_counter"
_events: list[tuple[str, int]] = []  # (phase, index of the training step) per compiled graph
_calls: dict[str, int] = {}  # compiled-graph runs per phase
_where = {"phase": "train", "step": -1}


def _counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
    _events.append((_where["phase"], _where["step"]))

    def forward(*args):
        _calls[_where["phase"]] = _calls.get(_where["phase"], 0) + 1
        return gm.forward(*args)

    return forward


register_backend(_counting_backend, name=COUNTING_BACKEND)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test starts with empty compile caches, as a new process does (the cache entries of one code
    object are shared by every model and capped by ``recompile_limit``)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_setting_names_a_backend():
    assert compile_backend(False) is None and compile_backend(None) is None
    assert compile_backend(True) == "inductor"
    assert compile_backend("eager") == "eager"
    with pytest.raises(ConfigError, match="train.compile='no_such_backend'"):
        compile_backend("no_such_backend")


@pytest.mark.parametrize(
    "name,score,shape",
    [
        ("sparse_vit_nano_patch16_64", "cls", (2, 3, 64, 64)),
        ("sparse_videomae_nano_patch16_64", "mean_attn", (2, 3, 2, 64, 64)),
        ("sparse_videomae_nano_patch16_64", "mean_query", (2, 3, 2, 64, 64)),
    ],
)
def test_keep_rate_ramp_compiles_each_path_once(name, score, shape):
    """Two sparsifying layers, so the second one's input length follows the keep rate."""
    torch.manual_seed(0)
    kwargs = {"num_frames": 2} if len(shape) == 5 else {}
    model = timm.create_model(name, num_classes=3, depth=2, sparse_layers=(0, 1), score=score, **kwargs)
    x = torch.randn(shape)
    rates = (1.0, 0.9, 0.8, 0.7)
    assert len({num_kept_tokens(16, r) for r in rates}) == 4  # 16 tokens: every rate keeps another count
    expected = [model(x, keep_rate=r) for r in rates]
    counter = CompileCounter()
    model.compile(backend=counter, dynamic=True)
    frames = []
    for rate, reference in zip(rates, expected):
        logits = model(x, keep_rate=rate)
        logits.sum().backward()
        frames.append(counter.frame_count)
        torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    assert frames[0] >= 1 and frames[1] > frames[0]  # the dense path, then the sparse path
    assert frames[3] == frames[2] == frames[1], f"recompiled as the keep rate ramped: {frames}"


def test_keep_rate_ramp_with_an_aot_backend_compiles_each_path_once():
    from torch._dynamo.backends.debugging import aot_eager

    torch.manual_seed(0)
    model = timm.create_model(
        "sparse_videomae_nano_patch16_64", num_classes=3, depth=2, sparse_layers=(0, 1), score="mean_attn", num_frames=2
    )
    x = torch.randn(2, 3, 2, 64, 64)
    counter = CompileCounter()

    def counted_aot_eager(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        counter(gm, example_inputs)
        return aot_eager(gm, example_inputs)

    model.compile(backend=counted_aot_eager, dynamic=True)
    frames = []
    eager = timm.create_model(
        "sparse_videomae_nano_patch16_64", num_classes=3, depth=2, sparse_layers=(0, 1), score="mean_attn", num_frames=2
    )
    eager.load_state_dict(model.state_dict())
    for rate in (1.0, 0.9, 0.8, 0.7):
        out = model(x, keep_units=keep_units(rate))
        out.sum().backward()
        frames.append(counter.frame_count)
        with torch.no_grad():  # the integer form keeps the same tokens as the float keep rate
            torch.testing.assert_close(out.detach(), eager(x, keep_rate=rate), rtol=1e-5, atol=1e-5)
    assert frames[3] == frames[2] == frames[1], f"recompiled as the keep rate ramped: {frames}"


def test_recipe_compiles_training_and_testing_once_per_path(tmp_path, digits_root, single_process_group, monkeypatch):
    """A keep-rate ramp over the first epoch (6 steps, 16 tokens: 5 token counts) is captured as the
    dense and the sparse training graphs once each; evaluation adds one (eval mode, no grad) and the
    test reuses it. ``tools/test.py`` (run_test) compiles too and scores the same."""
    from hydra import compose, initialize_config_dir

    from video_sparse.engine.config import CONFIG_DIR
    from video_sparse.engine.finetune import FinetuneRecipe
    from video_sparse.engine.testing import run_test

    rates: list[float] = []
    keep_rate, validate, test = FinetuneRecipe._keep_rate, FinetuneRecipe.validate, FinetuneRecipe.test

    def recorded_keep_rate(self, micro_step: int) -> float:
        rates.append(keep_rate(self, micro_step))
        _where.update(phase="train", step=len(rates) - 1)
        return rates[-1]

    def in_phase(phase: str, method):
        def wrapped(self):
            _where["phase"] = phase
            return method(self)

        return wrapped

    monkeypatch.setattr(FinetuneRecipe, "_keep_rate", recorded_keep_rate)
    monkeypatch.setattr(FinetuneRecipe, "validate", in_phase("val", validate))
    monkeypatch.setattr(FinetuneRecipe, "test", in_phase("test", test))
    _events.clear()
    _calls.clear()
    overrides = [
        "data.input_size=64",
        "+model.depth=2",
        "sparsity.sparse_layers=[0,1]",
        "sparsity.ramp_epochs=1",
        "train.save_every_steps=0",
        "train.export_full=true",
        f"train.compile={COUNTING_BACKEND}",
    ]
    cfg = tiny_cfg(digits_root, tmp_path / "run", *overrides)
    recipe = run(cfg)
    assert recipe.finished and recipe.engine.is_compiled
    kept = [num_kept_tokens(16, r) for r in rates]
    first_sparse = next(i for i, k in enumerate(kept) if k < 16)
    assert len(set(kept[first_sparse:])) >= 3, f"the ramp should keep at least 3 token counts: {kept}"
    train_steps = sorted({step for phase, step in _events if phase == "train"})
    assert train_steps == [0, first_sparse], f"training compiled at steps {train_steps} (keep rates {rates})"
    assert [phase for phase, _ in _events if phase != "train"] == ["val"], _events
    assert _calls.get("val") and _calls.get("test"), f"validation and test ran uncompiled: {_calls}"
    trained = json.loads((tmp_path / "run" / "results.json").read_text())["test"]
    assert (tmp_path / "run" / "view_scores.npz").is_file()

    torch._dynamo.reset()  # as in a new process: the graphs above would serve run_test's model too
    _events.clear()
    _where["phase"] = "run_test"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        test_cfg = compose(
            "test",
            overrides=[
                *tiny_overrides(digits_root, tmp_path / "run"),
                *overrides,
                f"checkpoint={tmp_path / 'run' / 'model_final.pth'}",
                f"output_dir={tmp_path / 'test'}",
            ],
        )
    tested = run_test(test_cfg)["test"]
    assert len(_events) == 1 and _calls.get("run_test"), (_events, _calls)
    assert tested["num_videos"] == trained["num_videos"] == 8
    scores = [np.load(tmp_path / folder / "view_scores.npz")["logits"] for folder in ("run", "test")]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5, atol=1e-6)
