"""Generation: embeddings -> images (latent diffusion through diffusers) and meshes.

- :mod:`~decoding.generation.autoencoder`: :class:`StimulusAutoencoder` (64x64 <-> 16x16x4).
- :mod:`~decoding.generation.diffusion`: :class:`EmbeddingConditioner`, :func:`make_unet`,
  :func:`make_scheduler` (DPM-Solver++ / DDIM without latent clipping).
- :mod:`~decoding.generation.pipeline`: :class:`StimulusDiffusionPipeline` (a
  ``diffusers.DiffusionPipeline``), :func:`load_pipeline` (any local pipeline folder, never
  downloading), :func:`default_pipeline` (the shipped generator).
- :mod:`~decoding.generation.selection`: :func:`select_samples` (best of N by brain-derived
  information only).
- :mod:`~decoding.generation.prior`: :class:`EmbeddingPrior` (decoded embeddings back onto
  the generator's conditioning distribution: moment matching or a k-NN posterior over true
  embeddings), :class:`LowLevelDecoder` (ridge from betas to the autoencoder's latents, the
  blurry image that seeds image-to-image), :func:`cross_fitted_predictions`.
- :mod:`~decoding.generation.training`: the accelerate-ready training loops.
"""

from .autoencoder import StimulusAutoencoder
from .diffusion import EmbeddingConditioner, make_scheduler, make_unet
from .mesh import Mesh as Mesh  # Brain3D (helper C): decoding.generation.mesh
from .pipeline import (
    DEFAULT_PIPELINE_ID,
    Conditioning,
    StimulusDiffusionPipeline,
    check_conditioning,
    default_pipeline,
    load_pipeline,
)
from .prior import EmbeddingPrior, LabelReadout, LowLevelDecoder, cross_fitted_predictions
from .selection import SelectionResult, select_samples

__all__ = [
    "DEFAULT_PIPELINE_ID",
    "Conditioning",
    "EmbeddingConditioner",
    "EmbeddingPrior",
    "LabelReadout",
    "LowLevelDecoder",
    "SelectionResult",
    "StimulusAutoencoder",
    "StimulusDiffusionPipeline",
    "check_conditioning",
    "cross_fitted_predictions",
    "default_pipeline",
    "load_pipeline",
    "make_scheduler",
    "make_unet",
    "select_samples",
]
