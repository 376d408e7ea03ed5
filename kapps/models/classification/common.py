"""What every kapps image classifier shares: argument checks and the pooled/top head."""

import keras

from kapps._checks import check_choice, check_positive_int

POOLING = (None, "avg", "max")


def check_classifier_args(
    num_classes, input_shape, include_top, pooling, min_size, max_size=None, allow_unknown_size=False
):
    """Validate the shared classifier arguments; return ``input_shape`` as a tuple.

    Args:
        min_size: smallest height/width the network's downsampling allows.
        max_size: largest height/width, if the network has one.
        allow_unknown_size: whether height/width may be None (fully convolutional use).

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    check_positive_int("num_classes", num_classes)
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top={include_top!r} is not allowed; expected True or False.")
    check_choice("pooling", pooling, POOLING)
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1) for d in input_shape)
        or input_shape[2] is None
    ):
        raise ValueError(
            f"input_shape={input_shape!r} is not allowed; expected (height, width, channels) "
            "of positive integers (channels last)."
        )
    height, width, _ = input_shape
    for size in (height, width):
        if size is None:
            if not allow_unknown_size:
                raise ValueError(
                    f"input_shape={tuple(input_shape)!r} has an unknown size; this configuration "
                    "needs a fixed height and width."
                )
            continue
        if size < min_size or (max_size is not None and size > max_size):
            allowed = f"between {min_size} and {max_size}" if max_size else f"at least {min_size}"
            raise ValueError(
                f"input_shape={tuple(input_shape)!r} is not allowed; height and width must be "
                f"{allowed} for this network's convolutions and pooling stages."
            )
    return tuple(input_shape)


def pooled_features(x, pooling):
    """Apply the ``pooling`` choice of ``include_top=False`` models to a feature map."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def classifier_output(x, classifier_activation):
    """The final activation, computed in float32 so mixed-precision models give float32
    probabilities (and logits when ``classifier_activation`` is None)."""
    return keras.layers.Activation(classifier_activation, dtype="float32", name="probabilities")(x)


def check_activation(name, value):
    """Raise unless ``value`` is None, a callable, or a Keras activation name."""
    if value is None or callable(value):
        return value
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name}={value!r} is not allowed; expected None, a callable or a Keras activation "
            "name such as 'softmax'."
        ) from None
    return value
