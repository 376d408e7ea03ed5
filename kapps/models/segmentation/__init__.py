"""Semantic-segmentation builders: FCN (Long et al. 2015), U-Net (Ronneberger et al. 2015) and
TransUNet (Chen et al. 2021). Each returns per-pixel class scores at the input resolution;
:func:`mask_model` turns any of them into a model whose output is the ``uint8`` class map."""

from kapps.models.segmentation.common import mask_model
from kapps.models.segmentation.fcn import copy_backbone, crop_offsets, fcn, fcn8s, fcn16s, fcn32s, min_pad
from kapps.models.segmentation.transunet import transunet
from kapps.models.segmentation.unet import unet, unet_output_size, valid_unet_input_size

__all__ = [
    "copy_backbone", "crop_offsets", "fcn", "fcn8s", "fcn16s", "fcn32s", "mask_model", "min_pad",
    "transunet", "unet", "unet_output_size", "valid_unet_input_size",
]
