"""RealNVP (kapps.models.generative.realnvp, kapps.layers.flows): decoding the encoding gives
the input back (at initialisation and with every weight perturbed), every layer's and the
whole model's log-determinant against the full Jacobian, bits per dimension against NumPy,
the squeeze's layout, argument errors, the sampler's TFLite parity, and the loss falling on a
fixed batch. The tiny model's contract (gradients, .keras, TFLite of the forward pass, a
MirroredStrategy step) runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import export, testing
from kapps.layers.flows import (
    AffineCoupling,
    LogitTransform,
    Squeeze2D,
    checkerboard_mask,
    squeeze2d,
    unsqueeze2d,
)
from kapps.models.generative.realnvp import RealNVP, realnvp, realnvp_flow

#: two scales (squeeze, channel couplings, a factor-out), one residual block per coupling
SMALL = dict(image_shape=(8, 8, 1), num_scales=2, num_res_blocks=1, filters=4)
#: the same without residual blocks: fewer graph operations to trace, export and convert.
#: (The registry's tiny configuration, which tests/test_contract.py checks, has one scale:
#: the multi-scale path's export, gradients and saving are checked here.)
LEAN = dict(SMALL, num_res_blocks=0)


def _images(shape=(8, 8, 1), batch=4, seed=0):
    return np.random.default_rng(seed).random((batch, *shape), dtype="float32")


def _perturb(layer, seed=0, scale=0.05):
    """Add Gaussian noise to every weight, so no coupling is near the identity (the last
    convolutions start near zero). Much more makes the flow so extreme (latents in the
    hundreds) that float32 round trips and float64 determinants lose digits."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(np.asarray(w) + scale * rng.standard_normal(w.shape).astype(w.dtype))


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# -- invertibility ---------------------------------------------------------------------------


def test_decoding_the_encoding_gives_the_input_back():
    keras.utils.set_random_seed(0)
    model = realnvp(**SMALL, seed=0)
    images = _images()
    z, log_det = model.encode(images)
    assert np.abs(_np(model.decode(z)) - images).max() <= 1e-4

    before = _np(z)
    _perturb(model.flow)
    z, log_det = model.encode(images)
    # the perturbed flow is far from the identity: the check below is not trivial
    assert np.abs(_np(z) - before).max() > 0.5
    flow_log_det = _np(model.flow(model.logit(images)[0])["log_det"])
    assert np.abs(flow_log_det).max() > 1.0
    assert np.abs(_np(model.decode(z)) - images).max() <= 1e-4
    # and in logit space, where nothing is squashed by the sigmoid
    y = model.logit(images)[0]
    flow = model.flow_layer
    np.testing.assert_allclose(_np(flow(flow(y)[0], inverse=True)), _np(y), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mask", ["checkerboard", "channel"])
@pytest.mark.parametrize("reverse_mask", [False, True])
def test_coupling_leaves_the_masked_half_unchanged(mask, reverse_mask):
    keras.utils.set_random_seed(0)
    layer = AffineCoupling(4, mask, reverse_mask=reverse_mask, filters=4, num_res_blocks=1)
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 4)).astype("float32")
    layer.build(x.shape)
    _perturb(layer)
    y = _np(layer(x)[0])
    if mask == "checkerboard":
        kept = np.broadcast_to(checkerboard_mask(4, 4, reverse_mask), x.shape) == 1
    else:
        kept = np.zeros(x.shape, bool)
        kept[..., slice(2, 4) if reverse_mask else slice(0, 2)] = True
    np.testing.assert_array_equal(y[kept], x[kept])
    assert np.abs(y[~kept] - x[~kept]).min() > 0
    np.testing.assert_allclose(_np(layer(y, inverse=True)), x, atol=1e-5)


# -- log-determinants against the Jacobian ------------------------------------------------------


