"""What the four generative models (DCGAN, VAE, RealNVP, DDPM) share.

Every generative model is a ``GenerativeModel``: a ``keras.Model`` subclass built the
functional way (``super().__init__(inputs, outputs)``) around registered sub-models, with its
own ``train_step``/``test_step`` and metrics. Outside the model, images are ``float32`` in
``[0, 1]`` of shape ``image_shape`` (MNIST's ``(28, 28, 1)`` by default); each model maps them
to the range it works in (``[-1, 1]`` for DCGAN and DDPM, logits for RealNVP).

``fit`` takes batches of ``(images, labels)`` (what ``kapps.data.mnist`` yields); the labels are
used only by class-conditional models. ``sampler(...)`` returns a plain functional model from
noise (and class labels, where conditional) to images in ``[0, 1]``, which is what
``kapps.export.to_tflite`` converts for phones and what ``sample`` runs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def replica_mean(loss):
    """Scale a per-replica mean ``loss`` for ``tf.distribute``: gradients are summed over the
    replicas, so each replica's loss is divided by their number (what Keras' own
    ``compute_loss`` does for compiled losses). Outside a strategy, ``loss`` is returned as is.

    Call it inside the ``tf.GradientTape`` that takes the gradients: a loss scaled outside
    the tape has no recorded path to the weights, and every gradient is ``None`` (only under
    a strategy, so single-device tests do not show it)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def serialize_models(config, **models):
    """Add ``keras.saving.serialize_keras_object`` of each sub-model to ``config``."""
    config = dict(config)
    for key, model in models.items():
        config[key] = keras.saving.serialize_keras_object(model)
    return config


def deserialize_models(config, keys, custom_objects=None):
    """The inverse of ``serialize_models`` for the sub-models named by ``keys``."""
    config = dict(config)
    for key in keys:
        config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
    return config


class GenerativeModel(keras.Model):
    """Base class of kapps' generative models (see the module docstring).

    A subclass builds its functional graph in ``__init__``, then calls
    ``super().__init__(inputs, outputs, name=...)`` and sets:

    - ``image_shape``: ``(height, width, channels)`` of the images it models;
    - ``latent_shape``: the shape of one sample's noise (``sampler``'s first input);
    - ``num_classes``: the number of classes for class-conditional models, else ``None``;

    and implements ``sampler(**options)``.
    """

    #: name of ``sampler``'s noise input and images output
    NOISE_INPUT = "noise"
    LABEL_INPUT = "label"
    IMAGE_OUTPUT = "images"

    def sampler(self, **options):
        """A functional ``keras.Model`` from ``noise`` ``(batch, *latent_shape)`` (and ``label``
        ``(batch,)`` int32 for class-conditional models) to ``images`` ``(batch, *image_shape)``
        in ``[0, 1]``, sharing this model's weights; converts to builtin-only TFLite."""
        raise NotImplementedError(f"{type(self).__name__} does not define sampler()")

    def noise(self, num_samples, seed=0):
        """Standard normal noise for ``num_samples`` samples, ``float32`` numpy, reproducible
        from ``seed``."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((num_samples, *self.latent_shape)).astype("float32")

    def sample(self, num_samples, *, seed=0, labels=None, batch_size=250, **options):
        """``num_samples`` images in ``[0, 1]`` as a numpy array, from the noise ``noise(num_samples,
        seed)``; ``labels`` (int array of ``num_samples``) for conditional models (default:
        the classes in turn). ``options`` go to ``sampler``."""
        model = self.sampler(**options)
        noise = self.noise(num_samples, seed)
        if self.num_classes:
            if labels is None:
                labels = np.arange(num_samples) % self.num_classes
            labels = np.asarray(labels, dtype="int32").reshape(num_samples)
        images = []
        for start in range(0, num_samples, batch_size):
            batch = noise[start:start + batch_size]
            inputs = [batch, labels[start:start + batch_size]] if self.num_classes else batch
            images.append(np.asarray(model(inputs, training=False)))
        return np.concatenate(images, axis=0)

    def training_batch(self, batch_size, seed=0):
        """A random batch of what ``fit`` takes, ``(images, labels)``: images uniform in
        ``[0, 1)``, labels in ``[0, num_classes)`` (or 0). For the model contract's
        distributed training step."""
        rng = np.random.default_rng(seed)
        images = rng.random((batch_size, *self.image_shape), dtype="float32")
        labels = rng.integers(0, self.num_classes or 1, size=(batch_size,)).astype("int32")
        return images, labels
