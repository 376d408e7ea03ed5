"""Generative models: DCGAN (Radford et al. 2016), the VAE (Kingma and Welling 2014), RealNVP
(Dinh et al. 2017) and DDPM (Ho et al. 2020) with DDIM sampling (Song et al. 2021).

Each is a ``keras.Model`` subclass (``GenerativeModel``) with its own ``train_step``, metrics
and ``get_config``, built from serializable sub-models, and a ``sampler()`` that maps noise to
images for phones (see ``kapps.models.generative.common``)."""

from kapps.models.generative.common import GenerativeModel, replica_mean
from kapps.models.generative.ddpm import DDPM, ddpm, ddpm_unet
from kapps.models.generative.gan import DCGAN, dcgan, dcgan_discriminator, dcgan_generator
from kapps.models.generative.realnvp import RealNVP, realnvp, realnvp_flow
from kapps.models.generative.vae import (
    VAE,
    GaussianSample,
    bernoulli_nll,
    kl_divergence,
    vae,
    vae_decoder,
    vae_encoder,
)

__all__ = [
    "DCGAN", "DDPM", "GaussianSample", "GenerativeModel", "RealNVP", "VAE", "bernoulli_nll",
    "dcgan", "dcgan_discriminator", "dcgan_generator", "ddpm", "ddpm_unet", "kl_divergence",
    "realnvp", "realnvp_flow", "replica_mean", "vae", "vae_decoder", "vae_encoder",
]
