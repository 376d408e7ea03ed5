"""Semantic-segmentation builders: FCN (Long et al. 2015), U-Net (Ronneberger et al. 2015) and
TransUNet (Chen et al. 2021). Each returns per-pixel class scores at the input resolution."""
