"""DCGAN: a deep convolutional generative adversarial network (Radford et al. 2016,
"Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
Networks").

A generator ``G`` maps noise ``z ~ N(0, I)`` to images; a discriminator ``D`` scores images as
real or generated. They are trained against each other (Goodfellow et al. 2014):

    z (batch, latent_dim) [+ label embedding]
      -> Dense, reshape to (H / 2^n, W / 2^n, generator_filters[0]), BatchNorm, ReLU
      -> n - 1 x [4x4 stride-2 transposed conv, BatchNorm, ReLU] through generator_filters[1:]
      -> 4x4 stride-2 transposed conv to ``channels``, tanh            G(z) (batch, H, W, C)

    image in [-1, 1] (batch, H, W, C) [+ label embedding as one more channel]
      -> m x [4x4 stride-2 conv, BatchNorm (not on the first), LeakyReLU(0.2)]
      -> flatten, Dense(1)                                              logit (batch, 1)

The architecture guidelines of section 3: strided convolutions instead of pooling,
BatchNorm everywhere except the generator's output and the discriminator's input layer,
ReLU in the generator with tanh at the output, LeakyReLU (slope 0.2) in the discriminator,
no fully connected hidden layers. Section 4: weights from N(0, 0.02), Adam with learning rate
2e-4 and beta_1 = 0.5. The loss is the non-saturating one of Goodfellow et al. 2014 (section 3):
``D`` minimises ``BCE(1, D(x)) + BCE(0, D(G(z)))`` and ``G`` minimises ``BCE(1, D(G(z)))``
instead of maximising ``BCE(0, D(G(z)))``, whose gradient vanishes while ``D`` rejects the
samples confidently.

No layer has a bias, as in PyTorch's DCGAN example (``pytorch/examples``, ``dcgan``): most
layers are followed by BatchNorm, which cancels a bias, and the example has none on the
discriminator's input layer and the two output layers either. Its parameter counts are then
reproduced exactly (see ``dcgan``).

The class-conditional option (``num_classes``; a conditional GAN of Mirza and Osindero 2014)
feeds the class to both networks: the generator concatenates a learned label embedding of
``embedding_dim`` to ``z``; the discriminator embeds the label into a ``H x W`` map that is
concatenated to the image as one more channel.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kapps._checks import check_image_shape, check_name, check_positive_int
from kapps.models.generative.common import (
    GenerativeModel,
    deserialize_models,
    replica_mean,
    serialize_models,
)

#: Standard deviation of the initial weights (section 4: "zero-centered Normal distribution
#: with standard deviation 0.02").
INIT_STDDEV = 0.02
#: Slope of the discriminator's LeakyReLU (section 4).
LEAKY_SLOPE = 0.2
#: BatchNorm as PyTorch's reference DCGAN: momentum 0.1 there is 0.9 in Keras' convention,
#: epsilon 1e-5.
_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _init():
    return keras.initializers.RandomNormal(0.0, INIT_STDDEV)


def check_filters(name, value):
    """Raise unless ``value`` is a non-empty list or tuple of positive ints; return a tuple."""
    if (
        not isinstance(value, (list, tuple))
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            f"{name}={value!r} is not allowed; expected a non-empty tuple of positive integers."
        )
    return tuple(value)


def check_num_classes(value):
    """Raise unless ``value`` is None (unconditional) or an int >= 2; return it."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 2
    ):
        raise ValueError(
            f"num_classes={value!r} is not allowed; expected None (unconditional) or an "
            "integer >= 2."
        )
    return value


def check_seed(seed):
    """Raise unless ``seed`` is None or an int; return it."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} is not allowed; expected None or an integer.")
    return seed


def check_upsampling(image_shape, num_upsamplings, argument):
    """Raise unless the image's height and width are divisible by ``2 ** num_upsamplings``
    (the generator starts at ``(H, W) / 2 ** n`` and doubles the size ``n`` times)."""
    factor = 2**num_upsamplings
    height, width = image_shape[:2]
    if height % factor or width % factor:
        raise ValueError(
            f"image_shape={tuple(image_shape)!r} is not allowed with {argument} of "
            f"{num_upsamplings} entries: height and width must be divisible by "
            f"2**{num_upsamplings} = {factor}, since the network doubles the size "
            f"{num_upsamplings} times; use fewer entries or another image size."
        )


def replica_normal(seed_generator, shape):
    """Standard normal noise of ``shape`` from ``seed_generator``, different on each replica.

    Under ``MirroredStrategy`` every replica holds its own copy of the generator's state and
    advances it alike, so ``keras.random.normal(seed=seed_generator)`` would draw the same
    noise on every replica; the replica's index is added to the seed instead."""
    seed = tf.cast(seed_generator.next(), "int64")
    context = tf.distribute.get_replica_context()
    replica = 0 if context is None else context.replica_id_in_sync_group
    seed = seed + tf.stack([tf.cast(replica, "int64"), tf.constant(0, "int64")])
    return tf.random.stateless_normal(shape, seed)


