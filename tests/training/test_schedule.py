import math

import pytest

from faceid.config import ScheduleConfig
from faceid.training.schedule import LearningRateSchedule


def _factors(name, steps=100, **options):
    schedule = LearningRateSchedule(ScheduleConfig(name=name, **options), steps, 10, [1.0])
    return schedule, [schedule.factor(s) for s in range(steps)]


def test_warmup_then_cosine():
    _, f = _factors("cosine", warmup_steps=10)
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert f[99] < 0.01


def test_step_poly_constant():
    _, f = _factors("step", step_epochs=[3, 6], gamma=0.1)
    assert f[29] == 1.0 and f[30] == pytest.approx(0.1) and f[60] == pytest.approx(0.01)
    _, f = _factors("poly", power=2.0)
    assert f[50] == pytest.approx(0.25)
    _, f = _factors("constant")
    assert set(f) == {1.0}


def test_plateau_reduces_after_patience():
    schedule, _ = _factors("plateau", plateau_patience=1, gamma=0.5)
    for metric in (0.5, 0.6, 0.6, 0.6):
        schedule.observe(metric)
    assert schedule.factor(50) == 0.5
    restored = LearningRateSchedule(ScheduleConfig(name="plateau"), 100, 10, [1.0])
    restored.load_state_dict(schedule.state_dict())
    assert restored.factor(0) == 0.5