def _jacobian_log_det(function, x):
    """``log |det J|`` per example of ``function`` (flattened), from the full Jacobian."""
    x = tf.convert_to_tensor(x)
    # persistent: without pfor, batch_jacobian takes one gradient per output variable
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y, log_det = function(x)
        y = tf.reshape(y, (x.shape[0], -1))
    jacobian = tape.batch_jacobian(y, x, experimental_use_pfor=False)
    jacobian = tf.reshape(jacobian, (x.shape[0], y.shape[1], -1)).numpy()
    assert jacobian.shape[1] == jacobian.shape[2], "not a square Jacobian"
    sign, value = np.linalg.slogdet(jacobian)
    assert np.all(sign != 0)
    return value, _np(log_det)


def _bijections():
    """name -> (layer in float64, input shape) for every bijection; the whole flow
    (``MultiScaleFlow``) is checked inside the whole model below."""
    def coupling(channels, mask, reverse_mask=False):
        return AffineCoupling(
            channels, mask, reverse_mask=reverse_mask, filters=4, num_res_blocks=1,
            dtype="float64",
        )

    return {
        "checkerboard": (coupling(2, "checkerboard"), (4, 4, 2)),
        "checkerboard_reversed": (coupling(2, "checkerboard", True), (4, 4, 2)),
        "channel": (coupling(4, "channel"), (2, 2, 4)),
        "channel_reversed": (coupling(4, "channel", True), (2, 2, 4)),
        "squeeze": (Squeeze2D(dtype="float64"), (4, 4, 1)),
        "logit": (LogitTransform(dtype="float64"), (4, 4, 1)),
    }


@pytest.mark.parametrize("kind", list(_bijections()))
def test_log_det_equals_the_full_jacobian(kind):
    keras.utils.set_random_seed(0)
    layer, shape = _bijections()[kind]
    rng = np.random.default_rng(2)
    if kind == "logit":
        x = rng.random((3, *shape))  # images in [0, 1)
    else:
        x = rng.standard_normal((3, *shape))
    layer.build((3, *shape))
    # (more would make the Jacobian so ill-conditioned that float64 slogdet loses digits)
    _perturb(layer)
    expected, log_det = _jacobian_log_det(layer.forward, x)
    if kind != "squeeze":
        assert np.abs(expected).max() > 0.05, "a near-volume-preserving map tests little"
    np.testing.assert_allclose(log_det, expected, rtol=1e-7, atol=1e-7)


def test_model_log_det_equals_the_full_jacobian():
    # the whole model (logit transform and flow) in float64: floatx sets the inputs' dtype,
    # the global policy every layer's
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        keras.utils.set_random_seed(0)
        model = realnvp(image_shape=(4, 4, 1), num_scales=2, num_res_blocks=0, filters=4)
        _perturb(model.flow)
        images = np.random.default_rng(3).random((3, 4, 4, 1))
        def forward(x):
            out = model(x)
            return out["latent"], out["log_det"]

        expected, log_det = _jacobian_log_det(forward, images)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    np.testing.assert_allclose(log_det, expected, rtol=1e-7, atol=1e-7)


# -- bits per dimension -----------------------------------------------------------------------


def _identity(model):
    """Zero the last convolution of every s/t network: s = t = 0, every coupling the identity."""
    for layer in model.flow_layer.coupling_layers:
        for w in layer.net.conv_out.weights:
            w.assign(np.zeros(w.shape, w.dtype))


