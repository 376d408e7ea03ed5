"""U-Net (Ronneberger, Fischer, Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation").

A contracting path of ``depth`` levels (two 3x3 convolutions, then 2x2 max-pooling; the
channels double per level from ``filters``), a bottleneck of two 3x3 convolutions, and an
expanding path that mirrors it (2x2 up-convolution halving the channels, the contracting
path's map centre-cropped and concatenated, two 3x3 convolutions), then a 1x1 convolution to
the classes (Figure 1). The defaults are the paper's network: 572x572 single-channel tiles,
4 poolings, 64 base filters, unpadded convolutions, 2 classes, 31,030,658 parameters, and a
388x388 output map.

With unpadded convolutions (``padding="valid"``) every level trims the borders, so only some
input sizes give integer sizes everywhere (the paper: "select the input tile size such that
all 2x2 max-pooling operations are applied to a layer with an even x- and y-size"); the
output is the centre of the input, to be tiled with overlap (the "overlap-tile strategy").
``unet_output_size`` gives the output size of an input size and ``valid_unet_input_size`` the
smallest input size that covers a wanted output size. With ``padding="same"`` the output is
the input's size, which must be divisible by ``2 ** depth``.

Layer names: ``image``, ``encoder1`` ... ``encoder{depth}`` (``UNetEncoderBlock``: weights
``encoder1/conv1``, ``encoder1/conv2``), ``bottleneck`` (``UNetConvBlock``), ``decoder{depth}``
... ``decoder1`` (``UNetDecoderBlock``: ``decoder2/upconv``, ``decoder2/conv1``, ...),
``predictions`` (the 1x1 convolution) and ``probabilities`` (the activation, float32).
"""

import keras

from kapps._checks import check_choice, check_image_shape, check_positive_int, check_rate
from kapps.layers.unet import PADDINGS, UNetConvBlock, UNetDecoderBlock, UNetEncoderBlock
from kapps.models.classification.common import check_activation, classifier_output


def _check_depth(depth):
    return check_positive_int("depth", depth)


def _valid_levels(input_size, depth):
    """Sizes through a valid-padded U-Net, or None where a level is not an integer.

    Returns ``(bottleneck_input, output)``: each level maps ``s -> (s - 4) / 2`` (two
    unpadded convolutions, pooling an even map), the bottleneck ``s -> s - 4``, each decoder
    level ``s -> 2 s - 4``. Both None if some level is odd or empty."""
    size = input_size
    for _ in range(depth):
        size -= 4
        if size < 2 or size % 2:
            return None, None
        size //= 2
    bottleneck_input = size
    size -= 4
    if size < 1:
        return None, None
    for _ in range(depth):
        size = 2 * size - 4
        if size < 1:
            return None, None
    return bottleneck_input, size


def _smallest_valid_input(depth):
    # input = 2**depth * k + 4 * (2**depth - 1) for a bottleneck input k (section 2's rule)
    k = 5
    while _valid_levels(2**depth * k + 4 * (2**depth - 1), depth)[1] is None:
        k += 1
    return 2**depth * k + 4 * (2**depth - 1)


def _nearest_valid_inputs(size, depth):
    """The allowed valid-padding input sizes just below and above ``size`` (below may be
    None when ``size`` is under the smallest one)."""
    step = 2**depth
    smallest = _smallest_valid_input(depth)
    if size <= smallest:
        return None, smallest
    below = smallest + (size - smallest) // step * step
    above = below if below == size else below + step
    return below, above


def unet_output_size(input_size, depth=4):
    """Height (or width) of the output map of a ``padding="valid"`` U-Net.

    Args:
        input_size: the input's height or width.
        depth: number of poolings.

    Returns:
        The output size (the paper's 572 -> 388 at depth 4).

    Raises:
        ValueError: naming ``input_size`` and the nearest allowed sizes, when some level
            would not have an integer (or a positive) size.

    Example:
        >>> unet_output_size(572)
        388
    """
    _check_depth(depth)
    check_positive_int("input_size", input_size)
    _, output = _valid_levels(input_size, depth)
    if output is None:
        below, above = _nearest_valid_inputs(input_size, depth)
        nearest = (
            f"the nearest allowed sizes are {below} or {above}"
            if below is not None
            else f"the smallest allowed size is {above}"
        )
        raise ValueError(
            f"input_size={input_size!r} is not allowed with padding='valid' and depth={depth}: "
            f"some level would not have a positive integer size; {nearest} "
            f"(input = {2**depth} k + {4 * (2**depth - 1)})."
        )
    return output


def valid_unet_input_size(min_output, depth=4):
    """The smallest input size of a ``padding="valid"`` U-Net whose output is at least
    ``min_output`` (pick tiles for the overlap-tile strategy: pad or mirror the image by
    ``(input - output) / 2`` on each side).

    Args:
        min_output: the output size wanted.
        depth: number of poolings.

    Returns:
        An input size accepted by ``unet(padding="valid", depth=depth)``.

    Example:
        >>> valid_unet_input_size(388)
        572
        >>> unet_output_size(valid_unet_input_size(100))
        116
    """
    _check_depth(depth)
    check_positive_int("min_output", min_output)
    size = _smallest_valid_input(depth)
    while unet_output_size(size, depth) < min_output:
        size += 2**depth
    return size


