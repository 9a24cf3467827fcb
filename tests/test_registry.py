"""Registry: names, patterns, errors, and both builders for every key."""
import pytest

from bench import models as cli
from bench import zoo as models
from bench.zoo import build, get_entry, list_models

ISSUE_NAMES = ["resnet20_v1", "resnet32_v1", "resnet44_v1", "resnet56_v1", "resnet110_v1", "resnet38_v1",
               "resnet56_v2", "resnet110_v2", "resnet164_v2", "plain20", "plain56",
               "densenet40_k12", "densenet_bc100_k12", "densenet121"]


def test_fixed_names_registered_with_memory_efficient_variants():
    names = list_models()
    for n in ISSUE_NAMES:
        assert n in names
    for n in list_models("dense*"):
        base = n.removesuffix("_memeff")
        assert base in names and f"{base}_memeff" in names
        assert models.get_spec(f"{base}_memeff").memory_efficient and not models.get_spec(base).memory_efficient


def test_pattern_filter_sorted():
    assert list_models("resnet*_v2") == ["resnet110_v2", "resnet164_v2", "resnet56_v2"]
    assert list_models(["plain*", "resnet20_v1"]) == ["plain20", "plain56", "resnet20_v1"]
    assert list_models("nothing*") == []


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="resnet20_v1"):
        get_entry("resnet20v1")


def test_duplicate_registration_raises():
    entry = get_entry("resnet20_v1")
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("resnet20_v1", entry.make_spec, None, "dup")


def test_unknown_option_and_framework():
    with pytest.raises(TypeError, match="unknown option"):
        build("resnet20_v1", "torch", widht=3)
    with pytest.raises(ValueError, match="unknown framework"):
        build("resnet20_v1", "mxnet")


def test_options_reach_both_builders():
    import keras
    import torch
    tm = build("resnet20_v1", "torch", num_classes=7, input_size=64)
    assert tm(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    km = build("resnet20_v1", "keras", num_classes=7, input_size=64)
    assert tuple(km.output.shape) == (None, 7) and tuple(km.input.shape) == (None, 64, 64, 3)
    assert isinstance(km, keras.Model)


def test_models_table_prints(capsys):
    assert cli.main(["resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20_v1" in out and "0.272M" in out and "81.6" in out
    assert cli.main(["nomatch"]) == 2
