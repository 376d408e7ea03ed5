"""TransUNet (Chen et al. 2021, "TransUNet: Transformers Make Strong Encoders for Medical Image
Segmentation"), as the official implementation builds it (``Beckschen/TransUNet``,
``networks/vit_seg_modeling.py`` with the ``R50-ViT-B_16`` configuration).

Encoder (section 3.2, Figure 1): a ResNet-50 of BiT units (weight-standardized convolutions,
group normalization with 32 groups; ``kapps.layers.bit.BiTBottleneck``) without its fourth
stage: a 7x7/2 root convolution, 3x3/2 max-pooling (unpadded), stages of (3, 4, 9) units of
width 64, 128, 256, giving a 1/16 map of 1024 channels. Its 1/2 (64 channels, after the
root), 1/4 (256, after stage 1) and 1/8 (512, after stage 2) maps are the skip connections.
The 1/16 map is embedded by a 1x1 "patch" projection to ``hidden_dim`` (ViT's hybrid: patch
size 1 on the CNN's map), learned position embeddings are added, and 12 pre-LN Transformer
blocks (ViT-B: width 768, 12 heads, MLP 3072, dropout 0.1) with a final LayerNorm encode it.

Decoder, the "cascaded upsampler" (CUP): the tokens are laid back on the 1/16 grid, a 3x3
convolution with batch normalization and ReLU ("conv_more") maps them to 512 channels, then
four blocks each upsample 2x bilinearly (corners aligned, as PyTorch's
``nn.UpsamplingBilinear2d``), concatenate the skip of that scale (the first three:
``n_skip = 3``) and apply two 3x3 conv-BN-ReLU (``kapps.layers.unet.UNetDecoderBlock`` with
``upsampling="bilinear"``), with (256, 128, 64, 16) channels. A 3x3 convolution gives the
class scores at full resolution (the official head's upsampling factor is 1: none).

Details kept from the official code: the max-pooling has no padding, so at 224x224 stage 1
runs at 55x55 and its skip is zero-padded at the bottom and right to 56x56; the 3x3
convolutions of the units pad one pixel on each side (PyTorch ``padding=1``); batch norms
use epsilon 1e-5 and momentum 0.1 (PyTorch's; Keras ``momentum=0.9``). Differences: the
position table is initialized with a truncated normal (0.02; the official code starts from
zeros and loads pre-trained tables), dropout is applied to the attention and MLP outputs
(the official code drops inside the MLP after GELU and after its second layer, and not the
attention output), and images keep their channels (the official model repeats one channel
three times; here the root convolution takes ``input_shape[-1]`` channels).

Parameters at 224x224 with 9 classes: 105,277,081 trainable (exactly the official
PyTorch model's count, which the literature quotes as 105.28M) plus 2,880 batch-norm moving
statistics that Keras counts as non-trainable weights (PyTorch keeps them as buffers):
105,279,961 in all.

Layer names: ``image``, ``root_pad``, ``root_conv``, ``root_gn``, ``root_relu``,
``root_pool``, ``block1_unit1`` ... ``block3_unit9``, ``skip_pad``, ``patch_embedding``,
``position_embedding``, ``embedding_dropout``, ``encoder_block1`` ... ``encoder_block12``,
``encoder_norm``, ``tokens_to_grid``, ``conv_more``, ``decoder1`` ... ``decoder4``,
``segmentation_head``, ``probabilities``.
"""

import keras

from kapps._checks import (
    check_image_shape,
    check_int_sequence,
    check_positive_int,
    check_rate,
    check_transformer_dims,
)
from kapps.layers.bit import GROUP_NORM_EPSILON, BiTBottleneck
from kapps.layers.conv import ConvBNAct
from kapps.layers.patches import PatchEmbedding
from kapps.layers.position import PositionEmbedding
from kapps.layers.standardized_conv import StandardizedConv2D
from kapps.layers.transformer import TransformerEncoderBlock
from kapps.layers.unet import UNetDecoderBlock
from kapps.models.classification.common import classifier_output
from kapps.models.segmentation.unet import _resolve_activation