def unpack_images(data):
    """``(images, labels)`` of a ``fit`` batch: ``(images, labels)`` or images alone (labels
    then None)."""
    if isinstance(data, (list, tuple)):
        images = data[0]
        labels = data[1] if len(data) > 1 else None
    else:
        images, labels = data, None
    return images, labels


# -- the two networks -----------------------------------------------------------------------


def dcgan_generator(
    *,
    latent_dim=100,
    image_shape=(64, 64, 3),
    filters=(1024, 512, 256, 128),
    num_classes=None,
    embedding_dim=50,
    name="dcgan_generator",
):
    """DCGAN's generator (Figure 1): noise (and a class) to images in ``[-1, 1]``.

    ``z`` is projected by a Dense layer and reshaped to ``(H / 2^n, W / 2^n, filters[0])``
    with ``n = len(filters)``, then ``n - 1`` transposed convolutions (4x4, stride 2) with
    ``filters[1:]`` channels and a last one to ``channels`` each double the size. BatchNorm
    and ReLU follow every layer but the last, which has tanh (section 3). Figure 1's LSUN
    generator is the default: ``100 -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 ->
    64x64x3``.

    Args:
        latent_dim: size of ``z`` (100 in the paper).
        image_shape: ``(height, width, channels)`` of the images; height and width divisible
            by ``2 ** len(filters)``.
        filters: channels of the projection and of each hidden transposed convolution.
        num_classes: ``None`` for an unconditional generator; else the number of classes of
            the ``label`` input.
        embedding_dim: size of the label embedding concatenated to ``z`` (conditional only).
        name: model name.

    Returns:
        A ``keras.Model``: input ``noise`` ``(batch, latent_dim)`` (and ``label`` ``(batch,)``
        int32 when conditional), output ``(batch, *image_shape)`` float32 in ``[-1, 1]``.

    Raises:
        ValueError: for a bad argument (named in the message) or an image size the generator
            cannot reach.

    Example:
        >>> generator = dcgan_generator(latent_dim=64, image_shape=(28, 28, 1), filters=(256, 128))

    Paper: Radford et al. 2016, "DCGAN", section 3 and Figure 1.
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    filters = check_filters("filters", filters)
    num_classes = check_num_classes(num_classes)
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    check_name(name)
    check_upsampling(image_shape, len(filters), "filters")

    height, width, channels = image_shape
    size = 2 ** len(filters)
    noise = keras.Input((latent_dim,), name="noise")
    inputs = [noise]
    x = noise
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        embedded = keras.layers.Embedding(
            num_classes, embedding_dim, embeddings_initializer=_init(),
            name="generator_label_embedding",
        )(label)
        x = keras.layers.Concatenate(name="generator_condition")([noise, embedded])
    # the projection of Figure 1 ("project and reshape"): a 1x1 -> 4x4 transposed convolution
    # in the reference code, the same as this Dense layer
    x = keras.layers.Dense(
        (height // size) * (width // size) * filters[0], use_bias=False,
        kernel_initializer=_init(), name="generator_projection",
    )(x)
    # (batch, H / 2^n, W / 2^n, filters[0])
    x = keras.layers.Reshape(
        (height // size, width // size, filters[0]), name="generator_reshape"
    )(x)
    x = keras.layers.BatchNormalization(**_BN, name="generator_projection_bn")(x)
    x = keras.layers.ReLU(name="generator_projection_relu")(x)
    for index, width_ in enumerate(filters[1:], start=1):
        prefix = f"generator_block{index}"
        x = keras.layers.Conv2DTranspose(
            width_, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
            name=f"{prefix}_deconv",
        )(x)
        x = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    # no BatchNorm on the output layer (section 3: it caused sample oscillation)
    x = keras.layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
        name="generator_output_deconv",
    )(x)
    images = keras.layers.Activation("tanh", dtype="float32", name="generator_output")(x)
    return keras.Model(inputs if num_classes else noise, images, name=name)


def dcgan_discriminator(
    *,
    image_shape=(64, 64, 3),
    filters=(128, 256, 512, 1024),
    num_classes=None,
    name="dcgan_discriminator",
):
    """DCGAN's discriminator: images in ``[-1, 1]`` (and a class) to one real/fake logit.

    ``len(filters)`` strided convolutions (4x4, stride 2) with LeakyReLU(0.2), BatchNorm on
    all but the first (section 3), then the last feature map is flattened into a single
    logit (section 3: "flattened and then fed into a single sigmoid output"; the sigmoid is
    in the loss). The default widths mirror Figure 1's generator (the paper gives none for
    the discriminator). When conditional, the label's learned ``H x W`` embedding is
    concatenated to the image as one more channel.

    Args:
        image_shape: ``(height, width, channels)`` of the images.
        filters: channels of each strided convolution.
        num_classes: ``None`` for an unconditional discriminator; else the number of classes
            of the ``label`` input.
        name: model name.

    Returns:
        A ``keras.Model``: input ``image`` ``(batch, *image_shape)`` in ``[-1, 1]`` (and
        ``label`` ``(batch,)`` int32 when conditional), output the logit ``(batch, 1)``
        float32.

    Raises:
        ValueError: for a bad argument (named in the message).

    Example:
        >>> discriminator = dcgan_discriminator(image_shape=(28, 28, 1), filters=(64, 128))

    Paper: Radford et al. 2016, "DCGAN", sections 3 and 4.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    filters = check_filters("filters", filters)
    num_classes = check_num_classes(num_classes)
    check_name(name)

    height, width, _ = image_shape
    image = keras.Input(image_shape, name="image")
    inputs = [image]
    x = image
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        plane = keras.layers.Embedding(
            num_classes, height * width, embeddings_initializer=_init(),
            name="discriminator_label_embedding",
        )(label)
        # (batch, H, W, 1): the class as one more image channel
        plane = keras.layers.Reshape((height, width, 1), name="discriminator_label_plane")(plane)
        x = keras.layers.Concatenate(name="discriminator_condition")([image, plane])
    for index, width_ in enumerate(filters, start=1):
        prefix = f"discriminator_block{index}"
        x = keras.layers.Conv2D(
            width_, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
            name=f"{prefix}_conv",
        )(x)
        if index > 1:  # no BatchNorm on the input layer (section 3)
            x = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn")(x)
        x = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{prefix}_lrelu")(x)
    x = keras.layers.Flatten(name="discriminator_flatten")(x)
    x = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=_init(), name="discriminator_logit"
    )(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="discriminator_output")(x)
    return keras.Model(inputs if num_classes else image, logits, name=name)


