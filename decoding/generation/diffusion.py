"""Conditional latent diffusion: the denoiser, its conditioning and its schedulers.

The denoiser is diffusers' own ``UNet2DConditionModel``, unchanged, so any diffusers user
can load it: pure convolution blocks (``DownBlock2D`` / ``UpBlock2D`` and a mid block
without attention), with the conditioning **added to the time embedding**
(``class_embed_type="projection"``: an MLP of the condition vector, added to the timestep
embedding that every residual block reads). Measured on this CPU (REFERENCES.md, Part D),
cross-attention over two condition tokens cost 1.7x the time per step and added little,
so the shipped model conditions through the time embedding.

v2 adds a **layout map**. Conditioning through the time embedding alone is global: a
pure-convolution UNet must learn *where* to draw the object from boundary effects, which
it learns slowly (v1 after 1,000 steps drew blobs of about the right colour in about the
right place, and shapes at chance). The conditioner decodes the condition vector into a
small spatial map, trained to regress the clean latent (the conditional mean image, blurry
where the pose is uncertain), and the map is stacked onto the noisy latents as extra input
channels, as SR3 (Saharia et al. 2022) and diffusers' inpainting and depth UNets stack
their spatial conditions. The denoiser then only has to add the shape's detail (as in
"deblurring via stochastic refinement", Whang et al., CVPR 2022). The map of the null
embeddings is the unconditional branch's, so classifier-free guidance is unchanged.

The condition vector concatenates the image embedding (e.g. ``stimnet``) and the semantic
embedding (e.g. ``stimtext``), each unit-norm and scaled by the square root of its width.
For classifier-free guidance (Ho & Salimans 2022) each is replaced during training, with
probability ``p_drop`` (0.1), by a learnt null embedding; :class:`EmbeddingConditioner`
holds the null embeddings and the identifiers of the embeddings the model was trained on.

Prediction type: ``v_prediction`` (Salimans & Ho 2022, "Progressive distillation").
With few sampling steps (10-20) the first steps start from almost pure noise, where an
epsilon-predicting model's implied x0 estimate is ill-conditioned; predicting v keeps the
target's scale constant over the schedule, and the training loss is weighted with
Min-SNR-5 (Hang et al., ICCV 2023), which converged faster in their study.

Schedulers: DPM-Solver++ (Lu et al. 2022; ``DPMSolverMultistepScheduler``) by default and
DDIM (Song et al. 2021). :func:`make_scheduler` builds either from the training schedule
with ``clip_sample=False``: a ``DDIMScheduler`` made from a DDPM config inherits
``clip_sample=True``, which clips unit-variance latents to [-1, 1] (faint objects, colour at
chance).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = [
    "EmbeddingConditioner",
    "make_unet",
    "make_scheduler",
    "training_scheduler",
    "SCHEDULERS",
]

#: Sampling schedulers :func:`make_scheduler` knows.
SCHEDULERS = ("dpmsolver++", "ddim")


class EmbeddingConditioner(ModelMixin, ConfigMixin):
    """Condition vector from an image and a semantic embedding, with learnt null embeddings.

    Parameters
    ----------
    image_embed_dim, text_embed_dim : int
        Widths of the two embeddings (``text_embed_dim=0``: image only).
    image_embedding_id, text_embedding_id : str
        Identifiers of the embeddings it was trained on (``FeatureExtractor.identifier``,
        ``TextEncoder.identifier``); a decoder's embeddings are checked against them.
    layout_channels : int
        Channels of a spatial layout map decoded from the condition vector and stacked onto
        the noisy latents (``0``: none, the v1 generator). The map is trained to regress the
        clean latent (module docstring).
    layout_size : int
        Side of the layout map (the latent side, 16).
    layout_width : int
        Channels inside the layout decoder.
    """

    @register_to_config
    def __init__(
        self,
        image_embed_dim: int = 128,
        text_embed_dim: int = 64,
        image_embedding_id: str = "",
        text_embedding_id: str = "",
        layout_channels: int = 0,
        layout_size: int = 16,
        layout_width: int = 64,
    ) -> None:
        super().__init__()
        if image_embed_dim < 1 or text_embed_dim < 0:
            raise ValueError(
                f"image_embed_dim / text_embed_dim: expected >= 1 / >= 0, got "
                f"{image_embed_dim} / {text_embed_dim}"
            )
        if layout_channels < 0 or (layout_channels and (layout_size < 4 or layout_size % 4)):
            raise ValueError(
                f"layout_channels / layout_size: expected >= 0 / a multiple of 4 (>= 4), got "
                f"{layout_channels} / {layout_size}"
            )
        self.null_image = nn.Parameter(torch.zeros(1, image_embed_dim))
        self.null_text = nn.Parameter(torch.zeros(1, text_embed_dim))
        self.layout = None
        if layout_channels:
            w, side = int(layout_width), int(layout_size) // 4
            cond_dim = image_embed_dim + text_embed_dim
            # condition vector -> a coarse w x side x side map -> two 2x upsamplings
            self.layout = nn.Sequential(
                nn.Linear(cond_dim, w * side * side), nn.SiLU(),
                nn.Unflatten(1, (w, side, side)),
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, padding=1),
                nn.SiLU(),
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w // 2, 3, padding=1),
                nn.SiLU(), nn.Conv2d(w // 2, layout_channels, 3, padding=1),
            )  # fmt: skip

    @property
    def layout_channels(self) -> int:
        """Channels of the layout map stacked onto the UNet's input (0: none)."""
        return int(self.config.get("layout_channels", 0))

    def layout_map(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The layout map ``(B, layout_channels, S, S)`` of condition vectors (None without).

        Trained to regress the clean latent (the conditional mean image), it tells the
        denoiser where the object is, its size and its colour, so that the UNet spends its
        capacity on the shape.
        """
        if self.layout is None:
            return None
        return self.layout(cond)

    @property
    def cond_dim(self) -> int:
        """Width of the condition vector (the UNet's ``projection_class_embeddings_input_dim``)."""
        return int(self.config.image_embed_dim + self.config.text_embed_dim)

    def forward(
        self,
        image_embeds: torch.Tensor | None,
        text_embeds: torch.Tensor | None = None,
        drop_image: torch.Tensor | None = None,
        drop_text: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """The condition vector ``(B, cond_dim)``.

        ``None`` embeddings, and rows where the boolean ``drop_*`` masks are True, take the
        null embedding (the unconditional branch of classifier-free guidance).
        """
        b = batch_size or next(len(e) for e in (image_embeds, text_embeds) if e is not None)
        parts = []
        for emb, drop, null in ((image_embeds, drop_image, self.null_image),
                                (text_embeds, drop_text, self.null_text)):  # fmt: skip
            d = null.shape[1]
            if d == 0:
                continue
            full = null.expand(b, d)
            if emb is not None:
                scaled = emb.to(null.dtype) * float(np.sqrt(d))
                keep = torch.ones(b, 1, dtype=torch.bool, device=null.device)
                if drop is not None:
                    keep = ~drop.to(null.device).view(b, 1)
                full = torch.where(keep, scaled, full)
            parts.append(full)
        return torch.cat(parts, dim=1)


def make_unet(
    cond_dim: int,
    latent_channels: int = 4,
    sample_size: int = 16,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    layers_per_block: int = 1,
    layout_channels: int = 0,
):
    """A pure-convolution ``UNet2DConditionModel`` conditioned through the time embedding.

    Parameters
    ----------
    cond_dim : int
        Width of the condition vector (:attr:`EmbeddingConditioner.cond_dim`).
    latent_channels, sample_size : int
        Latent shape (channels, side).
    block_out_channels : tuple of int
        Widths per resolution (multiples of 8).
    layers_per_block : int
        Residual blocks per resolution.
    layout_channels : int
        Extra input channels for the conditioner's layout map (``in_channels`` is
        ``latent_channels + layout_channels``, as in diffusers' inpainting UNets).
    """
    from diffusers import UNet2DConditionModel

    n = len(block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels + int(layout_channels),
        out_channels=latent_channels,
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        mid_block_type="UNetMidBlock2D",
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        norm_num_groups=8,
        cross_attention_dim=8,  # unused: no attention block reads encoder_hidden_states
        class_embed_type="projection",
        projection_class_embeddings_input_dim=cond_dim,
    )


def training_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The training noise schedule: scaled-linear betas, v-prediction, no clipping."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        clip_sample=False,
    )


def make_scheduler(name: str, config) -> DDIMScheduler | DPMSolverMultistepScheduler:
    """A sampling scheduler from a scheduler's config, with ``clip_sample=False``.

    Parameters
    ----------
    name : {"dpmsolver++", "ddim"}
        DPM-Solver++ (2nd order multistep) or DDIM (eta 0).
    config : dict or FrozenDict
        A scheduler config (e.g. ``pipe.scheduler.config``) giving the training schedule.
    """
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, thresholding=False
        )
    if name == "ddim":
        # from_config of a DDPM / DPM config would inherit clip_sample=True (the pitfall)
        return DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=False)
    raise ValueError(f"name: unknown scheduler {name!r}; expected one of {SCHEDULERS}")
