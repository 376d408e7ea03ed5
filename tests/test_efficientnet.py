"""EfficientNet B0-B7: compound scaling, counts and weights shared with keras.applications,
the MBConv layers, and clear errors. The registry-wide contract (tests/test_contract.py) runs
every check on the tiny configurations."""

import keras
import numpy as np
import pytest

from kapps import registry, testing
from kapps.layers.mbconv import MBConvBlock, SqueezeExcitation, StochasticDepth, swish
from kapps.models.classification.efficientnet import (
    BASE_STAGES,
    IMAGENET_INPUT_SCALE,
    IMAGENET_MEAN_RGB,
    IMAGENET_STDDEV_RGB,
    efficientnet,
    efficientnet_b0,
    efficientnet_b1,
    round_filters,
    round_repeats,
    scaled_stages,
)

TINY = {"input_shape": (32, 32, 3), "num_classes": 10, "width_coefficient": 0.1, "depth_coefficient": 0.25}

#: keras.applications.EfficientNetB0..B7(weights=None): (total, trainable), measured with
#: Keras 3.15; both include the 7-value input Normalization.
KERAS_APPLICATIONS = {
    "b0": (5_330_571, 5_288_548),
    "b1": (7_856_239, 7_794_184),
    "b2": (9_177_569, 9_109_994),
    "b3": (12_320_535, 12_233_232),
    "b4": (19_466_823, 19_341_616),
    "b5": (30_562_527, 30_389_784),
    "b6": (43_265_143, 43_040_704),
    "b7": (66_658_687, 66_347_960),
}


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def randomize(model, seed=0):
    """Give every non-kernel variable of ``model`` a random value (kernels are already random
    at their initializers' scale; positive variances), so a weight transfer cannot pass by
    accident; refresh Normalization's snapshot."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.path.endswith("kernel"):
            continue
        if "variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.05, shape)
        w.assign(value.astype("float32"))
    finalize_normalization(model)


def finalize_normalization(model):
    """Refresh the snapshot that Normalization layers compute from after their variables change."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def max_difference(ours, reference, x):
    """Largest absolute difference of the outputs and of every stage's first block (whose
    output is keras.applications' ``block{i}a_project_bn``): untrained networks in inference
    mode fade the input's signal to ~1e-5 at the top, so the comparison also looks where the
    input still matters."""
    names = [f"block{i}a" for i in range(2, 8)]
    ours_features = keras.Model(ours.input, [ours.get_layer(n).output for n in names] + [ours.output])
    reference_features = keras.Model(
        reference.input, [reference.get_layer(f"{n}_project_bn").output for n in names] + [reference.output]
    )
    pairs = list(zip(ours_features(x, training=False), reference_features(x, training=False)))
    other = images(seed=99)
    assert np.abs(numpy(reference_features(other)[0]) - numpy(pairs[0][1])).max() > 1e-2
    return max(np.abs(numpy(a) - numpy(b)).max() for a, b in pairs)


def images(seed=0, batch=2):
    return (np.random.default_rng(seed).random((batch, 32, 32, 3)) * 255).astype("float32")


@pytest.fixture(scope="module")
def reference_b0():
    """keras.applications.EfficientNetB0 with a 10-class top at 32x32, random weights (the
    model, its files and every other variant with a top: tests/test_transfer.py)."""
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10)
    randomize(model)
    return model


@pytest.fixture(scope="module")
def reference_b1():
    """keras.applications.EfficientNetB1 without top, average pooling, random weights."""
    model = keras.applications.EfficientNetB1(
        weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg"
    )
    randomize(model, seed=1)
    return model


# ----------------------------------------------------------------------------- scaling


def test_compound_scaling_generates_the_variants():
    assert scaled_stages(1.0, 1.0) == BASE_STAGES
    # Width: nearest multiple of 8, never more than 10% down (B2's 40 -> 44 -> 48).
    assert [round_filters(f, 1.1) for f in (32, 40, 1280)] == [32, 48, 1408]
    assert [round_filters(f, 2.0) for f in (32, 16, 1280)] == [64, 32, 2560]
    assert round_filters(16, 0.1) == 8
    # Depth: repeats rounded up; B7 has 55 blocks, B0 16.
    assert [round_repeats(n, 3.1) for n in (1, 2, 2, 3, 3, 4, 1)] == [4, 7, 7, 10, 10, 13, 4]
    assert sum(stage[-1] for stage in scaled_stages(1.0, 1.0)) == 16
    assert sum(stage[-1] for stage in scaled_stages(2.0, 3.1)) == 55
    model = efficientnet_b0(**TINY)
    blocks = [layer.name for layer in model.layers if isinstance(layer, MBConvBlock)]
    assert blocks == [f"block{i}a" for i in range(1, 8)]


