"""Serializable Keras layers, one concept per file. Every class is registered under the
``kapps`` package, so models that use them load with ``keras.saving.load_model`` once
``kapps.layers`` has been imported."""

from kapps.layers.activations import ScaledTanh
from kapps.layers.conv import ConvBNAct, PartialConv2D
from kapps.layers.dense import EuclideanRBF, lenet_output_codes
from kapps.layers.dense_block import DenseBlock, DenseLayer, TransitionBlock
from kapps.layers.inception import Inception
from kapps.layers.mbconv import MBConvBlock, SqueezeExcitation, StochasticDepth, swish
from kapps.layers.normalization import LocalResponseNormalization
from kapps.layers.pooling import TrainableSubsampling
from kapps.layers.residual import BasicBlock, BottleneckBlock, ZeroPadShortcut

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "ConvBNAct",
    "DenseBlock",
    "DenseLayer",
    "EuclideanRBF",
    "Inception",
    "LocalResponseNormalization",
    "MBConvBlock",
    "PartialConv2D",
    "ScaledTanh",
    "SqueezeExcitation",
    "StochasticDepth",
    "TrainableSubsampling",
    "TransitionBlock",
    "ZeroPadShortcut",
    "lenet_output_codes",
    "swish",
]
