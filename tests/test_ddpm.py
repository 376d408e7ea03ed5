"""DDPM (Ho et al. 2020) with DDIM sampling (Song et al. 2021): the schedule, one step of each
sampler against independent numpy formulas, the U-Net's layers, the training loss, the
compiled sampling loop and the one-graph TFLite sampler. The registry contract (shapes,
gradients, save/load, TFLite, a distributed step) runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest

from kapps import export
from kapps.layers.diffusion import (
    DDIMSampler,
    DiffusionAttention,
    GroupNorm,
    TimestepEmbedding,
    ancestral_step,
    ddim_step,
    ddim_timesteps,
    group_count,
    linear_beta_schedule,
    q_sample,
    timestep_encoding,
)
from kapps.layers.position import sinusoidal_encoding
from kapps.models.generative.ddpm import DDPM, ddpm, ddpm_unet

#: one resolution level (no resampling), base width 4, deterministic (no dropout)
TINY = dict(
    image_shape=(8, 8, 1), base_filters=4, filter_multipliers=(1,), num_res_blocks=1,
    attention_resolutions=(), dropout=0.0,
)
T = 10


def _randomize(model, seed=0, scale=0.2):
    # the layers that end each branch start near zero (Ho et al.'s init_scale=0), so a fresh
    # U-Net predicts ~1e-10 everywhere; random weights make the tests see the network
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in model.weights])
    return model


@pytest.fixture(scope="module")
def model():
    return _randomize(ddpm(**TINY, timesteps=T))


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# -- schedule -------------------------------------------------------------------------------


def test_linear_schedule_matches_numpy():
    schedule = linear_beta_schedule(1000, 1e-4, 0.02)
    betas = schedule["betas"]
    assert betas.shape == (1000,) and betas[0] == 1e-4 and betas[-1] == 0.02
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-9)
    np.testing.assert_array_equal(schedule["alphas"], 1.0 - betas)
    product, expected = 1.0, []
    for beta in betas:
        product *= 1.0 - beta
        expected.append(product)
    np.testing.assert_allclose(schedule["alpha_bars"], expected, rtol=1e-12)
    assert np.all(np.diff(schedule["alpha_bars"]) < 0)
    # x_T is almost pure noise: sqrt(alpha_bar_T) of the image is left
    assert schedule["alpha_bars"][-1] < 1e-4


def test_ddim_timesteps_are_the_linear_skip():
    np.testing.assert_array_equal(ddim_timesteps(1000, 10), np.arange(0, 1000, 100))
    np.testing.assert_array_equal(ddim_timesteps(1000, 3), [0, 333, 666])
    np.testing.assert_array_equal(ddim_timesteps(T, T), np.arange(T))


def test_q_sample_formula():
    rng = np.random.default_rng(1)
    x0, eps = rng.uniform(-1, 1, (3, 4, 4, 2)), rng.standard_normal((3, 4, 4, 2))
    alpha_bar = rng.uniform(0.01, 0.99, (3, 1, 1, 1))
    got = _np(q_sample(x0.astype("float32"), alpha_bar, eps.astype("float32")))
    expected = np.sqrt(alpha_bar) * x0 + np.sqrt(1 - alpha_bar) * eps
    np.testing.assert_allclose(got, expected, atol=1e-6)


# -- one sampler step against numpy -----------------------------------------------------------


def _step_inputs(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    shape = (2, 4, 4, 1)
    return [(scale * rng.standard_normal(shape)).astype("float32") for _ in range(3)]


def test_ancestral_step_is_algorithm_2():
    s = linear_beta_schedule()
    t = 500
    beta, alpha = s["betas"][t], s["alphas"][t]
    ab, ab_prev = s["alpha_bars"][t], s["alpha_bars"][t - 1]
    x_t, eps, z = _step_inputs(0)
    # Algorithm 2, line 4 (sigma_t^2 = beta_t), no clipping
    expected = (x_t - beta / np.sqrt(1 - ab) * eps) / np.sqrt(alpha) + np.sqrt(beta) * z
    got = _np(ancestral_step(x_t, eps, beta, ab, ab_prev, z, clip_denoised=False))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # with clipping (Ho et al.'s code): the posterior mean (eq. 7) at the clipped x0
    x_t = 3 * x_t
    x0 = np.clip((x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab), -1, 1)
    assert np.any(np.abs((x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab)) > 1)  # clipping matters
    mean = beta * np.sqrt(ab_prev) / (1 - ab) * x0 + np.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * x_t
    got = _np(ancestral_step(x_t, eps, beta, ab, ab_prev, z))
    np.testing.assert_allclose(got, mean + np.sqrt(beta) * z, atol=1e-5)


def _numpy_ddim(x_t, eps, ab, ab_prev, eta, z, clip):
    x0 = (x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
    if clip:
        x0 = np.clip(x0, -1, 1)
        eps = (x_t - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)  # eq. 16
    return np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z  # eq. 12


@pytest.mark.parametrize("eta, clip", [(0.0, False), (0.5, False), (0.3, True)])
def test_ddim_step_is_eq_12(eta, clip):
    ab = linear_beta_schedule()["alpha_bars"]
    x_t, eps, z = _step_inputs(1, scale=2.0)
    expected = _numpy_ddim(x_t, eps, ab[600], ab[300], eta, z, clip)
    got = _np(ddim_step(x_t, eps, ab[600], ab[300], eta, z, clip_denoised=clip))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ddim_with_eta_1_is_ddpm_with_posterior_variance():
    s = linear_beta_schedule()
    t = 300
    beta, ab, ab_prev = s["betas"][t], s["alpha_bars"][t], s["alpha_bars"][t - 1]
    x_t, eps, z = _step_inputs(2)
    x0 = (x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
    # q(x_{t-1} | x_t, x0): mean of eq. 7, variance tilde beta_t
    mean = (beta * np.sqrt(ab_prev) * x0 + np.sqrt(1 - beta) * (1 - ab_prev) * x_t) / (1 - ab)
    tilde_beta = (1 - ab_prev) / (1 - ab) * beta
    got = _np(ddim_step(x_t, eps, ab, ab_prev, 1.0, z, clip_denoised=False))
    np.testing.assert_allclose(got, mean + np.sqrt(tilde_beta) * z, atol=1e-5)


# -- layers -----------------------------------------------------------------------------------


def test_time_embedding_is_the_transformer_encoding():
    t = np.array([0, 3, 17, 999], "int32")
    dim = 16
    got = _np(timestep_encoding(t, dim))
    np.testing.assert_allclose(got, _np(sinusoidal_encoding(1000, dim))[t], atol=1e-5)
    i = np.arange(dim // 2)
    angles = t[:, None] / 10000.0 ** (2 * i / dim)  # Vaswani et al., section 3.5
    expected = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(t), dim)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    embed = TimestepEmbedding(dim, 32)
    out = _np(embed(t))
    w0, b0, w1, b1 = (_np(w) for w in embed.weights)
    h = expected @ w0 + b0
    np.testing.assert_allclose(out, (h / (1 + np.exp(-h))) @ w1 + b1, atol=1e-4)


def test_group_norm_matches_keras_group_normalization():
    assert [group_count(c) for c in (3, 8, 32, 64, 128, 384)] == [1, 2, 8, 16, 32, 32]
    x = np.random.default_rng(3).normal(2.0, 3.0, (2, 4, 5, 16)).astype("float32")
    ours = GroupNorm(4)
    reference = keras.layers.GroupNormalization(4, epsilon=1e-6)
    ours.build(x.shape)
    reference.build(x.shape)
    weights = [np.random.default_rng(4).normal(size=16).astype("float32") for _ in range(2)]
    ours.set_weights(weights)
    reference.set_weights(weights)
    np.testing.assert_allclose(_np(ours(x)), _np(reference(x)), atol=1e-5)


def test_attention_matches_numpy():
    x = np.random.default_rng(5).standard_normal((2, 2, 3, 8)).astype("float32")
    layer = DiffusionAttention()
    layer.build(x.shape)
    _randomize(layer, seed=6, scale=0.5)
    gamma, beta, wqkv, bqkv, wo, bo = (_np(w) for w in layer.weights)
    groups = x.reshape(2, 6, 2, 4)  # group_count(8) = 2 groups of 4 channels
    mean = groups.mean(axis=(1, 3), keepdims=True)
    std = np.sqrt(groups.var(axis=(1, 3), keepdims=True) + 1e-6)
    h = ((groups - mean) / std).reshape(2, 6, 8) * gamma + beta
    q, k, v = np.split(h @ wqkv[0, 0] + bqkv, 3, axis=-1)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(8)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = x + ((weights @ v) @ wo[0, 0] + bo).reshape(2, 2, 3, 8)
    np.testing.assert_allclose(_np(layer(x)), expected, atol=1e-4)


def test_unet_levels_attention_and_resampling():
    unet = ddpm_unet((8, 8, 1), base_filters=4, filter_multipliers=(1, 2), num_res_blocks=1,
                     attention_resolutions=(4,))
    names = {layer.name for layer in unet.layers}
    assert {"down1_downsample", "up2_upsample", "down2_attn1", "mid_attn", "up2_attn1",
            "up2_attn2"} <= names
    assert not any(n.startswith(("down1_attn", "up1_attn")) for n in names)  # 8x8: none
    blocks = [n for n in names if "_block" in n]
    assert len(blocks) == 1 * 2 + 2 + 2 * 2  # down, middle, up (one more per level)
    out = unet([np.zeros((2, 8, 8, 1), "float32"), np.array([1, 9], "int32")])
    assert tuple(out.shape) == (2, 8, 8, 1)
    assert tuple(unet.get_layer("down2_attn1").output.shape) == (None, 4, 4, 8)


# -- the model: training loss, sampling loop, TFLite sampler ----------------------------------


def test_train_step_loss_is_the_simple_loss():
    model = _randomize(DDPM(ddpm_unet(**TINY), timesteps=T, seed=7))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(8)
    images = rng.random((4, 8, 8, 1), dtype="float32")
    # the draws train_step makes next: timesteps and noise, from a generator seeded alike
    t, eps = (_np(v) for v in DDPM(ddpm_unet(**TINY), timesteps=T, seed=7).draw_noise((4, 8, 8, 1)))
    assert t.min() >= 0 and t.max() < T and t.dtype == np.int32
    ab = model.alpha_bars[t].reshape(-1, 1, 1, 1)
    x_t = np.sqrt(ab) * (2 * images - 1) + np.sqrt(1 - ab) * eps  # eq. 4 on [-1, 1] images
    predicted = _np(model.denoiser([x_t.astype("float32"), t], training=False))
    before = [np.array(w) for w in model.trainable_weights]
    logs = model.train_step((images, np.zeros(4, "int32")))
    np.testing.assert_allclose(float(logs["loss"]), np.mean((eps - predicted) ** 2), rtol=1e-5)
    assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))


def test_generate_ddim_is_the_step_loop(model):
    noise = model.noise(3, seed=1)
    got = model.generate(noise, steps=4)
    # the timesteps 0, 2, 4, 6 from the last, each step by eq. 12 (clipped x0), in numpy
    ab = model.alpha_bars
    x = noise.astype("float64")
    visited = ddim_timesteps(T, 4)[::-1]
    for i, t in enumerate(visited):
        eps = _np(model.denoiser([x.astype("float32"), np.full(3, t, "int32")]))
        prev = ab[visited[i + 1]] if i + 1 < len(visited) else 1.0
        x = _numpy_ddim(x, eps, ab[t], prev, 0.0, 0.0, clip=True)
    np.testing.assert_allclose(got, np.clip((x + 1) / 2, 0, 1), atol=1e-5)
    # eta = 0 is deterministic: the seed does not matter
    np.testing.assert_array_equal(model.generate(noise, steps=4, seed=5), got)


def test_ancestral_sampling_is_seeded(model):
    noise = model.noise(2, seed=2)
    a = model.generate(noise, method="ancestral", seed=0)
    np.testing.assert_array_equal(a, model.generate(noise, method="ancestral", seed=0))
    b = model.generate(noise, method="ancestral", seed=1)
    assert np.abs(a - b).max() > 1e-3
    assert a.shape == (2, 8, 8, 1) and a.min() >= 0 and a.max() <= 1


def test_sample_batches_do_not_change_ddim_samples(model):
    whole = model.sample(5, seed=3, batch_size=5, steps=3)
    # equal up to rounding (kernels sum in another order at another batch size)
    batched = model.sample(5, seed=3, batch_size=2, steps=3)
    np.testing.assert_allclose(batched, whole, atol=1e-6)
    np.testing.assert_array_equal(model.generate(model.noise(5, seed=3), steps=3), whole)


def test_sampler_tflite_matches_generate(model):
    sampler = model.sampler(steps=2)
    assert [t.name for t in sampler.inputs] == ["noise"]
    noise = model.noise(3, seed=4)
    expected = model.generate(noise, steps=2)
    np.testing.assert_allclose(_np(sampler(noise)), expected, atol=1e-5)
    runner = export.TFLiteRunner(export.to_tflite(sampler))
    np.testing.assert_allclose(runner(noise), expected, atol=1e-4)
    layer = sampler.get_layer("images")  # shares the denoiser's weights, holds its config
    assert layer.denoiser is model.denoiser and sampler.count_params() == model.count_params()
    config = layer.get_config()
    assert DDIMSampler.from_config(config).get_config() == config


# -- argument errors --------------------------------------------------------------------------


def test_argument_errors(model):
    noise = model.noise(1)
    with pytest.raises(ValueError, match=r"steps=11 .*\[1, 10\]"):
        model.generate(noise, steps=11)
    with pytest.raises(ValueError, match=r"steps=0 "):
        model.sampler(steps=0)
    with pytest.raises(ValueError, match=r"method='ddpm' .*'ddim', 'ancestral'"):
        model.generate(noise, method="ddpm")
    for eta in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match=r"eta=.* \[0, 1\]"):
            model.generate(noise, eta=eta)
    with pytest.raises(ValueError, match=r"steps=5 .*ancestral"):
        model.generate(noise, steps=5, method="ancestral")
    with pytest.raises(ValueError, match=r"eta=0.5 .*ancestral"):
        model.generate(noise, method="ancestral", eta=0.5)
    with pytest.raises(ValueError, match=r"noise of shape \(1, 4, 4, 1\)"):
        model.generate(np.zeros((1, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, labels=[0, 1])
    with pytest.raises(ValueError, match="loss="):
        model.compile(optimizer="adam", loss="mse")
    not_reached = r"attention_resolutions=\(3,\) .*\[3\] are not reached.*\(8, 4\)"
    with pytest.raises(ValueError, match=not_reached):
        ddpm_unet((8, 8, 1), base_filters=4, filter_multipliers=(1, 2), attention_resolutions=(3,))
    with pytest.raises(ValueError, match=r"image_shape=\(10, 10, 1\) .*divisible by 4"):
        ddpm_unet((10, 10, 1), base_filters=4, filter_multipliers=(1, 2, 2),
                  attention_resolutions=())
    with pytest.raises(ValueError, match="filter_multipliers=()"):
        ddpm_unet((8, 8, 1), filter_multipliers=())
    with pytest.raises(ValueError, match="beta_start=0.1 .*beta_end=0.02"):
        ddpm(**TINY, beta_start=0.1)
    with pytest.raises(ValueError, match="timesteps=0"):
        ddpm(**TINY, timesteps=0)
    with pytest.raises(ValueError, match="steps=20 .*ddim|steps=20"):
        ddim_timesteps(10, 20)
