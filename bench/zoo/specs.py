"""Framework-neutral architecture specs: the single source of truth both twins are built from.

Each architecture is a frozen dataclass validated in ``__post_init__``. The PyTorch builders in
``models_torch/`` and the Keras 3 builders in ``models_tf/`` only read these specs, and every value
where the two libraries' defaults differ is stated here explicitly (see ``Defaults``), never left to
either library.

Canonical layer names: both twins name every parametrised layer the same way. PyTorch uses the
dotted module path (``stage2.block0.conv1``); Keras uses the same path with ``.`` replaced by ``_``
(``stage2_block0_conv1``), see :func:`keras_name`. Weight transfer and the parity tests rely on it.

Sources: He et al. 2015 (arXiv 1512.03385), He et al. 2016 (arXiv 1603.05027), Huang et al. 2017
(arXiv 1608.06993), the Keras 2 example ``examples/cifar10_resnet.py`` (ResNet v1/v2 layout).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Defaults", "DEFAULTS", "ResNetSpec", "DenseNetSpec", "ModelSpec", "keras_name"]


@dataclass(frozen=True)
class Defaults:
    """Cross-framework defaults, stated once. Both builders read these and nothing else.

    Attributes:
        bn_epsilon: BatchNorm epsilon (Keras applications use 1.001e-5, PyTorch 1e-5: we fix 1e-5).
        bn_momentum: running-statistics momentum in the *Keras* convention
            (``running = m * running + (1 - m) * batch``); PyTorch receives ``1 - bn_momentum``.
        conv_bias: convolutions followed by BatchNorm carry no bias. A convolution that is *not*
            followed by BatchNorm (the Keras-example projection shortcut) carries a bias.
        conv_init: ``he_normal``: truncated normal, variance 2 / fan_in (Keras' definition, which
            corrects the truncation so the variance is exact). PyTorch reproduces it with
            ``trunc_normal_``.
        dense_init: ``glorot_uniform`` for the classifier kernel; every bias starts at zero.
        strided_padding: ``symmetric``: a strided 3x3 convolution pads 1 pixel on every side
            (PyTorch ``padding=1``; Keras ``ZeroPadding2D(1)`` + ``padding="valid"``), never Keras'
            asymmetric ``"same"``.
        data_format: Keras twins are channels-last (NHWC), PyTorch twins NCHW; weight transfer
            converts OIHW <-> HWIO.
        bn_moving_variance: ``unbiased``: in training mode a BatchNorm normalises with the *biased*
            batch variance (divide by n, n = batch x height x width) and folds the *unbiased* one
            (divide by n - 1) into its moving variance. That is PyTorch's ``running_var`` update;
            Keras' stock ``BatchNormalization`` folds the biased one, so the Keras twins use
            ``models_tf.common.TwinBatchNormalization`` (Keras' layer with this one change). Why this
            side: Keras' BN is composed of backend ops anyway, so one multiply costs nothing measurable,
            while changing PyTorch would mean leaving its fused cuDNN/native batch-norm kernel. Measured
            (``bench.twins.train_parity.bn_convention_cost``, resnet20_v1 Keras/TensorFlow train step, batch 32,
            40 interleaved A/B rounds in one process on a 2-core CPU shared with other jobs, 2026-11-25):
            median step 0.3235 s with the unbiased rule vs 0.3237 s with Keras' own, ratio 0.999, i.e.
            no cost measurable on that machine. The memory-efficient DenseNets fold their once-per-step
            statistics with the same rule (``TwinBatchNormalization.update_moving_statistics``; PyTorch's
            checkpointed segment updates ``running_var`` once, natively).
    """

    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    conv_bias: bool = False
    conv_init: str = "he_normal"
    dense_init: str = "glorot_uniform"
    strided_padding: str = "symmetric"
    data_format: str = "NCHW (torch) / NHWC (keras)"
    bn_moving_variance: str = "unbiased"

    @property
    def torch_bn_momentum(self) -> float:
        return 1.0 - self.bn_momentum


DEFAULTS = Defaults()

# Keras' truncated-normal correction: stddev of a unit normal truncated at +-2 sigma.
TRUNCATED_NORMAL_STD = 0.87962566103423978


def he_normal_std(fan_in: int) -> float:
    """Parameter stddev of Keras ``he_normal`` before truncation at +-2 stddev."""
    return math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD


def keras_name(torch_name: str) -> str:
    """Canonical PyTorch module path -> Keras layer name (``stage1.block0.conv1`` -> ``stage1_block0_conv1``)."""
    return torch_name.replace(".", "_")


@dataclass(frozen=True)
class ResNetSpec:
    """CIFAR ResNet (v1: basic blocks, 6n+2; v2: pre-activation bottleneck, 9n+2) or plain net.

    Attributes:
        version: 1 (He et al. 2015, post-activation basic blocks) or 2 (He et al. 2016,
            pre-activation bottleneck, the Keras example's ``resnet_v2``).
        depth: total weighted layers; 6n+2 for v1, 9n+2 for v2.
        shortcuts: False builds the plain net of the degradation experiment (v1 only): the same
            layers without any shortcut.
        shortcut: v1 projection where the shape changes: ``conv1x1`` (Keras example) or
            ``conv3x3`` (the course slides' 3x3 strided shortcut).
        v2_widths: v2 bottleneck (inner) widths: ``paper`` (16/32/64, a quarter of the stage output,
            He et al. 2016: ResNet-164 has 1.7M params) or ``keras-example`` (16/64/128, the Keras
            example's ``num_filters_in``: ResNet-164 has 4.9M). Stage outputs are 64/128/256 in both.
        num_classes: classifier outputs.
        input_size: input height = width (CIFAR: 32).
    """

    version: int
    depth: int
    shortcuts: bool = True
    shortcut: str = "conv1x1"
    v2_widths: str = "paper"
    num_classes: int = 10
    input_size: int = 32
    input_channels: int = 3
    defaults: Defaults = field(default=DEFAULTS, repr=False)

    family = "resnet"

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"ResNet version must be 1 or 2, got {self.version!r}")
        div = 6 if self.version == 1 else 9
        if not isinstance(self.depth, int) or self.depth < div + 2 or (self.depth - 2) % div:
            raise ValueError(
                f"ResNet v{self.version} depth must be {div}n+2 (e.g. {div + 2}, {2 * div + 2}, {3 * div + 2}), "
                f"got {self.depth!r}")
        if self.shortcut not in ("conv1x1", "conv3x3"):
            raise ValueError(f"shortcut must be 'conv1x1' or 'conv3x3', got {self.shortcut!r}")
        if self.v2_widths not in ("paper", "keras-example"):
            raise ValueError(f"v2_widths must be 'paper' or 'keras-example', got {self.v2_widths!r}")
        if self.version == 2 and not self.shortcuts:
            raise ValueError("plain nets (shortcuts=False) are defined for ResNet v1 only")
        _check_common(self.num_classes, self.input_size)

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // (6 if self.version == 1 else 9)

    @property
    def stage_widths(self) -> tuple[int, int, int]:
        """Output channels of the three stages (v1: 16/32/64; v2: 64/128/256)."""
        return (16, 32, 64) if self.version == 1 else (64, 128, 256)

    @property
    def stem_width(self) -> int:
        return 16

    def bottleneck_width(self, stage: int) -> int:
        """v2 bottleneck (inner) width of a stage (see ``v2_widths``)."""
        return ((16, 32, 64) if self.v2_widths == "paper" else (16, 64, 128))[stage]


@dataclass(frozen=True)
class DenseNetSpec:
    """CIFAR DenseNet (Huang et al. 2017): 3 dense blocks of equal size, or explicit ``block_config``.

    Attributes:
        depth: 3n+4 without bottleneck (n layers per block), 6n+4 with bottleneck (BC). Ignored
            when ``block_config`` is given (DenseNet-121).
        growth_rate: k, channels each layer adds.
        bottleneck: BN-ReLU-Conv1x1(4k) before each 3x3 conv (the "B" of BC).
        compression: theta of the transition layers (1.0 = none, 0.5 for BC).
        block_config: layers per block, overriding depth (DenseNet-121: (6, 12, 24, 16)).
        stem_channels: channels of the 3x3 stem conv (default 2k for BC, 16 otherwise, as in the paper).
        memory_efficient: recompute concat+BN+ReLU+conv1 in the backward pass instead of storing it
            (PyTorch: checkpoint; Keras: ``keras.remat``). The same network otherwise.
    """

    depth: int
    growth_rate: int
    bottleneck: bool = False
    compression: float = 1.0
    block_config: tuple[int, ...] | None = None
    stem_channels: int | None = None
    memory_efficient: bool = False
    num_classes: int = 10
    input_size: int = 32
    input_channels: int = 3
    defaults: Defaults = field(default=DEFAULTS, repr=False)

    family = "densenet"

    def __post_init__(self) -> None:
        if self.block_config is None:
            div = 6 if self.bottleneck else 3
            if not isinstance(self.depth, int) or self.depth < div + 4 or (self.depth - 4) % div:
                kind = "6n+4 (DenseNet-BC)" if self.bottleneck else "3n+4"
                raise ValueError(f"DenseNet depth must be {kind}, got {self.depth!r}")
        elif not self.block_config or any(int(b) < 1 for b in self.block_config):
            raise ValueError(f"block_config must be positive layer counts, got {self.block_config!r}")
        if self.growth_rate < 1:
            raise ValueError(f"growth_rate must be >= 1, got {self.growth_rate!r}")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {self.compression!r}")
        _check_common(self.num_classes, self.input_size)
        if self.input_size % (2 ** (len(self.blocks) - 1)):
            raise ValueError(f"input_size {self.input_size} is not divisible by the {len(self.blocks) - 1} "
                             "transition poolings")

    @property
    def blocks(self) -> tuple[int, ...]:
        if self.block_config is not None:
            return tuple(int(b) for b in self.block_config)
        n = (self.depth - 4) // (6 if self.bottleneck else 3)
        return (n, n, n)

    @property
    def stem_width(self) -> int:
        if self.stem_channels is not None:
            return self.stem_channels
        return 2 * self.growth_rate if self.bottleneck else 16

    def channel_plan(self) -> list[tuple[int, int]]:
        """(channels entering, channels leaving) for each dense block, transitions applied."""
        plan, c = [], self.stem_width
        for i, n in enumerate(self.blocks):
            out = c + n * self.growth_rate
            plan.append((c, out))
            c = int(math.floor(out * self.compression)) if i < len(self.blocks) - 1 else out
        return plan

    def transition_width(self, channels: int) -> int:
        return int(math.floor(channels * self.compression))


ModelSpec = ResNetSpec | DenseNetSpec


def _check_common(num_classes: int, input_size: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(input_size, int) or input_size < 8 or input_size % 4:
        raise ValueError(f"input_size must be an int >= 8 divisible by 4, got {input_size!r}")
