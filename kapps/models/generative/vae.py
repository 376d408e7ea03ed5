"""VAE: a convolutional variational auto-encoder (Kingma and Welling 2014, "Auto-Encoding
Variational Bayes").

An encoder ``q(z | x)`` gives the mean and log-variance of a diagonal Gaussian over the latent
``z``; a decoder ``p(x | z)`` gives a Bernoulli per pixel; the prior is ``N(0, I)``:

    image (batch, H, W, C) in [0, 1]
      -> n x [3x3 stride-2 conv, ReLU] through filters, flatten, Dense(hidden_dim, ReLU)
      -> Dense(latent_dim) mean, Dense(latent_dim) log-variance          (batch, latent_dim)
      -> z = mean + exp(log_variance / 2) * eps, eps ~ N(0, I)           (the reparameterisation)
      -> Dense(hidden_dim, ReLU), Dense, reshape to (H / 2^n, W / 2^n, filters[-1])
      -> n - 1 x [3x3 stride-2 transposed conv, ReLU] through reversed(filters[:-1])
      -> 3x3 stride-2 transposed conv to C channels              Bernoulli logits (batch, H, W, C)

Training maximises the evidence lower bound (ELBO, section 2.2, equation 10) with one sample
of ``z`` per image (the SGVB estimator with L = 1, section 2.3): the loss is the
reconstruction term (the Bernoulli negative log-likelihood summed over pixels) plus ``beta``
times the analytic ``KL(q(z | x) || N(0, I)) = 1/2 sum(mean^2 + exp(log_variance) - 1 -
log_variance)`` (appendix B), averaged over the batch. ``beta = 1`` is the paper's ELBO;
``beta > 1`` the beta-VAE of Higgins et al. 2017.

The paper's MNIST models are MLPs (500 hidden units, latent sizes 2 to 200, section 5); this
encoder and decoder are convolutional (the issue asks for it), with the paper's 500-unit
hidden layer between the convolutions and the latent.

Targets are MNIST's grey levels in ``[0, 1]`` (the Bernoulli cross-entropy accepts them):
the reported reconstruction term and ELBO are then those of the continuous images, not the
log-likelihood of binarised MNIST that papers compare.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kapps._checks import check_image_shape, check_name, check_positive_int
from kapps.models.generative.common import (
    GenerativeModel,
    deserialize_models,
    replica_mean,
    serialize_models,
)
from kapps.models.generative.gan import (
    check_filters,
    check_seed,
    check_upsampling,
    replica_normal,
    unpack_images,
)

#: The paper's hidden layer size for MNIST (section 5: "500 hidden units in case of MNIST").
PAPER_HIDDEN_DIM = 500


@keras.saving.register_keras_serializable(package="kapps")
class GaussianSample(keras.layers.Layer):
    """The reparameterisation trick: ``z = mean + exp(log_variance / 2) * eps``.

    With ``eps ~ N(0, I)`` drawn from the layer's own ``keras.random.SeedGenerator`` (or
    given), ``z`` is a sample of ``N(mean, exp(log_variance))`` that is a differentiable
    function of the mean and log-variance (section 2.4). In inference (``training=False``) it
    returns the mean, so the forward pass of a model is deterministic.

    Args:
        seed: seed of the noise (None: random).
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        mean: ``(batch, latent_dim)``.
        log_variance: ``(batch, latent_dim)``, the log of the diagonal variance.
        noise: optional ``eps`` of the same shape (standard normal); drawn when None.
        training: sample when True, return ``mean`` otherwise (unless ``noise`` is given).

    Returns:
        ``z`` of shape ``(batch, latent_dim)``.

    Example:
        >>> z = GaussianSample(seed=1)(mean, log_variance, training=True)

    Paper: Kingma and Welling 2014, "Auto-Encoding Variational Bayes", section 2.4.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, mean, log_variance, noise=None, training=None):
        if noise is None:
            if not training:
                return mean
            noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_variance) * noise

    def compute_output_shape(self, mean_shape, log_variance_shape=None, noise_shape=None):
        return mean_shape

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


def kl_divergence(mean, log_variance):
    """``KL(N(mean, exp(log_variance)) || N(0, I))`` per example, summed over the latent axis
    (appendix B): ``1/2 sum(mean^2 + exp(log_variance) - 1 - log_variance)``.

    Args:
        mean: ``(batch, latent_dim)``.
        log_variance: ``(batch, latent_dim)``.

    Returns:
        ``(batch,)`` tensor, in nats.
    """
    return 0.5 * ops.sum(
        ops.square(mean) + ops.exp(log_variance) - 1.0 - log_variance, axis=-1
    )