def _check_input_shape(input_shape, depth, padding):
    input_shape = check_image_shape("input_shape", input_shape)
    for size in input_shape[:2]:
        if padding == "valid":
            if size is None:
                raise ValueError(
                    f"input_shape={input_shape!r} has an unknown size; padding='valid' needs a "
                    "known height and width (the skip connections are cropped by fixed "
                    "amounts). Use padding='same' for any size."
                )
            if _valid_levels(size, depth)[1] is None:
                below, above = _nearest_valid_inputs(size, depth)
                nearest = (
                    f"the nearest allowed sizes are {below} or {above}"
                    if below is not None
                    else f"the smallest allowed size is {above}"
                )
                raise ValueError(
                    f"input_shape={input_shape!r} is not allowed with padding='valid' and "
                    f"depth={depth}: size {size} does not give an even map before every "
                    f"pooling and a positive size at every level; {nearest} "
                    f"(valid_unet_input_size(min_output) picks one)."
                )
        elif size is not None and size % 2**depth:
            lower = size // 2**depth * 2**depth
            raise ValueError(
                f"input_shape={input_shape!r} is not allowed with padding='same' and "
                f"depth={depth}: height and width must be multiples of 2 ** depth = "
                f"{2**depth}, e.g. {lower or 2**depth} or {lower + 2**depth}."
            )
    return input_shape


def _resolve_activation(classifier_activation, num_classes):
    if classifier_activation == "auto":
        # one class: a per-pixel foreground probability; several: a distribution per pixel
        return "sigmoid" if num_classes == 1 else "softmax"
    return check_activation("classifier_activation", classifier_activation)


def unet(
    num_classes=2,
    input_shape=(572, 572, 1),
    depth=4,
    filters=64,
    batch_norm=False,
    padding="valid",
    dropout=0.0,
    classifier_activation="auto",
    name="unet",
):
    """Build a U-Net (defaults: the paper's network, 572x572x1 -> 388x388x2).

    Args:
        num_classes: output channels of the 1x1 head (2 in the paper: cell and border /
            background; 1 for a binary mask with a sigmoid).
        input_shape: ``(height, width, channels)``. With ``padding="valid"`` the height and
            width must give even maps before every pooling (572, 188 + 16 k at depth 4;
            see ``valid_unet_input_size``); with ``"same"`` they must be multiples of
            ``2 ** depth`` or None (any size at run time).
        depth: number of poolings (4 in the paper).
        filters: channels of the first level, doubled per level (64 in the paper: 64, 128,
            256, 512, 1024 at the bottleneck).
        batch_norm: batch normalization after every 3x3 convolution (a later common
            variant; the paper has none).
        padding: ``"valid"`` (the paper: unpadded convolutions, the output is the centre of
            the input) or ``"same"`` (the output has the input's size).
        dropout: dropout rate at the end of the contracting path: after the last encoder
            level's convolutions (before its pooling and skip) and after the bottleneck (the
            paper's "drop-out layers at the end of the contracting path", section 3.1; its
            Caffe model used 0.5). 0 for none.
        classifier_activation: ``"auto"`` (sigmoid for one class, softmax for several),
            None for logits, or any Keras activation.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``(batch, height, width, channels)`` images to ``(batch,
        out_height, out_width, num_classes)`` per-pixel scores.

    Raises:
        ValueError: for bad arguments; an input size that does not fit names
            ``input_shape``, the size and the nearest allowed sizes.

    Example:
        >>> model = unet()  # the paper's network
        >>> tuple(model.output.shape)
        (None, 388, 388, 2)
        >>> small = unet(num_classes=1, input_shape=(64, 64, 3), depth=3, filters=16,
        ...              padding="same", batch_norm=True)
    """
    check_positive_int("num_classes", num_classes)
    depth = _check_depth(depth)
    check_positive_int("filters", filters)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm={batch_norm!r} is not allowed; expected True or False.")
    check_choice("padding", padding, PADDINGS)
    dropout = check_rate("dropout", dropout)
    activation = _resolve_activation(classifier_activation, num_classes)
    input_shape = _check_input_shape(input_shape, depth, padding)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")

    common = {"padding": padding, "batch_norm": batch_norm}
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    skips = []
    for level in range(1, depth + 1):
        x, skip = UNetEncoderBlock(
            filters * 2 ** (level - 1),
            dropout=dropout if level == depth else 0.0,
            name=f"encoder{level}",
            **common,
        )(x)
        skips.append(skip)
    x = UNetConvBlock(filters * 2**depth, dropout=dropout, name="bottleneck", **common)(x)
    for level in range(depth, 0, -1):
        x = UNetDecoderBlock(filters * 2 ** (level - 1), name=f"decoder{level}", **common)(
            x, skips[level - 1]
        )
    x = keras.layers.Conv2D(num_classes, 1, name="predictions")(x)
    outputs = classifier_output(x, activation)
    return keras.Model(inputs, outputs, name=name)
