"""kapps.inference.predict_tiled against whole-image prediction with tiny models."""

import keras
import numpy as np
import pytest

from kapps.inference import predict_tiled

IMAGE = np.random.default_rng(0).random((37, 53, 2)).astype(np.float32)  # not a tile multiple


def _conv_model(tile, layers, padding):
    """A model with a static input tile, and the same layers on a free-size input."""
    convs = [keras.layers.Conv2D(filters, size, padding=padding) for filters, size in layers]
    static_in, free_in = keras.Input((*tile, 2)), keras.Input((None, None, 2))
    static, free = static_in, free_in
    for conv in convs:
        static, free = conv(static), conv(free)
    return keras.Model(static_in, static), keras.Model(free_in, free)


def _whole(model, image):
    return model.predict_on_batch(image[None])[0]


def test_pointwise_model_tiles_exactly():
    model, free = _conv_model((16, 16), [(3, 1)], "same")
    np.testing.assert_allclose(predict_tiled(model, IMAGE), _whole(free, IMAGE), rtol=0, atol=1e-6)
    batch = np.stack([IMAGE, IMAGE[::-1, ::-1]])
    tiled = predict_tiled(model, batch, batch_size=3, overlap=6)
    assert tiled.shape == (2, 37, 53, 3) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled[1], _whole(free, batch[1]), atol=1e-6)


def test_valid_model_uses_overlap_tile_with_mirror_padding():
    # Two valid 3x3 convolutions: 20x20 in, 16x16 out, a 2-pixel border per side.
    model, free = _conv_model((20, 20), [(4, 3), (3, 3)], "valid")
    assert model.output_shape == (None, 16, 16, 3)
    mirrored = np.pad(IMAGE, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    expected = _whole(free, mirrored)  # (37, 53, 3): exactly the image's size
    np.testing.assert_allclose(predict_tiled(model, IMAGE), expected, atol=1e-5)
    # A free-size model with tile_size given: the output tile is found by a probe.
    np.testing.assert_allclose(predict_tiled(free, IMAGE, tile_size=(12, 14)), expected, atol=1e-5)
    np.testing.assert_allclose(
        predict_tiled(free, IMAGE, tile_size=12, output_size=8, batch_size=1), expected, atol=1e-5
    )
    # An image smaller than one output tile still comes back whole.
    small = IMAGE[:5, :7]
    small_expected = _whole(free, np.pad(small, ((2, 2), (2, 2), (0, 0)), mode="reflect"))
    np.testing.assert_allclose(predict_tiled(model, small), small_expected, atol=1e-5)


def test_same_model_keeps_tile_centres():
    _, free = _conv_model((16, 16), [(3, 3)], "same")
    whole = _whole(free, IMAGE)
    # overlap=2 cuts one pixel (the 3x3 kernel's reach) from each tile side: every pixel then
    # sees true image context, or the mirror image at the image border.
    tiled = predict_tiled(free, IMAGE, tile_size=16, overlap=2)
    mirrored = _whole(free, np.pad(IMAGE, ((1, 1), (1, 1), (0, 0)), mode="reflect"))[1:-1, 1:-1]
    np.testing.assert_allclose(tiled, mirrored, atol=1e-5)
    np.testing.assert_allclose(tiled[1:-1, 1:-1], whole[1:-1, 1:-1], atol=1e-5)
    # Without cutting, tile seams (zero padding inside the image) show.
    seams = predict_tiled(free, IMAGE, tile_size=16, overlap=0)
    assert np.abs(seams[1:-1, 1:-1] - whole[1:-1, 1:-1]).max() > 1e-3


def test_predict_tiled_errors():
    model, free = _conv_model((16, 16), [(3, 1)], "same")
    with pytest.raises(ValueError, match=r"shape \(37, 53\)"):
        predict_tiled(model, IMAGE[..., 0])
    with pytest.raises(ValueError, match="3 channels but the model takes 2"):
        predict_tiled(model, np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="tile_size=None"):
        predict_tiled(free, IMAGE)
    with pytest.raises(ValueError, match="overlap=16"):
        predict_tiled(model, IMAGE, overlap=16)
    with pytest.raises(ValueError, match="batch_size=0"):
        predict_tiled(model, IMAGE, batch_size=0)
    with pytest.raises(ValueError, match="tile_size='big'"):
        predict_tiled(model, IMAGE, tile_size="big")
    odd, _ = _conv_model((16, 16), [(3, 2)], "valid")  # 15x15 out: an odd border
    with pytest.raises(ValueError, match="even number of pixels"):
        predict_tiled(odd, IMAGE)


def test_tflite_runner_tiles_like_the_keras_model():
    from kapps import export

    model, _ = _conv_model((20, 20), [(4, 3), (3, 3)], "valid")
    runner = export.load_tflite(export.to_tflite(model))
    expected = predict_tiled(model, IMAGE)
    np.testing.assert_allclose(predict_tiled(runner, IMAGE, tile_size=20, output_size=16), expected, atol=1e-5)
    # the output tile found by a probe call, as for a free-size Keras model
    np.testing.assert_allclose(predict_tiled(runner, IMAGE, tile_size=20), expected, atol=1e-5)
    with pytest.raises(ValueError, match="tile_size=None is not allowed"):
        predict_tiled(runner, IMAGE)
    with pytest.raises(ValueError, match="model=3 is not allowed"):
        predict_tiled(3, IMAGE, tile_size=20)
