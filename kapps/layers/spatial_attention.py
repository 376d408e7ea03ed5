"""Attention inside a CNN: reweight the feature map where (and which channels) matter."""

import keras
from keras import ops

from kapps._checks import check_choice, check_positive_int

#: Accepted values of ``SpatialAttention(mode=...)``.
MODES = ("spatial", "cbam")


@keras.saving.register_keras_serializable(package="kapps")
class SpatialAttention(keras.layers.Layer):
    """Multiply a feature map by a learned per-pixel importance map in (0, 1).

    - ``mode="spatial"``: a convolution (1x1 by default) turns each pixel's features into one
      logit, a sigmoid turns it into the map ``(batch, height, width, 1)``, and the map
      multiplies every channel of that pixel. Unlike softmax attention the pixels do not
      compete: each is kept or damped on its own.
    - ``mode="cbam"``, the Convolutional Block Attention Module (Woo et al. 2018): first
      channel attention, ``x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one MLP
      ``C -> C / reduction_ratio -> C`` (ReLU) shared by both pooled vectors (section 3,
      eq. 2); then spatial attention, ``x * sigmoid(conv7x7([mean_c(x); max_c(x)]))`` over
      the channel-wise average and maximum maps (eq. 3). The paper's formula is used: the
      convolution has a bias and no batch normalization.

    The output has the input's shape, so the layer drops into any CNN after a block.

    Args:
        mode: ``"spatial"`` or ``"cbam"``.
        reduction_ratio: channel reduction of CBAM's MLP (16 in the paper); unused in
            ``"spatial"`` mode.
        kernel_size: side of the map's convolution; ``None`` means 1 for ``"spatial"`` and
            7 for ``"cbam"`` (the paper's choice, section 4.1).
        kernel_initializer: initializer of the kernels.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        return_attention_map: also return the spatial map ``(batch, height, width, 1)``.

    Example:
        >>> cbam = SpatialAttention(mode="cbam")
        >>> y, heat = cbam(keras.ops.ones((2, 14, 14, 64)), return_attention_map=True)
        >>> tuple(y.shape), tuple(heat.shape)
        ((2, 14, 14, 64), (2, 14, 14, 1))

    Paper: Woo, Park, Lee, Kweon 2018, "CBAM: Convolutional Block Attention Module",
    section 3.
    """

    def __init__(
        self,
        mode="spatial",
        reduction_ratio=16,
        kernel_size=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, MODES)
        self.reduction_ratio = check_positive_int("reduction_ratio", reduction_ratio)
        self.kernel_size = None if kernel_size is None else check_positive_int(
            "kernel_size", kernel_size
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        size = self.kernel_size or (1 if mode == "spatial" else 7)
        self.spatial_conv = keras.layers.Conv2D(
            1,
            size,
            padding="same",
            kernel_initializer=self._initializer(),
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="spatial_conv",
        )

    def _initializer(self):
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"SpatialAttention expects (batch, height, width, channels) with known "
                f"channels; received shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if self.mode == "cbam":
            hidden = max(1, channels // self.reduction_ratio)
            self.channel_kernel1 = self.add_weight(
                name="channel_kernel1", shape=(channels, hidden), initializer=self._initializer()
            )
            self.channel_bias1 = self.add_weight(
                name="channel_bias1", shape=(hidden,), initializer="zeros"
            )
            self.channel_kernel2 = self.add_weight(
                name="channel_kernel2", shape=(hidden, channels), initializer=self._initializer()
            )
            self.channel_bias2 = self.add_weight(
                name="channel_bias2", shape=(channels,), initializer="zeros"
            )
            self.spatial_conv.build(tuple(input_shape[:-1]) + (2,))
        else:
            self.spatial_conv.build(input_shape)

    def _channel_mlp(self, pooled):
        # (batch, 1, 1, C) -> (batch, 1, 1, C / r) -> (batch, 1, 1, C)
        h = ops.relu(ops.matmul(pooled, self.channel_kernel1) + self.channel_bias1)
        return ops.matmul(h, self.channel_kernel2) + self.channel_bias2

    def call(self, inputs, return_attention_map=False):
        x = inputs
        if self.mode == "cbam":
            average = ops.mean(x, axis=(1, 2), keepdims=True)  # (batch, 1, 1, C)
            maximum = ops.max(x, axis=(1, 2), keepdims=True)  # (batch, 1, 1, C)
            x = x * ops.sigmoid(self._channel_mlp(average) + self._channel_mlp(maximum))
            # (batch, H, W, 2): the channel-wise average and maximum maps, in the paper's order
            descriptor = ops.concatenate(
                [ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1
            )
        else:
            descriptor = x
        attention_map = ops.sigmoid(self.spatial_conv(descriptor))  # (batch, H, W, 1)
        outputs = x * attention_map
        if return_attention_map:
            return outputs, attention_map
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "reduction_ratio": self.reduction_ratio,
                "kernel_size": self.kernel_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
