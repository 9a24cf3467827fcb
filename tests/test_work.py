"""bench.zoo.work: the analytic FLOPs of convolutions and dense layers against torch's FlopCounterMode (forward and
backward, ResNet-20 and DenseNet-BC-100, within 1%) and the forward FLOPs against XLA's cost analysis (JAX, within
10%); the bytes' rules on a hand-sized layer."""
import json
import os
import subprocess
import sys

import pytest

from bench.zoo import build, get_spec
from bench.zoo.work import layer_work, work_by_kind

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torch_counts(model: str, batch: int) -> tuple[float, float]:
    """(forward, backward) conv + matmul FLOPs FlopCounterMode counts on the torch twin in training mode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    net = build(model, "torch").train()
    x = torch.randn(batch, 3, 32, 32)
    with FlopCounterMode(display=False) as fwd:
        out = net(x)
    with FlopCounterMode(display=False) as bwd:
        out.sum().backward()
    return float(fwd.get_total_flops()), float(bwd.get_total_flops())


@pytest.mark.parametrize("model,batch", [("resnet20_v1", 2), ("densenet_bc100_k12", 1)])
def test_conv_and_dense_flops_match_flop_counter(model, batch):
    w = work_by_kind(get_spec(model), batch)
    fwd, bwd = _torch_counts(model, batch)
    ours_fwd = w[("conv", "forward")][0] + w[("linear", "forward")][0]
    ours_bwd = w[("conv", "backward")][0] + w[("linear", "backward")][0]
    assert ours_fwd == pytest.approx(fwd, rel=0.01)
    assert ours_bwd == pytest.approx(bwd, rel=0.01)


def test_the_stem_has_no_input_gradient_and_bytes_follow_the_rules():
    la = {x.name: x for x in layer_work(get_spec("resnet20_v1"), batch=2)}
    inside = layer_work(get_spec("resnet20_v1"), padding_taps=False)[0]  # 3x3 over 32 px, 1 px padding: 94 taps/axis
    assert inside.fwd_flops == 2 * 3 * 16 * 94 * 94
    stem, conv = la["stem_conv"], la["stage1_block0_conv1"]
    assert stem.bwd_flops == stem.fwd_flops and conv.bwd_flops == 2 * conv.fwd_flops
    e = 2 * 16 * 32 * 32  # a stage-1 feature map of a batch of 2
    w = 16 * 16 * 9
    assert conv.fwd_flops == 2 * e * 16 * 9 and conv.fwd_bytes == 4 * (e + w + e)
    assert conv.bwd_bytes == 4 * (e + e + w + w + e)  # dY, X, W read; dW, dX written
    assert la["stage1_block0_bn1"].fwd_bytes == 4 * 2 * e and la["stage1_block0_bn1"].bwd_bytes == 4 * 3 * e
    assert la["stage1_block0_add"].fwd_bytes == 4 * 3 * e and la["stage1_block0_add"].bwd_bytes == 0
    d = {x.name: x for x in layer_work(get_spec("densenet_bc100_k12"))}
    assert d["block1_layer0_concat"].fwd_bytes == 0  # one tensor: no concat
    assert d["block1_layer1_concat"].fwd_bytes == 4 * 2 * (24 + 12) * 32 * 32


_JAX = """
import json, keras, jax, numpy as np
from bench.zoo import build
net = build("resnet20_v1", "keras")
x = np.zeros((2, 32, 32, 3), "float32")
tv, ntv = [v.value for v in net.trainable_variables], [v.value for v in net.non_trainable_variables]
fwd = jax.jit(lambda tv, ntv, x: net.stateless_call(tv, ntv, x, training=True)[0])
cost = fwd.lower(tv, ntv, x).compile().cost_analysis()
cost = cost[0] if isinstance(cost, list) else cost
print(json.dumps({"flops": float(cost["flops"])}))
"""


def test_forward_flops_match_xla_cost_analysis():
    """XLA counts every op (BN in training mode, ReLU, adds too) and a convolution's taps inside the image alone
    (padding_taps=False): the analytic forward total within 10%."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT}
    p = subprocess.run([sys.executable, "-c", _JAX], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    xla = json.loads(p.stdout.strip().splitlines()[-1])["flops"]
    work = work_by_kind(get_spec("resnet20_v1"), 2, padding_taps=False)
    ours = sum(f for (kind, phase), (f, _) in work.items() if phase == "forward")
    assert ours == pytest.approx(xla, rel=0.10)
