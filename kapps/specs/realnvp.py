"""Registry entry of RealNVP (Dinh, Sohl-Dickstein and Bengio 2017): a normalizing flow of
affine coupling layers in the multi-scale architecture.

The canonical configuration is the paper's CIFAR-10 model as section 4.1 describes it: 32x32x3
images, ``s``/``t`` ResNets of 8 residual blocks with 64 feature maps, and one downscale (two
scales: 3 checkerboard couplings, squeeze, 3 channel couplings, factor out half, then 4
checkerboard couplings). The paper publishes no parameter count, and several details it leaves
open change the count (the convolution sizes of the ``s``/``t`` networks, whether the width
grows at the coarser scale, the batch- and weight-normalization parameters, which kapps leaves
out: see kapps.layers.flows); the figure below is this implementation's count, pinned, not a
published one.
FLOPs: per 32x32x3 image, the forward (density) pass.
"""

from kapps.registry import ModelSpec

_PARAMS = 6_001_433

SPECS = [
    ModelSpec(
        name="realnvp",
        builder="kapps.models.generative.realnvp:realnvp",
        task="generative",
        family="RealNVP",
        paper="Dinh, Sohl-Dickstein and Bengio 2017, Density estimation using Real NVP",
        input_shape=(32, 32, 3),
        params=_PARAMS,
        trainable_params=_PARAMS,
        published_params=_PARAMS,
        published_kind="total",
        published_source=(
            "no published figure: the paper (section 4.1) gives the CIFAR-10 architecture (8 "
            "residual blocks, 64 feature maps, one downscale) but no parameter count; this is "
            "kapps' count of that architecture (3x3 convolutions without normalization, the "
            "same width at both scales)"
        ),
        flops=5_811_535_872,
        # 8x8x1 images, one scale (4 checkerboard couplings), s/t networks of two
        # convolutions of 4 feature maps. Every coupling adds graph operations that the
        # contract's export and distributed step pay for: two scales (10 couplings) took
        # twice as long. tests/test_realnvp.py checks the two-scale flow (squeeze, channel
        # couplings, factor-out): invertibility, Jacobians, gradients, .keras, TFLite
        tiny={"image_shape": (8, 8, 1), "num_scales": 1, "num_res_blocks": 0, "filters": 4},
        tiny_params=604,
    )
]
