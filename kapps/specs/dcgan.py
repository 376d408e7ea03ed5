"""Registry entry of DCGAN (Radford et al. 2016).

The forward pass takes the noise ``z`` (``input_shape=(100,)``) and returns the generated
images and the discriminator's logits on them; FLOPs are those of one generator and one
discriminator pass for one sample. The canonical configuration is Figure 1's 64x64x3 LSUN
generator (``100 -> 4x4x1024 -> ... -> 64x64x3``) with a discriminator mirroring it
(128-256-512-1024); the paper publishes no parameter count, so the published figure is our
own count. PyTorch's DCGAN example, with half these widths (``ngf = ndf = 64``), has
3,576,704 generator and 2,765,568 discriminator parameters; ``tests/test_gan.py`` checks that
``dcgan(generator_filters=(512, 256, 128, 64), discriminator_filters=(64, 128, 256, 512))``
reproduces both exactly.
"""

from kapps.registry import ModelSpec

#: 8x8x1 images, 8-dimensional noise, two upsamplings and two strided convolutions, and the
#: class-conditional path (ten classes: the contract's integer inputs are drawn in [0, 10)).
_TINY = {
    "image_shape": (8, 8, 1),
    "latent_dim": 8,
    "generator_filters": (8, 4),
    "discriminator_filters": (4, 8),
    "num_classes": 10,
    "embedding_dim": 4,
}

SPECS = [
    ModelSpec(
        name="dcgan",
        builder="kapps.models.generative.gan:dcgan",
        task="generative",
        family="GAN",
        paper=(
            "Radford et al. 2016, Unsupervised Representation Learning with Deep Convolutional "
            "Generative Adversarial Networks"
        ),
        input_shape=(100,),
        params=23_702_016,
        trainable_params=23_694_592,
        published_params=23_702_016,
        published_kind="total",
        published_source=(
            "no published count: the paper gives Figure 1's generator widths (1024-512-256-128) "
            "but no parameter count and no discriminator widths; this is our count of that "
            "generator (12,662,272) with a mirrored discriminator (11,039,744), BatchNorm's "
            "moving statistics included. Cross-check: PyTorch's DCGAN example (ngf = ndf = 64) "
            "counts 3,576,704 + 2,765,568 trainable, which our builder reproduces at its widths"
        ),
        flops=1_639_088_128,
        tiny=_TINY,
        tiny_params=2_392,
    )
]
