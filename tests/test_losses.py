"""kapps.losses against NumPy on small hand-made arrays, per-pixel weights through fit, and the
U-Net weight map against a brute-force reference."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from kapps import losses

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 4, size=(2, 5, 6))  # classes 0..2, 3 = void
LOGITS = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32)
PROBS = tf.nn.softmax(LOGITS).numpy()
WEIGHTS = [0.5, 2.0, 1.0]


def _np_crossentropy(labels, probs, class_weights=None, ignore=None, pixel_weights=None):
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    safe = np.where(valid, labels, 0)
    loss = -np.log(np.take_along_axis(probs, safe[..., None], -1)[..., 0])
    if class_weights is not None:
        loss = loss * np.asarray(class_weights)[safe]
    if pixel_weights is not None:
        loss = loss * pixel_weights
    return loss[valid].sum() / valid.sum()


def _np_dice_loss(labels, probs, class_weights=None, ignore=None, smooth=1.0):
    num_classes = probs.shape[-1]
    valid = (np.ones(labels.shape, bool) if ignore is None else labels != ignore)[..., None]
    onehot = (labels[..., None] == np.arange(num_classes)) * valid
    p = probs * valid
    dice = (2 * (p * onehot).sum((1, 2)) + smooth) / (p.sum((1, 2)) + onehot.sum((1, 2)) + smooth)
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, float)
    return (1 - (dice * w).sum(-1) / w.sum()).mean()


# ------------------------------------------------------------------------ cross-entropy


def test_weighted_crossentropy_against_numpy():
    loss = losses.WeightedSparseCategoricalCrossentropy(class_weights=WEIGHTS, ignore_class=3)
    expected = _np_crossentropy(LABELS, PROBS, WEIGHTS, ignore=3)
    assert float(loss(LABELS, PROBS)) == pytest.approx(expected, rel=1e-5)
    logits = losses.WeightedSparseCategoricalCrossentropy(
        class_weights=WEIGHTS, ignore_class=3, from_logits=True
    )
    assert float(logits(LABELS[..., None], LOGITS)) == pytest.approx(expected, rel=1e-5)

    # Without class weights it is Keras' own loss with ignore_class.
    plain = losses.WeightedSparseCategoricalCrossentropy(ignore_class=3)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=3)
    assert float(plain(LABELS, PROBS)) == pytest.approx(float(keras_loss(LABELS, PROBS)), rel=1e-6)

    pixel_weights = RNG.random(LABELS.shape).astype(np.float32)
    weighted = float(loss(LABELS, PROBS, sample_weight=pixel_weights))
    assert weighted == pytest.approx(_np_crossentropy(LABELS, PROBS, WEIGHTS, 3, pixel_weights), rel=1e-5)


def test_weighted_crossentropy_reductions_and_sigmoid():
    per_pixel = losses.WeightedSparseCategoricalCrossentropy(ignore_class=3, reduction="none")(LABELS, PROBS)
    assert per_pixel.shape == LABELS.shape
    np.testing.assert_array_equal(per_pixel.numpy()[LABELS == 3], 0.0)
    total = losses.WeightedSparseCategoricalCrossentropy(ignore_class=3, reduction="sum")(LABELS, PROBS)
    assert float(total) == pytest.approx(float(np.sum(per_pixel)), rel=1e-6)

    labels = np.array([[[0, 1], [1, 255]]])
    scores = np.array([[[0.2, 0.7], [0.4, 0.9]]], np.float32)[..., None]
    binary = losses.WeightedSparseCategoricalCrossentropy(class_weights=[1.0, 3.0], ignore_class=255)
    expected = (-np.log(0.8) - 3 * np.log(0.7) - 3 * np.log(0.4)) / 3
    assert float(binary(labels, scores)) == pytest.approx(expected, rel=1e-5)


def test_per_pixel_sample_weights_pass_through_fit():
    """The documented way to train with a U-Net weight map: fit gets (image, mask, weights)
    with weights of shape (batch, h, w), and the loss it reports is the weighted mean."""
    images = RNG.normal(size=(4, 5, 6, 2)).astype(np.float32)
    pixel_weights = RNG.random(LABELS.shape[1:]).astype(np.float32) * np.ones((4, 1, 1), np.float32)
    labels = np.concatenate([LABELS, LABELS])
    inputs = keras.Input((5, 6, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    for loss in (
        losses.WeightedSparseCategoricalCrossentropy(class_weights=WEIGHTS, ignore_class=3),
        keras.losses.SparseCategoricalCrossentropy(ignore_class=3),
    ):
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=loss)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels, pixel_weights)).batch(4)
        history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        probs = model.predict(images, verbose=0)
        class_weights = WEIGHTS if isinstance(loss, losses.WeightedSparseCategoricalCrossentropy) else None
        expected = _np_crossentropy(labels, probs, class_weights, ignore=3, pixel_weights=pixel_weights)
        unweighted = _np_crossentropy(labels, probs, class_weights, ignore=3)
        assert history.history["loss"][0] == pytest.approx(expected, rel=1e-4)
        assert abs(expected - unweighted) > 1e-3  # the weights made a difference


# --------------------------------------------------------------------------------- Dice


def test_dice_loss_against_numpy():
    assert float(losses.DiceLoss()(LABELS, PROBS)) == pytest.approx(_np_dice_loss(LABELS, PROBS), rel=1e-5)
    loss = losses.DiceLoss(class_weights=WEIGHTS, ignore_class=3, smooth=0.5)
    expected = _np_dice_loss(LABELS, PROBS, WEIGHTS, ignore=3, smooth=0.5)
    assert float(loss(LABELS, PROBS)) == pytest.approx(expected, rel=1e-5)
    logits = losses.DiceLoss(from_logits=True, class_weights=WEIGHTS, ignore_class=3, smooth=0.5)
    assert float(logits(LABELS[..., None], LOGITS)) == pytest.approx(expected, rel=1e-5)


def test_dice_loss_ignored_channel_binary_and_perfect_predictions():
    # A void class that is also an output channel gets weight 0 and its pixels are left out.
    probs4 = tf.nn.softmax(RNG.normal(size=(2, 5, 6, 4))).numpy()
    loss = losses.DiceLoss(ignore_class=3)
    # Channel 3 never counts: the Dice of channels 0..2 over the labelled pixels.
    valid = (LABELS != 3)[..., None]
    onehot = (LABELS[..., None] == np.arange(3)) * valid
    p = probs4[..., :3] * valid
    dice = (2 * (p * onehot).sum((1, 2)) + 1) / (p.sum((1, 2)) + onehot.sum((1, 2)) + 1)
    expected = (1 - dice.mean(-1)).mean()
    assert float(loss(LABELS, probs4)) == pytest.approx(expected, rel=1e-5)

    labels = np.array([[[0, 1, 1, 0]]])
    scores = np.array([[[0.1, 0.8, 0.6, 0.3]]], np.float32)[..., None]
    binary = losses.DiceLoss(smooth=0.0)(labels, scores)
    assert float(binary) == pytest.approx(1 - 2 * 1.4 / (1.8 + 2), rel=1e-5)

    perfect = np.eye(3, dtype=np.float32)[np.where(LABELS == 3, 0, LABELS)]
    labels = np.where(LABELS == 3, 0, LABELS)
    assert float(losses.DiceLoss(smooth=0.0)(labels, perfect)) == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_has_gradients():
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        value = losses.DiceLoss(from_logits=True, ignore_class=3)(LABELS, logits)
    gradient = tape.gradient(value, logits).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0
    np.testing.assert_array_equal(gradient[LABELS == 3], 0.0)  # void pixels do not pull


# ------------------------------------------------------------------------------ configs


def test_loss_configs_round_trip_and_errors():
    for loss in (
        losses.WeightedSparseCategoricalCrossentropy(class_weights=WEIGHTS, ignore_class=3, from_logits=True),
        losses.DiceLoss(from_logits=True, class_weights=WEIGHTS, ignore_class=3, smooth=0.5, reduction="sum"),
    ):
        config = loss.get_config()
        serialized = keras.saving.serialize_keras_object(loss)
        assert serialized["registered_name"].startswith("kapps>")
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is type(loss) and restored.get_config() == config
        assert float(restored(LABELS, LOGITS)) == pytest.approx(float(loss(LABELS, LOGITS)))
    assert set(losses.DiceLoss().get_config()) >= {
        "from_logits", "class_weights", "ignore_class", "smooth", "reduction", "name", "dtype"
    }
    with pytest.raises(ValueError, match="class_weights=\\[1, -1\\]"):
        losses.DiceLoss(class_weights=[1, -1])
    with pytest.raises(ValueError, match="smooth=-1"):
        losses.DiceLoss(smooth=-1)
    with pytest.raises(ValueError, match="reduction='mean_with_sample_weight'"):
        losses.WeightedSparseCategoricalCrossentropy(reduction="mean_with_sample_weight")
    with pytest.raises(ValueError, match="class_weights has 2 entries but y_pred has 3"):
        losses.WeightedSparseCategoricalCrossentropy(class_weights=[1, 2])(LABELS, PROBS)


# ------------------------------------------------------------------------ U-Net weights


def _reference_weight_map(mask, w0, sigma, object_label):
    """Equation 2 with whole-image distance maps for every object."""
    classes, counts = np.unique(mask, return_counts=True)
    wc = {c: mask.size / (len(classes) * n) for c, n in zip(classes, counts)}
    weights = np.vectorize(wc.get)(mask).astype(float)
    labels, count = ndimage.label(mask == object_label)
    distances = np.sort(
        np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, count + 1)]), axis=0
    )
    border = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    return weights + np.where(mask == object_label, 0.0, border)


def _cells(size=64):
    """Background 0 with three 'cells' (1): two separated by a 2-pixel gap, one far away."""
    mask = np.zeros((size, size), np.int32)
    mask[5:25, 5:20] = 1
    mask[5:25, 22:40] = 1
    mask[40:60, 40:60] = 1
    return mask


def test_unet_weight_map_matches_equation_2():
    mask = _cells()
    weights = losses.unet_weight_map(mask, w0=10.0, sigma=5.0)
    assert weights.shape == mask.shape and weights.dtype == np.float32
    np.testing.assert_allclose(weights, _reference_weight_map(mask, 10.0, 5.0, 1), atol=1e-4)
    # In the gap (columns 20, 21) between the touching cells: d1 = 1, d2 = 2 at column 20.
    wc_background = mask.size / (2 * (mask == 0).sum())
    assert weights[15, 20] == pytest.approx(wc_background + 10.0 * np.exp(-9 / 50), rel=1e-4)
    assert weights[2, 60] < wc_background + 1e-3  # far from any pair of cells
    np.testing.assert_allclose(weights[mask == 1], mask.size / (2 * (mask == 1).sum()), rtol=1e-6)

    plain = losses.unet_weight_map(mask, class_balance=False)
    np.testing.assert_allclose(plain[mask == 1], 1.0)
    one_cell = np.zeros((32, 32), np.int32)
    one_cell[4:10, 4:10] = 1
    # One object, no pair: no border term.
    np.testing.assert_allclose(losses.unet_weight_map(one_cell, class_balance=False), 1.0)
    balanced = losses.unet_weight_map(one_cell, w0=0.0)
    assert balanced.mean() == pytest.approx(1.0, rel=1e-6)  # w_c averages to 1
    # Narrow sigma: each object's distance map covers only a window around it.
    np.testing.assert_allclose(
        losses.unet_weight_map(mask, sigma=1.5), _reference_weight_map(mask, 10.0, 1.5, 1), atol=1e-4
    )
    inverted = losses.unet_weight_map(1 - mask, sigma=3.0, object_label=0)
    np.testing.assert_allclose(inverted, _reference_weight_map(1 - mask, 10.0, 3.0, 0), atol=1e-4)


def test_unet_weight_map_on_isbi_labels(data_dir):
    raw = tf.io.decode_png(tf.io.read_file(os.fspath(data_dir / "isbi2012" / "train" / "label" / "0.png")))
    mask = (raw.numpy()[..., 0] < 128).astype(np.int32)  # kapps.data.isbi2012: 1 = membrane
    weights = losses.unet_weight_map(mask, object_label=0)  # the cells are the objects
    assert weights.shape == (512, 512)
    membrane = weights[mask == 1]
    assert membrane.mean() > weights[mask == 0].mean()
    assert weights.max() > membrane.min() + 5.0  # thin gaps between cells get the border weight
    assert np.isfinite(weights).all()


def test_unet_weight_map_errors():
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        losses.unet_weight_map(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="sigma=0"):
        losses.unet_weight_map(np.zeros((4, 4)), sigma=0)
    with pytest.raises(ValueError, match="w0=-1"):
        losses.unet_weight_map(np.zeros((4, 4)), w0=-1)


def test_losses_train_under_mirrored_strategy(cpu_strategy):
    images = RNG.normal(size=(4, 5, 6, 2)).astype(np.float32)
    labels = np.concatenate([LABELS, LABELS[::-1]])
    with cpu_strategy.scope():
        inputs = keras.Input((5, 6, 2))
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))  # logits
        loss = losses.WeightedSparseCategoricalCrossentropy(
            class_weights=WEIGHTS, ignore_class=3, from_logits=True
        )
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=loss)
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
    probs = tf.nn.softmax(model.predict(images, verbose=0)).numpy()
    # Each of the two replicas averages over its own labelled pixels (as Keras' ignore_class
    # does); the replicas' losses are then averaged.
    per_replica = [_np_crossentropy(labels[i : i + 2], probs[i : i + 2], WEIGHTS, ignore=3) for i in (0, 2)]
    assert history.history["loss"][0] == pytest.approx(np.mean(per_replica), rel=1e-4)

    with cpu_strategy.scope():
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=losses.DiceLoss(from_logits=True)
        )
    before = model.get_weights()
    model.fit(images, labels % 3, batch_size=4, epochs=1, verbose=0)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights()))


def test_label_smoothing_matches_keras_dense_crossentropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    labels = rng.integers(0, 7, size=(3, 5))
    ours = losses.WeightedSparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    expected = keras_loss(np.eye(7)[labels], logits)
    np.testing.assert_allclose(float(ours(labels, logits)), float(expected), rtol=1e-5)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    from_probs = losses.WeightedSparseCategoricalCrossentropy(label_smoothing=0.1)
    np.testing.assert_allclose(float(from_probs(labels, probs)), float(expected), rtol=1e-4)


def test_label_smoothed_token_loss_leaves_padding_out():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 6)).astype("float32")
    labels = np.array([[3, 4, 0, 0], [5, 2, 1, 0]])
    loss = losses.WeightedSparseCategoricalCrossentropy(
        ignore_class=0, label_smoothing=0.1, from_logits=True
    )
    keep = labels != 0
    dense = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1, reduction="none"
    )(np.eye(6)[labels], logits)
    expected = np.asarray(dense)[keep].mean()
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)
    # what the padded positions predict does not matter
    logits[~keep] = 100.0
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1", True])
def test_label_smoothing_must_be_in_range(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.WeightedSparseCategoricalCrossentropy(label_smoothing=bad)


def test_label_smoothing_survives_get_config():
    loss = losses.WeightedSparseCategoricalCrossentropy(ignore_class=0, label_smoothing=0.1)
    again = losses.WeightedSparseCategoricalCrossentropy.from_config(loss.get_config())
    assert again.label_smoothing == 0.1 and again.ignore_class == 0


def test_predictions_with_a_keras_mask_are_not_normalised_twice():
    # Embedding(mask_zero=True) makes the logits carry the padding mask, as Seq2Seq's do;
    # the loss must still be the mean over real tokens, not inflated by the padding share
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    logits = keras.layers.Dense(6)(keras.layers.Embedding(6, 4, mask_zero=True)(tokens))
    model = keras.Model(tokens, logits)
    loss = losses.WeightedSparseCategoricalCrossentropy(ignore_class=0, from_logits=True)
    model.compile("sgd", loss)
    ids = np.array([[3, 4, 0, 0], [5, 2, 1, 0]], "int32")
    scores = np.asarray(model(ids))
    log_probs = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0][ids != 0].mean()
    np.testing.assert_allclose(model.evaluate(ids, ids, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(ids, scores)), expected, rtol=1e-5)  # no mask
