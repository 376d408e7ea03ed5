"""RealNVP: a normalizing flow, an exactly invertible network trained by maximum likelihood
(Dinh, Sohl-Dickstein and Bengio 2017, "Density estimation using Real NVP").

    image (h, w, c) in [0, 1]
      -> LogitTransform: grey levels, dequantisation offset, logit(alpha + (1 - 2 alpha) v)
      -> MultiScaleFlow: affine couplings with checkerboard and channel masks, squeezes,
         half the variables factored out at each scale                   z (h, w, c)

The density of the data follows from the change of variables: ``log p(x) = log N(z; 0, I) +
log |det dz/dx|``, where the log-determinant is the sum of every layer's (the couplings'
Jacobians are triangular). Sampling runs the same layers backwards from Gaussian noise.

Bits per dimension. Images are 8-bit: ``pixel = 255 x`` in ``{0, ..., 255}``. A continuous
density cannot be fitted to discrete values, so training dequantises: ``w = pixel + u`` with
``u ~ U[0, 1)^D``, and ``log P(pixel) >= E_u[log p_w(pixel + u)]`` (Theis et al. 2016), so
``-log p_w`` of one noise sample is an unbiased estimate of an upper bound on the negative
log-likelihood of the discrete image. With ``D = h w c`` and the model's ``log_det`` taken
with respect to its input ``x = pixel / 255`` (``dw/dx = 255``):

    ``log p_w(w) = log N(z; 0, I) + log_det - D log 255``
    ``bits/dim = -log p_w(w) / (D ln 2)``

Equivalently, with ``v = w / 256`` in ``[0, 1)`` (the scale most papers write it in), ``bits/dim
= (-log p_v(v) + D log 256) / (D ln 2)``: a density uniform on ``[0, 1)^D`` scores 8 bits per
dimension. The model's deterministic forward pass (``training=False``, ``encode``) uses the
bin centres ``u = 0.5``; ``train_step`` and ``test_step`` draw ``u`` (one sample per image, the
standard practice for reported test figures).

Layer names: input ``image``; ``logit`` (``LogitTransform``); ``{name}_flow`` (a functional
sub-model around the ``MultiScaleFlow`` layer ``multiscale_flow``, whose couplings are
``scale{i}_checkerboard{j}`` and ``scale{i}_channel{j}``); ``log_det`` (the sum of the two
log-determinants).
"""

import math

import keras
import tensorflow as tf
from keras import ops

from kapps._checks import check_image_shape, check_name, check_positive_int
from kapps.layers.flows import LogitTransform, MultiScaleFlow, check_non_negative_int
from kapps.models.generative.common import (
    GenerativeModel,
    deserialize_models,
    replica_mean,
    serialize_models,
)


def _check_flow(flow):
    """Raise unless ``flow`` is a model built by ``realnvp_flow``; return its
    ``MultiScaleFlow`` layer."""
    layer = None
    if isinstance(flow, keras.Model):
        try:
            layer = flow.get_layer("multiscale_flow")
        except ValueError:
            layer = None
    if not isinstance(layer, MultiScaleFlow):
        raise ValueError(
            f"flow={getattr(flow, 'name', flow)!r} is not allowed; expected a keras.Model "
            "built by kapps' realnvp_flow (with a MultiScaleFlow layer 'multiscale_flow')."
        )
    return layer


