import math

import pytest

from video_sparse.engine.schedules import keep_rate_at, warmup_cosine


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, min_ratio=0.01) == pytest.approx(0.01)
    halfway = 10 + 45 // 2
    expected = 0.5 * (1 + math.cos(math.pi * (halfway - 10) / 90))
    assert warmup_cosine(halfway, 100, 10) == pytest.approx(expected)


def test_keep_rate_ramp():
    assert keep_rate_at(0.0, 0.7) == 0.7
    assert keep_rate_at(0.5, 0.7, start_epoch=1, ramp_epochs=4) == 1.0
    assert keep_rate_at(3.0, 0.7, start_epoch=1, ramp_epochs=4) == pytest.approx(0.85)
    assert keep_rate_at(5.0, 0.7, start_epoch=1, ramp_epochs=4) == 0.7
    values = [keep_rate_at(e / 10, 0.5, 0, 3) for e in range(31)]
    assert all(a >= b for a, b in zip(values, values[1:]))