def _conditional_classes(model, embedding_layer, what):
    """The number of classes of a conditional sub-model (None when unconditional)."""
    if len(model.inputs) == 1:
        return None
    try:
        return model.get_layer(embedding_layer).input_dim
    except ValueError as error:
        raise ValueError(
            f"{what}={model.name!r} is not allowed: it has two inputs but no layer "
            f"{embedding_layer!r}; build it with dcgan_{what}."
        ) from error


# -- the composite model --------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kapps")
class DCGAN(GenerativeModel):
    """A DCGAN: generator and discriminator with their adversarial ``train_step``.

    Built by ``dcgan`` (see there). The forward pass (what the model contract, ``summary``
    and ``.keras`` files see) is ``noise`` (and ``label``) -> ``{"images": G(z) in [0, 1],
    "logits": D(G(z))}``; training uses the two sub-models directly.

    Training (``fit`` on ``(images, labels)`` batches, images in ``[0, 1]``, mapped to the
    generator's ``[-1, 1]``): each step draws noise and takes one discriminator step on the
    real batch and as many generated images (``BCE(1, D(x)) + BCE(0, D(G(z)))``), then one
    generator step on fresh noise with the non-saturating loss ``BCE(1, D(G(z)))``. Real and
    generated images go through the discriminator as separate batches, so each has its own
    BatchNorm statistics (as the reference code). A conditional model generates images of
    the real batch's labels. Metrics: ``d_loss``, ``g_loss``, ``real_score`` (mean ``D(x)``, a
    probability) and ``fake_score`` (mean ``D(G(z))`` in the discriminator step).

    Args:
        generator: a model built by ``dcgan_generator``.
        discriminator: a model built by ``dcgan_discriminator`` for the same image shape and
            classes.
        seed: seed of the training noise (None: random).
        name: model name.
        **kwargs: standard model arguments (``trainable``).

    Call arguments:
        inputs: ``noise`` ``(batch, latent_dim)``, or ``[noise, label]`` when conditional.
        training: BatchNorm in training mode.

    Example:
        >>> gan = DCGAN(dcgan_generator(...), dcgan_discriminator(...))
        >>> gan.compile()
        >>> gan.fit(kapps.data.mnist(...), epochs=5)
        >>> images = gan.sample(64)

    Paper: Radford et al. 2016, "DCGAN"; Goodfellow et al. 2014, "Generative Adversarial Nets".
    """

    def __init__(self, generator, discriminator, seed=None, name="dcgan", **kwargs):
        check_seed(seed)
        for argument, model in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"{argument}={model!r} is not allowed; expected a keras.Model built by "
                    f"dcgan_{argument}."
                )
        check_name(name)
        num_classes = _conditional_classes(generator, "generator_label_embedding", "generator")
        d_classes = _conditional_classes(
            discriminator, "discriminator_label_embedding", "discriminator"
        )
        if num_classes != d_classes:
            raise ValueError(
                f"discriminator={discriminator.name!r} is not allowed: it has num_classes="
                f"{d_classes!r} but the generator has num_classes={num_classes!r}."
            )
        image_shape = tuple(generator.outputs[0].shape[1:])
        if tuple(discriminator.inputs[0].shape[1:]) != image_shape:
            raise ValueError(
                f"discriminator={discriminator.name!r} is not allowed: it takes images of shape "
                f"{tuple(discriminator.inputs[0].shape[1:])} but the generator makes "
                f"{image_shape}."
            )
        latent_dim = int(generator.inputs[0].shape[-1])

        inputs = self._sampler_inputs(latent_dim, num_classes)
        fake = generator(inputs)  # [-1, 1]
        logits = discriminator([fake, inputs[1]] if num_classes else fake)
        outputs = {
            self.IMAGE_OUTPUT: keras.layers.Rescaling(
                0.5, offset=0.5, dtype="float32", name="images"
            )(fake),
            "logits": logits,
        }
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.seed = seed
        self.image_shape = image_shape
        self.latent_shape = (latent_dim,)
        self.num_classes = num_classes
        self.seed_generator = keras.random.SeedGenerator(seed, name="noise_seed")
        self.discriminator_optimizer = None
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_score_tracker = keras.metrics.Mean(name="real_score")
        self.fake_score_tracker = keras.metrics.Mean(name="fake_score")

    @classmethod
    def _sampler_inputs(cls, latent_dim, num_classes):
        noise = keras.Input((latent_dim,), name=cls.NOISE_INPUT)
        if not num_classes:
            return noise
        return [noise, keras.Input((), dtype="int32", name=cls.LABEL_INPUT)]

    def get_config(self):
        config = {"seed": self.seed, "name": self.name, "trainable": self.trainable}
        return serialize_models(config, generator=self.generator, discriminator=self.discriminator)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_models(config, ("generator", "discriminator"), custom_objects))

    def compile(self, optimizer=None, discriminator_optimizer=None, **kwargs):
        """Set the two optimizers.

        Args:
            optimizer: the generator's optimizer; default Adam(2e-4, beta_1=0.5) (section 4).
            discriminator_optimizer: the discriminator's; default a new optimizer with
                ``optimizer``'s configuration.
            **kwargs: other ``keras.Model.compile`` arguments (``run_eagerly``,
                ``jit_compile``, ``steps_per_execution``); no ``loss`` or ``metrics``: the
                losses are the model's own.

        Raises:
            ValueError: for a ``loss`` or ``metrics`` argument.
        """
        for key in ("loss", "metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{key}={kwargs[key]!r} is not allowed: {type(self).__name__} trains with "
                    "its own adversarial losses and metrics."
                )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        else:
            optimizer = keras.optimizers.get(optimizer)
        if discriminator_optimizer is None:
            discriminator_optimizer = optimizer.__class__.from_config(optimizer.get_config())
        else:
            discriminator_optimizer = keras.optimizers.get(discriminator_optimizer)
        super().compile(optimizer=optimizer, **kwargs)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) and not isinstance(
            discriminator_optimizer, keras.optimizers.LossScaleOptimizer
        ):
            # a mixed-precision policy: Keras wrapped the generator's optimizer, wrap the other
            discriminator_optimizer = keras.optimizers.LossScaleOptimizer(discriminator_optimizer)
        # each optimizer holds slots for its own network only; built here (inside the
        # strategy's scope, where compile is called) rather than lazily in a replica context
        self.optimizer.build(self.generator.trainable_variables)
        discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.discriminator_optimizer = discriminator_optimizer

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.discriminator_optimizer is not None:
            config["discriminator_optimizer"] = keras.saving.serialize_keras_object(
                self.discriminator_optimizer
            )
        return config

    def compile_from_config(self, config):
        """Compile from ``get_compile_config()`` (what ``keras.saving.load_model`` calls), both
        optimizers included, so that a loaded model resumes training."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        return [
            self.d_loss_tracker,
            self.g_loss_tracker,
            self.real_score_tracker,
            self.fake_score_tracker,
        ]

    def _generate(self, batch_size, labels, training):
        noise = replica_normal(self.seed_generator, (batch_size, self.latent_shape[0]))
        return self.generator([noise, labels] if self.num_classes else noise, training=training)

    def _discriminate(self, images, labels, training):
        inputs = [images, labels] if self.num_classes else images
        return self.discriminator(inputs, training=training)

    def _labels(self, labels, batch_size):
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError(
                f"{self.name} is class-conditional (num_classes={self.num_classes}): fit and "
                "evaluate need (images, labels) batches."
            )
        return tf.reshape(tf.cast(labels, "int32"), (batch_size,))

    @staticmethod
    def _bce(target, logits):
        """Mean binary cross-entropy of the logits against a constant target (0 or 1)."""
        labels = tf.fill(tf.shape(logits), tf.constant(target, logits.dtype))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))

    def _adversarial_losses(self, real, labels, training):
        """Discriminator and non-saturating generator losses on one batch of real images in
        [-1, 1] and as many generated ones, with D(x) and D(G(z))."""
        batch_size = tf.shape(real)[0]
        fake = self._generate(batch_size, labels, training)
        real_logits = self._discriminate(real, labels, training)
        fake_logits = self._discriminate(fake, labels, training)
        d_loss = self._bce(1.0, real_logits) + self._bce(0.0, fake_logits)
        g_loss = self._bce(1.0, fake_logits)
        return d_loss, g_loss, real_logits, fake_logits

    def _update_metrics(self, d_loss, g_loss, real_logits, fake_logits):
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.real_score_tracker.update_state(tf.sigmoid(real_logits))
        self.fake_score_tracker.update_state(tf.sigmoid(fake_logits))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, labels = unpack_images(data)
        real = tf.cast(images, "float32") * 2.0 - 1.0  # [0, 1] -> the generator's [-1, 1]
        batch_size = tf.shape(real)[0]
        labels = self._labels(labels, batch_size)

        # discriminator step: the generated batch is a constant here
        fake = tf.stop_gradient(self._generate(batch_size, labels, training=True))
        with tf.GradientTape() as tape:
            real_logits = self._discriminate(real, labels, training=True)
            fake_logits = self._discriminate(fake, labels, training=True)
            d_loss = self._bce(1.0, real_logits) + self._bce(0.0, fake_logits)
            # scaled inside the tape (a division outside it would not be differentiated):
            # per replica, and by the loss scale of a mixed-precision optimizer
            scaled = self.discriminator_optimizer.scale_loss(replica_mean(d_loss))
        weights = self.discriminator.trainable_variables
        grads = tape.gradient(scaled, weights)
        self.discriminator_optimizer.apply_gradients(zip(grads, weights))

        # generator step on fresh noise, against the updated discriminator
        with tf.GradientTape() as tape:
            generated = self._generate(batch_size, labels, training=True)
            g_loss = self._bce(1.0, self._discriminate(generated, labels, training=True))
            scaled = self.optimizer.scale_loss(replica_mean(g_loss))
        weights = self.generator.trainable_variables
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        return self._update_metrics(d_loss, g_loss, real_logits, fake_logits)

    def test_step(self, data):
        images, labels = unpack_images(data)
        real = tf.cast(images, "float32") * 2.0 - 1.0
        labels = self._labels(labels, tf.shape(real)[0])
        return self._update_metrics(*self._adversarial_losses(real, labels, training=False))

    def sampler(self):
        """Noise (and label) -> images in ``[0, 1]``: the generator and a rescaling, sharing
        this model's weights; converts to builtin-only TFLite (``kapps.export.to_tflite``).

        Returns:
            A ``keras.Model`` named ``"<name>_sampler"``: input ``noise`` ``(batch,
            latent_dim)`` (and ``label`` ``(batch,)`` int32 when conditional), output
            ``(batch, *image_shape)`` float32.
        """
        inputs = self._sampler_inputs(self.latent_shape[0], self.num_classes)
        rescale = keras.layers.Rescaling(0.5, offset=0.5, dtype="float32", name=self.IMAGE_OUTPUT)
        images = rescale(self.generator(inputs))  # [-1, 1] -> [0, 1]
        return keras.Model(inputs, images, name=f"{self.name}_sampler")


def dcgan(
    *,
    image_shape=(64, 64, 3),
    latent_dim=100,
    generator_filters=(1024, 512, 256, 128),
    discriminator_filters=(128, 256, 512, 1024),
    num_classes=None,
    embedding_dim=50,
    seed=None,
    name="dcgan",
):
    """DCGAN (Radford et al. 2016): generator, discriminator and adversarial training.

    The defaults are Figure 1's LSUN model at 64x64x3: the generator ``100 -> 4x4x1024 ->
    8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3`` and a discriminator mirroring it
    (``64x64x3 -> 32x32x128 -> 16x16x256 -> 8x8x512 -> 4x4x1024 -> 1``; the paper gives no
    discriminator widths). The paper publishes no parameter count. PyTorch's DCGAN example
    (``ngf = ndf = 64``) uses half these widths:
    ``generator_filters=(512, 256, 128, 64), discriminator_filters=(64, 128, 256, 512)``
    give its 3,576,704 generator and 2,765,568 discriminator parameters exactly (trainable;
    Keras also counts BatchNorm's moving statistics).

    For MNIST on a CPU: ``image_shape=(28, 28, 1), generator_filters=(64, 32),
    discriminator_filters=(32, 64)`` (``7x7x64 -> 14x14x32 -> 28x28x1``, 383,936
    parameters); wider networks (``(256, 128)`` and ``(64, 128)``, 1.9M) cost about three
    times as much per step.

    Args:
        image_shape: ``(height, width, channels)``; height and width divisible by
            ``2 ** len(generator_filters)``.
        latent_dim: size of the noise ``z`` (100, section 4 and Figure 1).
        generator_filters: channels of the generator's projection and hidden transposed
            convolutions.
        discriminator_filters: channels of the discriminator's strided convolutions.
        num_classes: ``None`` (unconditional, the paper's) or the number of classes of a
            class-conditional model.
        embedding_dim: size of the generator's label embedding (conditional only).
        seed: seed of the training noise (None: random).
        name: model name.

    Returns:
        A ``DCGAN`` with attributes ``generator`` and ``discriminator``. Its forward pass:
        ``noise`` ``(batch, latent_dim)`` (and ``label`` ``(batch,)`` int32 when conditional)
        -> ``{"images": (batch, *image_shape) in [0, 1], "logits": (batch, 1)}``.

    Raises:
        ValueError: for a bad argument (named in the message) or an image size the generator
            cannot reach.

    Example:
        >>> gan = dcgan(image_shape=(28, 28, 1), generator_filters=(64, 32),
        ...             discriminator_filters=(32, 64))
        >>> gan.compile()  # Adam(2e-4, beta_1=0.5) for both networks
        >>> gan.fit(train, epochs=5)
        >>> grid = gan.sample(64)  # (64, 28, 28, 1) in [0, 1]

    Paper: Radford et al. 2016, "Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks", sections 3-4 and Figure 1.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    generator_filters = check_filters("generator_filters", generator_filters)
    discriminator_filters = check_filters("discriminator_filters", discriminator_filters)
    num_classes = check_num_classes(num_classes)
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    check_seed(seed)
    check_name(name)
    check_upsampling(image_shape, len(generator_filters), "generator_filters")
    generator = dcgan_generator(
        latent_dim=latent_dim, image_shape=image_shape, filters=generator_filters,
        num_classes=num_classes, embedding_dim=embedding_dim, name=f"{name}_generator",
    )
    discriminator = dcgan_discriminator(
        image_shape=image_shape, filters=discriminator_filters, num_classes=num_classes,
        name=f"{name}_discriminator",
    )
    return DCGAN(generator, discriminator, seed=seed, name=name)
