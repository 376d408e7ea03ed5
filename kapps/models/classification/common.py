"""What every kapps image classifier shares: argument checks, the pooled/top head, and the
``variant`` helper that turns a configuration of a generic builder into a named builder."""

import functools
import inspect

import keras

from kapps._checks import check_choice, check_positive_int

POOLING = (None, "avg", "max")
#: The arguments every vision classifier takes, in this order, before its own (plus ``name``).
CLASSIFIER_ARGS = (
    "num_classes",
    "input_shape",
    "include_top",
    "pooling",
    "classifier_activation",
    "weights",
)


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


def keras_twin(application, include_top, input_shape, num_classes, size=224):
    """A function of no arguments that builds ``keras.applications.<application>`` with
    ``weights=None`` in a kapps model's configuration: the twin that reads the ``.weights.h5``
    files keras.applications saves (see ``kapps.models.weights.load_into``).

    Unknown heights and widths become ``size``: sizes do not change the weights, and
    keras.applications needs them known when it has a top.
    """
    shape = tuple(d or size for d in input_shape[:2]) + tuple(input_shape[2:])
    return functools.partial(
        getattr(keras.applications, application),
        weights=None,
        include_top=include_top,
        input_shape=shape,
        classes=num_classes,
    )


def variant(builder, name, doc, defaults=None, **fixed):
    """A named variant of ``builder`` with some arguments fixed and some defaults changed.

    The returned function takes ``builder``'s arguments minus ``fixed`` (whose values it passes
    on), with ``defaults`` replacing the builder's defaults and ``name`` defaulting to the
    variant's name. The shared classifier arguments (``CLASSIFIER_ARGS``) come first and may be
    given by position; the others are keyword-only, ``name`` last. ``inspect.signature`` shows
    exactly this, so the registry and the contract checks see the real parameters.

    Args:
        builder: the generic builder, e.g. ``resnet``.
        name: the variant's public name, e.g. ``"resnet50"`` (its ``__name__``).
        doc: the variant's docstring.
        defaults: new defaults of arguments that stay open, e.g. ``{"num_classes": 10}``.
        **fixed: arguments the variant sets for good, e.g. ``depth=50``.

    Returns:
        The variant function.

    Example:
        >>> resnet50 = variant(resnet, "resnet50", "ResNet-50 ...", depth=50)
    """
    signature = inspect.signature(builder)
    parameters = signature.parameters
    defaults = dict(defaults or {})
    if "name" in parameters and "name" not in fixed:
        defaults.setdefault("name", name)
    unknown = sorted((set(fixed) | set(defaults)) - set(parameters))
    if unknown:
        raise TypeError(f"variant {name!r}: {builder.__name__} has no arguments {unknown}.")
    kept = {
        key: p.replace(default=defaults.get(key, p.default))
        for key, p in parameters.items()
        if key not in fixed
    }
    shared = [kept[key] for key in CLASSIFIER_ARGS if key in kept]
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for key, p in kept.items()
        if key not in CLASSIFIER_ARGS
    ]
    own.sort(key=lambda p: p.name == "name")  # name last
    shared = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in shared]
    variant_signature = signature.replace(parameters=shared + own)

    def function(*args, **kwargs):
        try:
            bound = variant_signature.bind(*args, **kwargs)
        except TypeError as error:  # as Python words it for a plain function
            raise TypeError(f"{name}() {error}") from None
        bound.apply_defaults()
        return builder(**fixed, **bound.arguments)

    function.__signature__ = variant_signature
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    function.__module__ = builder.__module__
    return function
