"""Registry entry of DDPM (Ho, Jain, Abbeel 2020): the denoising diffusion model whose forward
pass is the noise-predicting U-Net, ``(noisy_images, timesteps) -> predicted noise``.

The canonical configuration is the paper's CIFAR-10 model (32x32x3, base width 128, width
multipliers (1, 2, 2, 2), two residual blocks per level, self-attention at 16x16, dropout
0.1, T = 1000 linear betas 1e-4 .. 0.02): 35,746,307 parameters, exactly the count of the
official TensorFlow implementation (``hojonathanho/diffusion``, ``diffusion_tf/models/unet.py``)
with the same layers (GroupNorm scale and offset, convolution and dense biases); the paper
(appendix B) rounds it to 35.7M.

FLOPs: one denoiser evaluation at 32x32 (``kapps.flops.count_flops`` gives the ``timesteps``
input its own shape, one integer per example); a sampler runs it once per step.
"""

from kapps.registry import ModelSpec

_PAPER = "Ho, Jain, Abbeel 2020, Denoising Diffusion Probabilistic Models"

#: 8x8x1 images, base width 4, one level (no resampling), one block: five residual blocks
#: and the middle's attention. Small because the export and the distributed step cost time
#: per layer; tests/test_ddpm.py builds the two-level U-Net as well.
_TINY = {
    "image_shape": (8, 8, 1),
    "base_filters": 4,
    "filter_multipliers": (1,),
    "num_res_blocks": 1,
    "attention_resolutions": (),
}
_TINY_PARAMS = 2_801

_PARAMS = 35_746_307

SPECS = [
    ModelSpec(
        name="ddpm",
        builder="kapps.models.generative.ddpm:ddpm",
        task="generative",
        family="DDPM",
        paper=_PAPER,
        input_shape=(32, 32, 3),
        params=_PARAMS,
        trainable_params=_PARAMS,
        published_params=_PARAMS,
        published_kind="total",
        published_source=(
            "the official implementation's count for the CIFAR-10 model (hojonathanho/"
            "diffusion, 35,746,307), which this architecture reproduces layer for layer; the "
            "paper, appendix B, says 35.7 million"
        ),
        flops=12_443_713_536,
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
]
