"""Landmark networks, and the finders and segmenters built on them: the stacked hourglass
with HPM, bottleneck or wide residual blocks, binary (larq, converted by LCE to bitpacked
ops) or real-valued.

Importing this package imports TensorFlow; ``training`` (its parent) sets TF_USE_LEGACY_KERAS
first, as larq needs Keras 2.
"""

from .blocks import (
    BLOCK_TYPES,
    bottleneck_block,
    get_block,
    hpm_block,
    residual_block,
    wide_block,
)
from .finder import FinderLoss, build_finder, finder_losses
from .hourglass import (
    block_parameters,
    build_hourglass,
    count_macs,
    count_parameters,
    features_for_budget,
    hourglass_parameters,
    stack_outputs,
)
from .quantizers import BINARY_CONV_KWARGS, binary_conv, conv, is_binary_conv, real_conv
from .segmentation import build_segmenter, segmentation_losses

__all__ = [
    "BINARY_CONV_KWARGS",
    "BLOCK_TYPES",
    "FinderLoss",
    "binary_conv",
    "block_parameters",
    "bottleneck_block",
    "build_finder",
    "build_hourglass",
    "build_segmenter",
    "conv",
    "count_macs",
    "count_parameters",
    "features_for_budget",
    "finder_losses",
    "get_block",
    "hourglass_parameters",
    "hpm_block",
    "is_binary_conv",
    "real_conv",
    "residual_block",
    "segmentation_losses",
    "stack_outputs",
    "wide_block",
]
