"""The model registry: one name -> one framework-neutral spec -> a PyTorch twin and a Keras twin.

    >>> from bench.zoo import list_models, build
    >>> list_models("resnet*_v2")
    ['resnet110_v2', 'resnet164_v2', 'resnet56_v2']
    >>> net = build("resnet20_v1", "torch")            # torch.nn.Module
    >>> net = build("resnet20_v1", "keras")            # keras.Model (backend from KERAS_BACKEND)

``python -m bench.models [PATTERN]`` (``bench/models.py``) prints the table: name, trainable params, FLOPs per image,
depth, frameworks available. Registry semantics follow torchvision's ``_api.py`` (a duplicate name
raises) and timm's ``list_models`` (fnmatch patterns).
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bench.zoo.specs import DenseNetSpec, ModelSpec, ResNetSpec
from bench.zoo.twin import Twin, TwinsError, UserSpec

# the twin builders: one package per framework, each with ``build(spec)``
BUILDERS = {"torch": "models_torch", "keras": "models_tf"}
FRAMEWORKS = tuple(BUILDERS)


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: registry key (snake_case, used by suites, CSVs and reports).
        make_spec: returns the spec; keyword options override spec fields.
        paper_params: published trainable parameter count as printed ("0.27M"), or None.
        description: one line for the table.
        twin: a user's twin (``bench.zoo.user``); None for the zoo's own, built from the spec.
    """

    name: str
    make_spec: Callable[..., ModelSpec]
    paper_params: str | None
    description: str
    twin: Twin | None = None

    @property
    def paper_params_value(self) -> float | None:
        return None if self.paper_params is None else float(self.paper_params.rstrip("M")) * 1e6

    @property
    def paper_params_rounding(self) -> float:
        """Half a unit of the last printed digit: "0.8M" covers 0.75M-0.85M."""
        if self.paper_params is None:
            return 0.0
        decimals = len(self.paper_params.rstrip("M").partition(".")[2])
        return 0.5 * 10 ** -decimals * 1e6


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, make_spec: Callable[..., ModelSpec], paper_params: str | None,
                   description: str) -> ModelEntry:
    """Register ``name``; a duplicate raises ValueError (torchvision semantics, not timm's warning)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, make_spec, paper_params, description)
    _REGISTRY[name] = entry
    return entry


def _spec_factory(cls: type, **fixed) -> Callable[..., ModelSpec]:
    fields = {f.name for f in dataclasses.fields(cls)} - {"defaults"}

    def make(**options) -> ModelSpec:
        bad = sorted(set(options) - fields)
        if bad:
            raise TypeError(f"unknown option(s) {bad} for {cls.__name__}; valid: {sorted(fields)}")
        return cls(**{**fixed, **options})

    return make


for _depth, _params in ((20, "0.27M"), (32, "0.46M"), (44, "0.66M"), (56, "0.85M"), (110, "1.7M"), (38, None)):
    register_model(f"resnet{_depth}_v1", _spec_factory(ResNetSpec, version=1, depth=_depth), _params,
                   f"ResNet v1, {_depth} layers (n={(_depth - 2) // 6}), basic blocks")
for _depth, _params in ((56, None), (110, None), (164, "1.7M")):
    register_model(f"resnet{_depth}_v2", _spec_factory(ResNetSpec, version=2, depth=_depth), _params,
                   f"ResNet v2, {_depth} layers (n={(_depth - 2) // 9}), pre-activation bottleneck")
for _depth in (20, 56):
    register_model(f"plain{_depth}", _spec_factory(ResNetSpec, version=1, depth=_depth, shortcuts=False), None,
                   f"plain net: ResNet-{_depth} v1 without shortcuts")
_DENSENETS = {
    "densenet40_k12": (dict(depth=40, growth_rate=12), "1.0M", "DenseNet L=40 k=12"),
    "densenet_bc100_k12": (dict(depth=100, growth_rate=12, bottleneck=True, compression=0.5), "0.8M",
                           "DenseNet-BC L=100 k=12"),
    "densenet121": (dict(depth=121, growth_rate=32, bottleneck=True, compression=0.5,
                         block_config=(6, 12, 24, 16)), None, "DenseNet-121 k=32, CIFAR 3x3 stem"),
}
for _name, (_cfg, _params, _desc) in _DENSENETS.items():
    register_model(_name, _spec_factory(DenseNetSpec, **_cfg), _params, _desc + ", naive concat")
    register_model(f"{_name}_memeff", _spec_factory(DenseNetSpec, **_cfg, memory_efficient=True), _params,
                   _desc + ", memory-efficient (recomputed concat+BN+ReLU+conv1)")


BUILTIN = frozenset(_REGISTRY)
_LOADED: set[str] = set()


def register_twin(twin: Twin) -> ModelEntry:
    """Register a user's twin; a name of the zoo's own is refused, the same twin loaded again is a no-op."""
    if twin.name in BUILTIN:
        raise TwinsError(f"twin {twin.name!r} in {twin.source} has the name of a built-in model: rename it")
    old = _REGISTRY.get(twin.name)
    if old is not None:
        if old.twin is not None and old.twin.sha256 == twin.sha256 and old.twin.source == twin.source:
            return old
        raise TwinsError(f"twin {twin.name!r} is defined twice ({old.twin.source if old.twin else 'bench.zoo'} "
                         f"and {twin.source}): rename one")

    def make(**options) -> UserSpec:
        if options:
            raise TypeError(f"user twin {twin.name!r} takes no spec options, got {sorted(options)}")
        return UserSpec(twin)

    entry = ModelEntry(twin.name, make, None, twin.description, twin)
    _REGISTRY[twin.name] = entry
    return entry


def load_user_twins(refs: list[str] | None = None) -> list[str]:
    """Load and register the twins of ``refs`` (default: ``$TWINBENCH_TWINS``); returns their names, in order."""
    from bench.zoo.user import env_refs, load_twins
    names = []
    for ref in env_refs() if refs is None else refs:
        twins = load_twins(ref)
        for t in twins:
            register_twin(t)
        names += [t.name for t in twins]
        _LOADED.add(ref)
    return names


def forget_user_twins() -> None:
    """Unregister every user twin of this process (tests; ``$TWINBENCH_TWINS`` and the entry points load them again
    when asked)."""
    from bench.zoo.user import forget_entry_points
    forget_entry_points()
    for name in [n for n, e in _REGISTRY.items() if e.twin is not None]:
        del _REGISTRY[name]
    _LOADED.clear()


def _ensure_loaded() -> None:
    from bench.zoo.user import env_refs
    todo = [r for r in env_refs() if r not in _LOADED]
    if todo:
        load_user_twins(todo)


def user_models() -> list[str]:
    """The names of the users' twins registered in this process."""
    _ensure_loaded()
    return [n for n, e in _REGISTRY.items() if e.twin is not None]