#: The encoder's downsampling: root conv /2, max-pool /2, stages 2 and 3 /2 each.
OUTPUT_STRIDE = 16
#: PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 = Keras momentum 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
#: LayerNorm epsilon of the Transformer (ViT's 1e-6).
LN_EPSILON = 1e-6


def _check_input_shape(input_shape):
    input_shape = check_image_shape(
        "input_shape", input_shape, allow_unknown_size=False,
        note="; the position embeddings need a fixed grid",
    )
    for size in input_shape[:2]:
        if size % OUTPUT_STRIDE:
            lower = size // OUTPUT_STRIDE * OUTPUT_STRIDE
            raise ValueError(
                f"input_shape={input_shape!r} is not allowed: height and width must be "
                f"multiples of {OUTPUT_STRIDE} (the encoder's 1/16 grid), e.g. "
                f"{lower or OUTPUT_STRIDE} or {lower + OUTPUT_STRIDE}."
            )
    return input_shape


def transunet(
    num_classes=9,
    input_shape=(224, 224, 3),
    hidden_dim=768,
    depth=12,
    num_heads=12,
    mlp_dim=3072,
    dropout=0.1,
    attention_dropout=0.0,
    resnet_blocks=(3, 4, 9),
    resnet_width=64,
    resnet_groups=32,
    head_channels=512,
    decoder_channels=(256, 128, 64, 16),
    num_skips=3,
    classifier_activation="auto",
    name="transunet",
):
    """Build TransUNet (defaults: R50-ViT-B/16 at 224x224 with 9 classes, the Synapse setup).

    Args:
        num_classes: output channels of the segmentation head (9 for Synapse: 8 organs and
            background).
        input_shape: ``(height, width, channels)``; height and width multiples of 16.
        hidden_dim: width of the Transformer's tokens (ViT-B: 768).
        depth: number of Transformer blocks (12).
        num_heads: attention heads (12); must divide ``hidden_dim``.
        mlp_dim: width of each block's MLP (3072).
        dropout: dropout after the position embeddings and on each block's attention and
            MLP outputs (0.1, the official configuration's ``dropout_rate``).
        attention_dropout: dropout on the attention weights (0.0).
        resnet_blocks: units in the three ResNet stages ((3, 4, 9): ResNet-50 without its
            fourth stage, as ViT's hybrid).
        resnet_width: channels of the root convolution; stage ``i`` has bottleneck width
            ``resnet_width * 2 ** (i - 1)`` and ``4x`` that many output channels (64).
        resnet_groups: groups of the ResNet's group normalizations (32); must divide
            ``resnet_width``.
        head_channels: output channels of ``conv_more``, the decoder's first convolution
            (512).
        decoder_channels: output channels of the four upsampling blocks (256, 128, 64, 16).
        num_skips: how many skip connections the decoder uses, from the deepest: 3 (1/8,
            1/4, 1/2; the paper's best), 2, 1 or 0.
        classifier_activation: ``"auto"`` (sigmoid for one class, softmax for several),
            None for logits (the official model returns logits), or a Keras activation.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``(batch, height, width, channels)`` images to ``(batch,
        height, width, num_classes)`` per-pixel scores.

    Raises:
        ValueError: for bad arguments, naming the argument and the value.

    Example:
        >>> model = transunet()  # 105,277,081 trainable parameters
        >>> tiny = transunet(num_classes=2, input_shape=(32, 32, 1), hidden_dim=16, depth=1,
        ...                  num_heads=2, mlp_dim=32, resnet_blocks=(1, 1, 1), resnet_width=8,
        ...                  resnet_groups=4, head_channels=16, decoder_channels=(16, 8, 8, 4))
    """
    check_positive_int("num_classes", num_classes)
    input_shape = _check_input_shape(input_shape)
    check_transformer_dims(hidden_dim, depth, num_heads, mlp_dim)
    dropout = check_rate("dropout", dropout)
    attention_dropout = check_rate("attention_dropout", attention_dropout)
    resnet_blocks = check_int_sequence("resnet_blocks", resnet_blocks, 3)
    check_positive_int("resnet_width", resnet_width)
    check_positive_int("resnet_groups", resnet_groups)
    if resnet_width % resnet_groups:
        raise ValueError(
            f"resnet_groups={resnet_groups!r} does not divide resnet_width={resnet_width!r}; "
            "every group normalization needs channels that are a multiple of the groups."
        )
    check_positive_int("head_channels", head_channels)
    decoder_channels = check_int_sequence("decoder_channels", decoder_channels, 4)
    if isinstance(num_skips, bool) or num_skips not in (0, 1, 2, 3):
        raise ValueError(f"num_skips={num_skips!r} is not allowed; expected 0, 1, 2 or 3.")
    activation = _resolve_activation(classifier_activation, num_classes)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")

    height, width = input_shape[:2]
    grid = (height // OUTPUT_STRIDE, width // OUTPUT_STRIDE)
    inputs = keras.Input(input_shape, name="image")

    # -- ResNet-50 (BiT) root and three stages; features at 1/2, 1/4, 1/8, 1/16 ------------
    x = keras.layers.ZeroPadding2D(3, name="root_pad")(inputs)  # PyTorch padding=3
    x = StandardizedConv2D(resnet_width, 7, strides=2, name="root_conv")(x)
    x = keras.layers.GroupNormalization(resnet_groups, epsilon=GROUP_NORM_EPSILON,
                                        name="root_gn")(x)
    x = keras.layers.ReLU(name="root_relu")(x)
    skips = [x]  # (batch, H/2, W/2, width)
    # unpadded 3x3/2 pooling, as the official code: H/2 -> H/4 - 1 (55 at 224)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="root_pool")(x)
    for stage, units in enumerate(resnet_blocks, start=1):
        mid = resnet_width * 2 ** (stage - 1)
        for unit in range(1, units + 1):
            x = BiTBottleneck(
                4 * mid,
                bottleneck_filters=mid,
                strides=2 if (unit == 1 and stage > 1) else 1,
                projection=unit == 1,
                groups=resnet_groups,
                name=f"block{stage}_unit{unit}",
            )(x)
        if stage == 1:
            # the official code zero-pads the 1/4 skip at the bottom/right to exactly H/4
            pad = (height // 4 - x.shape[1], width // 4 - x.shape[2])
            skips.append(keras.layers.ZeroPadding2D(((0, pad[0]), (0, pad[1])),
                                                    name="skip_pad")(x))
        elif stage == 2:
            skips.append(x)  # (batch, H/8, W/8, 8 * width)
    # x: (batch, H/16, W/16, 16 * width)

    # -- ViT on the 1/16 map: 1x1 patches, learned positions, pre-LN blocks ----------------
    x = PatchEmbedding(1, hidden_dim, name="patch_embedding")(x)  # (batch, gh * gw, hidden)
    x = PositionEmbedding(grid[0] * grid[1], name="position_embedding")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(1, depth + 1):
        x = TransformerEncoderBlock(
            hidden_dim,
            num_heads,
            mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            epsilon=LN_EPSILON,
            name=f"encoder_block{i}",
        )(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="encoder_norm")(x)

    # -- cascaded upsampler -----------------------------------------------------------------
    # (batch, gh * gw, hidden) -> (batch, gh, gw, hidden): tokens were read row by row
    x = keras.layers.Reshape((*grid, hidden_dim), name="tokens_to_grid")(x)
    x = ConvBNAct(head_channels, 3, batch_norm=True, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                  name="conv_more")(x)
    skips = skips[::-1]  # deepest first: 1/8, 1/4, 1/2
    for i, channels in enumerate(decoder_channels):
        block = UNetDecoderBlock(
            channels,
            padding="same",
            batch_norm=True,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            upsampling="bilinear",
            name=f"decoder{i + 1}",
        )
        x = block(x, skips[i]) if i < num_skips else block(x)
    x = keras.layers.Conv2D(num_classes, 3, padding="same", name="segmentation_head")(x)
    outputs = classifier_output(x, activation)
    return keras.Model(inputs, outputs, name=name)
