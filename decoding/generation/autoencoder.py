"""A small convolutional autoencoder to a 16x16x4 latent, written as a diffusers model.

Latent diffusion (Rombach et al., CVPR 2022) denoises in an autoencoder's latent space
rather than in pixels. Measured on this 2-core CPU (REFERENCES.md, Part D), diffusers'
``AutoencoderKL`` costs 1.2-2.7 s per batch-32 training step at 64x64 and decodes about
10x slower than a plain 0.18M-parameter conv autoencoder (0.27 s per step), so the suite
ships the light one. It is a diffusers ``ModelMixin`` + ``ConfigMixin``: it saves and
loads like every other component of a pipeline (``config.json`` +
``diffusion_pytorch_model.safetensors``), and its module path
(``decoding.generation.autoencoder``) is what ``model_index.json`` names.

Architecture (64x64x3 -> 16x16x4 -> 64x64x3): a 3x3 stem, two strided 3x3 stages with a
residual block each, a 1x1 projection to ``latent_channels``; the decoder mirrors it with
nearest-neighbour upsampling (and no residual block at full resolution, where it would
cost most). Deterministic (no KL term): the latents are standardised by
``scaling_factor`` (1 / their std on the training images), so that diffusion sees
unit-variance latents as it assumes.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["StimulusAutoencoder"]


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StimulusAutoencoder(ModelMixin, ConfigMixin):
    """Conv autoencoder ``(B, 3, 64, 64)`` in [-1, 1] <-> latents ``(B, 4, 16, 16)``.

    Parameters
    ----------
    in_channels : int
        Image channels.
    latent_channels : int
        Latent channels.
    block_out_channels : tuple of int
        Widths of the stem and of each downsampling stage (one 2x downsampling per entry
        after the first, so ``(24, 32, 64)`` maps 64 -> 16).
    scaling_factor : float
        Latents are multiplied by it after encoding (set from the training latents' std).
    image_size : int
        The image size it was trained at (informative; any multiple of 4 works).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (24, 32, 64),
        scaling_factor: float = 1.0,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        ch = list(block_out_channels)
        if len(ch) < 1 or any(int(c) < 8 or int(c) % 8 for c in ch):
            raise ValueError(
                f"block_out_channels: expected multiples of 8 (>= 8), got {block_out_channels}"
            )
        enc: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 3, padding=1)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            enc += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _ResBlock(c_out)]
        enc += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, ch[-1], 3, padding=1),
                                _ResBlock(ch[-1])]  # fmt: skip
        rev = ch[::-1]
        for k, (c_in, c_out) in enumerate(zip(rev[:-1], rev[1:])):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c_in, c_out, 3, padding=1)]  # fmt: skip
            if k < len(rev) - 2:  # no residual block at full resolution (the costly one)
                dec.append(_ResBlock(c_out))
        dec += [nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.downsample = 2 ** (len(ch) - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (unit variance on the training images)."""
        return self.encoder(x) * self.config.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images, roughly in [-1, 1] (clamp before display)."""
        return self.decoder(z / self.config.scaling_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (encode then decode)."""
        return self.decode(self.encode(x))
