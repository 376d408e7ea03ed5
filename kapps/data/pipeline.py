"""Shared ``tf.data`` pipeline: map, cache, shuffle, batch, augment, prefetch.

Every source in ``kapps.data`` returns single examples; :func:`prepare` turns them into the
batches ``model.fit`` consumes. The order of the stages is the usual one for speed:

1. ``map_fn`` per example, in parallel (decoding a JPEG, parsing a line);
2. ``cache`` the decoded examples (in memory, or in a file when given a path), so the
   expensive work runs once, not once per epoch;
3. ``shuffle`` with a seed (after the cache, so every epoch gets a new order), ``repeat``;
4. ``batch`` (``drop_remainder=True`` keeps every step's global batch the same size, which
   ``tf.distribute`` and TPUs prefer);
5. ``batch_map_fn`` and ``augment`` per batch, in parallel: cheap vectorised work (casting
   ``uint8`` to ``float32``) and random augmentation, which must run every epoch and so comes
   after the cache;
6. ``prefetch`` so the next batches are ready while the accelerator works.

Augmentation runs here, in the input pipeline on the CPU, rather than as layers inside the
model: the exported model then needs no augmentation ops and the accelerator does not wait on
them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kapps._checks import check_choice, check_positive_int, check_rate

AUTOTUNE = tf.data.AUTOTUNE


def prepare(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    map_fn=None,
    cache: bool | str = False,
    shuffle: bool = False,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    batch_map_fn=None,
    augment=None,
    prefetch: bool = True,
) -> tf.data.Dataset:
    """Turn a dataset of single examples into a batched, prefetched input pipeline.

    Args:
        ds: a ``tf.data.Dataset`` of single examples (tuples or dicts).
        batch_size: examples per batch. Under ``tf.distribute`` this is the *global* batch
            (see ``kapps.training.global_batch_size``).
        map_fn: function applied to each example before the cache, in parallel.
        cache: ``True`` caches in memory, a string caches in that file, ``False`` does not.
        shuffle: shuffle examples (after the cache) with a buffer of ``shuffle_buffer``.
        shuffle_buffer: shuffle buffer size; the dataset size gives a perfect shuffle.
        seed: shuffle seed, for repeatable runs; the order still changes every epoch.
        repeat: repeat forever (for ``steps_per_epoch``-driven training).
        drop_remainder: drop the last partial batch.
        batch_map_fn: function applied to each batch (same structure as the examples).
        augment: a callable applied to the inputs of each batch (the first element of a
            tuple, or the whole element otherwise), e.g.
            a ``keras.Sequential`` of preprocessing layers from :func:`image_augmentation`;
            Keras layers are called with ``training=True``.
        prefetch: prefetch batches (``AUTOTUNE``).

    Returns:
        The batched ``tf.data.Dataset``.

    Raises:
        ValueError: ``batch_size`` or ``shuffle_buffer`` is not a positive integer.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("shuffle_buffer", shuffle_buffer)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    if batch_map_fn is not None:
        ds = ds.map(batch_map_fn, num_parallel_calls=AUTOTUNE)
    if augment is not None:
        ds = ds.map(_augment_inputs(augment), num_parallel_calls=AUTOTUNE)
    if prefetch:
        ds = ds.prefetch(AUTOTUNE)
    # Under multi-worker training, shard by example rather than by file: TFDS splits such as
    # MNIST's are a single file, which FILE sharding (the default) cannot split between workers.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _augment_inputs(augment):
    call = (lambda x: augment(x, training=True)) if isinstance(augment, keras.layers.Layer) else augment

    def fn(inputs, *rest):
        return (call(inputs), *rest) if rest else call(inputs)

    return fn


def image_augmentation(
    *,
    translate: float = 0.0,
    rotate: float = 0.0,
    zoom: float = 0.0,
    flip: str | None = None,
    fill_mode: str = "constant",
    seed: int | None = None,
    name: str = "augmentation",
) -> keras.Sequential | None:
    """Random image augmentation from Keras preprocessing layers, for :func:`prepare`.

    Args:
        translate: largest shift as a fraction of height and width (``RandomTranslation``).
        rotate: largest rotation as a fraction of a full turn (``RandomRotation``; 0.05 is
            18 degrees).
        zoom: largest zoom in or out as a fraction (``RandomZoom``).
        flip: ``None``, ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        fill_mode: how pixels shifted in are filled; ``"constant"`` (zeros) suits digits on
            black, ``"reflect"`` suits photographs.
        seed: base seed; each layer gets ``seed + i`` so runs repeat.
        name: name of the returned model.

    Returns:
        A ``keras.Sequential`` of the requested layers, or ``None`` when nothing is requested
        (which :func:`prepare` takes as "no augmentation").

    Raises:
        ValueError: a fraction is outside ``[0, 1)`` or ``flip`` is not one of the modes.
    """
    check_rate("translate", translate)
    check_rate("rotate", rotate)
    check_rate("zoom", zoom)
    check_choice("flip", flip, (None, "horizontal", "vertical", "horizontal_and_vertical"))
    check_choice("fill_mode", fill_mode, ("constant", "reflect", "wrap", "nearest"))

    def layer_seed(i):
        return None if seed is None else seed + i

    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=layer_seed(0)))
    if translate:
        layers.append(
            keras.layers.RandomTranslation(translate, translate, fill_mode=fill_mode, seed=layer_seed(1))
        )
    if rotate:
        layers.append(keras.layers.RandomRotation(rotate, fill_mode=fill_mode, seed=layer_seed(2)))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode=fill_mode, seed=layer_seed(3)))
    return keras.Sequential(layers, name=name) if layers else None
