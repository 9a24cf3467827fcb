"""Training recipes, selectable by name, every value overridable: ``paper``, ``keras-example``, ``slides``, ``fast``, ``smoke``.

A recipe is frozen data; :meth:`Recipe.lr_at` is the one learning-rate formula. ``smoke`` is the
few-minute CPU training of the ``smoke`` suite (a trainer that learns, not a result). PyTorch calls it per
step; Keras evaluates the same formula in-graph (``bench.stacks.keras.optimizers.RecipeSchedule``), and a test
checks that both agree step by step.

Weight decay is *coupled* L2 on every trainable weight (``grad += wd * w`` before the optimizer
update), which is what ``torch.optim.SGD(weight_decay=...)`` does and what the papers mean; the
Keras side adds the same term in its optimizer's ``update_step``.

Sources: He et al. 2015 (SGD 0.1, momentum 0.9, wd 1e-4, batch 128, /10 at 32k and 48k of 64k
iterations, i.e. 50% and 75%); Huang et al. 2017 (Nesterov, batch 64, 300 epochs, /10 at 50%, 75%);
Keras example ``cifar10_resnet.py`` (Adam 1e-3, batch 32, 200 epochs, x0.1 after 80, x0.01 after
120, x0.001 after 160, x0.0005 after 180, L2 1e-4); the course slides (Adam 1e-3, batch 64, 1e-4 from
epoch 50, 1e-5 from epoch 100).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Attributes:
        name: recipe name.
        optimizer: ``sgd`` or ``adam``.
        lr: base learning rate (the peak for ``onecycle``).
        batch_size: examples per step.
        epochs: training epochs.
        momentum: SGD momentum.
        nesterov: Nesterov momentum (SGD).
        weight_decay: coupled L2 coefficient on every trainable weight.
        schedule: ``step`` (``milestones``) or ``onecycle`` (linear warm-up to ``lr`` over
            ``warmup`` of training, then linear decay to 0).
        milestones: ((epoch, factor), ...): from that epoch on, lr = base * factor. Epochs below 1.0
            are fractions of ``epochs``.
        warmup: onecycle warm-up fraction.
    """

    name: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"
    milestones: tuple[tuple[float, float], ...] = ()
    warmup: float = 0.25

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("step", "onecycle"):
            raise ValueError(f"schedule must be 'step' or 'onecycle', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"recipe {self.name}: epochs, batch_size and lr must be positive")

    def milestone_epochs(self) -> list[tuple[float, float]]:
        return sorted((e * self.epochs if e < 1 else e, f) for e, f in self.milestones)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate for global step ``step`` (0-based)."""
        if self.schedule == "onecycle":
            total = self.epochs * steps_per_epoch
            peak = max(1.0, self.warmup * total)
            if step < peak:
                return self.lr * (0.1 + 0.9 * step / peak)
            return self.lr * max(0.0, (total - step) / max(1.0, total - peak))
        factor = 1.0
        for start, f in self.milestone_epochs():
            if step >= start * steps_per_epoch:  # compared in steps: the Keras twin does the same in-graph
                factor = f
        return self.lr * factor


_PAPER_RESNET = Recipe("paper", "sgd", 0.1, 128, 164, weight_decay=1e-4, milestones=((0.5, 0.1), (0.75, 0.01)))
_PAPER_DENSENET = dataclasses.replace(_PAPER_RESNET, batch_size=64, epochs=300, nesterov=True)
RECIPES = {
    "paper": _PAPER_RESNET,  # DenseNets: see recipe_for()
    "keras-example": Recipe("keras-example", "adam", 1e-3, 32, 200, weight_decay=1e-4,
                            milestones=((81, 0.1), (121, 0.01), (161, 1e-3), (181, 5e-4))),
    "slides": Recipe("slides", "adam", 1e-3, 64, 150, milestones=((50, 0.1), (100, 0.01))),
    "fast": Recipe("fast", "sgd", 0.2, 256, 30, nesterov=True, weight_decay=5e-4, schedule="onecycle"),
    # the smoke suite's few-minute CPU training (a few thousand images, 3 epochs): shows a trainer that
    # learns, never a result; one-cycle with a short warm-up, small batch for many steps
    "smoke": Recipe("smoke", "sgd", 0.1, 64, 3, nesterov=True, weight_decay=5e-4, schedule="onecycle", warmup=0.2),
}


def recipe_for(name: str, family: str = "resnet", **overrides) -> Recipe:
    """The recipe ``name`` for a model family, with overrides applied.

    Raises:
        ValueError: unknown recipe or unknown override field.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    base = _PAPER_DENSENET if (name == "paper" and family == "densenet") else RECIPES[name]
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown recipe field(s) {bad}; valid: {sorted(fields)}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
