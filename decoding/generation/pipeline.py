"""``StimulusDiffusionPipeline``: embeddings -> 64x64 images, a ``diffusers.DiffusionPipeline``.

Components (``register_modules``): ``vae`` (:class:`~decoding.generation.autoencoder.
StimulusAutoencoder`), ``unet`` (diffusers ``UNet2DConditionModel``), ``scheduler``
(DPM-Solver++ or DDIM) and ``conditioner`` (:class:`~decoding.generation.diffusion.
EmbeddingConditioner`: null embeddings and the identifiers of the conditioning
embeddings). ``save_pretrained`` writes ``model_index.json`` and one folder per component;
``model_index.json`` names the public module of each custom component
(``decoding.generation.autoencoder``, ``decoding.generation.diffusion``), so
``StimulusDiffusionPipeline.from_pretrained(path)`` (or :func:`load_pipeline`) rebuilds it
on any machine where the suite is installed.

Low-level guidance (MindEye, Scotti et al. 2023; MindBridge): with ``init_images`` (e.g.
a blurry image decoded from early visual cortex) the pipeline runs image-to-image
(SDEdit, Meng et al. 2022): it encodes them, noises them to the step ``strength`` of the
way through the schedule and denoises from there.

:func:`load_pipeline` opens any local diffusers pipeline folder (ours, Stable unCLIP,
Versatile Diffusion) without downloading, and refuses folders that are not pipelines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from decoding._checks import check_int

__all__ = [
    "Conditioning",
    "StimulusDiffusionPipeline",
    "load_pipeline",
    "default_pipeline",
    "check_conditioning",
    "DEFAULT_PIPELINE_ID",
]

#: The folder name (under ``decoding/weights/``) of the shipped pipeline.
DEFAULT_PIPELINE_ID = "stimulus-diffusion-v2"


def _as_tensor(name: str, x: Any, width: int, device, dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != width:
        raise ValueError(
            f"{name}: expected an embedding of shape (n, {width}) (the pipeline's conditioning "
            f"width), got {tuple(t.shape)}"
        )
    if t.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one embedding, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: embeddings contain NaN or inf values")
    return t.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class Conditioning:
    """Embeddings with the identifiers of the models that made them.

    What :meth:`StimulusDiffusionPipeline.encode_conditioning` returns, and what the
    pipeline accepts in place of raw arrays: their identifiers are checked against the
    pipeline's, so embeddings of another feature model are refused by name.

    Attributes
    ----------
    image_embeds : ndarray, shape (n, image_embed_dim)
    text_embeds : ndarray, shape (n, text_embed_dim), or None
    image_embedding_id, text_embedding_id : str
        ``FeatureExtractor.identifier`` / ``TextEncoder.identifier`` ("" for no text).
    """

    image_embeds: np.ndarray
    text_embeds: np.ndarray | None
    image_embedding_id: str
    text_embedding_id: str = ""

    def __len__(self) -> int:
        return len(self.image_embeds)

    def subset(self, index: Any) -> Conditioning:
        """The rows ``index`` (an int array, slice or boolean mask)."""
        txt = None if self.text_embeds is None else self.text_embeds[index]
        return Conditioning(self.image_embeds[index], txt, self.image_embedding_id,
                            self.text_embedding_id)  # fmt: skip


class StimulusDiffusionPipeline(DiffusionPipeline):
    """Conditional latent diffusion from an image and a semantic embedding (module docstring).

    Parameters
    ----------
    vae : StimulusAutoencoder
    unet : UNet2DConditionModel
    scheduler : DPMSolverMultistepScheduler or DDIMScheduler
    conditioner : EmbeddingConditioner
    """

    model_cpu_offload_seq = "conditioner->unet->vae"

    def __init__(self, vae, unet, scheduler, conditioner) -> None:
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, conditioner=conditioner)

    # -- what the model was conditioned on -------------------------------------------------
    @property
    def image_embed_dim(self) -> int:
        """Width of the image embedding it takes."""
        return int(self.conditioner.config.image_embed_dim)

    @property
    def text_embed_dim(self) -> int:
        """Width of the semantic embedding it takes (0: none)."""
        return int(self.conditioner.config.text_embed_dim)

    @property
    def image_embedding_id(self) -> str:
        """Identifier of the image features it was trained on (e.g. ``stimnet-v3-...``)."""
        return str(self.conditioner.config.image_embedding_id)

    @property
    def text_embedding_id(self) -> str:
        """Identifier of the semantic embedding it was trained on (e.g. ``stimtext-v1-...``)."""
        return str(self.conditioner.config.text_embedding_id)

    @property
    def image_size(self) -> int:
        """Side of the images it makes."""
        return int(self.unet.config.sample_size) * int(self.vae.downsample)

    def set_scheduler(self, name: str) -> None:
        """Switch to ``"dpmsolver++"`` or ``"ddim"`` (same training schedule, no clipping)."""
        from decoding.generation.diffusion import make_scheduler

        self.scheduler = make_scheduler(name, self.scheduler.config)

    def encode_conditioning(
        self,
        images: Any,
        captions: Any = "auto",
        data_home: str | os.PathLike | None = None,
    ) -> Conditioning:
        """Images (and captions) -> the pipeline's conditioning: the documented way in.

        Uses the feature extractor and text encoder the pipeline was trained on (the
        shipped ``stimnet`` and ``stimtext``), checked by identifier.

        Parameters
        ----------
        images : Stimuli or ndarray of uint8, shape (n, H, W, 3)
            A :class:`~data_loaders.schema.Stimuli` (its attributes give the captions) or
            the images alone.
        captions : "auto", list of str, or None
            ``"auto"``: from the stimuli's scene attributes when ``images`` is a
            ``Stimuli`` with attributes, else none. ``None``: no caption (the learnt null
            embedding: image-only conditioning).
        data_home : path-like, optional
            Cache root for models not shipped.

        Returns
        -------
        Conditioning
            Pass it to the pipeline as ``image_embeds`` (``text_embeds`` is then taken
            from it).

        Examples
        --------
        >>> pipe = default_pipeline()                                  # doctest: +SKIP
        >>> cond = pipe.encode_conditioning(render_stimuli(8))         # doctest: +SKIP
        >>> images = pipe(cond, generator=0).images                    # doctest: +SKIP
        """
        from decoding.features import get_extractor
        from decoding.semantics import captions_from_attributes, get_text_encoder

        stim = images if hasattr(images, "images") and hasattr(images, "ids") else None
        arr = stim.images if stim is not None else np.asarray(images)
        if isinstance(captions, str) and captions == "auto":
            captions = (captions_from_attributes(stim)
                        if stim is not None and stim.attributes else None)  # fmt: skip
        fam = self.image_embedding_id.split("-")[0]
        if fam != "stimnet":
            raise ValueError(
                f"image_embedding_id: the pipeline is conditioned on {self.image_embedding_id!r}"
                ", which encode_conditioning cannot rebuild; pass its embeddings as a "
                "Conditioning"
            )
        fx = get_extractor("stimnet", data_home=data_home)
        if fx.identifier != self.image_embedding_id:
            raise ValueError(
                f"image_embedding_id: the pipeline is conditioned on {self.image_embedding_id!r}"
                f", the default extractor is {fx.identifier!r}"
            )
        img = fx.transform(arr)
        txt, tid = None, ""
        if captions is not None and self.text_embed_dim:
            captions = list(captions)
            if len(captions) != len(img):
                raise ValueError(
                    f"captions: expected {len(img)} captions (one per image), got {len(captions)}"
                )
            tx = get_text_encoder("stimtext", data_home=data_home)
            if tx.identifier != self.text_embedding_id:
                raise ValueError(
                    f"text_embedding_id: the pipeline is conditioned on "
                    f"{self.text_embedding_id!r}, the default encoder is {tx.identifier!r}"
                )
            txt, tid = tx.encode(captions), tx.identifier
        return Conditioning(img, txt, fx.identifier, tid)

    def _unpack(self, image_embeds: Any, text_embeds: Any) -> tuple[Any, Any]:
        """Raw arrays pass through; a :class:`Conditioning` is checked by identifier."""
        if not isinstance(image_embeds, Conditioning):
            return image_embeds, text_embeds
        c = image_embeds
        if text_embeds is not None:
            raise ValueError("text_embeds: expected None when image_embeds is a Conditioning")
        for field, have in (("image_embedding_id", c.image_embedding_id),
                            ("text_embedding_id", c.text_embedding_id)):  # fmt: skip
            want = getattr(self, field)
            if have and want and have != want:
                raise ValueError(
                    f"{field}: the embeddings come from {have!r}, but the pipeline is "
                    f"conditioned on {want!r}"
                )
        return c.image_embeds, c.text_embeds

    @torch.no_grad()
    def layout_images(self, image_embeds: Any, text_embeds: Any = None) -> np.ndarray:
        """The conditioner's layout map decoded to images: the conditional mean image.

        The layout map regresses the clean latent from the embeddings (deterministic, blurry
        where the pose is uncertain); decoding it shows what the denoiser is told before it
        draws. It is the pipeline's own regression baseline.

        Parameters
        ----------
        image_embeds, text_embeds : array, shape (n, image_embed_dim), (n, text_embed_dim)
            As for ``__call__``.

        Returns
        -------
        ndarray of float32, shape (n, S, S, 3)
            Images in [0, 1].

        Raises
        ------
        ValueError
            If the pipeline has no layout map (a v1 generator).
        """
        if self.conditioner.layout_channels == 0:
            raise ValueError("layout_images: this pipeline's conditioner has no layout map")
        image_embeds, text_embeds = self._unpack(image_embeds, text_embeds)
        device, dtype = self.unet.device, self.unet.dtype
        img = _as_tensor("image_embeds", image_embeds, self.image_embed_dim, device, dtype)
        txt = None
        if text_embeds is not None:
            txt = _as_tensor("text_embeds", text_embeds, self.text_embed_dim, device, dtype)
        lay = self.conditioner.layout_map(self.conditioner(img, txt))
        ims = ((self.vae.decode(lay).float() + 1) / 2).clamp(0, 1)
        return ims.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)

    # -- the pieces of a call ----------------------------------------------------------------
    def _init_latents(self, init_images: Any, n: int, device, dtype) -> torch.Tensor:
        arr = init_images
        if isinstance(arr, torch.Tensor):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        size = self.image_size
        if arr.ndim != 4 or arr.shape[1:] != (size, size, 3) or arr.shape[0] != n:
            raise ValueError(
                f"init_images: expected shape ({n}, {size}, {size}, 3) (one image per "
                f"embedding), got {arr.shape}"
            )
        if arr.dtype == np.uint8:
            x = arr.astype(np.float32) / 255.0
        elif arr.dtype in (np.float32, np.float64):
            x = arr.astype(np.float32)
            if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                raise ValueError("init_images: expected float images with values in [0, 1]")
        else:
            raise ValueError(
                f"init_images: expected dtype uint8 or float32/float64 in [0, 1], got {arr.dtype}"
            )
        t = torch.from_numpy(x).permute(0, 3, 1, 2).to(device=device, dtype=dtype)
        return self.vae.encode(t * 2 - 1)

    def _denoise(self, latents, cond, uncond, guidance_scale, timesteps):
        hidden = torch.zeros(len(latents), 1, self.unet.config.cross_attention_dim,
                             device=latents.device, dtype=latents.dtype)  # fmt: skip
        guided = guidance_scale != 1.0
        lay_c = self.conditioner.layout_map(cond)
        lay_u = self.conditioner.layout_map(uncond) if guided else None
        lay_both = torch.cat([lay_u, lay_c]) if lay_c is not None and guided else None
        for t in self.progress_bar(timesteps):
            x = self.scheduler.scale_model_input(latents, t)
            if guided:
                xx = torch.cat([x, x])
                if lay_both is not None:
                    xx = torch.cat([xx, lay_both], dim=1)
                out = self.unet(xx, t, encoder_hidden_states=torch.cat([hidden] * 2),
                                class_labels=torch.cat([uncond, cond])).sample  # fmt: skip
                u, c = out.chunk(2)
                out = u + guidance_scale * (c - u)
            else:
                xx = x if lay_c is None else torch.cat([x, lay_c], dim=1)
                out = self.unet(xx, t, encoder_hidden_states=hidden, class_labels=cond).sample
            latents = self.scheduler.step(out, t, latents).prev_sample
        return latents

    @torch.no_grad()
    def __call__(
        self,
        image_embeds: Any,
        text_embeds: Any = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        generator: torch.Generator | int | None = None,
        num_images_per_prompt: int = 1,
        init_images: Any = None,
        strength: float = 0.85,
        output_type: str = "np",
        return_dict: bool = True,
    ):
        """Generate images from embeddings.

        Parameters
        ----------
        image_embeds : Conditioning, or array or tensor, shape (n, image_embed_dim)
            Image embeddings (unit-norm rows, as the feature registry gives them), or a
            :class:`Conditioning` (:meth:`encode_conditioning`), whose embedding
            identifiers must match the pipeline's.
        text_embeds : array or tensor, shape (n, text_embed_dim), optional
            Semantic embeddings; ``None`` uses the learnt null embedding (image only).
        num_inference_steps : int
            Denoising steps (>= 1).
        guidance_scale : float
            Classifier-free guidance weight; 1 disables guidance (one UNet pass per step).
        generator : torch.Generator or int, optional
            Seed of the initial noise: the same seed gives the same images.
        num_images_per_prompt : int
            Samples per embedding; images come out grouped per embedding
            (``images[i * k + j]`` is sample ``j`` of embedding ``i``).
        init_images : array, shape (n, S, S, 3), optional
            Images to start from (uint8, or float in [0, 1]); runs image-to-image.
        strength : float in [0, 1]
            With ``init_images``: the fraction of the schedule re-run (1 = from pure noise,
            0 = the init images unchanged after the autoencoder).
        output_type : {"np", "pt", "pil"}
            ``"np"``: float32 ``(n * k, S, S, 3)`` in [0, 1]; ``"pt"``: tensor
            ``(n * k, 3, S, S)``; ``"pil"``: list of PIL images.
        """
        if output_type not in ("np", "pt", "pil"):
            raise ValueError(f"output_type: expected 'np', 'pt' or 'pil', got {output_type!r}")
        steps = check_int("num_inference_steps", num_inference_steps, 1)
        k = check_int("num_images_per_prompt", num_images_per_prompt, 1)
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(
                f"guidance_scale: expected a finite value >= 0, got {guidance_scale!r}"
            )
        if not (isinstance(strength, int | float) and 0.0 <= float(strength) <= 1.0):
            raise ValueError(f"strength: expected a number in [0, 1], got {strength!r}")
        if self.scheduler.config.get("clip_sample", False):
            raise ValueError(
                "scheduler.clip_sample: is True, which clips unit-variance latents to [-1, 1]; "
                "use pipe.set_scheduler('ddim') or make_scheduler(...) (clip_sample=False)"
            )
        image_embeds, text_embeds = self._unpack(image_embeds, text_embeds)
        device, dtype = self.unet.device, self.unet.dtype
        img = _as_tensor("image_embeds", image_embeds, self.image_embed_dim, device, dtype)
        n = img.shape[0]
        txt = None
        if text_embeds is not None:
            if self.text_embed_dim == 0:
                raise ValueError("text_embeds: this pipeline takes no semantic embedding")
            txt = _as_tensor("text_embeds", text_embeds, self.text_embed_dim, device, dtype)
            if txt.shape[0] != n:
                raise ValueError(
                    f"text_embeds: expected {n} rows (one per image embedding), got {txt.shape[0]}"
                )
        init = None
        if init_images is not None:
            init = self._init_latents(init_images, n, device, dtype)
        if isinstance(generator, int | np.integer):
            generator = torch.Generator(device="cpu").manual_seed(int(generator))

        img = img.repeat_interleave(k, dim=0)
        txt = txt.repeat_interleave(k, dim=0) if txt is not None else None
        cond = self.conditioner(img, txt)
        uncond = self.conditioner(None, None, batch_size=len(img))

        self.scheduler.set_timesteps(int(steps), device=device)
        timesteps = self.scheduler.timesteps
        c = self.unet.config.out_channels  # in_channels adds the layout map's channels
        s = self.unet.config.sample_size
        noise = torch.randn((len(img), c, s, s), generator=generator, dtype=torch.float32)
        noise = noise.to(device=device, dtype=dtype)
        if init is None:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            start = int(round(len(timesteps) * (1.0 - float(strength))))
            timesteps = timesteps[start:]
            init = init.repeat_interleave(k, dim=0)
            if len(timesteps) == 0:
                latents = init
            else:
                if hasattr(self.scheduler, "set_begin_index"):
                    self.scheduler.set_begin_index(start * self.scheduler.order)
                latents = self.scheduler.add_noise(init, noise, timesteps[:1].repeat(len(init)))
        if len(timesteps):
            latents = self._denoise(latents, cond, uncond, float(guidance_scale), timesteps)
        images = ((self.vae.decode(latents).float() + 1) / 2).clamp(0, 1)
        if output_type == "pt":
            out: Any = images
        else:
            out = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
            if output_type == "pil":
                from PIL import Image

                out = [Image.fromarray(np.round(im * 255).astype(np.uint8)) for im in out]
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------
def _conditioning_widths(pipe) -> dict[str, Any]:
    """What a loaded pipeline is conditioned on, as far as its components tell."""
    if isinstance(pipe, StimulusDiffusionPipeline):
        return {"image_embed_dim": pipe.image_embed_dim, "text_embed_dim": pipe.text_embed_dim,
                "image_embedding_id": pipe.image_embedding_id,
                "text_embedding_id": pipe.text_embedding_id}  # fmt: skip
    out: dict[str, Any] = {}
    enc = getattr(pipe, "image_encoder", None)
    if enc is not None and hasattr(enc.config, "projection_dim"):
        out["image_embed_dim"] = int(enc.config.projection_dim)
    text = getattr(pipe, "text_encoder", None)
    if text is not None:
        cfg = text.config
        out["text_embed_dim"] = int(getattr(cfg, "projection_dim", None) or cfg.hidden_size)
    return out


def check_conditioning(
    pipe,
    image_embed_dim: int | None = None,
    text_embed_dim: int | None = None,
    image_embedding_id: str | None = None,
    text_embedding_id: str | None = None,
) -> None:
    """Refuse a pipeline conditioned on other embeddings than a decoder predicts.

    Raises
    ------
    ValueError
        Naming the first field (width or identifier) that differs.
    """
    have = _conditioning_widths(pipe)
    want = {"image_embed_dim": image_embed_dim, "text_embed_dim": text_embed_dim,
            "image_embedding_id": image_embedding_id,
            "text_embedding_id": text_embedding_id}  # fmt: skip
    for key, value in want.items():
        if value is None or key not in have or have[key] in ("", None):
            continue
        if have[key] != value:
            raise ValueError(
                f"{key}: the pipeline is conditioned on {have[key]!r}, but the decoder's "
                f"embeddings have {value!r}; use a pipeline trained on the same embeddings"
            )


def load_pipeline(
    path: str | os.PathLike,
    device: str = "cpu",
    image_embed_dim: int | None = None,
    text_embed_dim: int | None = None,
    image_embedding_id: str | None = None,
    text_embedding_id: str | None = None,
    **kwargs: Any,
):
    """Open a local diffusers pipeline folder; never downloads (``local_files_only``).

    Works for the suite's :class:`StimulusDiffusionPipeline` and for diffusers' own
    pipelines (``StableUnCLIPImg2ImgPipeline``, ``VersatileDiffusionDualGuidedPipeline``
    where the installed diffusers still has it, ...), chosen by ``_class_name`` in
    ``model_index.json``. With the expected embedding widths / identifiers given, the
    pipeline's conditioning is checked (:func:`check_conditioning`).

    Parameters
    ----------
    path : path-like
        A folder written by ``save_pretrained``.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    image_embed_dim, text_embed_dim, image_embedding_id, text_embedding_id : optional
        What the decoder's embeddings are; a pipeline conditioned on others is refused.
    **kwargs
        Passed to ``from_pretrained`` (e.g. ``torch_dtype``).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder, has no ``model_index.json``, or lacks a component folder.
    ValueError
        ``model_index.json`` is not valid, names an unknown pipeline class, or the
        conditioning does not match.
    """
    from decoding._device import resolve_device

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"path: expected a local pipeline folder, got {folder}")
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(
            f"path: {folder} is not a diffusers pipeline (no model_index.json); expected a "
            "folder written by save_pretrained"
        )
    try:
        config = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{index}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or "_class_name" not in config:
        raise ValueError(f"{index}: expected a pipeline index with _class_name")
    for name, value in config.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if not (folder / name).is_dir():
            raise FileNotFoundError(
                f"{folder}: the component {name!r} ({value[1]}) named in model_index.json has "
                f"no folder {folder / name}"
            )
    cls_name = config["_class_name"]
    if cls_name == StimulusDiffusionPipeline.__name__:
        cls = StimulusDiffusionPipeline
    else:
        import diffusers

        cls = getattr(diffusers, cls_name, None)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, DiffusionPipeline)):
            raise ValueError(
                f"{index}: _class_name {cls_name!r} is not a pipeline class of this diffusers "
                f"({diffusers.__version__}) or of the suite"
            )
    pipe = cls.from_pretrained(folder, local_files_only=True, **kwargs)
    pipe = pipe.to(resolve_device(device))
    check_conditioning(pipe, image_embed_dim, text_embed_dim, image_embedding_id,
                       text_embedding_id)  # fmt: skip
    return pipe


_DEFAULT: dict[str, StimulusDiffusionPipeline] = {}


def default_pipeline(device: str = "cpu") -> StimulusDiffusionPipeline:
    """The shipped generator (trained on the stimulus world, conditioned on the shipped
    ``stimnet`` and ``stimtext`` embeddings), loaded once per process.

    Raises
    ------
    FileNotFoundError
        If the package ships no pipeline (train one with ``neurosuite run
        configs/generate/stimulus_diffusion.yaml``).
    """
    from decoding.features import WEIGHTS_DIR

    if device not in _DEFAULT:
        folder = WEIGHTS_DIR / DEFAULT_PIPELINE_ID
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"default_pipeline: no shipped pipeline at {folder}; train one with "
                "`neurosuite run configs/generate/stimulus_diffusion.yaml`"
            )
        pipe = load_pipeline(folder, device=device)
        pipe.set_progress_bar_config(disable=True)
        _DEFAULT[device] = pipe
    return _DEFAULT[device]
