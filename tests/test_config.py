import pytest
import torch

from course_lib import config


def test_scaled_picks_by_scale():
    assert [config.scaled(s, ci=1, book=2, paper=3) for s in config.SCALES] == [1, 2, 3]


def test_bad_scale_is_named():
    with pytest.raises(ValueError, match="SCALE must be one of"):
        config.scaled("huge", 1, 2, 3)


def test_seed_everything_reproducible():
    g1 = config.seed_everything(3)
    a = torch.randn(4, generator=g1)
    g2 = config.seed_everything(3)
    assert torch.equal(a, torch.randn(4, generator=g2))
    with pytest.raises(ValueError):
        config.seed_everything(-1)


def test_device_auto_is_a_device():
    assert isinstance(config.get_device("auto"), torch.device)
    assert config.get_device("cpu").type == "cpu"