def test_registry_pins_the_keras_applications_counts():
    # tests/test_registry.py builds every canonical model and checks it against these figures
    for key, (total, trainable) in KERAS_APPLICATIONS.items():
        spec = registry.get_spec(f"efficientnet_{key}")
        assert (spec.params, spec.trainable_params, spec.published_params) == (total, trainable, total)


def test_preprocessing_holds_the_seven_normalization_values():
    with_pre = efficientnet_b0(**TINY)
    without = efficientnet_b0(include_preprocessing=False, **TINY)
    assert with_pre.count_params() - without.count_params() == 7
    assert testing.count_params(with_pre)[1] == testing.count_params(without)[1]
    assert "normalization" not in [layer.name for layer in without.layers]
    # Until set, the Normalization is the identity: inputs are pixels scaled by 1/255.
    x = images()
    without.set_weights([w for w in with_pre.get_weights()[3:]])
    np.testing.assert_allclose(numpy(with_pre(x)), numpy(without(x / 255.0)), atol=1e-6)


# ----------------------------------------------------------------------------- weights


def test_b1_feature_extractor_copies_keras_applications_weights(reference_b1):
    ours = efficientnet_b1(input_shape=(32, 32, 3), include_top=False, pooling="avg", weights=reference_b1)
    assert max_difference(ours, reference_b1, images(seed=1)) <= 1e-4


def test_imagenet_style_reference_keeps_its_extra_rescaling(reference_b0):
    # keras.applications built with weights="imagenet" divides by a per-channel scale after
    # its Normalization; rebuild the random reference the same way (no download here).
    scale = [0.5, 2.0, 4.0]

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if isinstance(layer, keras.layers.Normalization):
            out = keras.layers.Rescaling(scale)(out)
        return out

    imagenet_like = keras.models.clone_model(reference_b0, call_function=call_function)
    imagenet_like.set_weights(reference_b0.get_weights())
    finalize_normalization(imagenet_like)  # (auto-named: normalization_1 after reference_b1's)
    ours = efficientnet_b0(input_shape=(32, 32, 3), num_classes=10, weights=imagenet_like)
    assert ours.get_layer("imagenet_stddev_rescaling").scale == scale
    assert max_difference(ours, imagenet_like, images()) <= 1e-4
    assert max_difference(ours, reference_b0, images()) > 1e-2


def test_weights_file_with_imagenet_statistics_gets_the_imagenet_rescaling(tmp_path):
    # A .weights.h5 file cannot hold that Rescaling layer (it has no variables), but the
    # ImageNet statistics keras.applications stores with it (standard deviations as variances)
    # say it was there.
    source = efficientnet_b0(**TINY)
    randomize(source, seed=4)
    mean, variance = source.get_layer("normalization").weights[:2]
    mean.assign(IMAGENET_MEAN_RGB)
    variance.assign(IMAGENET_STDDEV_RGB)

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if isinstance(layer, keras.layers.Normalization):
            out = keras.layers.Rescaling(IMAGENET_INPUT_SCALE, name="stddev_rescaling")(out)
        return out

    imagenet_like = keras.models.clone_model(source, call_function=call_function)
    imagenet_like.set_weights(source.get_weights())
    finalize_normalization(imagenet_like)
    ours = efficientnet_b0(weights=imagenet_like, **TINY)
    ours.save_weights(tmp_path / "imagenet_like.weights.h5")
    loaded = efficientnet_b0(weights=tmp_path / "imagenet_like.weights.h5", **TINY)
    assert loaded.get_layer("imagenet_stddev_rescaling").scale == IMAGENET_INPUT_SCALE
    finalize_normalization(source)

    def stem_and_output(model):  # the stem, where the input still matters, and the output
        probe = keras.Model(model.input, [model.get_layer("stem").output, model.output])
        return [numpy(y) for y in probe(images(seed=4))]

    expected = stem_and_output(imagenet_like)
    for got in stem_and_output(loaded), stem_and_output(ours):
        np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
        np.testing.assert_allclose(got[1], expected[1], atol=1e-6)
    without = stem_and_output(source)
    assert np.abs(without[0] - expected[0]).max() > 0.1  # the layer matters