def bernoulli_nll(images, logits):
    """The Bernoulli negative log-likelihood of ``images`` (targets in ``[0, 1]``) under the
    per-pixel ``logits``, summed over the pixels of each image.

    Args:
        images: ``(batch, H, W, C)`` in ``[0, 1]``.
        logits: ``(batch, H, W, C)``.

    Returns:
        ``(batch,)`` tensor, in nats.
    """
    per_pixel = ops.binary_crossentropy(images, logits, from_logits=True)
    return ops.sum(ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1)), axis=-1)


# -- the two networks -----------------------------------------------------------------------


def vae_encoder(
    *,
    image_shape=(28, 28, 1),
    latent_dim=20,
    filters=(32, 64),
    hidden_dim=PAPER_HIDDEN_DIM,
    name="vae_encoder",
):
    """The VAE's encoder ``q(z | x)``: images to the mean and log-variance of ``z``.

    ``len(filters)`` 3x3 stride-2 convolutions with ReLU, flatten, Dense(hidden_dim, ReLU),
    then two Dense heads. ``(28, 28, 1) -> 14x14x32 -> 7x7x64 -> 500 -> 2 x 20`` by default.

    Args:
        image_shape: ``(height, width, channels)``; height and width divisible by
            ``2 ** len(filters)`` (so that the decoder can mirror it).
        latent_dim: size of ``z``.
        filters: channels of the strided convolutions.
        hidden_dim: units of the hidden Dense layer.
        name: model name.

    Returns:
        A ``keras.Model``: input ``image`` ``(batch, *image_shape)`` in ``[0, 1]``, outputs
        ``[mean, log_variance]``, each ``(batch, latent_dim)`` float32.

    Raises:
        ValueError: for a bad argument (named in the message).

    Example:
        >>> mean, log_variance = vae_encoder()(images)

    Paper: Kingma and Welling 2014, "Auto-Encoding Variational Bayes", appendix C.2.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    filters = check_filters("filters", filters)
    hidden_dim = check_positive_int("hidden_dim", hidden_dim)
    check_name(name)
    check_upsampling(image_shape, len(filters), "filters")

    image = keras.Input(image_shape, name="image")
    x = image
    for index, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu",
            name=f"encoder_block{index}_conv",
        )(x)
    x = keras.layers.Flatten(name="encoder_flatten")(x)
    x = keras.layers.Dense(hidden_dim, activation="relu", name="encoder_hidden")(x)
    # the Gaussian's parameters: equation (9) of the paper (log sigma^2 as an output)
    mean = keras.layers.Dense(latent_dim, dtype="float32", name="encoder_mean")(x)
    log_variance = keras.layers.Dense(latent_dim, dtype="float32", name="encoder_log_variance")(x)
    return keras.Model(image, [mean, log_variance], name=name)


def vae_decoder(
    *,
    image_shape=(28, 28, 1),
    latent_dim=20,
    filters=(32, 64),
    hidden_dim=PAPER_HIDDEN_DIM,
    name="vae_decoder",
):
    """The VAE's decoder ``p(x | z)``: latent codes to Bernoulli logits per pixel.

    The encoder mirrored: Dense(hidden_dim, ReLU), Dense to ``(H / 2^n) * (W / 2^n) *
    filters[-1]`` with ReLU and a reshape, ``n - 1`` 3x3 stride-2 transposed convolutions with
    ReLU through ``reversed(filters[:-1])``, and a last one to ``channels`` without
    activation. ``20 -> 500 -> 7x7x64 -> 14x14x32 -> 28x28x1`` by default.

    Args:
        image_shape: ``(height, width, channels)`` of the images; height and width divisible
            by ``2 ** len(filters)``.
        latent_dim: size of ``z``.
        filters: the encoder's channels (the decoder runs them in reverse).
        hidden_dim: units of the hidden Dense layer.
        name: model name.

    Returns:
        A ``keras.Model``: input ``latent`` ``(batch, latent_dim)``, output the logits
        ``(batch, *image_shape)`` float32 (``sigmoid`` gives the pixel means in ``[0, 1]``).

    Raises:
        ValueError: for a bad argument (named in the message).

    Example:
        >>> images = keras.ops.sigmoid(vae_decoder()(z))

    Paper: Kingma and Welling 2014, "Auto-Encoding Variational Bayes", appendix C.1.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    filters = check_filters("filters", filters)
    hidden_dim = check_positive_int("hidden_dim", hidden_dim)
    check_name(name)
    check_upsampling(image_shape, len(filters), "filters")

    height, width, channels = image_shape
    size = 2 ** len(filters)
    latent = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(hidden_dim, activation="relu", name="decoder_hidden")(latent)
    x = keras.layers.Dense(
        (height // size) * (width // size) * filters[-1], activation="relu",
        name="decoder_projection",
    )(x)
    # (batch, H / 2^n, W / 2^n, filters[-1])
    x = keras.layers.Reshape(
        (height // size, width // size, filters[-1]), name="decoder_reshape"
    )(x)
    for index, width_ in enumerate(reversed(filters[:-1]), start=1):
        x = keras.layers.Conv2DTranspose(
            width_, 3, strides=2, padding="same", activation="relu",
            name=f"decoder_block{index}_deconv",
        )(x)
    x = keras.layers.Conv2DTranspose(
        channels, 3, strides=2, padding="same", name="decoder_output_deconv"
    )(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="decoder_logits")(x)
    return keras.Model(latent, logits, name=name)


# -- the composite model --------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kapps")
class VAE(GenerativeModel):
    """A variational auto-encoder: encoder, reparameterisation, decoder and the ELBO.

    Built by ``vae`` (see there). The forward pass: ``image`` -> ``{"reconstruction": sigmoid
    of the decoder's logits, in [0, 1], "mean", "log_variance"}``; ``z`` is sampled when
    ``training=True`` and is the mean otherwise (a deterministic forward pass).

    Training (``fit`` on ``(images, labels)`` batches, images in ``[0, 1]``; labels unused)
    minimises ``reconstruction + beta * kl`` per image, averaged over the batch, with one
    sample of ``z`` per image (SGVB, section 2.3). Metrics, per image, in nats: ``loss``,
    ``reconstruction`` (Bernoulli negative log-likelihood summed over pixels), ``kl``
    (analytic, appendix B) and ``elbo = -(reconstruction + kl)`` (the bound itself, whatever
    ``beta``). ``evaluate`` reports the same, with one sample of ``z`` per image: the usual
    one-sample estimate of the test ELBO.

    Args:
        encoder: a model built by ``vae_encoder``.
        decoder: a model built by ``vae_decoder`` for the same image shape and latent size.
        beta: weight of the KL term in the loss (1: the ELBO).
        seed: seed of the sampling noise (None: random).
        name: model name.
        **kwargs: standard model arguments (``trainable``).

    Call arguments:
        inputs: images ``(batch, *image_shape)`` in ``[0, 1]``.
        training: sample ``z`` (True) or use its mean.

    Example:
        >>> model = VAE(vae_encoder(), vae_decoder())
        >>> model.compile(keras.optimizers.Adam(1e-3))
        >>> model.fit(train, epochs=10)
        >>> mean, log_variance = model.encode(images)
        >>> images = model.decode(mean)

    Paper: Kingma and Welling 2014, "Auto-Encoding Variational Bayes".
    """

    def __init__(self, encoder, decoder, beta=1.0, seed=None, name="vae", **kwargs):
        for argument, model in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"{argument}={model!r} is not allowed; expected a keras.Model built by "
                    f"vae_{argument}."
                )
        beta = _check_beta(beta)
        check_seed(seed)
        check_name(name)
        if len(encoder.outputs) != 2:
            raise ValueError(
                f"encoder={encoder.name!r} is not allowed: it has {len(encoder.outputs)} "
                "outputs; expected two, [mean, log_variance] (build it with vae_encoder)."
            )
        latent_dim = int(encoder.outputs[0].shape[-1])
        if int(decoder.inputs[0].shape[-1]) != latent_dim:
            raise ValueError(
                f"decoder={decoder.name!r} is not allowed: it takes latent codes of size "
                f"{int(decoder.inputs[0].shape[-1])} but the encoder makes {latent_dim}."
            )
        image_shape = tuple(encoder.inputs[0].shape[1:])
        if tuple(decoder.outputs[0].shape[1:]) != image_shape:
            raise ValueError(
                f"decoder={decoder.name!r} is not allowed: it makes images of shape "
                f"{tuple(decoder.outputs[0].shape[1:])} but the encoder takes {image_shape}."
            )

        sampling = GaussianSample(seed=seed, name="latent_sample")
        image = keras.Input(image_shape, name="image")
        mean, log_variance = encoder(image)
        logits = decoder(sampling(mean, log_variance))
        outputs = {
            "reconstruction": keras.layers.Activation(
                "sigmoid", dtype="float32", name="reconstruction"
            )(logits),
            "mean": mean,
            "log_variance": log_variance,
        }
        super().__init__(image, outputs, name=name, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.sampling = sampling
        self.beta = beta
        self.seed = seed
        self.image_shape = image_shape
        self.latent_shape = (latent_dim,)
        self.num_classes = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")

    def get_config(self):
        config = {
            "beta": self.beta, "seed": self.seed, "name": self.name, "trainable": self.trainable,
        }
        return serialize_models(config, encoder=self.encoder, decoder=self.decoder)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_models(config, ("encoder", "decoder"), custom_objects))

    def compile(self, optimizer="adam", **kwargs):
        """Set the optimizer (default Adam with Keras' defaults, learning rate 1e-3).

        Args:
            optimizer: a ``keras.optimizers.Optimizer`` or its name.
            **kwargs: other ``keras.Model.compile`` arguments (``run_eagerly``,
                ``jit_compile``, ``steps_per_execution``); no ``loss`` or ``metrics``: the
                loss is the model's own negative ELBO.

        Raises:
            ValueError: for a ``loss`` or ``metrics`` argument.
        """
        for key in ("loss", "metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{key}={kwargs[key]!r} is not allowed: {type(self).__name__} trains with "
                    "its own loss (the negative ELBO) and metrics."
                )
        super().compile(optimizer=optimizer, **kwargs)
        # built now (inside the strategy's scope, where compile is called), so that
        # ``load_model`` finds the slots to restore the saved optimizer state into
        self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Compile from ``get_compile_config()`` (what ``keras.saving.load_model`` calls)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker, self.elbo_tracker]

    def compute_terms(self, images, training=False):
        """The per-batch means of the reconstruction term, the KL term and the loss, with one
        sample of ``z`` per image.

        Args:
            images: ``(batch, *image_shape)`` in ``[0, 1]``.
            training: the sub-models' training mode.

        Returns:
            ``(loss, reconstruction, kl)`` scalar tensors, in nats per image.
        """
        images = tf.cast(images, "float32")
        mean, log_variance = self.encoder(images, training=training)
        # the layer's seed generator, offset per replica (each replica samples its own eps)
        noise = replica_normal(self.sampling.seed_generator, tf.shape(mean))
        z = self.sampling(mean, log_variance, noise=noise, training=training)
        logits = self.decoder(z, training=training)
        reconstruction = tf.reduce_mean(bernoulli_nll(images, logits))
        kl = tf.reduce_mean(kl_divergence(mean, log_variance))
        return reconstruction + self.beta * kl, reconstruction, kl

    def _update_metrics(self, loss, reconstruction, kl):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        self.elbo_tracker.update_state(-(reconstruction + kl))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, _ = unpack_images(data)
        with tf.GradientTape() as tape:
            loss, reconstruction, kl = self.compute_terms(images, training=True)
            # scaled inside the tape (so that it is differentiated): per replica, and by the
            # loss scale of a mixed-precision optimizer
            scaled = self.optimizer.scale_loss(replica_mean(loss))
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        return self._update_metrics(loss, reconstruction, kl)

    def test_step(self, data):
        images, _ = unpack_images(data)
        return self._update_metrics(*self.compute_terms(images, training=False))

    def encode(self, images, batch_size=250):
        """The mean and log-variance of ``q(z | x)`` for ``images``.

        Args:
            images: ``(num_images, *image_shape)`` in ``[0, 1]``.
            batch_size: images per forward pass.

        Returns:
            ``(mean, log_variance)``, numpy arrays ``(num_images, latent_dim)``.
        """
        images = np.asarray(images, dtype="float32")
        means, log_variances = [], []
        for start in range(0, len(images), batch_size):
            mean, log_variance = self.encoder(images[start:start + batch_size], training=False)
            means.append(np.asarray(mean))
            log_variances.append(np.asarray(log_variance))
        return np.concatenate(means), np.concatenate(log_variances)

    def decode(self, latent, batch_size=250):
        """The decoder's pixel means (``sigmoid`` of its logits) for latent codes.

        Args:
            latent: ``(num_codes, latent_dim)``.
            batch_size: codes per forward pass.

        Returns:
            A numpy array ``(num_codes, *image_shape)`` in ``[0, 1]``.
        """
        latent = np.asarray(latent, dtype="float32")
        images = []
        for start in range(0, len(latent), batch_size):
            logits = self.decoder(latent[start:start + batch_size], training=False)
            images.append(np.asarray(ops.sigmoid(logits)))
        return np.concatenate(images)

    def sampler(self):
        """Noise ``z ~ N(0, I)`` (the prior) -> the decoder's pixel means in ``[0, 1]``,
        sharing this model's weights; converts to builtin-only TFLite.

        Returns:
            A ``keras.Model`` named ``"<name>_sampler"``: input ``noise`` ``(batch,
            latent_dim)``, output ``(batch, *image_shape)`` float32.
        """
        noise = keras.Input(self.latent_shape, name=self.NOISE_INPUT)
        images = keras.layers.Activation("sigmoid", dtype="float32", name=self.IMAGE_OUTPUT)(
            self.decoder(noise)
        )
        return keras.Model(noise, images, name=f"{self.name}_sampler")


