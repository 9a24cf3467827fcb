"""Memory-efficient DenseNets train exactly like the naive ones: same gradients, same BN statistics.

Recomputation (torch checkpoint, keras.remat) re-runs BatchNorm in the backward pass; a running-
statistics update there would count every step twice. One SGD step from the same weights on the
same batch must leave naive and memory-efficient twins identical.
"""
import numpy as np

from bench.zoo import build


def _torch_step(model, x, y):
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_torch_memeff_step_equals_naive():
    import torch
    torch.manual_seed(0)
    naive = build("densenet40_k12", "torch")
    eff = build("densenet40_k12_memeff", "torch")
    eff.load_state_dict(naive.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    a, b = _torch_step(naive, x, y), _torch_step(eff, x, y)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_keras_memeff_step_equals_naive():
    """A depth-16 DenseNet (4 dense layers a block, every kind of segment of DenseNet-40): TensorFlow traces each
    train step in ~25 s at depth 40 on 2 cores, and the recompute is the same code at any depth."""
    import keras
    keras.utils.set_random_seed(0)
    naive = build("densenet40_k12", "keras", depth=16)
    eff = build("densenet40_k12_memeff", "keras", depth=16)
    eff.set_weights(naive.get_weights())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 4)
    for m in (naive, eff):
        m.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        m.train_on_batch(x, y)
    for wa, wb, v in zip(naive.get_weights(), eff.get_weights(), naive.weights):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5, err_msg=v.path)
