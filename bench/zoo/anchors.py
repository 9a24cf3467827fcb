"""Published reference figures (docs/anchors.md, with their sources): quoted in reports as *reference*, never as our result.

Test error on CIFAR-10 with standard augmentation, trainable parameters as published.
Sources: He et al. 2015 (arXiv 1512.03385) Table 6; He et al. 2016 (arXiv 1603.05027);
Huang et al. 2017 (arXiv 1608.06993) Table 2.
"""
from __future__ import annotations

# registry name -> (published test error %, published params in millions, source)
PAPER_ERRORS = {
    "resnet20_v1": (8.75, 0.27, "He et al. 2015"),
    "resnet32_v1": (7.51, 0.46, "He et al. 2015"),
    "resnet44_v1": (7.17, 0.66, "He et al. 2015"),
    "resnet56_v1": (6.97, 0.85, "He et al. 2015"),
    "resnet110_v1": (6.43, 1.7, "He et al. 2015 (best; mean 6.61)"),
    "resnet110_v2": (6.37, 1.7, "He et al. 2016"),
    "resnet164_v2": (5.46, 1.7, "He et al. 2016"),
    "densenet40_k12": (5.24, 1.0, "Huang et al. 2017"),
    "densenet_bc100_k12": (4.51, 0.8, "Huang et al. 2017"),
}

# plain reference script train_resnet20.py on the stand-in data, H100 (docs/anchors.md, section 1)
STANDIN_RESNET20 = {"bf16": 0.8813, "fp32": 0.8775}

# memory-efficient DenseNet (checkpointed concat + BN + ReLU + conv1) against the naive one (docs/anchors.md, section 4)
MEMEFF_TIME = ("published: torchvision PR #797, about 1.5x less memory for about 1.4x the time per step; "
               "gpleiss/efficient_densenet_pytorch, 15-20% slower (0.165 -> 0.207 s/batch on a Titan-X)")
