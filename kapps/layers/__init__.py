"""Serializable Keras layers, one concept per file. Every class is registered under the
``kapps`` package, so models that use them load with ``keras.saving.load_model`` once
``kapps.layers`` has been imported."""

from kapps.layers.activations import ScaledTanh
from kapps.layers.conv import ConvBNAct, PartialConv2D
from kapps.layers.dense import EuclideanRBF, lenet_output_codes
from kapps.layers.normalization import LocalResponseNormalization
from kapps.layers.pooling import TrainableSubsampling

__all__ = [
    "ConvBNAct",
    "EuclideanRBF",
    "LocalResponseNormalization",
    "PartialConv2D",
    "ScaledTanh",
    "TrainableSubsampling",
    "lenet_output_codes",
]
