"""A twins file: your own network, written once in PyTorch and once in Keras, handed to TwinBench.

    python -m bench.twins --twins examples/my_twins.py tiny_mix          # are they one network?
    python -m bench.twins --twins examples/my_twins.py --train tiny_mix  # do they train alike?
    python -m bench.run --twins examples/my_twins.py --suite throughput --models tiny_mix --device cpu

The two sides share no layer names: TwinBench pairs their weights by execution order (see docs/byo-twins.md).
The network is small and VGG/ResNet-like: a stem, a stride-2 convolution, a residual block (an add), two branches
joined by a concatenation, BatchNorm after every convolution, global pooling and a dense classifier.
"""
import keras
import torch
from keras import layers
from torch import nn

# Keras' BatchNormalization folds the biased batch variance into its moving variance, PyTorch the unbiased one:
# inference agrees, training statistics do not (python -m bench.twins --train says so). TwinBench's own Keras BN
# folds PyTorch's; a Keras BatchNormalization otherwise.
from models_tf.common import TwinBatchNormalization


class TinyMix(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        # stride 2: torch pads 1 pixel on every side; the Keras twin pads the same with ZeroPadding2D(1) + 'valid'
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.res_a = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.res_a_norm = nn.BatchNorm2d(32)
        self.res_b = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.res_b_norm = nn.BatchNorm2d(32)
        self.left = nn.Conv2d(32, 16, 1, bias=False)
        self.right = nn.Conv2d(32, 16, 3, padding=1, bias=False)
        self.joined_norm = nn.BatchNorm2d(32)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.down(self.entry(x))
        r = torch.relu(self.res_a_norm(self.res_a(x)))
        x = torch.relu(x + self.res_b_norm(self.res_b(r)))
        x = torch.relu(self.joined_norm(torch.cat([self.left(x), self.right(x)], dim=1)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def tiny_mix_keras(classes: int = 10) -> keras.Model:
    def bn():  # Keras momentum 0.9 is PyTorch's 0.1; epsilon stated (Keras' default is 1e-3, PyTorch's 1e-5)
        return TwinBatchNormalization(momentum=0.9, epsilon=1e-5)

    inp = keras.Input((32, 32, 3))
    x = layers.ReLU()(bn()(layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False)(layers.ZeroPadding2D(1)(x))
    x = layers.ReLU()(bn()(x))
    r = layers.ReLU()(bn()(layers.Conv2D(32, 3, padding="same", use_bias=False)(x)))
    r = bn()(layers.Conv2D(32, 3, padding="same", use_bias=False)(r))
    x = layers.ReLU()(layers.Add()([x, r]))
    a = layers.Conv2D(16, 1, use_bias=False)(x)
    b = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(bn()(layers.Concatenate()([a, b])))
    out = layers.Dense(classes)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out, name="tiny_mix")


TWINS = {
    "tiny_mix": (TinyMix, tiny_mix_keras),
}
