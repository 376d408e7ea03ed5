"""FCN-32s/16s/8s (Long et al. 2015) and the upsampling layers they are built from.

The registry-wide contract (tests/test_contract.py) covers shapes, gradients, config, .keras
and TFLite round trips and a distributed step at the tiny configuration; this module checks
what is particular to FCN: the published counts, the Caffe geometry (crop offsets, any input
size), the bilinear upsampling, and the ImageNet VGG16 initialization."""

import re

import keras
import numpy as np
import pytest

from kapps import registry
from kapps.layers.upsampling import (
    BilinearKernel,
    BilinearUpsampling2D,
    CropToMatch,
    bilinear_filter,
)
from kapps.models.classification.vgg import vgg16
from kapps.models.segmentation.fcn import (
    copy_backbone,
    crop_offsets,
    fcn,
    fcn8s,
    fcn16s,
    fcn32s,
    min_pad,
)

BUILDERS = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s}
TINY_WIDTHS = {"filters": (4, 8, 8, 16, 16), "fc_units": 16}
# Parameters of the learned x2 upsamplings: a full 4x4 kernel from every class to every class.
X2_PARAMS = {"fcn32s": 0, "fcn16s": 1, "fcn8s": 2}
PUBLISHED_TRAINABLE = {"fcn32s": 134_346_581, "fcn16s": 134_364_410, "fcn8s": 134_376_863}


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def tiny(name, **overrides):
    config = {"num_classes": 3, **TINY_WIDTHS, "score_initializer": "glorot_uniform", **overrides}
    return BUILDERS[name](**config)


@pytest.fixture(scope="module")
def canonical_fcn8s():
    """The canonical FCN-8s with unknown height and width (the parameters do not depend on
    the input size), built once for the count and backbone tests: 134M parameters take a
    second or two."""
    model = fcn8s(input_shape=(None, None, 3))
    yield model
    del model
    keras.backend.clear_session()


# ---------------------------------------------------------------------------------------------
# Canonical configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s"])
def test_canonical_trainable_counts(name):
    model = BUILDERS[name]()
    assert model.input_shape == (None, 500, 500, 3)
    assert model.output_shape == (None, 500, 500, 21)
    published = registry.get_spec(name).published_params
    assert trainable_count(model) == PUBLISHED_TRAINABLE[name] == published
    # the fixed final upsampling has no weights at all, so nothing is non-trainable
    assert not model.non_trainable_weights
    del model
    keras.backend.clear_session()


def test_canonical_fcn8s(canonical_fcn8s):
    model = canonical_fcn8s
    published = registry.get_spec("fcn8s").published_params
    assert trainable_count(model) == PUBLISHED_TRAINABLE["fcn8s"] == published
    assert not model.non_trainable_weights
    # the learned x2 upsamplings: full 21x21 class kernels, bilinear on the diagonal, no bias
    for layer_name in ("upscore2", "upscore_pool4"):
        layer = model.get_layer(layer_name)
        assert layer.trainable and not layer.use_bias
        (kernel,) = layer.weights
        assert tuple(kernel.shape) == (4, 4, 21, 21)
    # the paper zero-initializes the score layers (Sections 4.2, 4.3)
    for layer_name in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.any(model.get_layer(layer_name).kernel.numpy())
    assert not model.get_layer("upscore8").weights


def test_crop_offsets_are_the_reference_prototxts():
    # shelhamer/fcn.berkeleyvision.org voc-fcn{32,16,8}s: crop offsets of the Caffe nets
    assert crop_offsets(32) == {"score": 19}
    assert crop_offsets(16) == {"score_pool4c": 5, "score": 27}
    assert crop_offsets(8) == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    # resizing centres pixels f/2 earlier than the transposed convolution at each step
    assert crop_offsets(16, "interpolation") == {"score_pool4c": 6, "score": 3}
    assert crop_offsets(8, "interpolation") == {"score_pool4c": 6, "score_pool3c": 12, "score": 3}
    # the final offset moves with pad one for one; the skip offsets do not
    assert crop_offsets(8, pad=90) == {"score_pool4c": 5, "score_pool3c": 9, "score": 21}
    assert [min_pad(s) for s in (32, 16, 8)] == [81, 73, 69]
    assert min_pad(8, "interpolation") == 97


