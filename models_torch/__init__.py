"""PyTorch twins of the TwinBench architectures: ``build(spec) -> torch.nn.Module``."""
from __future__ import annotations

from bench.zoo.specs import DenseNetSpec, ModelSpec, ResNetSpec


def build(spec: ModelSpec):
    """Build the PyTorch twin of a framework-neutral spec."""
    if isinstance(spec, ResNetSpec):
        from models_torch.resnet import build_resnet
        return build_resnet(spec)
    if isinstance(spec, DenseNetSpec):
        from models_torch.densenet import build_densenet
        return build_densenet(spec)
    raise TypeError(f"no PyTorch builder for {type(spec).__name__}")