def test_bits_per_dim_against_numpy_for_a_standard_normal_latent():
    model = realnvp(**SMALL, seed=0)
    _identity(model)
    images = _images(batch=3)
    alpha, d = 0.05, images[0].size
    # independent: the density of v = (pixel + 1/2) / 256 in [0, 1) through the logit alone
    # (the flow is the identity, so the logits are the standard-normal latent), then the
    # discrete model's bits: -log p(pixel) = -log p_v(v) + D log 256
    v = (images * 255 + 0.5) / 256
    p = alpha + (1 - 2 * alpha) * v
    y = np.log(p) - np.log1p(-p)
    log_normal = (-0.5 * y**2 - 0.5 * np.log(2 * np.pi)).sum(axis=(1, 2, 3))
    log_dy_dv = (np.log(1 - 2 * alpha) - np.log(p) - np.log1p(-p)).sum(axis=(1, 2, 3))
    expected = (-(log_normal + log_dy_dv) + d * np.log(256)) / (d * np.log(2))
    np.testing.assert_allclose(_np(model.encode(images)[0]), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(model.bits_per_dim(images)), expected, rtol=1e-5)
    np.testing.assert_allclose(_np(model.log_prob(images)), -expected * d * np.log(2), rtol=1e-5)
    # dequantised: one noise draw per image, the same formula at other points of each bin
    noisy = _np(model.bits_per_dim(images, dequantize=True))
    assert not np.allclose(noisy, expected) and np.abs(noisy - expected).max() < 0.1


def test_bits_per_dim_of_a_trained_looking_flow_uses_the_forward_log_det():
    # bits_per_dim runs the logit transform and the flow itself; here its result is
    # recomputed from the forward pass's outputs in the [0, 1) scale of v = (pixel + u) / 256:
    # log p_v = log N(z) + log |dz/dv|, bits = (-log p_v + D log 256) / (D ln 2)
    keras.utils.set_random_seed(0)
    model = realnvp(**SMALL, seed=0)
    _perturb(model.flow)
    images = _images(batch=2)
    z, log_det = (_np(t) for t in model.encode(images))
    d = images[0].size
    # log_det is with respect to x = pixel / 255; with respect to v = (pixel + u) / 256 it is
    # log_det + D log(256 / 255)
    log_normal = (-0.5 * z**2 - 0.5 * np.log(2 * np.pi)).sum(axis=(1, 2, 3))
    log_p_v = log_normal + log_det + d * np.log(256 / 255)
    expected = (-log_p_v + d * np.log(256)) / (d * np.log(2))
    np.testing.assert_allclose(_np(model.bits_per_dim(images)), expected, rtol=1e-5)


# -- squeeze ----------------------------------------------------------------------------------


def test_squeeze_layout_and_round_trip():
    x = np.random.default_rng(4).standard_normal((2, 6, 4, 3)).astype("float32")
    y = _np(squeeze2d(x))
    assert y.shape == (2, 3, 2, 12)
    for dy in range(2):
        for dx in range(2):
            k = (2 * dy + dx) * 3
            np.testing.assert_array_equal(y[..., k:k + 3], x[:, dy::2, dx::2, :])
    np.testing.assert_array_equal(_np(unsqueeze2d(y)), x)
    np.testing.assert_array_equal(_np(tf.nn.space_to_depth(x, 2)), y)
    layer = Squeeze2D()
    out, log_det = layer(x)
    np.testing.assert_array_equal(_np(out), y)
    np.testing.assert_array_equal(_np(log_det), np.zeros(2))
    np.testing.assert_array_equal(_np(layer(out, inverse=True)), x)
    with pytest.raises(ValueError, match="cannot be squeezed"):
        layer(np.zeros((1, 3, 4, 1), "float32"))
    with pytest.raises(ValueError, match="cannot be unsqueezed"):
        layer(np.zeros((1, 2, 2, 3), "float32"), inverse=True)


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_shape": (28, 28)}, r"image_shape=\(28, 28\)"),
        ({"image_shape": (None, 8, 1)}, r"image_shape=\(None, 8, 1\)"),
        (
            {"image_shape": (28, 28, 1), "num_scales": 4},
            r"num_scales=4 does not fit image_shape=\(28, 28, 1\).*divisible by 8",
        ),
        ({"num_scales": 0}, "num_scales=0"),
        ({"num_res_blocks": -1}, "num_res_blocks=-1"),
        ({"filters": 0}, "filters=0"),
        ({"alpha": 0.5}, "alpha=0.5"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"name": ""}, "name=''"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        realnvp(**{**SMALL, **kwargs})


