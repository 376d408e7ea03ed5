"""Registry entries of the U-Net family: U-Net (Ronneberger, Fischer, Brox 2015) and TransUNet
(Chen et al. 2021).

``unet`` is the paper's network (572x572x1 tiles, 4 poolings, 64 base filters, unpadded
convolutions, 2 classes, no batch normalization): 31,030,658 parameters, a 388x388 output.

``transunet`` is the official implementation's R50-ViT-B/16 (``Beckschen/TransUNet``,
``vit_seg_modeling.py``, ``n_skip=3``) at 224x224 with 9 classes (Synapse): 105,277,081
trainable parameters, the official PyTorch model's exact count, which comparison tables
(Swin-Unet's and later papers') round to 105.28M. Keras also counts the decoder's batch-norm
moving means and variances (2 x 1,440 channels) as non-trainable weights, PyTorch keeps them
as buffers: 105,279,961 in all.

FLOPs are 2 x multiply-accumulates of convolutions and matrix products (``kapps.flops``).
"""

from kapps.registry import ModelSpec

_UNET_PAPER = (
    "Ronneberger, Fischer, Brox 2015, U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation"
)

_TRANSUNET_PAPER = (
    "Chen et al. 2021, TransUNet: Transformers Make Strong Encoders for Medical Image "
    "Segmentation"
)

SPECS = [
    ModelSpec(
        name="unet",
        builder="kapps.models.segmentation.unet:unet",
        task="segmentation",
        family="U-Net",
        paper=_UNET_PAPER,
        input_shape=(572, 572, 1),
        params=31_030_658,
        trainable_params=31_030_658,
        published_params=31_030_658,
        published_kind="total",
        published_source=(
            "the paper's Figure 1 network (23 convolutional layers: 3x3 unpadded convolutions "
            "with biases, 2x2 up-convolutions halving the channels, a 1x1 head to 2 classes, "
            "1 input channel), counted exactly layer by layer; the paper itself states no "
            "parameter total"
        ),
        flops=300_856_848_896,
        # 44x44 -> 20x20 -> 8x8 (bottleneck input) -> 4 -> 4x4 output with depth 2
        tiny={"input_shape": (44, 44, 1), "num_classes": 2, "depth": 2, "filters": 4},
        tiny_params=7_402,
    ),
    ModelSpec(
        name="transunet",
        builder="kapps.models.segmentation.transunet:transunet",
        task="segmentation",
        family="TransUNet",
        paper=_TRANSUNET_PAPER,
        input_shape=(224, 224, 3),
        params=105_279_961,
        trainable_params=105_277_081,
        published_params=105_277_081,
        published_kind="trainable",
        published_source=(
            "the official PyTorch R50-ViT-B/16 (Beckschen/TransUNet, vit_seg_modeling.py, "
            "n_skip=3) at 224x224 with 9 classes, recomputed exactly from its modules: "
            "105,277,081, the 105.28M quoted for TransUNet in Swin-Unet's and later comparison "
            "tables (the TransUNet paper states no count). Keras' total is 2,880 higher: the "
            "batch-norm moving statistics of conv_more and the decoder (1,440 channels), which "
            "PyTorch keeps as buffers rather than parameters"
        ),
        flops=58_451_460_096,
        # 32x32 -> a 2x2 token grid; every width small, GroupNorm with 4 groups
        tiny={
            "input_shape": (32, 32, 1),
            "num_classes": 3,
            "hidden_dim": 16,
            "depth": 1,
            "num_heads": 2,
            "mlp_dim": 32,
            "resnet_blocks": (1, 1, 1),
            "resnet_width": 8,
            "resnet_groups": 4,
            "head_channels": 16,
            "decoder_channels": (16, 8, 8, 4),
        },
        tiny_params=59_287,
    ),
]
