"""Serializable Keras layers, one concept per file. Every class is registered under the
``kapps`` package, so models that use them load with ``keras.saving.load_model`` once
``kapps.layers`` has been imported."""

from kapps.layers.activations import ScaledTanh, gelu_tanh, get_activation
from kapps.layers.attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    causal_mask,
    convert_keras_mha_weights,
    padding_mask,
)
from kapps.layers.bit import BiTBottleneck
from kapps.layers.conv import ConvBNAct, PartialConv2D
from kapps.layers.dense import EuclideanRBF, lenet_output_codes
from kapps.layers.embedding import SharedEmbedding
from kapps.layers.detection import NonMaxSuppression
from kapps.layers.diffusion import (
    DDIMSampler,
    DiffusionAttention,
    DiffusionResBlock,
    GroupNorm,
    TimestepEmbedding,
    ancestral_step,
    ddim_step,
    ddim_timesteps,
    linear_beta_schedule,
    predict_x0,
    q_sample,
    timestep_encoding,
)
from kapps.layers.flows import (
    AffineCoupling,
    CouplingResNet,
    LogitTransform,
    MultiScaleFlow,
    Squeeze2D,
    checkerboard_mask,
    squeeze2d,
    unsqueeze2d,
)
from kapps.layers.dense_block import DenseBlock, DenseLayer, TransitionBlock
from kapps.layers.inception import Inception
from kapps.layers.interpolation import BilinearResize2D
from kapps.layers.masks import ArgmaxMask, TokenMask
from kapps.layers.mbconv import MBConvBlock, SqueezeExcitation, StochasticDepth, swish
from kapps.layers.normalization import LocalResponseNormalization
from kapps.layers.patches import ClassToken, PatchEmbedding
from kapps.layers.pooling import TrainableSubsampling
from kapps.layers.position import (
    PositionalEncoding,
    PositionEmbedding,
    resize_position_grid,
    sinusoidal_encoding,
)
from kapps.layers.recurrent import RNN, GRUCell, LSTMCell, SimpleRNNCell
from kapps.layers.recurrent_attention import (
    AttentionDecoder,
    BahdanauAttention,
    LuongAttention,
    Maxout,
)
from kapps.layers.residual import BasicBlock, BottleneckBlock, ZeroPadShortcut
from kapps.layers.spatial_attention import SpatialAttention
from kapps.layers.standardized_conv import StandardizedConv2D, standardize_kernel
from kapps.layers.swin import (
    PatchMerging,
    SwinTransformerBlock,
    WindowAttention,
    cyclic_shift,
    relative_position_index,
    resolve_window,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from kapps.layers.yolo import Reorg, YOLOv1Decode, YOLOv2Decode
from kapps.layers.upsampling import BilinearKernel, BilinearUpsampling2D, CropToMatch, bilinear_filter
from kapps.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock
from kapps.layers.unet import UNetConvBlock, UNetDecoderBlock, UNetEncoderBlock, center_crop

__all__ = [
    "AffineCoupling",
    "CouplingResNet",
    "DDIMSampler",
    "DiffusionAttention",
    "DiffusionResBlock",
    "GroupNorm",
    "LogitTransform",
    "MultiScaleFlow",
    "Squeeze2D",
    "TimestepEmbedding",
    "ancestral_step",
    "checkerboard_mask",
    "ddim_step",
    "ddim_timesteps",
    "linear_beta_schedule",
    "predict_x0",
    "q_sample",
    "squeeze2d",
    "timestep_encoding",
    "unsqueeze2d",
    "AttentionDecoder",
    "BahdanauAttention",
    "GRUCell",
    "LSTMCell",
    "LuongAttention",
    "Maxout",
    "NonMaxSuppression",
    "Reorg",
    "YOLOv1Decode",
    "YOLOv2Decode",
    "RNN",
    "SharedEmbedding",
    "SimpleRNNCell",
    "TokenMask",
    "ArgmaxMask",
    "BasicBlock",
    "BiTBottleneck",
    "BilinearKernel",
    "BilinearResize2D",
    "BilinearUpsampling2D",
    "BottleneckBlock",
    "ClassToken",
    "ConvBNAct",
    "CropToMatch",
    "DenseBlock",
    "DenseLayer",
    "EuclideanRBF",
    "Inception",
    "LocalResponseNormalization",
    "MBConvBlock",
    "MultiHeadAttention",
    "PartialConv2D",
    "PatchEmbedding",
    "PatchMerging",
    "PositionEmbedding",
    "PositionalEncoding",
    "ScaledDotProductAttention",
    "ScaledTanh",
    "gelu_tanh",
    "get_activation",
    "SpatialAttention",
    "SqueezeExcitation",
    "StandardizedConv2D",
    "StochasticDepth",
    "SwinTransformerBlock",
    "TrainableSubsampling",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "TransitionBlock",
    "UNetConvBlock",
    "UNetDecoderBlock",
    "UNetEncoderBlock",
    "WindowAttention",
    "ZeroPadShortcut",
    "bilinear_filter",
    "causal_mask",
    "center_crop",
    "convert_keras_mha_weights",
    "cyclic_shift",
    "lenet_output_codes",
    "padding_mask",
    "relative_position_index",
    "resize_position_grid",
    "resolve_window",
    "shifted_window_mask",
    "sinusoidal_encoding",
    "standardize_kernel",
    "swish",
    "window_partition",
    "window_reverse",
]