def test_bad_layer_arguments_and_refused_compile_options():
    with pytest.raises(ValueError, match="mask='diagonal'"):
        AffineCoupling(2, "diagonal")
    with pytest.raises(ValueError, match="channels=3 is not allowed with mask='channel'"):
        AffineCoupling(3, "channel")
    with pytest.raises(ValueError, match="channels=2 does not match"):
        coupling = AffineCoupling(2, "checkerboard", filters=4, num_res_blocks=0)
        coupling(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="num_res_blocks=-2"):
        AffineCoupling(2, "checkerboard", num_res_blocks=-2)
    with pytest.raises(ValueError, match="filters=0"):
        realnvp_flow((8, 8, 1), filters=0)
    with pytest.raises(ValueError, match="alpha=0"):
        LogitTransform(alpha=0)
    with pytest.raises(ValueError, match="num_bins=1"):
        LogitTransform(num_bins=1)
    with pytest.raises(ValueError, match="flow=.*realnvp_flow"):
        RealNVP(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Identity()]))
    model = realnvp(**SMALL)
    with pytest.raises(ValueError, match="temperature=0"):
        model.sampler(temperature=0)
    with pytest.raises(ValueError, match="loss='mse' is not allowed"):
        model.compile(optimizer="adam", loss="mse")


# -- sampling and export ----------------------------------------------------------------------


def test_sampler_matches_decode_and_tflite():
    keras.utils.set_random_seed(0)
    model = realnvp(**LEAN, seed=0)
    _perturb(model.flow)
    sampler = model.sampler(temperature=0.8)
    assert [t.name for t in sampler.inputs] == ["noise"]
    noise = model.noise(4, seed=1)
    images = _np(sampler(noise))
    assert images.shape == (4, 8, 8, 1) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_allclose(images, _np(model.decode(0.8 * noise)), atol=1e-6)
    samples = model.sample(3, seed=1, temperature=0.8)
    np.testing.assert_allclose(samples, images[:3], atol=1e-6)
    flatbuffer = export.to_tflite(sampler)  # builtin ops only, or it raises
    assert export.tflite_parity(sampler, flatbuffer, noise) <= 1e-4


def test_two_scale_model_gradients_and_keras_round_trip(tmp_path):
    model = realnvp(**LEAN, seed=0)
    images = _images()
    testing.check_gradients(model, images)
    testing.check_keras_roundtrip(model, images, directory=tmp_path)


# -- training ---------------------------------------------------------------------------------


def test_a_few_steps_lower_the_bits_per_dim():
    keras.utils.set_random_seed(0)
    model = realnvp(**LEAN, seed=0)
    # a fixed batch with structure to learn: smooth blobs, most pixels near 0
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    centres = np.random.default_rng(5).uniform(2, 6, size=(16, 2))
    images = np.exp(-((rows - centres[:, :1, None]) ** 2 + (cols - centres[:, 1:, None]) ** 2) / 4)
    images = np.round(images[..., None] * 255).astype("float32") / 255
    labels = np.zeros(16, "int32")
    before = float(np.mean(_np(model.bits_per_dim(images))))
    # eagerly: tracing the step would cost more than these few steps (fit's compiled path,
    # under MirroredStrategy, is the contract's distributed step)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    history = model.fit(images, labels, batch_size=16, epochs=4, verbose=0)
    assert set(history.history) == {"loss", "bits_per_dim"}
    np.testing.assert_allclose(history.history["loss"], history.history["bits_per_dim"], rtol=1e-6)
    after = float(np.mean(_np(model.bits_per_dim(images))))
    assert after < before - 1.0, (before, after)
    evaluated = model.evaluate(images, labels, batch_size=16, verbose=0, return_dict=True)
    assert abs(evaluated["bits_per_dim"] - after) < 0.1
