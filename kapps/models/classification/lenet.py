"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), as in the paper and in its modern form.

``variant="lecun98"`` (default) is the paper's network (Section II-B):

- input 32x32, normalised so the background is -0.1 and ink is 1.175 (Section II-A: mean
  about 0 and variance about 1, which speeds up learning);
- C1: 6 maps, 5x5 convolution; S2: 2x2 trainable subsampling (a coefficient and a bias per
  map); C3: 16 maps, 5x5, each seeing only the S2 maps of Table I; S4: 2x2 subsampling;
  C5: 120 maps, 5x5 (1x1 output); F6: 84 units;
- every layer up to F6 squashed by ``1.7159 * tanh(2/3 * a)`` (Appendix A);
- output: 10 Euclidean RBF units whose fixed centres are 7x12 bitmaps of the digits; the
  network outputs minus the squared distances, used as logits.

That is 60,000 trainable parameters in C1..F6 (the paper's figure) plus 840 fixed code values.
Weights are initialised with Keras' defaults rather than the paper's uniform
``+-2.4 / fan_in`` (Appendix A), which suits the optimisers recipes use.

``variant="modern"`` is the version most courses teach: ReLU, 2x2 max-pooling, a full C3,
a dense softmax output: 61,706 parameters for 10 classes.

Inputs are images scaled to [0, 1] with ink high (MNIST / 255). 28x28 images (MNIST) are
zero-padded by 2 pixels on each side to 32x32, as the paper centred its 28x28 digits in a
32x32 field; any height and width from 28 to 32 are padded to 32 the same way (the extra
pixel going to the bottom/right when the difference is odd).
"""

import keras

from kapps._checks import check_choice
from kapps.layers import EuclideanRBF, PartialConv2D, ScaledTanh, TrainableSubsampling
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
)
from kapps.models.weights import load_into

VARIANTS = ("lecun98", "modern")

# Table I of the paper: the S2 maps each C3 map is connected to.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
# Section II-A: background -0.1, foreground 1.175, for inputs with ink = 1, background = 0.
INPUT_SCALE = 1.275
INPUT_OFFSET = -0.1


def lenet5(
    num_classes=10,
    input_shape=(32, 32, 1),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    variant="lecun98",
    name="lenet5",
):
    """Build LeNet-5.

    Args:
        num_classes: number of classes. With 10 classes the lecun98 output codes are the
            paper's digit bitmaps; otherwise fixed random +-1 codes.
        input_shape: ``(height, width, channels)`` with height and width from 28 to 32
            (padded to 32, see the module docstring).
        include_top: whether to end with F6 and the output layer; without it the model
            returns C5's ``(batch, 1, 1, 120)`` map (or ``(batch, 120)`` with pooling).
        pooling: with ``include_top=False``: None, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the output (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` to copy from.
        variant: ``"lecun98"`` (the paper, default) or ``"modern"``.
        name: model name.

    Returns:
        A ``keras.Model`` taking images in [0, 1].

    Raises:
        ValueError: for an unknown variant, an input outside 28..32 pixels, or bad arguments.

    Example:
        >>> model = lenet5(input_shape=(28, 28, 1))
        >>> sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        60000
    """
    check_choice("variant", variant, VARIANTS)
    check_activation("classifier_activation", classifier_activation)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=28, max_size=32
    )
    paper = variant == "lecun98"

    def squash(layer_name):
        return ScaledTanh(name=layer_name) if paper else keras.layers.ReLU(name=layer_name)

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    pad_h, pad_w = 32 - input_shape[0], 32 - input_shape[1]
    if pad_h or pad_w:
        x = keras.layers.ZeroPadding2D(
            ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), name="pad_to_32"
        )(x)
    if paper:
        x = keras.layers.Rescaling(INPUT_SCALE, offset=INPUT_OFFSET, name="input_normalization")(x)

    x = keras.layers.Conv2D(6, 5, name="c1")(x)
    x = squash("c1_activation")(x)
    if paper:
        x = TrainableSubsampling(2, name="s2")(x)
        x = squash("s2_activation")(x)
        x = PartialConv2D(C3_TABLE, kernel_size=5, name="c3")(x)
    else:
        x = keras.layers.MaxPooling2D(2, name="s2")(x)
        x = keras.layers.Conv2D(16, 5, name="c3")(x)
    x = squash("c3_activation")(x)
    if paper:
        x = TrainableSubsampling(2, name="s4")(x)
        x = squash("s4_activation")(x)
    else:
        x = keras.layers.MaxPooling2D(2, name="s4")(x)
    x = keras.layers.Conv2D(120, 5, name="c5")(x)
    x = squash("c5_activation")(x)

    if not include_top:
        outputs = pooled_features(x, pooling)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(84, name="f6")(x)
        x = squash("f6_activation")(x)
        if paper:
            x = EuclideanRBF(num_classes, name="output")(x)
        else:
            x = keras.layers.Dense(num_classes, name="output")(x)
        outputs = classifier_output(x, classifier_activation)

    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)
