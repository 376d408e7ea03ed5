"""DCGAN: the paper's and the PyTorch example's architectures (shapes, exact counts), argument
errors, the adversarial losses checked against NumPy on fixed weights, which optimizer updates
which network, the conditional path, the saved composite and the sampler's TFLite parity. The
tiny model's full contract (gradients, TFLite of the forward pass, a MirroredStrategy step)
runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import export, registry
from kapps.models.generative.gan import (
    DCGAN,
    dcgan,
    dcgan_discriminator,
    dcgan_generator,
    replica_normal,
)

TINY = registry.tiny_overrides("dcgan")  # conditional, 8x8x1, ten classes


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _data(model, batch=4, seed=0):
    return model.training_batch(batch, seed=seed)


def _softplus(x):
    return np.logaddexp(0.0, x)


# -- architecture ---------------------------------------------------------------------------


def test_figure1_generator_shapes_and_pytorch_example_counts():
    with keras.StatelessScope(initialize_variables=False):
        paper = dcgan()
        pytorch = dcgan(
            generator_filters=(512, 256, 128, 64), discriminator_filters=(64, 128, 256, 512)
        )
    shapes = [
        tuple(paper.generator.get_layer(name).output.shape[1:])
        for name in ("generator_reshape", "generator_block1_deconv", "generator_block2_deconv",
                     "generator_block3_deconv", "generator_output")
    ]
    # Figure 1: 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3
    assert shapes == [(4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128), (64, 64, 3)]
    flatten = paper.discriminator.get_layer("discriminator_flatten")
    assert tuple(flatten.input.shape[1:]) == (4, 4, 1024)
    # PyTorch's examples/dcgan (ngf = ndf = 64) prints these trainable counts
    assert _trainable(pytorch.generator) == 3_576_704
    assert _trainable(pytorch.discriminator) == 2_765_568
    # no BatchNorm on the generator's output nor on the discriminator's input layer
    bn = [layer.name for layer in paper.discriminator.layers if "bn" in layer.name]
    assert "discriminator_block1_bn" not in bn and len(bn) == 3
    assert not any(layer.name.startswith("generator_output") and "bn" in layer.name
                   for layer in paper.generator.layers)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"image_shape": (28, 28, 1), "generator_filters": (8, 8, 4)},
            r"image_shape=\(28, 28, 1\).*divisible by 2\*\*3 = 8",
        ),
        ({"latent_dim": 0}, "latent_dim=0"),
        ({"generator_filters": ()}, r"generator_filters=\(\)"),
        ({"discriminator_filters": (4, -1)}, r"discriminator_filters=\(4, -1\)"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"image_shape": (8, 8)}, r"image_shape=\(8, 8\)"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"name": ""}, "name=''"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dcgan(**{**TINY, **kwargs})


def test_mismatched_networks_and_compile_arguments_are_refused():
    generator = dcgan_generator(latent_dim=4, image_shape=(8, 8, 1), filters=(4, 4))
    with pytest.raises(ValueError, match="num_classes=10 but the generator has num_classes=None"):
        DCGAN(generator, dcgan_discriminator(image_shape=(8, 8, 1), filters=(4,), num_classes=10))
    with pytest.raises(ValueError, match=r"takes images of shape \(16, 16, 1\)"):
        DCGAN(generator, dcgan_discriminator(image_shape=(16, 16, 1), filters=(4,)))
    model = DCGAN(generator, dcgan_discriminator(image_shape=(8, 8, 1), filters=(4,)))
    with pytest.raises(ValueError, match="loss='mse' is not allowed"):
        model.compile(loss="mse")


def test_default_and_copied_optimizers():
    model = dcgan(**TINY)
    model.compile()
    for optimizer in (model.optimizer, model.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert np.isclose(float(optimizer.learning_rate), 2e-4) and optimizer.beta_1 == 0.5
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    assert model.discriminator_optimizer is not model.optimizer
    assert model.discriminator_optimizer.get_config()["momentum"] == 0.5


# -- generation -----------------------------------------------------------------------------


def test_sampler_range_and_conditioning():
    model = dcgan(**TINY)
    sampler = model.sampler()
    assert [t.name for t in sampler.inputs] == ["noise", "label"]
    noise = np.repeat(model.noise(1, seed=3), 10, axis=0)
    labels = np.arange(10, dtype="int32")
    images = np.asarray(sampler([noise, labels]))
    assert images.shape == (10, 8, 8, 1)
    raw = np.asarray(model.generator([noise, labels], training=False))
    np.testing.assert_allclose(images, (raw + 1) / 2, atol=1e-6)  # tanh [-1, 1] -> [0, 1]
    assert images.min() >= 0.0 and images.max() <= 1.0
    # same noise, different classes: different images
    assert all(np.abs(images[i] - images[0]).max() > 1e-6 for i in range(1, 10))
    np.testing.assert_array_equal(model.sample(10, seed=3, labels=labels)[0], images[0])


def test_replica_noise_differs_between_replicas(cpu_strategy):
    with cpu_strategy.scope():
        generator = keras.random.SeedGenerator(7)
    per_replica = cpu_strategy.run(tf.function(lambda: replica_normal(generator, (2, 3))))
    first, second = (np.asarray(t) for t in cpu_strategy.experimental_local_results(per_replica))
    assert not np.allclose(first, second)


# -- training -------------------------------------------------------------------------------


def test_losses_match_numpy_on_fixed_weights():
    model = dcgan(**TINY, seed=5)
    model.compile()
    images, labels = _data(model)
    # test_step draws its noise from the seed generator's current state (one replica: offset 0)
    seed = np.asarray(model.seed_generator.state).astype("int64")
    noise = np.asarray(tf.random.stateless_normal((4, TINY["latent_dim"]), seed))
    fake = np.asarray(model.generator([noise, labels], training=False))
    fake_logits = np.asarray(model.discriminator([fake, labels], training=False))
    real_logits = np.asarray(model.discriminator([images * 2 - 1, labels], training=False))
    got = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
    # BCE(1, l) = softplus(-l), BCE(0, l) = softplus(l)
    np.testing.assert_allclose(got["g_loss"], _softplus(-fake_logits).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got["d_loss"], _softplus(-real_logits).mean() + _softplus(fake_logits).mean(), rtol=1e-5
    )
    real_score = (1 / (1 + np.exp(-real_logits))).mean()
    np.testing.assert_allclose(got["real_score"], real_score, rtol=1e-5)


@pytest.fixture(scope="module")
def trained():
    """A tiny conditional DCGAN after two training steps: the first with the generator's
    learning rate at 0, the second with the discriminator's at 0 (learning rates are
    variables: one traced train function serves both). Holds the trainable weights before
    and after each step."""
    model = dcgan(**TINY, seed=2)
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), discriminator_optimizer=keras.optimizers.SGD(0.1)
    )
    snapshots, histories = [], []
    for step in range(2):
        if step == 1:
            model.optimizer.learning_rate.assign(0.1)
            model.discriminator_optimizer.learning_rate.assign(0.0)
        before = {w.path: np.array(w) for w in model.trainable_weights}
        history = model.fit(*_data(model, seed=step), batch_size=4, epochs=1, verbose=0)
        histories.append(history.history)
        after = {w.path: np.array(w) for w in model.trainable_weights}
        snapshots.append((before, after))
    return model, snapshots, histories


def test_each_optimizer_updates_its_own_network(trained):
    model, snapshots, histories = trained
    for history in histories:
        assert set(history) == {"d_loss", "g_loss", "real_score", "fake_score"}
        assert all(np.isfinite(v[-1]) for v in history.values())
    # step 1 trains the discriminator only, step 2 the generator only
    for (before, after), updated, frozen in zip(
        snapshots, (model.discriminator, model.generator), (model.generator, model.discriminator)
    ):
        assert all(
            not np.array_equal(before[w.path], after[w.path]) for w in updated.trainable_weights
        )
        assert all(np.array_equal(before[w.path], after[w.path]) for w in frozen.trainable_weights)


def test_trained_model_round_trips_through_keras_file(trained, tmp_path):
    model = trained[0]
    path = tmp_path / "dcgan.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DCGAN) and loaded.num_classes == 10
    # both optimizers come back with their state, so training can resume
    for ours, theirs in (
        (model.optimizer, loaded.optimizer),
        (model.discriminator_optimizer, loaded.discriminator_optimizer),
    ):
        assert type(theirs) is keras.optimizers.SGD and int(theirs.iterations) == 2
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    pairs = ((model.generator, loaded.generator), (model.discriminator, loaded.discriminator))
    for ours, theirs in pairs:
        for a, b in zip(ours.weights, theirs.weights):  # moving statistics included
            np.testing.assert_array_equal(np.array(a), np.array(b))
    noise, labels = model.noise(3, seed=1), np.array([0, 4, 9], "int32")
    np.testing.assert_array_equal(
        np.asarray(model.sampler()([noise, labels])), np.asarray(loaded.sampler()([noise, labels]))
    )


def test_sampler_tflite_matches_keras(trained):
    model = trained[0]  # trained: BatchNorm's moving statistics are not the initial 0 and 1
    sampler = model.sampler()
    inputs = [model.noise(5, seed=4), np.array([1, 2, 3, 8, 9], "int32")]
    assert export.tflite_parity(sampler, export.to_tflite(sampler), inputs) <= 1e-4
