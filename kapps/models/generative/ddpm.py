"""DDPM: denoising diffusion probabilistic models (Ho, Jain, Abbeel 2020), sampled by
ancestral sampling or by DDIM (Song, Meng, Ermon 2021) with any number of steps.

Training (Algorithm 1, the simple loss of eq. 14): take a clean image ``x0`` (scaled to
``[-1, 1]``), a timestep ``t ~ U{0, ..., T-1}`` and noise ``eps ~ N(0, I)``, form ``x_t =
sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` and regress the U-Net's output on ``eps``
(mean squared error). Sampling starts from ``x_T ~ N(0, I)`` and removes the predicted noise
step by step (``kapps.layers.diffusion``); the predicted ``x0`` is clipped to ``[-1, 1]`` at
every step, as Ho et al.'s code does.

The denoiser ``ddpm_unet`` (appendix B; ``diffusion_tf/models/unet.py``)::

    timesteps (batch,) -> sinusoid(C) -> Dense(4C) swish Dense(4C)                   temb
    noisy_images (batch, H, W, ch) -> conv3x3(C)
      -> per resolution level l (width C x mult[l]): num_res_blocks residual blocks
         (each + attention where the height is in attention_resolutions), then a 3x3
         stride-2 conv (not after the last level); every output is kept as a skip
      -> middle: residual block, attention, residual block
      -> per level, deepest first: num_res_blocks + 1 residual blocks, each on the
         concatenation with one skip (+ attention), then 2x nearest upsampling + conv3x3
         (not after the first level)
      -> GroupNorm, swish, conv3x3(ch): the predicted noise (batch, H, W, ch)

Residual blocks: GroupNorm (32 groups; fewer below 128 channels, ``group_count``), swish,
conv3x3, + Dense(swish(temb)), GroupNorm, swish, dropout, conv3x3, + the input (1x1
projected when the width changes). Attention: single-head over all positions, with 1x1
projections. Ho et al.'s CIFAR-10 model (the defaults): C=128, mult (1, 2, 2, 2), 2 blocks
per level, attention at 16x16, dropout 0.1: 35,746,307 parameters, the official
implementation's count (the paper rounds to 35.7M). Two details differ from the official
code, neither in the parameters: its upsampling resizes with ``align_corners=True`` (which
does not repeat pixels evenly), here each pixel becomes a 2x2 block; the attention's three
1x1 projections are one 1x1 convolution to ``3C``, split.

Layer names (denoiser): ``noisy_images``, ``timesteps``, ``temb``, ``conv_in``,
``down{l}_block{b}``, ``down{l}_attn{b}``, ``down{l}_downsample``, ``mid_block1``,
``mid_attn``, ``mid_block2``, ``up{l}_block{b}``, ``up{l}_attn{b}``, ``up{l}_concat{b}``,
``up{l}_upsample``, ``up{l}_upsample_conv``, ``out_norm``, ``out_swish``, ``conv_out``
(levels and blocks counted from 1).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kapps._checks import (
    check_bool,
    check_choice,
    check_image_shape,
    check_name,
    check_positive_int,
    check_rate,
)
from kapps.layers.diffusion import (
    DDIMSampler,
    DiffusionAttention,
    DiffusionResBlock,
    GroupNorm,
    TimestepEmbedding,
    ancestral_step,
    check_betas,
    check_eta,
    check_steps,
    ddim_step,
    ddim_timesteps,
    group_count,
    linear_beta_schedule,
    near_zero_initializer,
    q_sample,
)
from kapps.layers.mbconv import _check_seed, swish
from kapps.models.generative.common import (
    GenerativeModel,
    deserialize_models,
    replica_mean,
    serialize_models,
)

#: Accepted values of ``DDPM.generate(method=...)``.
METHODS = ("ddim", "ancestral")


def _check_multipliers(value):
    if (
        not isinstance(value, (list, tuple))
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            f"filter_multipliers={value!r} is not allowed; expected a non-empty sequence of "
            "positive integers (one width multiplier per resolution level)."
        )
    return tuple(value)


def _check_resolutions(value, heights):
    if not isinstance(value, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, int) for v in value
    ):
        raise ValueError(
            f"attention_resolutions={value!r} is not allowed; expected a sequence of integer "
            f"heights among the U-Net's resolutions {heights}."
        )
    missing = [v for v in value if v not in heights]
    if missing:
        raise ValueError(
            f"attention_resolutions={tuple(value)!r} is not allowed: {missing} are not reached; "
            f"the U-Net's resolutions (feature-map heights) are {heights}."
        )
    return tuple(value)


def ddpm_unet(
    image_shape=(32, 32, 3),
    base_filters=128,
    filter_multipliers=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    dropout=0.1,
    name="ddpm_unet",
):
    """Build Ho et al.'s noise-predicting U-Net (see the module docstring).

    Inputs: ``noisy_images`` ``(batch, *image_shape)`` float and ``timesteps`` ``(batch,)``
    int32. Output: the predicted noise, ``(batch, *image_shape)``.

    Args:
        image_shape: ``(height, width, channels)``; height and width must be divisible by
            ``2 ** (len(filter_multipliers) - 1)``.
        base_filters: the width ``C`` of the first level (128 in the paper); the time
            embedding has ``4 C`` features.
        filter_multipliers: width of each resolution level as a multiple of ``C``; one level
            per entry, each but the last followed by a 2x downsampling ((1, 2, 2, 2) for
            CIFAR-10's 32 -> 16 -> 8 -> 4).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map heights that get a self-attention block after
            each residual block ((16,) in the paper); the middle always has one.
        dropout: dropout rate in every residual block (0.1 for CIFAR-10).
        name: model name.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed (also for attention resolutions the U-Net never reaches).

    Example:
        >>> denoiser = ddpm_unet((28, 28, 1), base_filters=32, filter_multipliers=(1, 2, 2),
        ...                      attention_resolutions=(7,))
        >>> eps = denoiser([noisy_images, timesteps])  # (batch, 28, 28, 1)

    Paper: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models", appendix B.
    """
    image_shape = check_image_shape(
        "image_shape", image_shape, allow_unknown_size=False,
        note="; the attention blocks need known sizes",
    )
    base_filters = check_positive_int("base_filters", base_filters)
    multipliers = _check_multipliers(filter_multipliers)
    num_res_blocks = check_positive_int("num_res_blocks", num_res_blocks)
    dropout = check_rate("dropout", dropout)
    check_name(name)
    height, width, channels = image_shape
    factor = 2 ** (len(multipliers) - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"image_shape={image_shape!r} is not allowed with {len(multipliers)} resolution "
            f"levels (filter_multipliers={multipliers!r}): height and width must be divisible "
            f"by {factor}."
        )
    heights = tuple(height // 2**level for level in range(len(multipliers)))
    attention = _check_resolutions(attention_resolutions, heights)

    images = keras.Input(image_shape, name="noisy_images")
    timesteps = keras.Input((), dtype="int32", name="timesteps")
    temb = TimestepEmbedding(base_filters, 4 * base_filters, name="temb")(timesteps)

    def res_block(x, filters, block_name):
        return DiffusionResBlock(filters, dropout=dropout, name=block_name)(x, temb)

    x = keras.layers.Conv2D(base_filters, 3, padding="same", name="conv_in")(images)
    skips = [x]
    for level, mult in enumerate(multipliers, start=1):
        for block in range(1, num_res_blocks + 1):
            x = res_block(x, base_filters * mult, f"down{level}_block{block}")
            if x.shape[1] in attention:
                x = DiffusionAttention(name=f"down{level}_attn{block}")(x)
            skips.append(x)
        if level < len(multipliers):
            # 3x3 stride-2 "same" convolution: H -> H/2
            x = keras.layers.Conv2D(
                x.shape[-1], 3, strides=2, padding="same", name=f"down{level}_downsample"
            )(x)
            skips.append(x)

    x = res_block(x, x.shape[-1], "mid_block1")
    x = DiffusionAttention(name="mid_attn")(x)
    x = res_block(x, x.shape[-1], "mid_block2")

    for level in range(len(multipliers), 0, -1):
        for block in range(1, num_res_blocks + 2):
            x = keras.layers.Concatenate(name=f"up{level}_concat{block}")([x, skips.pop()])
            x = res_block(x, base_filters * multipliers[level - 1], f"up{level}_block{block}")
            if x.shape[1] in attention:
                x = DiffusionAttention(name=f"up{level}_attn{block}")(x)
        if level > 1:
            x = keras.layers.UpSampling2D(
                2, interpolation="nearest", name=f"up{level}_upsample"
            )(x)  # H -> 2H
            x = keras.layers.Conv2D(
                x.shape[-1], 3, padding="same", name=f"up{level}_upsample_conv"
            )(x)

    x = GroupNorm(group_count(x.shape[-1]), name="out_norm")(x)
    x = keras.layers.Activation(swish, name="out_swish")(x)
    outputs = keras.layers.Conv2D(
        channels, 3, padding="same", kernel_initializer=near_zero_initializer(), name="conv_out"
    )(x)
    return keras.Model([images, timesteps], outputs, name=name)


@keras.saving.register_keras_serializable(package="kapps")
class DDPM(GenerativeModel):
    """A denoising diffusion model: a noise-predicting denoiser and its linear noise schedule.

    Built by ``ddpm`` (see there). The forward pass is the denoiser's: ``(noisy_images,
    timesteps) -> predicted noise``. ``fit`` takes ``(images, labels)`` batches with images in
    ``[0, 1]`` (labels are ignored) and minimises the simple loss (eq. 14), reported as the
    metric ``loss``. ``generate`` and ``sample`` run the ancestral or DDIM sampler as one
    compiled TensorFlow loop; ``sampler(steps)`` is a functional model with ``steps``
    deterministic DDIM steps unrolled, for export.

    Args:
        denoiser: a model from ``(noisy_images, timesteps)`` to the predicted noise, e.g.
            ``ddpm_unet``.
        timesteps: ``T``, the number of diffusion steps (1000).
        beta_start, beta_end: the linear schedule's first and last ``beta`` (1e-4, 0.02).
        seed: optional integer seed of the training noise and timesteps.
        name: model name.
        **kwargs: standard model arguments (``trainable``).

    Attributes:
        betas, alphas, alpha_bars: the schedule, float64 numpy arrays of ``(timesteps,)``.

    Paper: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models"; Song, Meng,
    Ermon 2021, "Denoising Diffusion Implicit Models".
    """

    def __init__(self, denoiser, timesteps=1000, beta_start=1e-4, beta_end=0.02, seed=None,
                 name="ddpm", **kwargs):
        if not isinstance(denoiser, keras.Model) or len(denoiser.inputs) != 2:
            raise ValueError(
                f"denoiser={denoiser!r} is not allowed; expected a keras.Model with two inputs "
                "(noisy_images, timesteps), e.g. from ddpm_unet."
            )
        timesteps = check_positive_int("timesteps", timesteps)
        beta_start, beta_end = check_betas(beta_start, beta_end)
        seed = _check_seed(seed)
        check_name(name)
        image_shape = tuple(denoiser.inputs[0].shape[1:])
        noisy = keras.Input(image_shape, name="noisy_images")
        steps = keras.Input((), dtype="int32", name="timesteps")
        super().__init__([noisy, steps], denoiser([noisy, steps]), name=name, **kwargs)
        self.denoiser = denoiser
        self.timesteps = timesteps
        self.beta_start, self.beta_end = beta_start, beta_end
        self.seed = seed
        self.image_shape = image_shape
        self.latent_shape = image_shape
        self.num_classes = None
        schedule = linear_beta_schedule(timesteps, beta_start, beta_end)
        self.betas = schedule["betas"]
        self.alphas = schedule["alphas"]
        self.alpha_bars = schedule["alpha_bars"]
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._sampling_functions = {}

    # -- training -------------------------------------------------------------------------

    def compile(self, optimizer=None, **kwargs):
        """Configure training: ``optimizer`` (default ``Adam(2e-4, global_clipnorm=1.0)``, Ho
        et al.'s CIFAR-10 settings, appendix B; pass ``use_ema=True, ema_momentum=0.9999`` to
        a Keras optimizer for their weight averaging) and ``Model.compile``'s other keyword
        arguments (``steps_per_execution``, ``jit_compile``). The loss is the model's own.

        Raises:
            ValueError: if ``loss`` is passed.
        """
        if "loss" in kwargs:
            raise ValueError(
                f"loss={kwargs['loss']!r} is not allowed; DDPM trains with its own simple loss "
                "(eq. 14 of Ho et al.)."
            )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(2e-4, global_clipnorm=1.0)
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _loss(self, images, training):
        """The simple loss on a batch of ``[0, 1]`` images: MSE between drawn and predicted
        noise at uniformly drawn timesteps (eq. 14)."""
        x0 = ops.cast(images, "float32") * 2.0 - 1.0  # [0, 1] -> [-1, 1] (section 4)
        t, eps = self.draw_noise(tf.shape(x0))
        return self.loss_for(x0, t, eps, training=training)

    def draw_noise(self, shape):
        """Draw the training timesteps ``t ~ U{0, ..., T-1}`` ``(batch,)`` and noise ``eps ~
        N(0, I)`` of ``shape`` from the model's seed generator (one seed per step), folded
        with the replica's index: under a ``tf.distribute`` strategy every replica draws its
        own (the generator's state is mirrored, so its plain draws would repeat across
        replicas)."""
        seed = self.seed_generator.next()
        context = tf.distribute.get_replica_context()
        if context is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        t = tf.random.stateless_uniform(
            shape[:1], tf.random.experimental.stateless_fold_in(seed, 0), 0, self.timesteps,
            dtype="int32",
        )
        eps = tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(seed, 1))
        return t, eps

    def loss_for(self, x0, t, eps, training=False):
        """The simple loss for given ``x0`` in ``[-1, 1]``, timesteps ``t`` ``(batch,)`` and
        noise ``eps``: ``mean((eps - denoiser(q_sample(x0, t, eps), t))^2)``."""
        alpha_bar = ops.take(ops.convert_to_tensor(self.alpha_bars.astype("float32")), t)
        # (batch,) -> (batch, 1, 1, 1): one alpha_bar per image
        alpha_bar = ops.reshape(alpha_bar, (-1, 1, 1, 1))
        x_t = q_sample(x0, alpha_bar, eps)
        predicted = ops.cast(self([x_t, t], training=training), "float32")
        return ops.mean(ops.square(eps - predicted))

    @staticmethod
    def _images(data):
        return data[0] if isinstance(data, (tuple, list)) else data

    def train_step(self, data):
        images = self._images(data)
        with tf.GradientTape() as tape:
            loss = self._loss(images, training=True)
            scaled = replica_mean(loss)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        self.loss_tracker.update_state(self._loss(self._images(data), training=False))
        return {m.name: m.result() for m in self.metrics}

    # -- sampling -------------------------------------------------------------------------

    def _plan(self, steps, method, eta):
        """Validate the sampling options; return (timesteps visited, from last to first)."""
        check_choice("method", method, METHODS)
        eta = check_eta(eta)
        if method == "ancestral":
            if steps is not None and steps != self.timesteps:
                raise ValueError(
                    f"steps={steps!r} is not allowed with method='ancestral', which visits "
                    f"all {self.timesteps} timesteps (Algorithm 2); use method='ddim' for fewer."
                )
            if eta != 0.0:
                raise ValueError(
                    f"eta={eta!r} is not allowed with method='ancestral' (its variance is "
                    "beta_t); eta is DDIM's noise scale."
                )
            return np.arange(self.timesteps)[::-1], eta
        steps = self.timesteps if steps is None else check_steps(steps, self.timesteps)
        return ddim_timesteps(self.timesteps, steps)[::-1], eta

    def _sampling_function(self, method, stochastic, jit_compile):
        """One compiled loop per method (and whether it adds noise), traced once for any
        batch size and step count: the visited timesteps come padded to ``T`` entries with
        their count, so XLA, which compiles per input shape, compiles once per batch size."""
        key = (method, stochastic, jit_compile)
        if key in self._sampling_functions:
            return self._sampling_functions[key]
        betas = tf.constant(self.betas.astype("float32"))
        # alpha_bar at index t + 1, with alpha_bar_{-1} = 1 (after the last step) at index 0
        alpha_bars = tf.constant(np.concatenate([[1.0], self.alpha_bars]).astype("float32"))
        spec = tf.TensorSpec((None, *self.image_shape), "float32")
        padded = tf.TensorSpec((self.timesteps,), "int32")
        scalar = tf.TensorSpec((), "int32")

        @tf.function(
            input_signature=[spec, padded, scalar, tf.TensorSpec((), "float32"),
                             tf.TensorSpec((2,), "int32")],
            jit_compile=jit_compile,
        )
        def run(x, timesteps, count, eta, seed):
            batch = tf.shape(x)[0]

            def body(i, x):
                t = timesteps[i]
                # the step after the last visits "timestep -1", whose alpha_bar is 1
                prev = tf.where(i + 1 < count, timesteps[tf.minimum(i + 1, count - 1)], -1)
                eps = self.denoiser([x, tf.fill([batch], t)], training=False)
                noise = None
                if stochastic:
                    noise = tf.random.stateless_normal(
                        tf.shape(x), seed=tf.random.experimental.stateless_fold_in(seed, i)
                    )
                if method == "ancestral":
                    # no noise at the last step (Algorithm 2: z = 0 if t = 1)
                    noise = noise * tf.cast(t > 0, x.dtype)
                    x = ancestral_step(
                        x, eps, betas[t], alpha_bars[t + 1], alpha_bars[prev + 1], noise
                    )
                else:
                    x = ddim_step(x, eps, alpha_bars[t + 1], alpha_bars[prev + 1], eta, noise)
                return i + 1, x

            _, x = tf.while_loop(lambda i, x: i < count, body, (tf.constant(0), x))
            return tf.clip_by_value((x + 1.0) * 0.5, 0.0, 1.0)

        self._sampling_functions[key] = run
        return run

    def generate(self, noise, steps=None, method="ddim", eta=0.0, seed=0, jit_compile=False):
        """Images from noise ``x_T`` by running the reverse process, as one compiled loop.

        ``method="ancestral"``: Algorithm 2 of Ho et al. over all ``T`` timesteps, with
        ``sigma_t^2 = beta_t``. ``method="ddim"``: Song et al.'s eq. 12 over ``steps``
        evenly spaced timesteps (``ddim_timesteps``); ``eta=0`` is deterministic, ``eta=1``
        with ``steps=T`` is ancestral sampling with the posterior variance ``tilde beta_t``.
        Both clip the predicted ``x0`` to ``[-1, 1]`` at every step (Ho et al.'s code).

        Args:
            noise: ``(batch, *image_shape)`` standard normal ``x_T`` (numpy or tensor).
            steps: DDIM steps (1 .. T); None for all ``T``. Must be None or ``T`` for
                ancestral sampling.
            method: ``"ddim"`` or ``"ancestral"``.
            eta: DDIM's noise scale in ``[0, 1]`` (0 for ancestral sampling).
            seed: integer seed of the noise added along the way (unused when ``eta=0``):
                TensorFlow's stateless generator, reproducible for a given seed and
                ``jit_compile`` (XLA turns the same seed into different, equally normal
                draws).
            jit_compile: compile the loop with XLA. Off by default: on a 2-core CPU the XLA
                loop measured slower than the plain graph (10 DDIM steps of the MNIST
                configuration at batch 250: 21.7 against 16.8 CPU seconds), and it compiles
                anew for every batch size (about 25 s).

        Returns:
            ``(batch, *image_shape)`` float32 numpy images in ``[0, 1]``.

        Raises:
            ValueError: for an unknown method, ``steps`` outside ``[1, T]``, ``eta``
                outside ``[0, 1]``, or noise of the wrong shape.
        """
        plan, eta = self._plan(steps, method, eta)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed={seed!r} is not allowed; expected an integer.")
        check_bool("jit_compile", jit_compile)
        return self._generate(noise, plan, method, eta, (int(seed), 0), jit_compile)

    def _generate(self, noise, plan, method, eta, seed_pair, jit_compile):
        noise = np.asarray(noise, dtype="float32")
        if noise.shape[1:] != self.image_shape or noise.ndim != 4:
            raise ValueError(
                f"noise of shape {noise.shape} is not allowed; expected (batch, "
                f"*{self.image_shape})."
            )
        stochastic = method == "ancestral" or eta > 0
        run = self._sampling_function(method, stochastic, jit_compile)
        padded = np.zeros(self.timesteps, "int32")
        padded[: len(plan)] = plan
        images = run(
            tf.constant(noise), tf.constant(padded), tf.constant(len(plan), "int32"),
            tf.constant(eta, "float32"), tf.constant(seed_pair, "int32"),
        )
        return images.numpy()

    def sample(self, num_samples, *, seed=0, labels=None, batch_size=250, steps=50,
               method="ddim", eta=0.0, jit_compile=False):
        """``num_samples`` images in ``[0, 1]`` (numpy) from ``noise(num_samples, seed)``, in
        batches of ``batch_size``, with ``generate``'s sampler (``steps`` DDIM steps by
        default; ``method="ancestral", steps=None`` for Algorithm 2; see ``generate`` for
        ``eta`` and ``jit_compile``). ``labels`` must be None (the model is unconditional)."""
        if labels is not None:
            raise ValueError("labels are not allowed: this DDPM is not class-conditional.")
        check_positive_int("num_samples", num_samples)
        check_positive_int("batch_size", batch_size)
        plan, eta = self._plan(steps, method, eta)
        check_bool("jit_compile", jit_compile)
        noise = self.noise(num_samples, seed)
        images = []
        for index, start in enumerate(range(0, num_samples, batch_size)):
            batch = noise[start:start + batch_size]
            if len(batch) < batch_size and num_samples > batch_size:
                # a short last batch is padded: XLA would compile the loop again for its shape
                batch = np.concatenate([batch, noise[: batch_size - len(batch)]])
            # a different stream of added noise per batch
            out = self._generate(batch, plan, method, eta, (seed, index), jit_compile)
            images.append(out[: min(batch_size, num_samples - start)])
        return np.concatenate(images, axis=0)

    def sampler(self, steps=10):
        """A functional model ``noise -> images`` running ``steps`` deterministic DDIM steps
        (``eta=0``, the predicted ``x0`` clipped) unrolled in one graph
        (``kapps.layers.DDIMSampler``), sharing the denoiser's weights; converts to
        builtin-only TFLite and equals ``generate(noise, steps, "ddim")``.

        Raises:
            ValueError: for ``steps`` outside ``[1, T]``.
        """
        check_steps(steps, self.timesteps)
        noise = keras.Input(self.latent_shape, name=self.NOISE_INPUT)
        images = DDIMSampler(
            self.denoiser, steps=steps, num_timesteps=self.timesteps, beta_start=self.beta_start,
            beta_end=self.beta_end, name=self.IMAGE_OUTPUT,
        )(noise)
        return keras.Model(noise, images, name=f"{self.name}_sampler_ddim{steps}")

    # -- serialization --------------------------------------------------------------------

    def get_config(self):
        config = {
            "timesteps": self.timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "seed": self.seed,
            "name": self.name,
            "trainable": self.trainable,
        }
        return serialize_models(config, denoiser=self.denoiser)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**deserialize_models(config, ["denoiser"], custom_objects))


def ddpm(
    image_shape=(32, 32, 3),
    base_filters=128,
    filter_multipliers=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    dropout=0.1,
    timesteps=1000,
    beta_start=1e-4,
    beta_end=0.02,
    name="ddpm",
):
    """Build a DDPM; defaults: Ho et al.'s CIFAR-10 model, 35,746,307 parameters.

    The denoiser is ``ddpm_unet`` with the first six arguments (named ``"denoiser"``); the
    schedule is linear from ``beta_start`` to ``beta_end`` over ``timesteps`` steps (section
    4). The model's forward pass is the denoiser's: inputs ``noisy_images`` and ``timesteps``
    (int32, ``(batch,)``), output the predicted noise.

    Args:
        image_shape: ``(height, width, channels)`` of the images.
        base_filters: the U-Net's base width ``C`` (128).
        filter_multipliers: width multiplier per resolution level ((1, 2, 2, 2)).
        num_res_blocks: residual blocks per level (2).
        attention_resolutions: feature-map heights with self-attention ((16,)).
        dropout: dropout rate in the residual blocks (0.1).
        timesteps: ``T`` (1000).
        beta_start: the first ``beta`` (1e-4).
        beta_end: the last ``beta`` (0.02).
        name: model name.

    Returns:
        A ``DDPM`` (a ``keras.Model``).

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.

    Example:
        >>> model = ddpm(image_shape=(28, 28, 1), base_filters=32, filter_multipliers=(1, 2, 2),
        ...              attention_resolutions=(7,))
        >>> model.compile(optimizer=keras.optimizers.Adam(2e-4))
        >>> model.fit(kapps.data.mnist(...))                       # (images, labels) batches
        >>> images = model.sample(16, steps=50)                    # (16, 28, 28, 1) in [0, 1]

    Paper: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models", section 4 and
    appendix B; DDIM sampling: Song, Meng, Ermon 2021, eq. 12.
    """
    check_positive_int("timesteps", timesteps)
    check_betas(beta_start, beta_end)
    check_name(name)
    denoiser = ddpm_unet(
        image_shape=image_shape, base_filters=base_filters, filter_multipliers=filter_multipliers,
        num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
        dropout=dropout, name="denoiser",
    )
    return DDPM(denoiser, timesteps=timesteps, beta_start=beta_start, beta_end=beta_end, name=name)
