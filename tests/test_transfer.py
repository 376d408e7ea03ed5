"""Weights from keras.applications: every kapps classifier with a keras.applications twin takes
the twin's model object, its ``.keras`` file and its ``.weights.h5`` file through ``weights=``
and then computes the same outputs; a twin of another depth is refused, naming the first layer
that does not fit.

The twins are built with ``weights=None`` at 32x32 with a 7-class top (nothing downloads), and
every variable gets distinct random values, batch-normalization statistics included, so that
a transfer that swapped or skipped a variable would show in the outputs. Building the largest
networks takes seconds, so each twin is built once and only the four reused by the file tests
are kept after the model test.
"""

import keras
import numpy as np
import pytest

import kapps

SIZE, CLASSES = 32, 7
TOLERANCE = 1e-4

#: kapps name -> keras.applications name.
TWINS = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "densenet121": "DenseNet121",
    "densenet169": "DenseNet169",
    "densenet201": "DenseNet201",
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
}

#: An early feature map per family, (kapps layer, keras.applications layer): where the input
#: still matters in a randomly weighted network (deep ones fade it towards the top in
#: inference mode), so the comparison also covers the first layers.
EARLY = {
    "vgg": ("block2_pool", "block2_pool"),
    "resnet": ("conv3_block1", "conv3_block1_out"),
    "densenet": ("pool2", "pool2_pool"),
    "efficientnet": ("block2a", "block2a_project_bn"),
}

#: One twin per family whose files (.weights.h5, .keras) are tested below.
FILE_TWINS = ("vgg19", "resnet101", "densenet169", "efficientnet_b2")


def family(name):
    return next(f for f in EARLY if name.startswith(f))


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def images(name, seed=0):
    """Two images as each family expects them: pixels in [0, 255] for EfficientNet (which
    rescales and normalizes inside), centred values for the others."""
    rng = np.random.default_rng(seed)
    if family(name) == "efficientnet":
        return (rng.random((2, SIZE, SIZE, 3)) * 255).astype("float32")
    return rng.standard_normal((2, SIZE, SIZE, 3)).astype("float32")


def build_kapps(name, **kwargs):
    """The kapps model in the twins' configuration."""
    return kapps.build(
        name, input_shape=(SIZE, SIZE, 3), num_classes=CLASSES, classifier_activation=None, **kwargs
    )


def kernel_values(rng, shape, fan_in):
    """Uniform random float32 values of variance ``1 / fan_in`` (variance-keeping), made in
    place: about half the time of normal ones for the tens of millions of the largest twins."""
    value = rng.random(shape, dtype="float32")
    value -= 0.5
    value *= np.float32(np.sqrt(12.0 / fan_in))  # uniform on [-a, a] has variance a^2 / 3
    return value