def test_mismatched_references_name_the_first_variable(reference_b0, reference_b1):
    # B1 repeats stage 1 (ceil(1.1 * 1) = 2): its block1b meets B0's block2a.
    first = (
        r"first layer that does not fit is 'block1b_dwconv' of the reference: its variable \d+ of "
        r"\d+, 'block1b_dwconv/kernel' \(3, 3, 16, 1\), where the model has "
        r"'block2a/expand/conv/kernel' \(1, 1, 16, 96\)"
    )
    with pytest.raises(ValueError, match=first):
        efficientnet_b0(input_shape=(32, 32, 3), include_top=False, pooling="avg", weights=reference_b1)
    with pytest.raises(ValueError, match=r"'predictions/kernel'.*nothing \(it ends here\)"):
        efficientnet_b0(input_shape=(32, 32, 3), include_top=False, weights=reference_b0)
    # (keras.applications' Normalization is auto-named: normalization_1 after reference_b1's)
    first = r"'normalization(_\d+)?/mean' \(3,\), where the model has 'stem/conv/kernel'"
    with pytest.raises(ValueError, match=first):
        efficientnet_b0(
            input_shape=(32, 32, 3), num_classes=10, include_preprocessing=False, weights=reference_b0
        )


def test_kapps_weights_round_trip_including_normalization(tmp_path):
    source = efficientnet_b0(**TINY)
    randomize(source, seed=3)
    x = images(seed=3)
    expected = numpy(source(x))
    source.save_weights(tmp_path / "tiny.weights.h5")
    source.save(tmp_path / "tiny.keras")
    for weights in (source, tmp_path / "tiny.weights.h5", str(tmp_path / "tiny.keras")):
        loaded = efficientnet_b0(weights=weights, **TINY)
        # The normalization's mean and variance take effect, not only its variables.
        np.testing.assert_allclose(numpy(loaded(x)), expected, atol=1e-6)
        assert "imagenet_stddev_rescaling" not in [layer.name for layer in loaded.layers]
    with pytest.raises(ValueError, match="weights="):
        efficientnet_b0(weights=tmp_path / "tiny.weights.h5", **{**TINY, "num_classes": 3})
    with pytest.raises(ValueError, match="no such file"):
        efficientnet_b0(weights=tmp_path / "missing.keras", **TINY)


# ----------------------------------------------------------------------------- layers


def test_stochastic_depth_drops_whole_examples_with_scaled_survivors():
    x = np.ones((2000, 2, 2, 3), "float32")
    layer = StochasticDepth(0.25, seed=7)
    np.testing.assert_array_equal(numpy(layer(x)), x)
    np.testing.assert_array_equal(numpy(layer(x, training=False)), x)
    y = numpy(layer(x, training=True))
    per_example = y.reshape(len(x), -1)
    assert np.all(per_example == per_example[:, :1])  # one draw per example
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((per_example[:, 0] == 0).mean() - 0.25) < 0.05
    again = numpy(StochasticDepth(0.25, seed=7)(x, training=True))
    np.testing.assert_array_equal(y, again)  # the layer's seed generator makes it repeatable
    np.testing.assert_array_equal(numpy(StochasticDepth(0.0)(x, training=True)), x)
    assert StochasticDepth.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer.count_params() == 0


def test_squeeze_excitation_gates_channels():
    se = SqueezeExcitation(8, 2, name="se")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    y = numpy(se(x))
    gate = y / x
    assert np.allclose(gate, gate[:, :1, :1, :], atol=1e-5)  # one gate per channel
    assert np.all((gate > 0) & (gate < 1))
    assert se.count_params() == 8 * 2 + 2 + 2 * 8 + 8
    with pytest.raises(ValueError, match="filters=8 does not match the 6 input channels"):
        SqueezeExcitation(8, 2)(np.ones((1, 4, 4, 6), "float32"))