# ---------------------------------------------------------------------------------------------
# Any input size, scores at the input resolution
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("upsampling", ["deconvolution", "interpolation"])
def test_output_has_the_input_size(name, upsampling):
    for size in ((64, 64), (96, 80)):
        model = tiny(name, input_shape=(*size, 3), upsampling=upsampling)
        assert model.output_shape == (None, *size, 3)
        out = model(np.random.default_rng(0).random((2, *size, 3), dtype="float32"))
        assert out.shape == (2, *size, 3)
        np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, rtol=1e-5)  # softmax per pixel
    model = tiny(name, input_shape=(None, None, 3), upsampling=upsampling)
    assert model.output_shape == (None, None, None, 3)
    for size in ((45, 71), (13, 1)):
        assert model(np.zeros((1, *size, 3), "float32")).shape == (1, *size, 3)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("upsampling", ["deconvolution", "interpolation"])
def test_smallest_pad_still_covers_the_image(name, upsampling):
    """With the smallest allowed pad the crops fit for every size from the smallest allowed
    one on, across every phase of the 32-pixel pooling grid."""
    stride = int(name[3:-1])
    pad = min_pad(stride, upsampling)
    smallest = 195 - 2 * pad
    model = tiny(name, input_shape=(None, None, 3), upsampling=upsampling, pad=pad)
    for size in range(max(smallest, 1), max(smallest, 1) + 33, 4):
        assert model(np.zeros((1, size, size + 1, 3), "float32")).shape == (1, size, size + 1, 3)
    with pytest.raises(ValueError, match=rf"pad={pad - 1}.*at least {pad}"):
        tiny(name, upsampling=upsampling, pad=pad - 1)
    if smallest > 1:
        message = rf"input_shape=\({smallest - 1}, 40, 3\).*at least {smallest}"
        with pytest.raises(ValueError, match=message):
            tiny(name, upsampling=upsampling, pad=pad, input_shape=(smallest - 1, 40, 3))


