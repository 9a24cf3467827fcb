"""Execution modes at each stack's best: PyTorch's whole-step compile trains like eager (CPU, a tiny twin)."""
import numpy as np
import pytest

from bench.stacks import make_step

TINY = {"depth": 8, "input_size": 8}  # ResNet-8 on 8x8 inputs: the compile stays short on 2 cores


@pytest.mark.slow
def test_step_compile_trains_like_eager():
    """forward+backward+SGD compiled together: same weights as eager after one step (fp32 tolerance), loss falls."""
    runs = {m: make_step("resnet20_v1", "torch", "train", 4, device="cpu", exec_mode=m, model_options=TINY)
            for m in ("eager", "step-compile")}
    assert runs["step-compile"].exec_mode == "step-compile"
    start = [r.extra["weights"]() for r in runs.values()]
    for a, b in zip(*start):
        np.testing.assert_array_equal(a, b)  # same seed, same initial twin
    for r in runs.values():
        r.step()
    eager, compiled = (r.extra["weights"]() for r in runs.values())
    assert any(not np.array_equal(a, b) for a, b in zip(start[0], eager))  # the step did update
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    r = runs["step-compile"]
    first = r.extra["loss"]()
    for _ in range(6):  # one fixed batch: a training step must fit it better
        r.step()
    assert r.extra["loss"]() < first