def randomize(model, seed=0):
    """Give every variable of ``model`` distinct random values: kernels at a variance-keeping
    scale, batch-normalization and Normalization statistics (positive variances), biases,
    betas and the Normalization's count."""
    rng = np.random.default_rng(seed)
    depthwise = {
        layer.kernel.path for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)
    }
    for w in model.weights:
        shape, kind = tuple(w.shape), w.path.rsplit("/", 1)[-1]
        if w.path in depthwise:  # (h, w, channels, 1): each output sees h * w inputs
            value = kernel_values(rng, shape, shape[0] * shape[1])
        elif kind == "kernel":
            value = kernel_values(rng, shape, int(np.prod(shape[:-1])))
        elif kind in ("gamma", "moving_variance", "variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "count":
            value = rng.integers(1, 1000, shape)
        else:  # beta, moving_mean, mean, bias
            value = rng.normal(0.0, 0.1, shape)
        w.assign(np.asarray(value, dtype=w.dtype))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # it computes from a snapshot of its variables


def probe(model, name, kapps_side):
    """A model computing ``model``'s early feature map (see ``EARLY``) and its outputs."""
    early = EARLY[family(name)][0 if kapps_side else 1]
    return keras.Model(model.input, [model.get_layer(early).output, model.output])


def run(probe_model, x):
    return [numpy(y) for y in probe_model(x, training=False)]


def max_difference(a, b):
    return max(np.abs(p - q).max() for p, q in zip(a, b))


class Twin:
    """A randomly weighted keras.applications twin and what it computes on ``images(name)``:
    ``fresh`` before randomization (a randomly initialised network of the architecture, as a
    kapps model built without weights is), ``expected`` after."""

    def __init__(self, name):
        self.name = name
        self.model = getattr(keras.applications, TWINS[name])(
            weights=None, input_shape=(SIZE, SIZE, 3), classes=CLASSES, classifier_activation=None
        )
        self.x = images(name)
        twin_probe = probe(self.model, name, kapps_side=False)
        self.fresh = run(twin_probe, self.x)
        randomize(self.model)
        self.expected = run(twin_probe, self.x)

    def check(self, ours):
        """Assert that kapps model ``ours`` computes what the twin does."""
        got = run(probe(ours, self.name, kapps_side=True), self.x)
        assert [a.shape for a in got] == [b.shape for b in self.expected]
        assert max_difference(got, self.expected) <= TOLERANCE
        # The comparison can fail: the two images give far different early features, and an
        # untransferred (randomly initialised) network far different features and outputs.
        early = got[0]
        assert np.abs(early[0] - early[1]).max() > 100 * TOLERANCE
        assert all(np.abs(a - b).max() > 100 * TOLERANCE for a, b in zip(self.fresh, self.expected))


@pytest.fixture(scope="module")
def twins():
    """``twins(name)``: the ``Twin`` of ``name``, built on first use; ``twins.release(name)``
    lets it go (big networks: only ``FILE_TWINS`` stay for the file tests)."""
    cache = {}

    class Cache:
        def __call__(self, name):
            if name not in cache:
                cache[name] = Twin(name)
            return cache[name]

        def release(self, name):
            cache.pop(name, None)

    yield Cache()
    cache.clear()


@pytest.mark.parametrize("name", list(TWINS))
def test_model_object_of_every_twin(name, twins):
    twin = twins(name)
    ours = build_kapps(name, weights=twin.model)
    assert ours.count_params() == twin.model.count_params()
    twin.check(ours)
    del ours
    if name not in FILE_TWINS:
        twins.release(name)


@pytest.mark.parametrize("name", FILE_TWINS)
def test_weights_h5_saved_by_keras_applications(name, twins, tmp_path):
    # VGG's file loads directly; the others' layer structure differs from kapps', so the file
    # is read into a keras.applications twin and copied from it.
    twin = twins(name)
    path = tmp_path / f"{name}.weights.h5"
    twin.model.save_weights(path)
    ours = build_kapps(name, weights=str(path))
    twin.check(ours)


def test_keras_file_saved_by_keras_applications(twins, tmp_path):
    twin = twins("efficientnet_b2")
    path = tmp_path / "efficientnetb2.keras"
    twin.model.save(path)
    ours = build_kapps("efficientnet_b2", weights=path)
    twin.check(ours)


@pytest.mark.parametrize(
    "name, reference, match",
    [
        # VGG-19's fourth conv3 layer meets VGG-16's block4_conv1 (256 -> 512 channels).
        (
            "vgg16",
            "vgg19",
            r"'vgg19'.* model 'vgg16': the first layer that does not fit is 'block3_conv4' of "
            r"the reference: its variable 14 of 38, 'block3_conv4/kernel' \(3, 3, 256, 256\), "
            r"where the model has 'block4_conv1/kernel' \(3, 3, 256, 512\)",
        ),
        # ResNet-50 has six conv4 blocks, ResNet-101 23: matched by name, the seventh is extra.
        (
            "resnet50",
            "resnet101",
            r"'resnet101'.* model 'resnet50': the reference's layer 'conv4_block7_1_conv' has no "
            "counterpart",
        ),
        # DenseNet-121's conv4 has 24 dense layers, DenseNet-169's 32: the 25th meets pool4.
        (
            "densenet121",
            "densenet169",
            r"'densenet169'.* model 'densenet121': the first layer that does not fit is "
            r"'conv4_block25_1_conv' of the reference: its variable \d+ of \d+, "
            r"'conv4_block25_1_conv/kernel' \(1, 1, 1024, 128\), where the model has "
            r"'pool4/conv/kernel' \(1, 1, 1024, 512\)",
        ),
        # B2 repeats stage 1 (ceil(1.2 * 1) = 2): its block1b meets B0's block2a.
        (
            "efficientnet_b0",
            "efficientnet_b2",
            r"'efficientnetb2'.* model 'efficientnet_b0': the first layer that does not fit is "
            r"'block1b_dwconv' of the reference: its variable \d+ of \d+, "
            r"'block1b_dwconv/kernel' \(3, 3, 16, 1\), where the model has "
            r"'block2a/expand/conv/kernel' \(1, 1, 16, 96\)",
        ),
    ],
)
def test_twin_of_another_depth_names_the_first_layer_that_does_not_fit(name, reference, match, twins):
    with pytest.raises(ValueError, match=match):
        build_kapps(name, weights=twins(reference).model)
