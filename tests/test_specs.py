"""Spec validation: depth rules, options, explicit defaults."""
import pytest

from bench.zoo.specs import DEFAULTS, DenseNetSpec, ResNetSpec, keras_name


@pytest.mark.parametrize("depth", [20, 32, 38, 44, 56, 110])
def test_resnet_v1_depths_accepted(depth):
    assert ResNetSpec(1, depth).blocks_per_stage == (depth - 2) // 6


@pytest.mark.parametrize("version,depth", [(1, 21), (1, 2), (1, 0), (2, 21), (2, 57), (1, "20")])
def test_bad_resnet_depth_raises_clear_error(version, depth):
    with pytest.raises(ValueError, match=r"depth must be [69]n\+2"):
        ResNetSpec(version, depth)


@pytest.mark.parametrize("depth,bottleneck", [(41, False), (101, False), (44, True), (3, False)])
def test_bad_densenet_depth_raises(depth, bottleneck):
    with pytest.raises(ValueError, match=r"depth must be"):
        DenseNetSpec(depth, 12, bottleneck=bottleneck)


def test_densenet_blocks_and_channels():
    s = DenseNetSpec(100, 12, bottleneck=True, compression=0.5)
    assert s.blocks == (16, 16, 16) and s.stem_width == 24
    # 24 + 16*12 = 216 -> 108 -> 300 -> 150 -> 342
    assert s.channel_plan() == [(24, 216), (108, 300), (150, 342)]
    assert DenseNetSpec(40, 12).channel_plan() == [(16, 160), (160, 304), (304, 448)]


@pytest.mark.parametrize("kwargs,match", [
    (dict(version=3, depth=20), "version"),
    (dict(version=1, depth=20, shortcut="identity"), "shortcut"),
    (dict(version=2, depth=56, shortcuts=False), "plain"),
    (dict(version=1, depth=20, num_classes=0), "num_classes"),
    (dict(version=1, depth=20, input_size=30), "input_size"),
])
def test_bad_resnet_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNetSpec(**kwargs)


def test_defaults_are_explicit_and_converted():
    assert DEFAULTS.bn_epsilon == 1e-5
    assert DEFAULTS.torch_bn_momentum == pytest.approx(1 - DEFAULTS.bn_momentum)
    assert keras_name("stage1.block0.conv1") == "stage1_block0_conv1"