def test_mbconv_block_counts_and_shortcut():
    block = MBConvBlock(16, 24, kernel_size=3, strides=2, expand_ratio=6)
    assert block(np.ones((1, 32, 32, 16), "float32")).shape == (1, 16, 16, 24)
    expanded, squeezed = 96, 4  # 16 * 6, int(16 * 0.25): SE squeezes the *input* filters
    expected = (
        16 * expanded + 4 * expanded  # expand conv + bn (gamma, beta, mean, variance)
        + 9 * expanded + 4 * expanded  # depthwise + bn
        + expanded * squeezed + squeezed + squeezed * expanded + expanded  # SE
        + expanded * 24 + 4 * 24  # projection + bn
    )
    assert block.count_params() == expected and not block.use_residual
    residual = MBConvBlock(8, 8, expand_ratio=1, drop_rate=0.5, seed=1)
    assert residual.expand is None and residual.use_residual
    x = np.random.default_rng(0).normal(size=(64, 4, 4, 8)).astype("float32")
    y = numpy(residual(x, training=True))
    dropped = np.all(np.isclose(y, x), axis=(1, 2, 3))  # branch dropped: the input passes
    assert 0 < dropped.sum() < len(x)
    assert MBConvBlock(8, 8, se_ratio=0).se is None
    assert residual.activation is swish and MBConvBlock(8, 8, activation="silu").activation is swish


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strides": 3}, "strides=3"),
        ({"se_ratio": 1.5}, r"se_ratio=1\.5"),
        ({"drop_rate": 1.0}, r"drop_rate=1\.0"),
        ({"expand_ratio": 0}, "expand_ratio=0"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_mbconv_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MBConvBlock(8, 8, **kwargs)


def test_mbconv_checks_input_channels():
    with pytest.raises(ValueError, match="input_filters=8 does not match the 4 input channels"):
        MBConvBlock(8, 8)(np.ones((1, 8, 8, 4), "float32"))


def test_deeper_model_has_linear_stochastic_depth_and_passes_the_contract(tmp_path):
    overrides = {**TINY, "depth_coefficient": 0.5, "seed": 0}
    model = efficientnet_b0(**overrides)
    blocks = [layer for layer in model.layers if isinstance(layer, MBConvBlock)]
    assert len(blocks) == 10
    rates = {b.name: b.stochastic_depth.rate for b in blocks if b.stochastic_depth is not None}
    # Block b of 10 drops with 0.2 * b / 10 (Section 5.2); only residual blocks have one.
    assert rates == pytest.approx({"block4b": 0.08, "block5b": 0.12, "block6b": 0.16})
    testing.check_model_contract(
        "efficientnet_b0",
        overrides=overrides,
        checks=("output_shapes", "gradients", "config", "keras_roundtrip"),
        directory=tmp_path,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width_coefficient": 0}, "width_coefficient=0"),
        ({"depth_coefficient": -1.0}, r"depth_coefficient=-1\.0"),
        ({"input_shape": (16, 16, 3)}, r"input_shape=\(16, 16, 3\).*at least 32"),
        ({"include_preprocessing": "yes"}, "include_preprocessing='yes'"),
        ({"dropout": 1.0}, r"dropout=1\.0"),
        ({"drop_connect_rate": -0.1}, r"drop_connect_rate=-0\.1"),
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"classifier_activation": "sofmax"}, "classifier_activation='sofmax'"),
        ({"seed": 1.5}, r"seed=1\.5"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"weights": 123}, "weights=123"),
    ],
)
def test_efficientnet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        efficientnet_b0(**{**TINY, **kwargs})


def test_generic_builder_and_names():
    model = efficientnet(0.1, 0.25, num_classes=3, input_shape=(None, None, 3), name="mine")
    assert model.name == "mine" and model.output_shape == (None, 3)
    assert efficientnet_b0(include_top=False, **TINY).output_shape == (None, 1, 1, 128)
    assert efficientnet_b1.__name__ == "efficientnet_b1" and "EfficientNet-B1" in efficientnet_b1.__doc__
    with pytest.raises(ValueError, match="activation=None"):
        efficientnet(activation=None, **TINY)
