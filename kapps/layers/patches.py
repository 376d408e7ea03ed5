"""Images as sequences of tokens: patch embedding and the learned class token (ViT)."""

import keras
from keras import ops

from kapps._checks import check_positive_int


def _check_patch_size(value):
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise ValueError(
            f"patch_size={value!r} is not allowed; expected a positive integer or a pair "
            "(height, width) of positive integers."
        )
    return tuple(pair)


@keras.saving.register_keras_serializable(package="kapps")
class PatchEmbedding(keras.layers.Layer):
    """Cut an image into ``P x P`` patches, flatten each and project it linearly to a token.

    ViT treats an image as a sentence whose words are patches: a ``224 x 224`` image with
    ``P = 16`` becomes ``14 * 14 = 196`` tokens. Flattening a patch (``P * P * channels``
    numbers) and multiplying by a ``(P * P * channels, embed_dim)`` matrix is exactly a
    convolution with kernel size and stride ``P`` (each output position sees one patch, and
    patches do not overlap), so that is how it is computed: one ``Conv2D``, whose kernel
    ``(P, P, channels, embed_dim)`` is the projection matrix reshaped. The feature map
    ``(batch, H/P, W/P, embed_dim)`` is then read row by row into ``(batch, num_patches,
    embed_dim)``.

    Args:
        patch_size: side ``P`` of the square patches, or a pair ``(height, width)``.
        embed_dim: size of each token.
        use_bias: whether the projection has a bias.
        flatten: ``True`` returns ``(batch, num_patches, embed_dim)``; ``False`` keeps the
            grid ``(batch, H/P, W/P, embed_dim)`` (Swin, TransUNet).
        kernel_initializer: initializer of the projection.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: images ``(batch, height, width, channels)``; height and width must be
            multiples of the patch size (checked when they are known at build time).

    Example:
        >>> embed = PatchEmbedding(16, 768)
        >>> tuple(embed(keras.ops.ones((1, 224, 224, 3))).shape)
        (1, 196, 768)

    Paper: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image
    Recognition at Scale", section 3.1 and the "hybrid architecture" paragraph.
    """

    def __init__(
        self,
        patch_size,
        embed_dim,
        use_bias=True,
        flatten=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = _check_patch_size(patch_size)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
        self.use_bias = use_bias
        if not isinstance(flatten, bool):
            raise ValueError(f"flatten={flatten!r} is not allowed; expected True or False.")
        self.flatten = flatten
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Conv2D(
            embed_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            use_bias=use_bias,
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"PatchEmbedding expects images (batch, height, width, channels); received "
                f"shape {tuple(input_shape)}."
            )
        for axis, size, patch in (("height", input_shape[1], self.patch_size[0]),
                                  ("width", input_shape[2], self.patch_size[1])):
            if size is not None and size % patch:
                raise ValueError(
                    f"image {axis} {size} is not divisible by the patch size {patch} "
                    f"(patch_size={self.patch_size}); resize or crop the images to a multiple "
                    f"of {patch}, e.g. {size // patch * patch} or {(size // patch + 1) * patch}."
                )
        self.projection.build(input_shape)

    def call(self, inputs):
        x = self.projection(inputs)  # (batch, H/P, W/P, embed_dim)
        if not self.flatten:
            return x
        rows, cols = x.shape[1], x.shape[2]
        if rows is not None and cols is not None:
            # (batch, H/P, W/P, dim) -> (batch, num_patches, dim), row by row
            return ops.reshape(x, (-1, rows * cols, self.embed_dim))
        return ops.reshape(x, (ops.shape(x)[0], -1, self.embed_dim))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        h = None if h is None else h // self.patch_size[0]
        w = None if w is None else w // self.patch_size[1]
        if not self.flatten:
            return (b, h, w, self.embed_dim)
        return (b, None if h is None or w is None else h * w, self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "embed_dim": self.embed_dim,
                "use_bias": self.use_bias,
                "flatten": self.flatten,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class ClassToken(keras.layers.Layer):
    """Prepend one learned token to a sequence: ``(batch, n, dim) -> (batch, n + 1, dim)``.

    The token carries no image content; through attention it gathers what the classifier
    needs, and the head reads only its final state (the role of BERT's ``[CLS]``). The same
    learned vector is broadcast over the batch.

    Args:
        initializer: initializer of the token (``"zeros"`` as in the ViT reference code).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, tokens, dim)``.

    Example:
        >>> tuple(ClassToken()(keras.ops.ones((2, 196, 768))).shape)
        (2, 197, 768)

    Paper: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", section 3.1
    (eq. 1, ``x_class``); Devlin et al. 2019, "BERT" (``[CLS]``).
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"ClassToken expects (batch, tokens, dim) with a known dim; received shape "
                f"{tuple(input_shape)}."
            )
        self.token = self.add_weight(
            name="token", shape=(1, 1, input_shape[-1]), initializer=self.initializer
        )

    def call(self, inputs):
        dim = inputs.shape[-1]
        # (1, 1, dim) -> (batch, 1, dim): BROADCAST_TO in TFLite
        token = ops.broadcast_to(ops.cast(self.token, inputs.dtype), (ops.shape(inputs)[0], 1, dim))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        b, n, d = input_shape
        return (b, None if n is None else n + 1, d)

    def get_config(self):
        config = super().get_config()
        config.update({"initializer": keras.initializers.serialize(self.initializer)})
        return config