def _check_beta(beta):
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"beta={beta!r} is not allowed; expected a number >= 0.")
    return float(beta)


def vae(
    *,
    image_shape=(28, 28, 1),
    latent_dim=20,
    filters=(32, 64),
    hidden_dim=PAPER_HIDDEN_DIM,
    beta=1.0,
    seed=None,
    name="vae",
):
    """A convolutional VAE (Kingma and Welling 2014) with its ELBO training.

    Encoder ``(28, 28, 1) -> 14x14x32 -> 7x7x64 -> 500 -> mean, log-variance (20 each)``,
    decoder ``20 -> 500 -> 7x7x64 -> 14x14x32 -> 28x28x1`` Bernoulli logits by default. The
    paper's MNIST models are MLPs with 500 hidden units (section 5) and latent sizes 2 to 200
    (Figure 2 compares 3, 5, 10, 20 and 200); the default keeps the 500 units and a latent of
    20 around a convolutional encoder and decoder (3x3 stride-2 convolutions, ReLU), so there
    is no published parameter count for it.

    Args:
        image_shape: ``(height, width, channels)``, values in ``[0, 1]``; height and width
            divisible by ``2 ** len(filters)``.
        latent_dim: size of ``z``.
        filters: channels of the encoder's strided convolutions (mirrored by the decoder).
        hidden_dim: units of the hidden Dense layer of the encoder and the decoder.
        beta: weight of the KL term in the loss (1: the ELBO; > 1: beta-VAE).
        seed: seed of the sampling noise (None: random).
        name: model name.

    Returns:
        A ``VAE`` with attributes ``encoder`` and ``decoder``. Its forward pass: ``image``
        ``(batch, *image_shape)`` -> ``{"reconstruction": (batch, *image_shape) in [0, 1],
        "mean": (batch, latent_dim), "log_variance": (batch, latent_dim)}``.

    Raises:
        ValueError: for a bad argument (named in the message).

    Example:
        >>> model = vae(latent_dim=2)  # a 2-D latent space to draw
        >>> model.compile(keras.optimizers.Adam(1e-3))
        >>> model.fit(train, epochs=10)
        >>> grid = model.sample(64)  # (64, 28, 28, 1) in [0, 1]

    Paper: Kingma and Welling 2014, "Auto-Encoding Variational Bayes", sections 2-5 and
    appendices B-C.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    filters = check_filters("filters", filters)
    hidden_dim = check_positive_int("hidden_dim", hidden_dim)
    beta = _check_beta(beta)
    check_seed(seed)
    check_name(name)
    check_upsampling(image_shape, len(filters), "filters")
    sizes = {
        "image_shape": image_shape, "latent_dim": latent_dim, "filters": filters,
        "hidden_dim": hidden_dim,
    }
    encoder = vae_encoder(**sizes, name=f"{name}_encoder")
    decoder = vae_decoder(**sizes, name=f"{name}_decoder")
    return VAE(encoder, decoder, beta=beta, seed=seed, name=name)
