"""Prediction for images larger than a segmentation network's input: overlapping tiles.

Two kinds of fully convolutional model are handled by one routine, :func:`predict_tiled`:

- **"same"-padded** models (output tile = input tile, e.g. FCN-style nets or a U-Net with
  ``padding="same"``): neighbouring tiles overlap by ``overlap`` pixels and only the centre of
  each tile's prediction is kept (``overlap // 2`` pixels are cut from every side, where the
  network saw zero padding instead of image); the image is mirror-padded by the same margin
  so that its border pixels also come from tile centres. Where the last tile of a row or
  column overlaps its neighbour more, the predictions are averaged. For a network whose
  receptive field reaches at most ``overlap // 2`` pixels this equals whole-image prediction
  on the mirror-padded image.
- **valid-padded** models (output tile smaller than the input tile, the original U-Net: 572
  in, 388 out): the U-Net paper's overlap-tile strategy (Ronneberger et al. 2015, Fig. 2).
  The image is mirror-padded by the border the network consumes
  (``(input - output) / 2`` per side), and input tiles are taken so that their output tiles
  cover the image exactly; the missing context at the image border is the mirror image.

Tiles are cut and blended in NumPy on the host and run through ``model.predict_on_batch`` (or
the callable given, such as a TFLite runner), ``batch_size`` tiles at a time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["predict_tiled"]


def _pair(name, value):
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value)
    ):
        raise ValueError(
            f"{name}={value!r} is not allowed; expected an int or a pair (height, width) of ints."
        )
    return int(value[0]), int(value[1])


def _static_hw(shape, what):
    if isinstance(shape, list):
        raise ValueError(
            f"predict_tiled needs a model with one input and one output; its {what} are {shape}."
        )
    if len(shape) != 4:
        raise ValueError(f"predict_tiled needs (batch, height, width, channels) {what}; got {shape}.")
    height, width = shape[1], shape[2]
    return None if height is None or width is None else (int(height), int(width))


def _starts(length, tile, stride):
    """Tile offsets covering ``[0, length)``: every ``stride``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def predict_tiled(
    model,
    image,
    *,
    tile_size=None,
    overlap=None,
    batch_size: int = 4,
    output_size=None,
):
    """Predict on images of any size with a fully convolutional model, tile by tile.

    Args:
        model: a ``keras.Model`` with one ``(batch, height, width, channels)`` input and one
            ``(batch, height', width', classes)`` output at the input's resolution (the same
            size, or smaller by an even border for valid padding); or any callable from such
            a batch of tiles to such outputs (a ``kapps.export`` TFLite runner, say), which
            then needs ``tile_size``.
        image: one image ``(height, width, channels)`` or a batch
            ``(batch, height, width, channels)`` (NumPy array or tensor), any height and width.
        tile_size: the input tile ``(height, width)`` (or one int); default: the model's
            static input size. Required when the model's input size is not fixed.
        overlap: pixels by which neighbouring tiles' outputs overlap; ``overlap // 2`` pixels
            are cut from every side of each output tile (and the image is mirror-padded by as
            much), so only tile centres are used. Default: 0 for valid-padded models (the
            paper's tiling: the network has already cut its border) and a quarter of the tile
            for "same"-padded models.
        batch_size: tiles per ``predict_on_batch`` call.
        output_size: the output tile ``(height, width)`` the model returns for an input tile
            of ``tile_size``; default: the model's static output size when ``tile_size`` is its
            input size, otherwise found by running the model once on a blank tile.

    Returns:
        A ``float32`` NumPy array of the model's outputs for the whole image:
        ``(height, width, classes)`` for one image, ``(batch, height, width, classes)`` for a
        batch.

    Raises:
        ValueError: the image is not rank 3 or 4 or has the wrong channel count; the tile
            sizes cannot be found or do not fit (output larger than input, or an odd border);
            ``overlap`` is negative or not smaller than the output tile; a bad ``batch_size``.

    Example:
        >>> unet = kapps.build("unet")                 # 572x572 in, 388x388 out (valid)
        >>> masks = predict_tiled(unet, image_512x512x1).argmax(-1)   # (512, 512)
        >>> probs = predict_tiled(same_model, big_image, tile_size=256, overlap=32)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; expected a positive integer.")
    images = np.asarray(image, dtype=np.float32)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"image with shape {images.shape} is not allowed; expected (height, width, channels) "
            "or (batch, height, width, channels)."
        )
    single = images.ndim == 3
    if single:
        images = images[None]
    # A Keras model tells its tile sizes; another callable (a TFLite runner) is only called.
    input_shape = getattr(model, "input_shape", None) if hasattr(model, "predict_on_batch") else None
    run = model.predict_on_batch if input_shape is not None else model
    if input_shape is None and not callable(model):
        raise ValueError(f"model={model!r} is not allowed; expected a keras.Model or a callable.")
    if isinstance(input_shape, list):
        input_shape = None
    channels = input_shape[-1] if input_shape is not None else None
    model_in = _static_hw(input_shape, "input shape") if input_shape is not None else None
    if channels is not None and images.shape[-1] != channels:
        raise ValueError(
            f"image has {images.shape[-1]} channels but the model takes {channels} "
            f"(input shape {model.input_shape})."
        )

    tile = _pair("tile_size", tile_size) or model_in
    if tile is None:
        raise ValueError(
            f"tile_size=None is not allowed for a model without a fixed input size "
            f"(input shape {input_shape}); pass tile_size=(height, width)."
        )
    out = _pair("output_size", output_size)
    if out is None:
        model_out = _static_hw(model.output_shape, "output shape") if input_shape is not None else None
        if model_out is not None and tile == model_in:
            out = model_out
        else:
            probe = run(np.zeros((1, *tile, images.shape[-1]), np.float32))
            out = tuple(int(s) for s in np.shape(probe)[1:3])
    border = []
    for axis, (t, o) in enumerate(zip(tile, out)):
        if o > t or (t - o) % 2 or o < 1:
            raise ValueError(
                f"tile_size={tile} with output_size={out} is not allowed: the output tile must be "
                "at most the input tile and smaller by an even number of pixels (a centred "
                "valid-padding border) along each axis."
            )
        border.append((t - o) // 2)
    if overlap is None:
        overlap = 0 if any(border) else min(out) // 4
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not 0 <= overlap < min(out):
        raise ValueError(
            f"overlap={overlap!r} is not allowed; expected an int in [0, {min(out)}) "
            f"(smaller than the output tile {out})."
        )
    margin = int(overlap) // 2

    results = [_predict_one(run, im, tile, out, border, margin, batch_size) for im in images]
    result = np.stack(results)
    return result[0] if single else result


def _predict_one(run, image, tile, out, border, margin, batch_size):
    height, width = image.shape[:2]
    # Kept part of each output tile: its centre, `margin` pixels in from every side.
    keep = (out[0] - 2 * margin, out[1] - 2 * margin)
    # Output grid: tile offsets over max(image, kept tile) so a small image still fills one.
    grid_h, grid_w = max(height, keep[0]), max(width, keep[1])
    rows = _starts(grid_h, keep[0], keep[0])
    cols = _starts(grid_w, keep[1], keep[1])
    # Mirror-pad by the context each kept pixel needs: the network's own border (valid
    # padding; the paper's Fig. 2) plus the cut margin, and by the shortfall at the
    # bottom/right when the image is smaller than a tile. np.pad's "reflect" (d c b | a b c d)
    # keeps reflecting when the pad exceeds the image.
    pad_h, pad_w = border[0] + margin, border[1] + margin
    padded = np.pad(
        image,
        ((pad_h, pad_h + grid_h - height), (pad_w, pad_w + grid_w - width), (0, 0)),
        mode="reflect" if min(height, width) > 1 else "edge",
    )
    total = None
    count = np.zeros((grid_h, grid_w, 1), np.float64)
    offsets = [(r, c) for r in rows for c in cols]
    for first in range(0, len(offsets), batch_size):
        chunk = offsets[first : first + batch_size]
        # The kept output at (r, c) comes from input rows r .. r + tile (padded coordinates).
        tiles = np.stack([padded[r : r + tile[0], c : c + tile[1]] for r, c in chunk])
        if len(chunk) < batch_size and len(offsets) > batch_size:
            # Fill the last batch up so every call has one shape (no retracing).
            filler = np.zeros((batch_size - len(chunk), *tiles.shape[1:]), tiles.dtype)
            tiles = np.concatenate([tiles, filler])
        predictions = np.asarray(run(tiles), np.float64)[: len(chunk)]
        if predictions.shape[1:3] != tuple(out):
            raise ValueError(
                f"the model returned tiles of {predictions.shape[1:3]} for input tiles of {tile}, "
                f"not output_size={out}."
            )
        if total is None:
            total = np.zeros((grid_h, grid_w, predictions.shape[-1]), np.float64)
        for (r, c), prediction in zip(chunk, predictions):
            centre = prediction[margin : margin + keep[0], margin : margin + keep[1]]
            total[r : r + keep[0], c : c + keep[1]] += centre
            count[r : r + keep[0], c : c + keep[1]] += 1.0
    # Averaging only matters where the last tile of a row/column overlaps the one before.
    return (total / count)[:height, :width].astype(np.float32)
