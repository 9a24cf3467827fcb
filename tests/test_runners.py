"""The step runners on the real CIFAR-10 pipeline (the suites' `input=real` rows), both frameworks."""
import numpy as np
import pytest

from bench.stacks import make_step


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("measurement", ["train", "infer"])
def test_real_input_steps_run_and_train(framework, measurement, cifar_dir):
    r = make_step("resnet20_v1", framework, measurement, batch_size=4, input="real", device="cpu",
                  data_dir=str(cifar_dir))
    assert r.env["device"] == "cpu"
    weights = r.extra["weights"]
    before = [np.array(w, copy=True) for w in weights()]
    for _ in range(3):
        r.step()
    r.sync()
    changed = any(not np.array_equal(a, b) for a, b in zip(before, weights()))
    assert changed == (measurement == "train")
