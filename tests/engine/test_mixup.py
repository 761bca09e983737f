import numpy as np
import torch

from video_sparse.engine.mixup import MixupCutmix, one_hot_smooth


def test_cutmix_cuts_the_same_box_in_every_frame():
    x = torch.stack([torch.zeros(3, 4, 16, 16), torch.ones(3, 4, 16, 16)])
    mix = MixupCutmix(5, mixup_alpha=0.0, cutmix_alpha=1.0, smoothing=0.0)
    out, target = mix(x, torch.tensor([0, 1]), np.random.default_rng(3))
    pasted = out[0, 0] == 1  # (T, H, W) mask where sample 1 was pasted into sample 0
    assert pasted.any()
    assert all(torch.equal(pasted[t], pasted[0]) for t in range(4))
    area = pasted[0].float().mean().item()
    assert torch.allclose(target[0], torch.tensor([1 - area, area, 0, 0, 0]))
    assert torch.allclose(target.sum(1), torch.ones(2))


def test_mixup_blends_inputs_and_targets_alike():
    x = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    out, target = MixupCutmix(4, mixup_alpha=0.8, cutmix_alpha=0.0, smoothing=0.0)(x, labels, np.random.default_rng(0))
    lam = target[0, 0].item()
    torch.testing.assert_close(out, lam * x + (1 - lam) * x.flip(0))


def test_off_means_smoothed_one_hot():
    out, target = MixupCutmix(3, 0.0, 0.0, smoothing=0.3)(
        torch.ones(2, 3), torch.tensor([2, 0]), np.random.default_rng(0)
    )
    assert torch.equal(out, torch.ones(2, 3))
    torch.testing.assert_close(target, one_hot_smooth(torch.tensor([2, 0]), 3, 0.3))
    torch.testing.assert_close(target[0], torch.tensor([0.1, 0.1, 0.8]))