def twin_of(name: str) -> Twin:
    """The :class:`Twin` of ``name``, whichever provider made it (the zoo, or a twins file)."""
    entry = get_entry(name)
    if entry.twin is not None:
        return entry.twin
    spec = entry.make_spec()
    return Twin(name=name, build_torch=lambda: build(name, "torch"), build_keras=lambda: build(name, "keras"),
                input_size=spec.input_size, input_channels=spec.input_channels, num_classes=spec.num_classes,
                source="bench.zoo", description=entry.description, builtin=True)


def list_models(pattern: str | list[str] = "*") -> list[str]:
    """Sorted registry names matching an fnmatch pattern (or any of a list of patterns), users' twins included."""
    _ensure_loaded()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(n for n in _REGISTRY if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises KeyError listing close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} `python -m bench.models` lists all "
                       f"{len(_REGISTRY)} models.") from None


def get_spec(name: str, **options) -> ModelSpec:
    """The framework-neutral spec of ``name`` with options (num_classes, input_size, ...) applied."""
    return get_entry(name).make_spec(**options)


def build(name: str, framework: str, **options):
    """Build the ``framework`` twin ("torch" or "keras") of registered model ``name``.

    Args:
        name: registry name, e.g. ``resnet20_v1``.
        framework: ``torch`` or ``keras``.
        **options: spec overrides (``num_classes``, ``input_size``, ``shortcut``, ``memory_efficient``...).
    """
    if framework not in BUILDERS:
        raise ValueError(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    entry = get_entry(name)
    if entry.twin is not None:
        entry.make_spec(**options)  # a user twin takes no options: TypeError
        return entry.twin.build(framework)
    return importlib.import_module(BUILDERS[framework]).build(get_spec(name, **options))
