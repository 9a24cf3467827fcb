"""The work of every layer of a twin, counted analytically from its spec: forward and backward FLOPs and
compulsory bytes, per layer kind (conv, linear, batchnorm, relu, pool, add, concat) -- the roofline's x and y.

FLOPs: a multiply-add is 2 FLOPs (``torch.utils.flop_counter``'s rule, docs/anchors.md). A convolution or a dense
layer's backward is its input gradient and its weight gradient, 2 x its forward (the weight gradient alone where
nothing upstream needs a gradient: the stem, fed by the image); the biases' sums are not counted (nor are they by
FlopCounterMode). Elementwise layers count their arithmetic per element: BatchNorm in training 8 forward (mean 1,
variance 3, normalise 2, scale and shift 2) and 9 backward (x-hat 2, the two reductions 3, the gradient 4); ReLU 1
and 1; pooling 1 per input element each way; an add 1 forward and none backward (its gradient is passed on);
a concat none.

Bytes: *compulsory* traffic, each tensor read or written once (``dtype_bytes`` per element): a layer reads its input
(and weights) and writes its output; backward reads the output gradient (and what the gradient needs: the input
for a conv's weight gradient and for BN, the output for ReLU) and writes the input gradient (and the weight
gradient). A concat copies its inputs forward; backward, its gradient's slices can be views (0 bytes); a concat of
one tensor is no work. Not counted: re-reads when a working set exceeds a cache (BN's two passes, im2col
buffers), the optimizer, and the recompute of memory-efficient variants. So the bytes are a floor on the traffic:
measured traffic is at least this.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.zoo.specs import DenseNetSpec, ModelSpec, ResNetSpec

WORK_KINDS = ("conv", "linear", "batchnorm", "relu", "pool", "add", "concat")
PHASES = ("forward", "backward")
BN_FWD, BN_BWD = 8, 9


@dataclass(frozen=True)
class LayerWork:
    """One layer's work for a batch: FLOPs and compulsory bytes, forward and backward."""

    name: str
    kind: str
    fwd_flops: float
    bwd_flops: float
    fwd_bytes: float
    bwd_bytes: float

    def flops(self, phase: str) -> float:
        return self.fwd_flops if phase == "forward" else self.bwd_flops

    def bytes(self, phase: str) -> float:
        return self.fwd_bytes if phase == "forward" else self.bwd_bytes


