"""Keras' plain script for ``bench.overhead``: ``model.fit`` on the same twin, built and compiled as the
harness does it (same optimizer, loss and jit setting), over the synthetic batch repeated ``steps`` times,
after one warm-up ``fit``."""
from __future__ import annotations

import time


def keras_fit(stack, model: str, batch: int, precision: str, device: str, steps: int, exec_mode: str | None = None) -> float:
    """images/s of ``model.fit`` on the Keras twin (this process's backend), one epoch of ``steps`` batches."""
    import keras
    import numpy as np

    from bench.stacks.keras.step import KERAS_POLICY
    from bench.zoo import build
    mode = exec_mode or stack.default_exec_mode(device)
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    net = build(model, "keras")
    net.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=mode == "jit")
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
    yb = rng.integers(0, 10, batch)
    x, y = np.concatenate([xb] * steps), np.concatenate([yb] * steps)
    warm = max(2, min(20, steps // 2))
    net.fit(x[:warm * batch], y[:warm * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)  # compile
    t0 = time.perf_counter()
    net.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return batch * steps / (time.perf_counter() - t0)
