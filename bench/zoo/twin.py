"""One twin interface for every command: a name, the two builders, the input shape and classes, where the twin came
from (a file and the sha256 of its text), and an optional weight map.

Two providers make twins: the built-in zoo (``bench.zoo.registry``: a spec, built by ``models_torch`` and
``models_tf``, layer names spelled the same) and a user's twins file (``bench.zoo.user``: any ``torch.nn.Module``
and any ``keras.Model``, names free, paired by ``bench.twins.pairing``). Every command asks
``bench.zoo.twin_of(name)`` and gets a :class:`Twin`, whichever provided it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.zoo.specs import DEFAULTS, Defaults

FRAMEWORK_TYPES = {"torch": ("torch.nn", "Module", "a torch.nn.Module"), "keras": ("keras", "Model", "a keras.Model")}


class TwinsError(Exception):
    """A twins file or one of its twins cannot be used; the message is one sentence (exit status 2)."""


@dataclass(frozen=True)
class Twin:
    """Two implementations of one network, as every command sees them.

    Attributes:
        name: the name ``--models`` selects and every CSV row carries.
        build_torch: zero-argument callable returning a ``torch.nn.Module`` taking NCHW input.
        build_keras: zero-argument callable returning a ``keras.Model`` taking NHWC input.
        input_size: input height = width (CIFAR-10: 32).
        input_channels: input channels (CIFAR-10: 3).
        num_classes: logits per example (CIFAR-10: 10).
        source: where it came from: ``bench.zoo`` for a built-in, else the twins file's path (or ``module:attr``).
        sha256: sha256 of the twins file's text (empty for a built-in: the commit names it).
        weight_map: optional explicit pairing, {torch parameter or module name: keras weight or layer name}.
        description: one line for the model table.
        builtin: True for the zoo's own.
    """

    name: str
    build_torch: Callable
    build_keras: Callable
    input_size: int = 32
    input_channels: int = 3
    num_classes: int = 10
    source: str = "bench.zoo"
    sha256: str = ""
    weight_map: dict = field(default_factory=dict)
    description: str = ""
    builtin: bool = False

    def build(self, framework: str):
        """Build one side and check its type; a builder that raises or returns the wrong type is a TwinsError."""
        builder = {"torch": self.build_torch, "keras": self.build_keras}[framework]
        if self.builtin:
            return builder()
        try:
            model = builder()
        except Exception as e:  # the user's code: any error becomes one sentence
            raise TwinsError(f"twin {self.name!r} ({self.source}): its {framework} builder raised "
                             f"{type(e).__name__}: {_one_line(e)}") from None
        module, cls, what = FRAMEWORK_TYPES[framework]
        import importlib
        expected = getattr(importlib.import_module(module), cls)
        if not isinstance(model, expected):
            raise TwinsError(f"twin {self.name!r} ({self.source}): its {framework} builder returned "
                             f"{type(model).__module__}.{type(model).__name__}, not {what}")
        return model

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


@dataclass(frozen=True)
class UserSpec:
    """The spec of a user twin, the fields the commands read of a zoo spec (family, depth, input, classes).

    ``depth`` is counted on the built PyTorch twin (its convolution and dense layers), once per process.
    """

    twin: Twin = field(repr=False)
    defaults: Defaults = field(default=DEFAULTS, repr=False)

    family = "user"

    @property
    def num_classes(self) -> int:
        return self.twin.num_classes

    @property
    def input_size(self) -> int:
        return self.twin.input_size

    @property
    def input_channels(self) -> int:
        return self.twin.input_channels

    @property
    def depth(self) -> int:
        return _counted(self.twin)[0]

    @property
    def fwd_mflops(self) -> float:
        """Forward MFLOPs per image of the torch twin (``bench.zoo.counts.flops_per_image``)."""
        return _counted(self.twin)[1]


_COUNTED: dict[tuple[str, str], tuple[int, float]] = {}


def _counted(twin: Twin) -> tuple[int, float]:
    """(weighted layers: convolutions and dense layers, forward MFLOPs per image) of the torch twin, once a process."""
    key = (twin.name, twin.sha256)
    if key not in _COUNTED:
        from torch import nn

        from bench.zoo.counts import flops_per_image
        model = twin.build("torch")
        depth = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
        _COUNTED[key] = (depth, flops_per_image(model, twin.input_size, twin.input_channels)[0] / 1e6)
    return _COUNTED[key]
