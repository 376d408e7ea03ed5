"""Dense-like output layers."""

import keras
import numpy as np
from keras import ops

from kapps._checks import check_positive_int

# LeNet-5's output codes: each class is a stylised 7x12 bitmap of its digit, read as +1 for
# ink and -1 for background (LeCun et al. 1998, Section II-B and Fig. 3). Drawn for kapps.
_DIGIT_BITMAPS = (
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("...#...", "..##...", ".#.#...", "#..#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", "#######"),
    (".#####.", "#.....#", "......#", "......#", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "#######"),
    (".#####.", "#.....#", "......#", "......#", "......#", "..####.",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),
    ("....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.", "#....#.",
     "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."),
    ("#######", "#......", "#......", "#......", "######.", "......#",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),
    ("..####.", ".#.....", "#......", "#......", "#.###..", "##...#.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("#######", "......#", ".....#.", ".....#.", "....#..", "....#..",
     "...#...", "...#...", "..#....", "..#....", "..#....", "..#...."),
    (".#####.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", ".#...##",
     "..###.#", "......#", "......#", ".....#.", "....#..", ".###..."),
)


def lenet_output_codes(num_classes, units=84, seed=1998):
    """Fixed +-1 target codes for LeNet-5's RBF output layer, shape ``(num_classes, units)``.

    For 10 classes and 84 units these are the stylised 7x12 digit bitmaps the paper describes.
    Otherwise the codes are random +-1 vectors from a fixed seed, which are nearly orthogonal
    for 84 units (the paper's alternative when there are many classes).
    """
    check_positive_int("num_classes", num_classes)
    check_positive_int("units", units)
    if num_classes == 10 and units == 84:
        bits = [[1.0 if ch == "#" else -1.0 for row in digit for ch in row] for digit in _DIGIT_BITMAPS]
        return np.asarray(bits, dtype="float32")
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(num_classes, units)).astype("float32")


@keras.saving.register_keras_serializable(package="kapps")
class EuclideanRBF(keras.layers.Layer):
    """LeNet-5's output layer: one Euclidean radial basis function unit per class.

    Unit ``i`` outputs ``-sum_j (x_j - w_ij)**2``: the negated squared distance between the
    input and the class's fixed code, so the largest output is the nearest code and the
    outputs can be used as logits (the paper outputs the distance itself as a penalty).
    The codes are a non-trainable weight initialised by ``lenet_output_codes``.

    Args:
        units: number of classes.
        code_seed: seed of the random codes used when there are not exactly 10 classes of
            84-dimensional inputs.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, features)``.

    Returns:
        ``(batch, units)`` negated squared distances.

    Example:
        >>> EuclideanRBF(10)(keras.ops.zeros((2, 84))).shape
        (2, 10)

    Paper: LeCun et al. 1998, Section II-B (output layer) and Fig. 3.
    """

    def __init__(self, units, code_seed=1998, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.code_seed = int(code_seed)

    def build(self, input_shape):
        features = input_shape[-1]
        codes = lenet_output_codes(self.units, features, seed=self.code_seed)
        self.codes = self.add_weight(
            name="codes",
            shape=(self.units, features),
            initializer=keras.initializers.Constant(codes),
            trainable=False,
        )

    def call(self, inputs):
        codes = ops.cast(self.codes, inputs.dtype)
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2, one matmul instead of a (batch, units,
        # features) difference tensor.
        x_sq = ops.sum(ops.square(inputs), axis=-1, keepdims=True)  # (batch, 1)
        w_sq = ops.sum(ops.square(codes), axis=-1)  # (units,)
        cross = ops.matmul(inputs, ops.transpose(codes))  # (batch, units)
        return -(x_sq - 2.0 * cross + w_sq)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "code_seed": self.code_seed})
        return config