class _Walk:
    """Appends layers while tracking the feature map's (channels, side)."""

    def __init__(self, batch: int, dtype_bytes: int, padding_taps: bool = True) -> None:
        self.n, self.b, self.out, self.padding_taps = batch, dtype_bytes, [], padding_taps

    def conv(self, name: str, cin: int, cout: int, k: int, side: int, stride: int = 1,
             input_grad: bool = True) -> int:
        so = (side + 2 * (k // 2) - k) // stride + 1
        taps = so * k if self.padding_taps else _taps(side, k, stride, so)
        fl = 2.0 * self.n * taps * taps * cout * cin
        x, y, w = self.n * cin * side * side, self.n * cout * so * so, cin * cout * k * k
        bwd_fl = fl * (2 if input_grad else 1)
        bwd_by = (y + x + w + w + (x if input_grad else 0)) * self.b  # dY, X, W read; dW (and dX) written
        self.out.append(LayerWork(name, "conv", fl, bwd_fl, (x + w + y) * self.b, bwd_by))
        return so

    def linear(self, name: str, cin: int, cout: int) -> None:
        fl, x, y, w = 2.0 * self.n * cin * cout, self.n * cin, self.n * cout, cin * cout
        self.out.append(LayerWork(name, "linear", fl, 2 * fl, (x + w + y) * self.b, (y + x + w + w + x) * self.b))

    def eltwise(self, name: str, kind: str, elems: int, fwd: float, bwd: float, reads_bwd: int = 2) -> None:
        """An elementwise layer over ``elems`` elements: ``fwd``/``bwd`` FLOPs per element; forward reads and
        writes each once; backward reads ``reads_bwd`` tensors (the gradient and X or Y) and writes one."""
        self.out.append(LayerWork(name, kind, fwd * elems, bwd * elems, 2 * elems * self.b,
                                  (reads_bwd + 1) * elems * self.b))

    def bn(self, name: str, c: int, side: int) -> None:
        self.eltwise(name, "batchnorm", self.n * c * side * side, BN_FWD, BN_BWD)

    def relu(self, name: str, c: int, side: int) -> None:
        self.eltwise(name, "relu", self.n * c * side * side, 1, 1)

    def add(self, name: str, c: int, side: int) -> None:
        e = self.n * c * side * side
        self.out.append(LayerWork(name, "add", float(e), 0.0, 3 * e * self.b, 0.0))

    def concat(self, name: str, parts: int, c_out: int, side: int) -> None:
        e = self.n * c_out * side * side if parts > 1 else 0
        self.out.append(LayerWork(name, "concat", 0.0, 0.0, 2 * e * self.b, 0.0))

    def pool(self, name: str, c: int, side: int, out_side: int) -> None:
        x, y = self.n * c * side * side, self.n * c * out_side * out_side
        self.out.append(LayerWork(name, "pool", float(x), float(x), (x + y) * self.b, (x + y) * self.b))


def _taps(side: int, k: int, stride: int, so: int) -> int:
    """Kernel taps inside the input, summed over one axis's output positions (padding's zeros excluded)."""
    pad = k // 2
    return sum(1 for o in range(so) for j in range(k) if 0 <= o * stride - pad + j < side)


def _resnet(w: _Walk, spec: ResNetSpec) -> int:
    side = spec.input_size
    w.conv("stem_conv", spec.input_channels, spec.stem_width, 3, side, input_grad=False)
    w.bn("stem_bn", spec.stem_width, side)
    w.relu("stem_bn_relu", spec.stem_width, side)
    cin = spec.stem_width
    for s, cout in enumerate(spec.stage_widths):
        for i in range(spec.blocks_per_stage):
            stride, p = (2 if (s > 0 and i == 0) else 1), f"stage{s + 1}_block{i}_"
            if spec.version == 1:
                side_out = _v1_block(w, spec, p, cin, cout, side, stride)
            else:
                side_out = _v2_block(w, spec, p, cin, cout, side, stride, preact=not (s == 0 and i == 0))
            side, cin = side_out, cout
    if spec.version == 2:
        w.bn("head_bn", cin, side)
        w.relu("head_bn_relu", cin, side)
    return _head(w, cin, side, spec.num_classes)


def _v1_block(w: _Walk, spec: ResNetSpec, p: str, cin: int, cout: int, side: int, stride: int) -> int:
    so = w.conv(p + "conv1", cin, cout, 3, side, stride)
    w.bn(p + "bn1", cout, so)
    w.relu(p + "bn1_relu", cout, so)
    w.conv(p + "conv2", cout, cout, 3, so)
    w.bn(p + "bn2", cout, so)
    if spec.shortcuts:
        if stride != 1 or cin != cout:
            w.conv(p + "shortcut", cin, cout, 1 if spec.shortcut == "conv1x1" else 3, side, stride)
        w.add(p + "add", cout, so)
    w.relu(p + "out", cout, so)
    return so


def _v2_block(w: _Walk, spec: ResNetSpec, p: str, cin: int, cout: int, side: int, stride: int, preact: bool) -> int:
    width = spec.bottleneck_width(int(p[5]) - 1)
    if preact:
        w.bn(p + "bn1", cin, side)
        w.relu(p + "bn1_relu", cin, side)
    so = w.conv(p + "conv1", cin, width, 1, side, stride)
    w.bn(p + "bn2", width, so)
    w.relu(p + "bn2_relu", width, so)
    w.conv(p + "conv2", width, width, 3, so)
    w.bn(p + "bn3", width, so)
    w.relu(p + "bn3_relu", width, so)
    w.conv(p + "conv3", width, cout, 1, so)
    if stride != 1 or cin != cout:
        w.conv(p + "shortcut", cin, cout, 1, side, stride)
    w.add(p + "add", cout, so)
    return so


def _head(w: _Walk, c: int, side: int, classes: int) -> int:
    w.pool("head_pool", c, side, 1)
    w.linear("head_fc", c, classes)
    return c


def _densenet(w: _Walk, spec: DenseNetSpec) -> None:
    side, k = spec.input_size, spec.growth_rate
    w.conv("stem_conv", spec.input_channels, spec.stem_width, 3, side, input_grad=False)
    plan = spec.channel_plan()
    for b, ((c, cout), n) in enumerate(zip(plan, spec.blocks), start=1):
        for i in range(n):
            p, cin = f"block{b}_layer{i}_", c + i * k
            w.concat(p + "concat", i + 1, cin, side)
            w.bn(p + "bn1", cin, side)
            w.relu(p + "bn1_relu", cin, side)
            if spec.bottleneck:
                w.conv(p + "conv1", cin, 4 * k, 1, side)
                w.bn(p + "bn2", 4 * k, side)
                w.relu(p + "bn2_relu", 4 * k, side)
                w.conv(p + "conv2", 4 * k, k, 3, side)
            else:
                w.conv(p + "conv1", cin, k, 3, side)
        w.concat(f"block{b}_out", n + 1, cout, side)
        if b < len(plan):
            t, ct = f"transition{b}_", spec.transition_width(cout)
            w.bn(t + "bn", cout, side)
            w.relu(t + "bn_relu", cout, side)
            w.conv(t + "conv", cout, ct, 1, side)
            w.pool(t + "pool", ct, side, side // 2)
            side //= 2
    w.bn("head_bn", plan[-1][1], side)
    w.relu("head_bn_relu", plan[-1][1], side)
    _head(w, plan[-1][1], side, spec.num_classes)


def layer_work(spec: ModelSpec, batch: int = 1, dtype_bytes: int = 4, padding_taps: bool = True) -> list[LayerWork]:
    """Every layer's work for a batch of ``batch`` images, in the order the forward runs them. ``padding_taps``
    False: a convolution counts only its kernel taps inside the image, not those on the zero padding (XLA's cost
    analysis rule; FlopCounterMode's, True, counts every tap)."""
    w = _Walk(batch, dtype_bytes, padding_taps)
    (_resnet if isinstance(spec, ResNetSpec) else _densenet)(w, spec)
    return w.out


def work_by_kind(spec: ModelSpec, batch: int = 1, dtype_bytes: int = 4,
                 padding_taps: bool = True) -> dict[tuple[str, str], tuple[float, float]]:
    """{(kind, phase): (FLOPs, bytes)} summed over the layers of each kind, for ``batch`` images."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for la in layer_work(spec, batch, dtype_bytes, padding_taps):
        for ph in PHASES:
            f, b = out.get((la.kind, ph), (0.0, 0.0))
            out[(la.kind, ph)] = (f + la.flops(ph), b + la.bytes(ph))
    return out
