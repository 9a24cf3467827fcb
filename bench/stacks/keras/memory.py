"""What every Keras backend's memory counter shares: the model, the optimizer, weights and optimizer state.

Each backend's own counter (allocator peak, what one step keeps) is in ``bench/stacks/keras/<backend>.py``.
"""
from __future__ import annotations

from bench.stacks.base import MemoryCounter, StepMemory


class KerasMemory(MemoryCounter):
    """Shared by the Keras backends: the model, the optimizer, weights and optimizer state."""

    def _build(self, model: str, precision: str, **options):
        import keras

        from bench.stacks.keras.step import build_twin
        net = build_twin(model, precision, options)
        opt = keras.optimizers.SGD(0.1, momentum=0.9)  # as the timed step
        opt.build(net.trainable_variables)
        return net, opt

    @staticmethod
    def _nbytes(variables) -> int:
        import numpy as np
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)

    def _state(self, net, opt) -> StepMemory:
        import numpy as np
        return StepMemory(params=self._nbytes(net.weights), grads=self._nbytes(net.trainable_variables),
                          optimizer_state=self._nbytes(opt.variables),
                          trainable_count=sum(int(np.prod(v.shape)) for v in net.trainable_variables))