def _probe_model(stride, upsampling, branch):
    """A one-class FCN whose convolutions pass a one-channel image through unchanged (centre
    tap 1), so an impulse reaches every scale as the one pool cell that contains it; the score
    layers of every branch but ``branch`` are zeroed."""
    model = fcn(
        stride=stride, num_classes=1, input_shape=(None, None, 1), upsampling=upsampling,
        filters=(1, 1, 1, 1, 1), fc_units=1, dropout=0.0, classifier_activation=None,
    )
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            kernel = np.zeros(layer.kernel.shape, "float32")
            if not layer.name.startswith("score") or layer.name == branch:
                kernel[kernel.shape[0] // 2, kernel.shape[1] // 2] = 1.0
            layer.set_weights([kernel, np.zeros(layer.bias.shape, "float32")])
    return model


# branch -> (stride, centre of cell 0 on the image): pixel y of pool5/fc7 is centred on image
# coordinate 32 y + 12.5 (pad 100), of pool4 on 16 y - 91.5, of pool3 on 8 y - 95.5
PROBES = {"score_fr": (32, 12.5), "score_pool4": (16, -91.5), "score_pool3": (8, -95.5)}


@pytest.mark.parametrize("upsampling", ["deconvolution", "interpolation"])
@pytest.mark.parametrize(
    "stride, branch",
    [
        (32, "score_fr"),
        (16, "score_fr"),
        (16, "score_pool4"),
        (8, "score_fr"),
        (8, "score_pool4"),
        (8, "score_pool3"),
    ],
)
def test_scores_are_centred_on_their_pool_cell(stride, branch, upsampling):
    """The crops align every branch with the image: the scores of an impulse are symmetric
    about the centre of the pool cell that holds it (an offset off by one pixel breaks the
    symmetry), and peak inside that cell."""
    model = _probe_model(stride, upsampling, branch)
    scale, shift = PROBES[branch]
    for pixel in ((80, 64), (70, 101)):
        image = np.zeros((1, 180, 180, 1), "float32")
        image[0, pixel[0], pixel[1]] = 1.0
        scores = np.asarray(model(image))[0, :, :, 0]
        assert scores.max() > 0.25
        window = []
        for axis, p in enumerate(pixel):
            centre = scale * round((p - shift) / scale) + shift  # the cell's centre, m + 0.5
            assert abs(p - centre) < scale / 2
            m = int(centre - 0.5)
            half = min(m + 1, 180 - m - 1)
            window.append(slice(m + 1 - half, m + 1 + half))
            peak = np.unravel_index(np.argmax(scores), scores.shape)[axis]
            assert abs(peak - centre) < scale / 2, (axis, peak, centre)
        region = scores[tuple(window)]
        np.testing.assert_allclose(region, region[::-1, ::-1], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Upsampling
# ---------------------------------------------------------------------------------------------


def test_bilinear_filter_values():
    np.testing.assert_allclose(bilinear_filter(4)[0], np.array([1, 3, 3, 1]) / 16)
    np.testing.assert_allclose(bilinear_filter(4)[1], np.array([3, 9, 9, 3]) / 16)
    np.testing.assert_allclose(bilinear_filter(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    # stride f, kernel 2f: the 2x2 taps that reach one output pixel (k, k + f on each axis)
    # sum to one, so away from the border a constant stays that constant
    kernel = bilinear_filter(16)
    polyphase = kernel[:8, :8] + kernel[8:, :8] + kernel[:8, 8:] + kernel[8:, 8:]
    np.testing.assert_allclose(polyphase, np.ones((8, 8)), rtol=1e-12)


def test_learned_x2_upsampling_starts_bilinear():
    model = tiny("fcn8s", num_classes=4, input_shape=(64, 64, 3))
    for layer_name in ("upscore2", "upscore_pool4"):
        layer = model.get_layer(layer_name)
        kernel = layer.kernel.numpy()  # (4, 4, classes out, classes in)
        for c in range(4):
            np.testing.assert_allclose(kernel[:, :, c, c], bilinear_filter(4), rtol=1e-6)
        off_diagonal = kernel * (1 - np.eye(4))[None, None]
        assert not np.any(off_diagonal)
        # a constant map upsamples to the same constant away from the tapered border
        values = np.array([1.0, -2.0, 0.5, 3.0], "float32")
        out = np.asarray(layer(np.ones((1, 6, 5, 4), "float32") * values))
        assert out.shape == (1, 14, 12, 4)
        np.testing.assert_allclose(out[0, 2:-2, 2:-2], np.broadcast_to(values, (10, 8, 4)), rtol=1e-6)
        assert not np.allclose(out[0, 0, 0], values)  # the border does taper


def test_bilinear_kernel_rejects_non_square_channels():
    with pytest.raises(ValueError, match=r"shape=\(4, 4, 3, 2\)"):
        BilinearKernel()((4, 4, 3, 2))
    restored = keras.initializers.deserialize(keras.initializers.serialize(BilinearKernel()))
    assert isinstance(restored, BilinearKernel)


def test_fixed_upsampling_is_caffe_diagonal_deconvolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype("float32")
    layer = BilinearUpsampling2D(8)
    out = np.asarray(layer(x))
    assert out.shape == (2, 32, 48, 4) and not layer.weights
    # Caffe: one (16, 16, C, C) deconvolution kernel, bilinear on the class diagonal
    reference = keras.ops.conv_transpose(x, BilinearKernel()((16, 16, 4, 4)), strides=8)
    np.testing.assert_allclose(out, np.asarray(reference), atol=1e-6)
    # interpolation: the same values inside, centred f/2 = 4 pixels earlier
    resized = np.asarray(BilinearUpsampling2D(8, mode="interpolation")(x))
    assert resized.shape == (2, 24, 40, 4)
    np.testing.assert_allclose(resized[:, 4:20, 4:36], out[:, 8:24, 8:40], atol=1e-5)
    clone = BilinearUpsampling2D.from_config(layer.get_config())
    assert (clone.factor, clone.mode) == (8, "deconvolution")


def test_final_upsampling_does_not_train():
    model = tiny("fcn16s", input_shape=(40, 40, 3))
    assert not model.get_layer("upscore16").weights
    names = {w.path.split("/")[0] for w in model.trainable_weights}
    assert "upscore2" in names and "upscore16" not in names
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).random((2, 40, 40, 3), dtype="float32")
    before = np.asarray(model.get_layer("upscore16")(np.ones((1, 2, 2, 3), "float32")))
    model.fit(x, np.random.default_rng(1).random((2, 40, 40, 3), dtype="float32"), epochs=1, verbose=0)
    after = np.asarray(model.get_layer("upscore16")(np.ones((1, 2, 2, 3), "float32")))
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_interpolation_drops_the_learned_upsamplings(name):
    deconv = tiny(name, input_shape=(32, 32, 3))
    interp = tiny(name, input_shape=(32, 32, 3), upsampling="interpolation")
    assert trainable_count(deconv) - trainable_count(interp) == X2_PARAMS[name] * 4 * 4 * 3 * 3
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in interp.layers)


def test_interpolation_canonical_count():
    model = fcn8s(input_shape=(None, None, 3), upsampling="interpolation")
    assert trainable_count(model) == PUBLISHED_TRAINABLE["fcn8s"] - 2 * 4 * 4 * 21 * 21 == 134_362_751
    del model
    keras.backend.clear_session()


def test_crop_to_match():
    x = np.arange(2 * 10 * 9 * 2, dtype="float32").reshape(2, 10, 9, 2)
    ref = np.zeros((2, 4, 3, 7), "float32")
    np.testing.assert_array_equal(np.asarray(CropToMatch((5, 2))(x, ref)), x[:, 5:9, 2:5])
    # unknown sizes: the slice is computed when the sizes are known
    a, b = keras.Input((None, None, 2)), keras.Input((None, None, 1))
    out = CropToMatch(3)(a, b)
    assert tuple(out.shape) == (None, None, None, 2)
    model = keras.Model([a, b], out)
    np.testing.assert_array_equal(np.asarray(model([x, ref[..., :1]])), x[:, 3:7, 3:6])
    with pytest.raises(ValueError, match="height 10 is too small"):
        CropToMatch(8)(x, ref)
    with pytest.raises(ValueError, match=r"offset=-1"):
        CropToMatch(-1)
    assert CropToMatch.from_config(CropToMatch((1, 2)).get_config()).offset == (1, 2)


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argument, value",
    [
        ("stride", 4),
        ("num_classes", 0),
        ("input_shape", (64, 64)),
        ("input_shape", (64, 64, None)),
        ("upsampling", "nearest"),
        ("pad", 50),
        ("pad", 100.0),
        ("filters", (4, 8, 8, 16)),
        ("fc_units", 0),
        ("dropout", 1.0),
        ("score_initializer", "no-such-initializer"),
        ("classifier_activation", "no-such-activation"),
        ("weights", 3),
        ("backbone_weights", "missing.weights.h5"),
    ],
)
def test_bad_arguments(argument, value):
    with pytest.raises(ValueError, match=re.escape(f"{argument}={value!r}")):
        fcn(**{**TINY_WIDTHS, "input_shape": (32, 32, 3), argument: value})


def test_variants_fix_the_stride():
    with pytest.raises(TypeError, match="stride"):
        fcn32s(stride=8)
    assert fcn16s(num_classes=2, input_shape=(32, 32, 3), **TINY_WIDTHS).name == "fcn16s"


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def test_backbone_from_keras_applications_vgg16(canonical_fcn8s):
    reference = keras.applications.VGG16(weights=None)  # random ImageNet-shaped VGG16
    copy_backbone(canonical_fcn8s, reference)
    np.testing.assert_array_equal(
        canonical_fcn8s.get_layer("block4_conv2").kernel.numpy(),
        reference.get_layer("block4_conv2").kernel.numpy(),
    )
    fc1 = reference.get_layer("fc1").kernel.numpy()  # (7 * 7 * 512, 4096)
    np.testing.assert_array_equal(
        canonical_fcn8s.get_layer("fc6").kernel.numpy(), fc1.reshape(7, 7, 512, 4096)
    )
    np.testing.assert_array_equal(
        canonical_fcn8s.get_layer("fc7").kernel.numpy()[0, 0], reference.get_layer("fc2").kernel.numpy()
    )
    del reference
    keras.backend.clear_session()


def _tiny_vgg(**overrides):
    config = {"num_classes": 5, "input_shape": (224, 224, 3), **TINY_WIDTHS, **overrides}
    model = vgg16(**config)
    for w in model.weights:  # nonzero biases, so a copied bias shows
        w.assign(np.random.default_rng(len(w.path)).standard_normal(w.shape).astype("float32"))
    return model


def _assert_fc6_computes_fc1(fcn_model, reference):
    """fc6 over a 7x7 pool5 map gives fc1 of the flattened map (channels-last flattening)."""
    pool5 = np.random.default_rng(0).random((1, 7, 7, 16), dtype="float32")
    fc6 = np.asarray(fcn_model.get_layer("fc6")(pool5))[0, 0, 0]
    fc1 = reference.get_layer("fc1")
    if isinstance(fc1, keras.layers.Dense):
        expected = np.asarray(fc1(pool5.reshape(1, -1)))[0]
    else:
        expected = np.asarray(fc1(pool5))[0, 0, 0]
    np.testing.assert_allclose(fc6, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("source", ["model", ".keras", ".weights.h5", "fully_convolutional.weights.h5"])
def test_backbone_copy_sources(source, tmp_path):
    reference = _tiny_vgg(fully_convolutional=source.startswith("fully"))
    backbone = reference
    if source == ".keras":
        backbone = str(tmp_path / "vgg16.keras")
        reference.save(backbone)
    elif source.endswith(".weights.h5"):
        backbone = str(tmp_path / "vgg16.weights.h5")
        reference.save_weights(backbone)
    model = fcn16s(num_classes=3, input_shape=(None, None, 3), **TINY_WIDTHS, backbone_weights=backbone)
    for layer_name in ("block1_conv1", "block5_conv3"):
        ours, theirs = model.get_layer(layer_name).weights, reference.get_layer(layer_name).weights
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    fc7, fc2 = model.get_layer("fc7"), reference.get_layer("fc2")
    np.testing.assert_array_equal(fc7.bias.numpy(), fc2.bias.numpy())
    _assert_fc6_computes_fc1(model, reference)


def test_backbone_errors(tmp_path):
    headless = vgg16(include_top=False, input_shape=(32, 32, 3), **TINY_WIDTHS)
    with pytest.raises(ValueError, match=r"backbone_weights=<keras.Model 'vgg16'> has no layer 'fc1'"):
        fcn8s(num_classes=3, input_shape=(32, 32, 3), **TINY_WIDTHS, backbone_weights=headless)
    path = str(tmp_path / "headless.weights.h5")
    headless.save_weights(path)
    with pytest.raises(ValueError, match=r"backbone_weights='.*headless.weights.h5' holds 13"):
        fcn8s(num_classes=3, input_shape=(32, 32, 3), **TINY_WIDTHS, backbone_weights=path)
    wider = _tiny_vgg(fc_units=32)
    with pytest.raises(ValueError, match=r"backbone_weights=<keras.Model 'vgg16'> does not fit.*'fc1'"):
        fcn8s(num_classes=3, input_shape=(32, 32, 3), **TINY_WIDTHS, backbone_weights=wider)
    with pytest.raises(ValueError, match="backbone_weights and weights are not allowed together"):
        fcn8s(input_shape=(32, 32, 3), **TINY_WIDTHS, backbone_weights=wider, weights=wider)


def test_full_weights_round_trip(tmp_path):
    model = tiny("fcn8s", input_shape=(None, None, 3))
    x = np.random.default_rng(0).random((1, 37, 50, 3), dtype="float32")
    path = str(tmp_path / "fcn8s.weights.h5")
    model.save_weights(path)
    for weights in (path, model):
        copy = tiny("fcn8s", input_shape=(None, None, 3), weights=weights)
        np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(model(x)))
    # another configuration: a model is checked variable by variable, a file by Keras
    with pytest.raises(ValueError, match=r"weights=<keras.Model 'fcn8s'> does not fit model 'fcn16s'"):
        tiny("fcn16s", input_shape=(None, None, 3), weights=model)
    with pytest.raises(ValueError, match=r"weights='.*fcn8s.weights.h5' does not fit model 'fcn8s'"):
        tiny("fcn8s", input_shape=(None, None, 3), num_classes=4, weights=path)