def realnvp_flow(image_shape, num_scales=2, num_res_blocks=8, filters=64, name="realnvp_flow"):
    """The invertible part of RealNVP as a functional model: logits ``(h, w, c)`` to
    ``{"latent": z (h, w, c), "log_det": (batch,)}``.

    One ``MultiScaleFlow`` layer named ``multiscale_flow`` (see there); ``RealNVP`` runs it
    backwards for sampling.

    Args:
        image_shape: ``(height, width, channels)``; height and width divisible by
            ``2 ** (num_scales - 1)``.
        num_scales: scales of the multi-scale architecture.
        num_res_blocks: residual blocks of every coupling's ``s``/``t`` network.
        filters: feature maps of every ``s``/``t`` network.
        name: model name.

    Returns:
        A functional ``keras.Model`` with input ``logits``.

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    num_scales = check_positive_int("num_scales", num_scales)
    check_non_negative_int("num_res_blocks", num_res_blocks)
    check_positive_int("filters", filters)
    check_name(name)
    step = 2 ** (num_scales - 1)
    if image_shape[0] % step or image_shape[1] % step:
        raise ValueError(
            f"num_scales={num_scales!r} does not fit image_shape={image_shape!r}: each of the "
            f"{num_scales - 1} squeezes halves the height and width, so both must be divisible "
            f"by {step}."
        )
    logits = keras.Input(image_shape, name="logits")
    z, log_det = MultiScaleFlow(
        image_shape[-1], num_scales=num_scales, filters=filters,
        num_res_blocks=num_res_blocks, name="multiscale_flow",
    )(logits)
    return keras.Model(logits, {"latent": z, "log_det": log_det}, name=name)


@keras.saving.register_keras_serializable(package="kapps")
class RealNVP(GenerativeModel):
    """RealNVP: images to latents and back through one invertible network (see the module
    docstring for the model and the bits-per-dimension formula).

    Built by ``realnvp``. Forward pass (``training=False`` is deterministic): input ``image``
    ``(batch, h, w, c)`` in ``[0, 1]`` to ``{"latent": z (batch, h, w, c), "log_det": log |det
    dz/dimage| (batch,)}`` at the bin centres. ``latent_shape`` is the image shape: the
    variables factored out at each scale are put back in place (``MultiScaleFlow``).

    Training (``compile(optimizer)``, then ``fit`` on ``(images, labels)`` batches; labels are
    ignored): the loss is the mean bits per dimension of the dequantised images (one noise
    draw per image and step). Metrics: ``loss`` and ``bits_per_dim``, the same number (no
    regularisation term; the paper's L2 penalty is on weight-normalization scales, which this
    implementation does not have: see ``kapps.layers.flows``); ``bits_per_dim`` is there so
    that logs name what they hold. ``evaluate`` reports both on dequantised images.

    Args:
        flow: a model built by ``realnvp_flow``.
        alpha: the logit margin of ``LogitTransform`` (0.05, section 4.1).
        num_bins: grey levels of the data (256).
        seed: seed of the dequantisation noise (None: random).
        name: model name.
        **kwargs: standard model arguments (``trainable``).

    Example:
        >>> model = realnvp(image_shape=(28, 28, 1), num_scales=3, num_res_blocks=1, filters=8)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(kapps.data.mnist(...), epochs=5)
        >>> z, log_det = model.encode(images)
        >>> images_again = model.decode(z)
        >>> samples = model.sample(64, temperature=0.7)

    Paper: Dinh, Sohl-Dickstein and Bengio 2017, "Density estimation using Real NVP".
    """

    def __init__(
        self,
        flow,
        alpha=0.05,
        num_bins=256,
        seed=None,
        name="realnvp",
        **kwargs,
    ):
        flow_layer = _check_flow(flow)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed={seed!r} is not allowed; expected an int or None.")
        check_name(name)
        image_shape = tuple(flow.inputs[0].shape[1:])
        logit = LogitTransform(alpha, num_bins, name="logit")

        image = keras.Input(image_shape, name="image")
        y, logit_log_det = logit(image)  # bin centres: a deterministic forward pass
        out = flow(y)
        log_det = keras.layers.Add(name="log_det")([logit_log_det, out["log_det"]])
        super().__init__(image, {"latent": out["latent"], "log_det": log_det}, name=name, **kwargs)

        self.flow = flow
        self.flow_layer = flow_layer
        self.logit = logit
        self.alpha = logit.alpha
        self.num_bins = logit.num_bins
        self.seed = seed
        self.image_shape = image_shape
        self.latent_shape = image_shape
        self.num_classes = None
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.bits_tracker = keras.metrics.Mean(name="bits_per_dim")

    # -- densities --------------------------------------------------------------------------

    @property
    def num_dims(self):
        """``D``: the number of variables of one image."""
        return math.prod(self.image_shape)

    def _log_prob(self, images, noise, training=False):
        """``log p_w`` (nats) per image for dequantisation offsets ``noise`` (None: bin
        centres)."""
        images = ops.convert_to_tensor(images, self.inputs[0].dtype)
        y, logit_log_det = self.logit.forward(images, noise)
        out = self.flow(y, training=training)
        z = out["latent"]
        d = self.num_dims
        # log N(z; 0, I), summed over the D variables of each image
        log_normal = -0.5 * ops.sum(ops.square(z), axis=(1, 2, 3)) - 0.5 * d * math.log(2 * math.pi)
        log_det = logit_log_det + out["log_det"]
        # log p_w = log N(z) + log |det dz/dx| - D log(num_bins - 1), with w = (num_bins-1) x + u
        return log_normal + log_det - d * math.log(self.num_bins - 1)

    def _noise(self, images, dequantize):
        if not dequantize:
            return None
        return keras.random.uniform(ops.shape(images), seed=self.seed_generator)

    def log_prob(self, images, dequantize=False):
        """Log-density (nats) of each image's grey levels ``w = pixel + u``.

        Args:
            images: ``(batch, h, w, c)`` in ``[0, 1]`` (``pixel / (num_bins - 1)``).
            dequantize: draw ``u ~ U[0, 1)`` (one sample per image) instead of the bin
                centres ``u = 0.5``.

        Returns:
            ``(batch,)`` float32 tensor; with ``dequantize`` its negative is an unbiased
            estimate of an upper bound on the discrete negative log-likelihood.
        """
        return self._log_prob(images, self._noise(images, dequantize))

    def bits_per_dim(self, images, dequantize=False):
        """``-log_prob(images, dequantize) / (D ln 2)`` per image, ``(batch,)``."""
        return -self.log_prob(images, dequantize) / (self.num_dims * math.log(2.0))

    def encode(self, images):
        """``(z, log_det)``: the latent ``(batch, *latent_shape)`` of each image and ``log |det
        dz/dimage|`` ``(batch,)``, at the bin centres (the model's forward pass)."""
        out = self(images, training=False)
        return out["latent"], out["log_det"]

    def decode(self, z):
        """Images ``(batch, *image_shape)`` in ``[0, 1]`` from latents: the exact inverse of
        ``encode`` (the flow backwards, the inverse logit, the grey level of the bin centre),
        clipped to ``[0, 1]``."""
        y = self.flow_layer(ops.convert_to_tensor(z, self.inputs[0].dtype), inverse=True)
        return ops.clip(self.logit(y, inverse=True), 0.0, 1.0)

    def sampler(self, temperature=1.0):
        """A functional model from ``noise`` ``(batch, *latent_shape)`` (standard normal) to
        ``images`` in ``[0, 1]``, sharing this model's weights; converts to builtin-only
        TFLite.

        Args:
            temperature: the noise is multiplied by it (a standard deviation): values below 1
                trade diversity for cleaner samples (the "temperature" of Glow, Kingma and
                Dhariwal 2018; the RealNVP paper samples at 1).

        Returns:
            A ``keras.Model`` named ``{name}_sampler``.

        Raises:
            ValueError: for a temperature that is not a number > 0.
        """
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not temperature > 0
        ):
            raise ValueError(f"temperature={temperature!r} is not allowed; expected a number > 0.")
        noise = keras.Input(self.latent_shape, name=self.NOISE_INPUT)
        z = noise
        if temperature != 1.0:
            z = keras.layers.Rescaling(float(temperature), name="temperature")(z)
        y = self.flow_layer(z, inverse=True)
        x = self.logit(y, inverse=True)
        # clip to [0, 1]: the grey levels of the bin centres reach -0.5/255 and 1 + 0.5/255
        images = keras.layers.ReLU(max_value=1.0, name=self.IMAGE_OUTPUT)(x)
        return keras.Model(noise, images, name=f"{self.name}_sampler")

    # -- training ---------------------------------------------------------------------------

    def compile(self, optimizer="adam", **kwargs):
        """Configure training: ``optimizer`` (Adam with its defaults in the paper, section
        4.1). The loss is the model's own (bits per dimension); ``loss``, ``metrics`` and
        ``loss_weights`` are refused. Other keyword arguments go to ``keras.Model.compile``.

        Raises:
            ValueError: if ``loss``, ``metrics`` or ``loss_weights`` are given.
        """
        for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{key}={kwargs[key]!r} is not allowed; RealNVP trains on its own "
                    "negative log-likelihood (bits per dimension) and reports its own metrics."
                )
            kwargs.pop(key, None)
        super().compile(optimizer=optimizer, **kwargs)
        # create the optimizer's slots now (in the caller's strategy scope) rather than in the
        # first traced train step, which tf.function would then trace a second time
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker, self.bits_tracker]

    def _objective(self, data, training):
        """``(loss, bits per dimension of each image)`` on dequantised images."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        images = ops.convert_to_tensor(images, self.inputs[0].dtype)
        noise = keras.random.uniform(ops.shape(images), seed=self.seed_generator)
        bits = -self._log_prob(images, noise, training=training) / (self.num_dims * math.log(2.0))
        return ops.mean(bits), bits

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, bits = self._objective(data, training=True)
            # gradients are summed over replicas: scale each replica's mean
            scaled = replica_mean(loss)
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.loss_tracker.update_state(loss)
        self.bits_tracker.update_state(bits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        loss, bits = self._objective(data, training=False)
        self.loss_tracker.update_state(loss)
        self.bits_tracker.update_state(bits)
        return {m.name: m.result() for m in self.metrics}

    # -- serialization ----------------------------------------------------------------------

    def get_config(self):
        return serialize_models(
            {
                "alpha": self.alpha,
                "num_bins": self.num_bins,
                "seed": self.seed,
                "name": self.name,
                "trainable": self.trainable,
            },
            flow=self.flow,
        )

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_models(config, ["flow"], custom_objects))


def realnvp(
    image_shape=(32, 32, 3),
    num_scales=2,
    num_res_blocks=8,
    filters=64,
    alpha=0.05,
    seed=None,
    name="realnvp",
):
    """Build RealNVP; defaults: the paper's CIFAR-10 model (section 4.1: 8 residual blocks,
    64 feature maps, one downscale, i.e. 2 scales), 6,001,433 parameters.

    Inputs and outputs: see ``RealNVP``. The flow (``MultiScaleFlow``): per scale but the last,
    3 checkerboard couplings, a squeeze, 3 channel couplings and half the variables factored
    out; the last scale 4 checkerboard couplings. Each coupling's ``s``/``t`` network is a
    ResNet of ``num_res_blocks`` blocks of ``filters`` feature maps, 3x3 convolutions without
    normalization (see ``kapps.layers.flows`` for why not the paper's batch normalization).

    Args:
        image_shape: ``(height, width, channels)``; height and width divisible by
            ``2 ** (num_scales - 1)`` (MNIST's ``(28, 28, 1)``: up to 3 scales).
        num_scales: scales of the multi-scale architecture (section 3.6).
        num_res_blocks: residual blocks of every ``s``/``t`` network (0: one hidden
            convolution).
        filters: feature maps of every ``s``/``t`` network.
        alpha: the logit margin (0.05, section 4.1); in ``(0, 0.5)``.
        seed: seed of the dequantisation noise (None: random).
        name: model name; the flow sub-model is ``{name}_flow``.

    Returns:
        A ``RealNVP`` (a ``keras.Model``).

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.

    Example:
        >>> model = realnvp(image_shape=(28, 28, 1), num_scales=3, num_res_blocks=1,
        ...                 filters=32)
        >>> out = model(images)                 # images (batch, 28, 28, 1) in [0, 1]
        >>> out["latent"].shape, out["log_det"].shape   # (batch, 28, 28, 1), (batch,)

    Paper: Dinh, Sohl-Dickstein and Bengio 2017, "Density estimation using Real NVP",
    sections 3 and 4.1.
    """
    image_shape = check_image_shape("image_shape", image_shape, allow_unknown_size=False)
    num_scales = check_positive_int("num_scales", num_scales)
    num_res_blocks = check_non_negative_int("num_res_blocks", num_res_blocks)
    filters = check_positive_int("filters", filters)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha!r} is not allowed; expected a number in (0, 0.5).")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} is not allowed; expected an int or None.")
    check_name(name)
    flow = realnvp_flow(
        image_shape, num_scales=num_scales, num_res_blocks=num_res_blocks, filters=filters,
        name=f"{name}_flow",
    )
    return RealNVP(flow, alpha=alpha, seed=seed, name=name)
