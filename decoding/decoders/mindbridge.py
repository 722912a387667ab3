"""MindBridge: one cross-subject fMRI-to-image decoder, reset-tuned for a new subject.

Wang, Liu, Tan & Wang (2024), "MindBridge: A Cross-Subject Brain Decoding Framework", CVPR
(arXiv 2404.07850; code github.com/littlepure2333/MindBridge, ``src/models.py``,
``src/trainer.py``). One model decodes the fMRI of several subjects whose brains have
different numbers of voxels:

.. math::

    p_s = f(z_s(v_s)), \\qquad e_s = E_s(p_s), \\qquad
    (\\hat c_{img}, \\hat c_{txt}) = T(e_s), \\qquad \\hat p_s = B_s(e_s)

- ``z_s`` z-scores each voxel with the subject's training statistics (the paper's betas are
  session-wise z-scored; MindEye2 z-scores voxel-wise with training statistics);
- ``f`` is the **aggregation** (adaptive max-pooling of the voxel vector to ``pool_size``
  values, the paper's "biologically inspired" choice; adaptive average pooling and linear
  interpolation are the ablations);
- ``E_s`` is the subject's **embedder**: a residual bottleneck adapter (up-projection
  zero-initialised, LoRA style), then Linear, LayerNorm, GELU, Dropout(0.5);
- ``T`` is the shared **translator**: a residual MLP of blocks Linear, LayerNorm, GELU,
  Dropout(0.15), with two linear heads, to the image and the semantic (text) embedding;
- ``B_s`` is the subject's **builder**: Linear, LayerNorm, GELU, adapter, back to the
  aggregated fMRI of subject ``s``.

Losses (``L = L_img + L_txt + L_rec + L_cyc``): SoftCLIP (soft labels from target-target
similarity) plus MSE of the L2-normalised predictions and targets for each embedding;
``L_rec = MSE(B_s(e_s), p_s)``; and the **cycle** ``L_cyc = MSE(E_b(B_b(e_a)), e_a)`` with
``a != b``: subject a's brain goes through b's builder (novel fMRI synthesis, a pseudo
"same image" sample for b) and must keep its embedding. Every training step draws an equal
batch from each subject (the paper chunks the batch per subject).

**Reset-tuning** a new subject: a fresh, randomly initialised embedder and builder, the
translator (and the other subjects' modules) frozen, few samples; each batch pairs the new
subject with a source subject's batch so that the cycle ``source -> new builder -> new
embedder`` also trains the new builder (the paper's pseudo data augmentation).

Differences from the released code, all documented choices:

- Sizes are small (``pool_size`` 1024, ``hidden_dim`` 256, 2 translator blocks; the paper
  uses 8192, 2048 and 4 blocks for CLIP ViT-L/14 tokens of 257 x 768).
- ``cycle_pairs="all"`` (default) pairs *every* subject a with a random b != a in each step
  (a random derangement); ``"one"`` draws a single pair per step, as the code does.
- The SoftCLIP temperature and the MSE weight are scaled to the small embeddings here
  (the code uses 0.005 and 1e4 for 197k-dimensional token targets); the embedder's dropout
  is 0.2 (paper 0.5), better with the few training images of the simulation.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn
from torch.nn import functional as F

from data_loaders.schema import FMRIDataset, Stimuli

from .._checks import check_int
from .._device import resolve_device
from .._pretrained import PretrainedMixin

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_PRIOR",
    "EARLY_VISUAL_ROIS",
    "EmbeddingTargets",
    "MindBridge",
    "MindBridgeModule",
    "aggregate",
    "soft_clip_loss",
    "clip_targets",
]

#: Names of the aggregation functions ``f`` (paper Table 3).
AGGREGATIONS: tuple[str, ...] = ("max", "average", "interpolation")
#: ROIs the low-level path reads by default (early visual cortex), when a subject has them.
EARLY_VISUAL_ROIS: tuple[str, ...] = ("V1", "V2", "V3", "hV4")
#: Default :class:`~decoding.generation.prior.EmbeddingPrior` of :meth:`MindBridge.fit_prior`
#: (measured on the demo's quick run: k=4, T=0.02 kept the most shape, module README).
DEFAULT_PRIOR: dict[str, Any] = {"method": "knn", "k": 4, "temperature": 0.02}
_CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------------------
# targets: stimulus embeddings from the registries, keyed by stimulus id
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class EmbeddingTargets:
    """What the decoder learns to predict: per-stimulus image (and semantic) embeddings.

    Parameters
    ----------
    ids : ndarray of int, shape (n,)
        Stimulus ids (values of :attr:`Stimuli.ids`), unique.
    image : ndarray of float32, shape (n, d_image)
        Image embedding of each stimulus (token embeddings flattened per row).
    image_id : str
        Identifier of the model that made ``image`` (e.g. ``stimnet-v3-...``); a trained
        decoder stores it and refuses targets, pipelines or checkpoints with another one.
    text : ndarray of float32, shape (n, d_text), optional
        Semantic (caption) embedding of each stimulus.
    text_id : str, optional
        Identifier of the text encoder (required with ``text``).
    """

    ids: np.ndarray
    image: np.ndarray
    image_id: str
    text: np.ndarray | None = None
    text_id: str | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or np.unique(ids).size != ids.size:
            raise ValueError(f"ids: expected unique integer stimulus ids (n,), got {ids!r:.80}")
        self.ids = ids.astype(np.int64)
        for name in ("image", "text"):
            val = getattr(self, name)
            if val is None:
                continue
            arr = np.asarray(val, dtype=np.float32)
            arr = arr.reshape(arr.shape[0], -1) if arr.ndim > 2 else arr
            if arr.ndim != 2 or arr.shape[0] != ids.size:
                raise ValueError(
                    f"{name}: expected an array of shape (n, d) with n = {ids.size} ids, got "
                    f"{np.shape(val)}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: expected finite embeddings, got NaN or inf")
            setattr(self, name, arr)
        if not isinstance(self.image_id, str) or not self.image_id:
            raise ValueError(f"image_id: expected a non-empty identifier, got {self.image_id!r}")
        if self.text is not None and (not isinstance(self.text_id, str) or not self.text_id):
            raise ValueError(f"text_id: expected the text encoder identifier, got {self.text_id!r}")
        if self.text is None:
            self.text_id = None

    @property
    def image_dim(self) -> int:
        """Width of the image embedding."""
        return int(self.image.shape[1])

    @property
    def text_dim(self) -> int:
        """Width of the semantic embedding (0 without one)."""
        return 0 if self.text is None else int(self.text.shape[1])

    def rows(self, stim_ids: np.ndarray, field: str = "targets") -> np.ndarray:
        """Row positions of the given stimulus ids (ValueError naming missing ones)."""
        stim_ids = np.asarray(stim_ids, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        pos = np.clip(np.searchsorted(self.ids, stim_ids, sorter=order), 0, self.ids.size - 1)
        found = order[pos]
        ok = self.ids[found] == stim_ids
        if not ok.all():
            missing = stim_ids[~ok][:5].tolist()
            raise ValueError(
                f"{field}: no embedding for stimulus ids {missing} ({int((~ok).sum())} in all); "
                "expected targets made from the dataset's stimuli"
            )
        return found

    @classmethod
    def from_registries(
        cls,
        stimuli: Stimuli,
        image: Any = "stimnet",
        text: Any = None,
        captions: Sequence[str] | None = None,
        image_kwargs: dict[str, Any] | None = None,
        text_kwargs: dict[str, Any] | None = None,
    ) -> EmbeddingTargets:
        """Embed the stimuli with the feature and semantics registries.

        Parameters
        ----------
        stimuli : Stimuli
            The images (and, for the default captions, their attributes).
        image : str or FeatureExtractor
            A name for :func:`decoding.features.get_extractor` (``"stimnet"``, ``"hf"``) or an
            extractor with ``transform`` and ``identifier``.
        text : str, object or None
            A name for :func:`decoding.semantics.get_text_encoder` (``"stimtext"``) or an
            encoder with ``encode(captions)`` and ``identifier``; None: no semantic target.
        captions : list of str, optional
            One caption per stimulus (COCO captions on real NSD); default
            :func:`decoding.semantics.captions_from_attributes`.
        image_kwargs, text_kwargs : dict, optional
            Constructor arguments for registry names.
        """
        if isinstance(image, str):
            from ..features import get_extractor

            image = get_extractor(image, **(image_kwargs or {}))
        img = image.transform(stimuli.images)
        txt = txt_id = None
        if text is not None:
            if isinstance(text, str):
                from .. import semantics

                text = semantics.get_text_encoder(text, **(text_kwargs or {}))
            if captions is None:
                from .. import semantics

                captions = semantics.captions_from_attributes(stimuli)
            if len(captions) != len(stimuli):
                raise ValueError(
                    f"captions: expected one caption per stimulus ({len(stimuli)}), got "
                    f"{len(captions)}"
                )
            txt, txt_id = text.encode(list(captions)), text.identifier
        return cls(stimuli.ids, img, image.identifier, txt, txt_id)


def clip_targets(
    path: str | os.PathLike,
    stimuli: Stimuli,
    captions: Sequence[str] | None = None,
    hidden_states: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
) -> EmbeddingTargets:
    """Image and caption targets from a local Hugging Face CLIP folder (real NSD).

    Loads ``CLIPVisionModelWithProjection`` (and ``CLIPTextModelWithProjection`` with its
    tokenizer when ``captions`` are given) with ``local_files_only=True``: nothing
    downloads. ``hidden_states=False`` gives the projected pooled embeddings;
    ``hidden_states=True`` gives MindBridge's Versatile-Diffusion conditioning: every
    token projected (``visual_projection(post_layernorm(last_hidden_state))``, divided by the
    CLS token's norm; text: ``text_projection(last_hidden_state)`` divided by the pooled
    embedding's norm), flattened per row.

    Parameters
    ----------
    path : path-like
        Folder of a CLIP checkpoint (a full ``CLIPModel`` folder, or one folder holding the
        vision / text models with projection and the tokenizer files).
    stimuli : Stimuli
        Images to embed.
    captions : list of str, optional
        One caption per image (e.g. COCO captions); None: image targets only.
    hidden_states : bool
        Token targets (the paper's) instead of pooled embeddings.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    batch_size : int
        Images or captions per forward pass.
    """
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
    )

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"path: expected a CLIP folder with config.json, got {folder}")
    dev = resolve_device(device)
    kind = "tokens" if hidden_states else "pooled"
    vision = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    vision = vision.eval().to(dev)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    out = []
    with torch.no_grad():
        for s in range(0, len(stimuli), batch_size):
            x = processor(images=list(stimuli.images[s : s + batch_size]), return_tensors="pt")
            o = vision(pixel_values=x["pixel_values"].to(dev))
            if hidden_states:
                hidden = vision.vision_model.post_layernorm(o.last_hidden_state)
                tok = vision.visual_projection(hidden)
                emb = tok / tok[:, :1].norm(dim=-1, keepdim=True)
            else:
                emb = o.image_embeds
            out.append(emb.flatten(1).float().cpu().numpy())
    image = np.concatenate(out)
    text = text_id = None
    if captions is not None:
        if len(captions) != len(stimuli):
            raise ValueError(
                f"captions: expected one caption per stimulus ({len(stimuli)}), got {len(captions)}"
            )
        enc = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True)
        enc = enc.eval().to(dev)
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        parts = []
        with torch.no_grad():
            for s in range(0, len(captions), batch_size):
                t = tok(list(captions[s : s + batch_size]), padding="max_length",
                        truncation=True, max_length=tok.model_max_length
                        if tok.model_max_length < 10_000 else 77,
                        return_tensors="pt")  # fmt: skip
                o = enc(input_ids=t["input_ids"].to(dev))
                if hidden_states:
                    emb = enc.text_projection(o.last_hidden_state)
                    emb = emb / o.text_embeds.norm(dim=-1, keepdim=True)[:, None]
                else:
                    emb = o.text_embeds
                parts.append(emb.flatten(1).float().cpu().numpy())
        text = np.concatenate(parts)
        text_id = f"hf-clip-text-{folder.name}-{kind}"
    return EmbeddingTargets(stimuli.ids, image, f"hf-clip-vision-{folder.name}-{kind}", text,
                            text_id)  # fmt: skip


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------
def aggregate(x: torch.Tensor, size: int, kind: str = "max") -> torch.Tensor:
    """The aggregation ``f``: a voxel vector of any length to ``size`` values.

    Parameters
    ----------
    x : Tensor, shape (B, n_voxels)
        Standardised betas.
    size : int
        Output length (``pool_size``).
    kind : {"max", "average", "interpolation"}
        ``nn.AdaptiveMaxPool1d`` (the paper's), ``nn.AdaptiveAvgPool1d`` or linear
        interpolation (``F.interpolate``, ``align_corners=False``).
    """
    x3 = x.unsqueeze(1)
    if kind == "max":
        out = F.adaptive_max_pool1d(x3, size)
    elif kind == "average":
        out = F.adaptive_avg_pool1d(x3, size)
    elif kind == "interpolation":
        out = F.interpolate(x3, size=size, mode="linear", align_corners=False)
    else:
        raise ValueError(f"aggregation: expected one of {list(AGGREGATIONS)}, got {kind!r}")
    return out.squeeze(1)


class Adapter(nn.Module):
    """Residual bottleneck adapter: ``x + up(relu(down(x)))``, ``up`` zero-initialised.

    The code's ``Adapter_Layer`` with ``init_option="lora"`` (Kaiming-uniform ``down``,
    zero ``up`` and biases), so a fresh adapter starts as the identity.
    """

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.relu(self.down(x)))


class _Scaler(nn.Module):
    """Per-voxel z-scoring with training statistics (buffers, saved with the weights)."""

    def __init__(self, n_voxels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_voxels))
        self.register_buffer("scale", torch.ones(n_voxels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def _embedder(pool: int, hidden: int, adapter: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(Adapter(pool, adapter), nn.Linear(pool, hidden), nn.LayerNorm(hidden),
                         nn.GELU(), nn.Dropout(dropout))  # fmt: skip


def _builder(pool: int, hidden: int, adapter: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, pool), nn.LayerNorm(pool), nn.GELU(),
                         Adapter(pool, adapter))  # fmt: skip


class Translator(nn.Module):
    """Shared residual MLP (the code's ``ResMLP``) and the image / text heads."""

    def __init__(self, hidden: int, n_blocks: int, dropout: float, image_dim: int,
                 text_dim: int) -> None:  # fmt: skip
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
                          nn.Dropout(dropout))
            for _ in range(n_blocks)
        )  # fmt: skip
        self.head_image = nn.Linear(hidden, image_dim)
        self.head_text = nn.Linear(hidden, text_dim) if text_dim > 0 else None

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = e
        for block in self.blocks:
            x = x + block(x)
        txt = self.head_text(x) if self.head_text is not None else None
        return self.head_image(x), txt


class MindBridgeModule(nn.Module):
    """Per-subject scalers, embedders and builders around one shared translator.

    Parameters
    ----------
    subjects : dict of str -> int
        Subject name -> number of voxels.
    pool_size, hidden_dim, n_blocks, adapter_dim : int
        Aggregated length, shared width, translator blocks, adapter bottleneck.
    aggregation : str
        One of :data:`AGGREGATIONS`.
    image_dim, text_dim : int
        Widths of the two targets (``text_dim=0``: no text head).
    embedder_dropout, translator_dropout : float
        Dropout rates (paper 0.5 and 0.15).
    """

    def __init__(
        self,
        subjects: dict[str, int],
        pool_size: int,
        aggregation: str,
        hidden_dim: int,
        n_blocks: int,
        adapter_dim: int,
        image_dim: int,
        text_dim: int,
        embedder_dropout: float = 0.5,
        translator_dropout: float = 0.15,
    ) -> None:
        super().__init__()
        self.pool_size, self.aggregation = int(pool_size), aggregation
        self.hidden_dim, self.adapter_dim = int(hidden_dim), int(adapter_dim)
        self.embedder_dropout = float(embedder_dropout)
        self.scalers = nn.ModuleDict()
        self.embedders = nn.ModuleDict()
        self.builders = nn.ModuleDict()
        for name, n in subjects.items():
            self.add_subject(name, n)
        self.translator = Translator(hidden_dim, n_blocks, translator_dropout, image_dim, text_dim)

    def add_subject(self, name: str, n_voxels: int) -> None:
        """A fresh (randomly initialised) scaler, embedder and builder for ``name``."""
        self.scalers[name] = _Scaler(int(n_voxels))
        self.embedders[name] = _embedder(self.pool_size, self.hidden_dim, self.adapter_dim,
                                         self.embedder_dropout)  # fmt: skip
        self.builders[name] = _builder(self.pool_size, self.hidden_dim, self.adapter_dim)

    def pooled(self, subject: str, betas: torch.Tensor) -> torch.Tensor:
        """``f(z_s(v))``: the aggregated, standardised fMRI (B, pool_size)."""
        return aggregate(self.scalers[subject](betas), self.pool_size, self.aggregation)

    def embed(self, subject: str, betas: torch.Tensor) -> torch.Tensor:
        """``E_s(f(z_s(v)))`` (B, hidden_dim)."""
        return self.embedders[subject](self.pooled(subject, betas))

    def forward(
        self,
        betas: Sequence[torch.Tensor],
        subjects: Sequence[str],
        pairs: Sequence[tuple[int, int]] = (),
    ) -> dict[str, Any]:
        """One multi-subject training forward (what DDP wraps).

        Parameters
        ----------
        betas : list of Tensor, each (B_s, n_voxels_s)
            One batch per subject.
        subjects : list of str
            Their names.
        pairs : list of (a, b) positions into ``subjects``, a != b
            Cycle pairs: ``E_b(B_b(E_a(v_a)))`` is compared with ``E_a(v_a)``.

        Returns
        -------
        dict
            ``image`` (sum B_s, d_image), ``text`` (or None), ``pooled`` / ``rebuilt``
            (lists per subject), ``cycle`` (list of (embedding, cycled embedding)).
        """
        pooled = [self.pooled(s, x) for s, x in zip(subjects, betas, strict=True)]
        emb = [self.embedders[s](p) for s, p in zip(subjects, pooled, strict=True)]
        img, txt = self.translator(torch.cat(emb))
        rebuilt = [self.builders[s](e) for s, e in zip(subjects, emb, strict=True)]
        cycle = []
        for a, b in pairs:
            cycled = self.embedders[subjects[b]](self.builders[subjects[b]](emb[a]))
            cycle.append((emb[a], cycled))
        return {"image": img, "text": txt, "pooled": pooled, "rebuilt": rebuilt, "cycle": cycle}


def soft_clip_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """SoftCLIP (MindEye, Scotti et al. 2023): cross-entropy with soft labels.

    With ``p``, ``t`` the L2-normalised rows, logits ``p t^T / tau`` are matched (both ways)
    to the soft labels ``softmax(t t^T / tau)``.
    """
    p = F.normalize(pred.flatten(1), dim=-1)
    t = F.normalize(target.flatten(1), dim=-1)
    soft = (t @ t.T / temperature).softmax(-1)
    logits = p @ t.T / temperature
    fwd = -(logits.log_softmax(-1) * soft).sum(-1).mean()
    bwd = -(logits.T.log_softmax(-1) * soft).sum(-1).mean()
    return 0.5 * (fwd + bwd)


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------


def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) \
            or value < 0:  # fmt: skip
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


@dataclass
class _SubjectData:
    """Training data of one subject: trials grouped by image (a random repeat per draw)."""

    name: str
    betas: np.ndarray  # (n_trials, n_voxels) float32
    order: np.ndarray  # trial positions sorted by image
    starts: np.ndarray  # first position of each image in `order`
    counts: np.ndarray  # repeats of each image
    rows: np.ndarray  # target rows of each image

    @property
    def n_images(self) -> int:
        return int(self.starts.size)


class MindBridge(PretrainedMixin, BaseEstimator):
    """One cross-subject fMRI decoder (Wang et al., CVPR 2024); see the module docstring.

    Parameters
    ----------
    pool_size : int
        Length of the aggregated fMRI (paper 8192 for 12.7k-17.9k voxels).
    aggregation : {"max", "average", "interpolation"}
        The aggregation ``f`` (paper: adaptive max-pooling).
    hidden_dim : int
        Width of the shared space (paper 2048).
    n_blocks : int
        Residual blocks of the translator (paper 4).
    adapter_dim : int
        Bottleneck of the embedder / builder adapters (paper 128).
    embedder_dropout, translator_dropout : float
        Dropout (paper 0.5, 0.15; the embedder's 0.2 here: with ~1,600 training images per
        subject, 0.5 cost about a fifth of the test retrieval in a 10-epoch run).
    softclip : bool
        Use the SoftCLIP term (False: MSE only).
    temperature : float
        SoftCLIP temperature.
    mse_weight : float
        Weight of the MSE of normalised embeddings (0: SoftCLIP only, paper Table 4 row 1).
    text_weight : float
        Weight of the semantic-embedding loss (0 ignores the text target).
    rec_weight, cyc_weight : float
        Weights of the reconstruction and cycle losses (paper 1, 1; 0 switches them off).
    cycle_pairs : {"all", "one"}
        Pair every subject with a random other one each step, or draw one pair (the code).
    batch_size : int
        Samples per subject per step (paper 50).
    n_epochs : int
        Epochs over the largest subject's training images.
    lr : float
        Peak learning rate of the one-cycle schedule (AdamW; paper 1.5e-4 x 8 GPUs).
    weight_decay : float
        AdamW weight decay (0 on biases and norms, as the code).
    tune_epochs : int
        Epochs of :meth:`reset_tune` (paper 200).
    tune_lr : float
        Peak learning rate of :meth:`reset_tune`.
    accelerate : bool or None
        Train through ``accelerate.Accelerator`` (data-parallel under ``accelerate launch``).
        None: when the process is one of several (``WORLD_SIZE > 1``).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    random_state : int
        Seed of weights, batches and dropout.
    verbose : bool or None
        Progress bars (None: shown).
    """

    def __init__(
        self,
        pool_size: int = 1024,
        aggregation: str = "max",
        hidden_dim: int = 256,
        n_blocks: int = 2,
        adapter_dim: int = 32,
        embedder_dropout: float = 0.2,
        translator_dropout: float = 0.15,
        softclip: bool = True,
        temperature: float = 0.05,
        mse_weight: float = 10.0,
        text_weight: float = 1.0,
        rec_weight: float = 1.0,
        cyc_weight: float = 1.0,
        cycle_pairs: str = "all",
        batch_size: int = 50,
        n_epochs: int = 30,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        tune_epochs: int = 60,
        tune_lr: float = 1e-3,
        accelerate: bool | None = None,
        device: str = "cpu",
        random_state: int = 0,
        verbose: bool | None = None,
    ) -> None:
        self.pool_size = pool_size
        self.aggregation = aggregation
        self.hidden_dim = hidden_dim
        self.n_blocks = n_blocks
        self.adapter_dim = adapter_dim
        self.embedder_dropout = embedder_dropout
        self.translator_dropout = translator_dropout
        self.softclip = softclip
        self.temperature = temperature
        self.mse_weight = mse_weight
        self.text_weight = text_weight
        self.rec_weight = rec_weight
        self.cyc_weight = cyc_weight
        self.cycle_pairs = cycle_pairs
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.tune_epochs = tune_epochs
        self.tune_lr = tune_lr
        self.accelerate = accelerate
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        check_int("pool_size", self.pool_size, 2)
        check_int("hidden_dim", self.hidden_dim, 2)
        check_int("n_blocks", self.n_blocks, 0)
        check_int("adapter_dim", self.adapter_dim, 1)
        check_int("batch_size", self.batch_size, 2)
        check_int("n_epochs", self.n_epochs, 1)
        check_int("tune_epochs", self.tune_epochs, 1)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation: expected one of {list(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        if self.cycle_pairs not in ("all", "one"):
            raise ValueError(f"cycle_pairs: expected 'all' or 'one', got {self.cycle_pairs!r}")
        for name in ("mse_weight", "text_weight", "rec_weight", "cyc_weight", "weight_decay"):
            _check_weight(name, getattr(self, name))
        for name in ("temperature", "lr", "tune_lr"):
            if _check_weight(name, getattr(self, name)) <= 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        for name in ("embedder_dropout", "translator_dropout"):
            if not 0 <= _check_weight(name, getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a rate in [0, 1), got {getattr(self, name)!r}")
        if not self.softclip and self.mse_weight == 0:
            raise ValueError("mse_weight: expected > 0 when softclip is False (no embedding loss)")

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError("MindBridge: the model is not fitted; call fit(...) first")

    def _known(self, subject: str) -> None:
        self._check_fitted()
        if subject not in self.subjects_:
            raise ValueError(
                f"subject: {subject!r} was not seen at fit time; expected one of "
                f"{list(self.subjects_)}, or reset_tune(...) the model on that subject first"
            )

    def _check_betas(self, subject: str, betas: Any) -> np.ndarray:
        self._known(subject)
        arr = np.asarray(betas)
        n_vox = self.subjects_[subject]
        if arr.ndim != 2 or arr.shape[1] != n_vox or arr.dtype.kind not in "fiu":
            raise ValueError(
                f"betas: expected a float array of shape (n, {n_vox}) (the {n_vox} voxels of "
                f"{subject!r}'s mask), got {arr.dtype} {arr.shape}"
            )
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise ValueError(
                f"betas: expected finite values, got {int((~np.isfinite(arr)).sum())} NaN/inf"
            )
        return arr

    def _check_targets(self, targets: Any) -> EmbeddingTargets:
        if not isinstance(targets, EmbeddingTargets):
            raise ValueError(
                f"targets: expected an EmbeddingTargets, got {type(targets).__name__}"
            )
        if hasattr(self, "image_embedding_id_"):
            if targets.image_id != self.image_embedding_id_:
                raise ValueError(
                    f"targets.image_id: the model was trained with image embedding "
                    f"{self.image_embedding_id_!r}, got {targets.image_id!r}"
                )
            if self.text_embedding_id_ is not None and targets.text_id != self.text_embedding_id_:
                raise ValueError(
                    f"targets.text_id: the model was trained with text embedding "
                    f"{self.text_embedding_id_!r}, got {targets.text_id!r}"
                )
        return targets

    def _subject_data(self, dataset: FMRIDataset, targets: EmbeddingTargets, name: str,
                      n_samples: int | None, rng: np.random.Generator) -> _SubjectData:  # fmt: skip
        sub = dataset.subjects[name]
        uniq, inverse = np.unique(sub.stim_ids, return_inverse=True)
        if n_samples is not None and n_samples < uniq.size:
            keep = np.sort(rng.choice(uniq.size, size=n_samples, replace=False))
            mask = np.isin(inverse, keep)
            uniq, inverse = np.unique(sub.stim_ids[mask], return_inverse=True)
            betas = sub.betas[mask]
        else:
            betas = sub.betas
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=uniq.size)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        if uniq.size < self.batch_size:
            raise ValueError(
                f"batch_size: subject {name!r} has {uniq.size} training images, fewer than "
                f"batch_size={self.batch_size}; expected at least batch_size samples"
            )
        return _SubjectData(name, betas, order, starts, counts,
                            targets.rows(uniq, f"targets (subject {name})"))  # fmt: skip

    # -- building --------------------------------------------------------------------------
    def _build_module(self, extra: dict[str, Any]) -> MindBridgeModule:
        return MindBridgeModule(
            dict(extra["subjects_"]), self.pool_size, self.aggregation, self.hidden_dim,
            self.n_blocks, self.adapter_dim, int(extra["image_dim_"]), int(extra["text_dim_"]),
            self.embedder_dropout, self.translator_dropout,
        )  # fmt: skip

    def _extra_config(self) -> dict[str, Any]:
        return {
            "subjects_": dict(self.subjects_),
            "image_dim_": self.image_dim_,
            "text_dim_": self.text_dim_,
            "image_embedding_id_": self.image_embedding_id_,
            "text_embedding_id_": self.text_embedding_id_,
            "history_": self.history_,
            **({"low_level_voxels_": {k: np.asarray(v).tolist()
                                      for k, v in self.low_level_voxels_.items()}}
               if getattr(self, "low_level_", None) else {}),
        }

    _part_names = ("prior", "low_level", "readout")

    def _write_parts(self, folder: Path) -> None:
        """The fitted prior (``prior/``) and low-level decoders (``low_level/<subject>/``)."""
        if getattr(self, "prior_", None) is not None:
            self.prior_.save_pretrained(folder / "prior")
        for subject, dec in (getattr(self, "low_level_", None) or {}).items():
            dec.save_pretrained(folder / "low_level" / subject)
        for subject, ro in (getattr(self, "readout_", None) or {}).items():
            ro.save_pretrained(folder / "readout" / subject)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_directory: str | os.PathLike,
        device: str = "cpu",
        image_embedding: str | None = None,
        text_embedding: str | None = None,
    ) -> MindBridge:
        """Load a :meth:`save_pretrained` folder, checking the embedding identifiers.

        Parameters
        ----------
        pretrained_directory : path-like
            The folder.
        device : str
            Where to put the weights.
        image_embedding, text_embedding : str, optional
            Identifiers the caller's registries give (e.g. ``get_extractor("stimnet")
            .identifier``); a model trained with other embeddings is refused.
        """
        est = super().from_pretrained(pretrained_directory, device=resolve_device(device))
        folder = Path(pretrained_directory)
        if (folder / "prior").is_dir():
            from ..generation.prior import EmbeddingPrior

            est.prior_ = EmbeddingPrior.from_pretrained(folder / "prior")
        if (folder / "readout").is_dir():
            from ..generation.prior import LabelReadout

            est.readout_ = {p.name: LabelReadout.from_pretrained(p)
                            for p in sorted((folder / "readout").iterdir()) if p.is_dir()}
        voxels = getattr(est, "low_level_voxels_", None) or {}
        if voxels:
            from ..generation.prior import LowLevelDecoder

            est.low_level_voxels_ = {k: np.asarray(v, dtype=np.int64) for k, v in voxels.items()}
            est.low_level_ = {k: LowLevelDecoder.from_pretrained(folder / "low_level" / k)
                              for k in voxels}  # fmt: skip
        for name, want, have in (("image_embedding", image_embedding, est.image_embedding_id_),
                                 ("text_embedding", text_embedding, est.text_embedding_id_)):
            if want is not None and want != have:
                raise ValueError(
                    f"{name}: the model in {pretrained_directory} was trained with {have!r}, "
                    f"got {want!r}; expected the same embedding model"
                )  # fmt: skip
        return est

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        dataset: FMRIDataset,
        targets: EmbeddingTargets,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> MindBridge:
        """Train one model on every subject of ``dataset``.

        Parameters
        ----------
        dataset : FMRIDataset
            Training trials (single trials or repeat averages); every subject gets its own
            embedder and builder. A subject's repeats of one image are one sample: each draw
            takes one of them at random (the code picks a repetition per epoch).
        targets : EmbeddingTargets
            Embeddings of (at least) every stimulus the subjects saw.
        checkpoint_dir : path-like, optional
            A checkpoint is written there after every epoch (atomically) and a run that
            finds one resumes from it.
        """
        self._validate_params()
        if not isinstance(dataset, FMRIDataset):
            raise ValueError(f"dataset: expected an FMRIDataset, got {type(dataset).__name__}")
        targets = self._check_targets(targets)
        for attr in ("module_", "subjects_", "image_embedding_id_", "prior_", "low_level_",
                     "low_level_voxels_", "readout_"):  # fmt: skip
            if hasattr(self, attr):
                delattr(self, attr)
        rng = np.random.default_rng(self.random_state)
        data = [self._subject_data(dataset, targets, s, None, rng) for s in dataset.subject_names]
        self.subjects_ = {s: int(dataset.subjects[s].n_voxels) for s in dataset.subject_names}
        self.image_dim_, self.text_dim_ = targets.image_dim, targets.text_dim
        if self.text_weight == 0:
            self.text_dim_ = 0
        self.image_embedding_id_ = targets.image_id
        self.text_embedding_id_ = targets.text_id if self.text_dim_ else None
        self.history_ = []
        torch.manual_seed(self.random_state)
        self.module_ = self._build_module(self._extra_config())
        self._set_scalers(data)
        trainable = list(self.module_.parameters())
        self._train(data, targets, trainable, self.n_epochs, self.lr, source=[],
                    checkpoint_dir=checkpoint_dir, tag="fit")  # fmt: skip
        return self

    def reset_tune(
        self,
        dataset: FMRIDataset,
        targets: EmbeddingTargets,
        n_samples: int | None = None,
        source: FMRIDataset | None = None,
        strategy: str = "reset",
        n_epochs: int | None = None,
        lr: float | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        random_state: int | None = None,
    ) -> MindBridge:
        """Adapt the trained model to new subject(s) from a few samples.

        Each subject of ``dataset`` gets a fresh, randomly initialised embedder and builder.

        Parameters
        ----------
        dataset : FMRIDataset
            The new subject's training trials.
        targets : EmbeddingTargets
            Embeddings from the same registries as at fit time (identifiers checked).
        n_samples : int, optional
            Use only this many of the subject's training images (drawn at random).
        source : FMRIDataset, optional
            Training data of subjects the model knows: each step pairs the new subject's
            batch with one source subject's batch, and the cycle ``source -> new builder ->
            new embedder`` trains the new builder (the paper's pseudo data augmentation).
        strategy : {"reset", "full"}
            ``"reset"``: only the new embedder and builder learn (translator frozen, the
            paper's); ``"full"``: every parameter learns (the paper's "full fine-tuning").
        n_epochs, lr : optional
            Default ``tune_epochs``, ``tune_lr``.
        checkpoint_dir : path-like, optional
            Per-epoch checkpoints, resumed when found.
        random_state : int, optional
            Seed of the new modules, the sample draw and the batches (default
            ``random_state + 1``).
        """
        self._check_fitted()
        if not isinstance(dataset, FMRIDataset):
            raise ValueError(f"dataset: expected an FMRIDataset, got {type(dataset).__name__}")
        if strategy not in ("reset", "full"):
            raise ValueError(f"strategy: expected 'reset' or 'full', got {strategy!r}")
        targets = self._check_targets(targets)
        if n_samples is not None:
            check_int("n_samples", n_samples, 1)
            if n_samples < self.batch_size:
                raise ValueError(
                    f"n_samples: {n_samples} samples are fewer than batch_size="
                    f"{self.batch_size}; expected n_samples >= batch_size"
                )
        seed = self.random_state + 1 if random_state is None else int(random_state)
        rng = np.random.default_rng(seed)
        new = dataset.subject_names
        data = [self._subject_data(dataset, targets, s, n_samples, rng) for s in new]
        src: list[_SubjectData] = []
        if source is not None:
            for s in source.subject_names:
                if s in new:
                    raise ValueError(f"source: subject {s!r} is also a new subject")
                self._known(s)
                src.append(self._subject_data(source, targets, s, None, rng))
        torch.manual_seed(seed)
        for s in new:
            self.module_.add_subject(s, dataset.subjects[s].n_voxels)
            self.subjects_[s] = int(dataset.subjects[s].n_voxels)
        self.module_.to(self._device())
        self._set_scalers(data)
        if strategy == "reset":
            trainable = [p for s in new for p in (*self.module_.embedders[s].parameters(),
                                                  *self.module_.builders[s].parameters())]
        else:
            trainable = list(self.module_.parameters())
        self._train(data, targets, trainable, n_epochs or self.tune_epochs, lr or self.tune_lr,
                    source=src, checkpoint_dir=checkpoint_dir, tag=f"reset_tune-{'-'.join(new)}",
                    seed=seed)  # fmt: skip
        return self

    def _device(self) -> str:
        return resolve_device(self.device)

    def _set_scalers(self, data: list[_SubjectData]) -> None:
        for d in data:
            mean = d.betas.mean(axis=0, dtype=np.float64)
            sd = d.betas.std(axis=0, dtype=np.float64)
            sc = self.module_.scalers[d.name]
            sc.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            sc.scale.copy_(torch.from_numpy(np.maximum(sd, 1e-6).astype(np.float32)))

    def _use_accelerate(self) -> bool:
        if self.accelerate is None:
            return int(os.environ.get("WORLD_SIZE", "1")) > 1
        return bool(self.accelerate)

    def _fingerprint(self, tag: str, data: list[_SubjectData], n_epochs: int, lr: float) -> str:
        key = {"params": {k: v for k, v in self.get_params(deep=False).items() if k != "verbose"},
               "tag": tag, "n_epochs": n_epochs, "lr": lr,
               "data": [(d.name, d.n_images, d.betas.shape[1]) for d in data],
               "version": _CHECKPOINT_VERSION}  # fmt: skip
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _batch(self, d: _SubjectData, perm: np.ndarray, step: int, rng: np.random.Generator):
        bs = self.batch_size
        n = d.n_images
        start = (step * bs) % n
        idx = perm[np.arange(start, start + bs) % n]
        trial = d.order[d.starts[idx] + rng.integers(0, d.counts[idx])]
        return d.betas[trial], d.rows[idx]

    def _losses(self, out: dict[str, Any], img_t: torch.Tensor, txt_t: torch.Tensor | None,
                ) -> dict[str, torch.Tensor]:  # fmt: skip
        parts: dict[str, torch.Tensor] = {}

        def embedding_loss(pred, target):
            loss = pred.new_zeros(())
            if self.softclip:
                loss = loss + soft_clip_loss(pred, target, self.temperature)
            if self.mse_weight:
                loss = loss + self.mse_weight * F.mse_loss(
                    F.normalize(pred, dim=-1), F.normalize(target, dim=-1))
            return loss

        parts["image"] = embedding_loss(out["image"], img_t)
        if out["text"] is not None and txt_t is not None:
            parts["text"] = self.text_weight * embedding_loss(out["text"], txt_t)
        if self.rec_weight:
            rec = [F.mse_loss(r, p) for r, p in zip(out["rebuilt"], out["pooled"], strict=True)]
            parts["rec"] = self.rec_weight * torch.stack(rec).mean()
        if self.cyc_weight and out["cycle"]:
            cyc = [F.mse_loss(c, e) for e, c in out["cycle"]]
            parts["cyc"] = self.cyc_weight * torch.stack(cyc).mean()
        return parts

    def _pairs(self, n: int, rng: np.random.Generator, n_new: int) -> list[tuple[int, int]]:
        """Cycle pairs (a, b), a != b. During reset-tuning (``n_new`` new subjects first,
        then one source subject): source -> each new subject, as the code's adapting mode."""
        if n < 2 or not self.cyc_weight:
            return []
        if n_new:
            return [(n - 1, j) for j in range(n_new)]
        if self.cycle_pairs == "one":
            a, b = rng.choice(n, size=2, replace=False)
            return [(int(a), int(b))]
        shift = rng.permutation(n)  # a random derangement: each a to the next in a cycle
        return [(int(shift[i]), int(shift[(i + 1) % n])) for i in range(n)]

    def _train(self, data: list[_SubjectData], targets: EmbeddingTargets, trainable: list,
               n_epochs: int, lr: float, source: list[_SubjectData],
               checkpoint_dir: str | os.PathLike | None, tag: str,
               seed: int | None = None) -> None:  # fmt: skip
        from tqdm.auto import tqdm

        seed = self.random_state if seed is None else seed
        module = self.module_
        train_ids = {id(p) for p in trainable}
        for p in module.parameters():
            p.requires_grad_(id(p) in train_ids)
        decay = [p for n, p in module.named_parameters()
                 if id(p) in train_ids and p.ndim > 1]  # fmt: skip
        no_decay = [p for n, p in module.named_parameters()
                    if id(p) in train_ids and p.ndim <= 1]  # biases, LayerNorm: no decay
        accel = None
        if self._use_accelerate():
            from accelerate import Accelerator

            accel = Accelerator(cpu=self._device() == "cpu")
            device = str(accel.device)
            n_proc, rank = accel.num_processes, accel.process_index
        else:
            device, n_proc, rank = self._device(), 1, 0
        # data-parallel: each process takes 1/n of the steps of an n-times larger batch; the
        # code multiplies the learning rate by the number of processes
        lr = lr * n_proc
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr)  # fmt: skip
        module.to(device)
        steps = int(np.ceil(max(d.n_images for d in data) / self.batch_size / n_proc))
        total = n_epochs * steps
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total, pct_start=min(0.3, max(2.0 / n_epochs, 0.05)),
            final_div_factor=100,
        )  # fmt: skip
        img_all = torch.from_numpy(targets.image)
        txt_all = torch.from_numpy(targets.text) if targets.text is not None else None
        history = self.history_ if tag == "fit" else []
        start_epoch = 0
        ckpt = None
        fingerprint = self._fingerprint(tag, data + source, n_epochs, lr)
        if checkpoint_dir is not None:
            ckpt = Path(checkpoint_dir) / f"mindbridge-{tag}.pt"
            if ckpt.is_file():
                state = torch.load(ckpt, map_location="cpu", weights_only=False)
                if state.get("fingerprint") != fingerprint:
                    raise ValueError(
                        f"checkpoint_dir: {ckpt} holds a checkpoint of another training "
                        "(other parameters or data); expected a fresh folder or the same run"
                    )
                module.load_state_dict(state["module"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                start_epoch, history[:] = int(state["epoch"]), state["history"]
        wrapped = module
        if accel is not None:
            wrapped, opt, sched = accel.prepare(module, opt, sched)
        show = (self.verbose is None or bool(self.verbose)) and rank == 0
        bar = tqdm(total=total, initial=start_epoch * steps, desc=f"MindBridge {tag}",
                   disable=not show, leave=False)  # fmt: skip
        n_new = len(data) if source else 0
        for epoch in range(start_epoch, n_epochs):
            rng = np.random.default_rng([seed, epoch, rank])
            perms = [rng.permutation(d.n_images) for d in data + source]
            wrapped.train()
            sums: dict[str, float] = {}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))  # dropout, reproducible per epoch
                for step in range(steps):
                    group = list(data)
                    gperm = perms[: len(data)]
                    if source:  # one source subject per step (pseudo data augmentation)
                        k = int(rng.integers(len(source)))
                        group, gperm = group + [source[k]], gperm + [perms[len(data) + k]]
                    xs, rows = [], []
                    for d, perm in zip(group, gperm, strict=True):
                        x, r = self._batch(d, perm, epoch * steps + step, rng)
                        xs.append(torch.from_numpy(x).to(device))
                        rows.append(r)
                    rows_all = torch.from_numpy(np.concatenate(rows))
                    img_t = img_all[rows_all].to(device)
                    txt_t = txt_all[rows_all].to(device) if txt_all is not None else None
                    pairs = self._pairs(len(group), rng, n_new)
                    out = wrapped(xs, [d.name for d in group], pairs)
                    parts = self._losses(out, img_t, txt_t)
                    loss = torch.stack(list(parts.values())).sum()
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"loss: non-finite training loss at epoch {epoch} ({parts}); expected "
                            "a finite value (lower lr?)"
                        )
                    opt.zero_grad(set_to_none=True)
                    if accel is not None:
                        accel.backward(loss)
                    else:
                        loss.backward()
                    opt.step()
                    sched.step()
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                    bar.update(1)
            history.append({"epoch": epoch + 1,
                            **{k: round(v / steps, 5) for k, v in sums.items()}})
            bar.set_postfix(loss=f"{sum(sums.values()) / steps:.3f}")
            if ckpt is not None and rank == 0:
                from data_loaders._io import atomic_path

                state = {"fingerprint": fingerprint, "epoch": epoch + 1,
                         "module": module.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "history": list(history)}  # fmt: skip
                with atomic_path(ckpt) as tmp:
                    torch.save(state, tmp)
            if accel is not None:
                accel.wait_for_everyone()
        bar.close()
        for p in module.parameters():
            p.requires_grad_(True)
        module.eval()
        if tag != "fit":
            self.history_ = list(self.history_) + [{"phase": tag, **h} for h in history]

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def predict_embeddings(self, subject: str, betas: Any, batch_size: int = 512
                           ) -> dict[str, np.ndarray]:  # fmt: skip
        """Decode embeddings from a subject's betas.

        Parameters
        ----------
        subject : str
            A subject seen at fit time (or reset-tuned).
        betas : ndarray, shape (n, n_voxels)
            Betas over the subject's mask (e.g. the test images' repeat averages).

        Returns
        -------
        dict
            ``"image"`` (n, d_image) and, with a text head, ``"text"`` (n, d_text); rows of
            L2 norm 1 (the losses compare normalised embeddings).
        """
        x = self._check_betas(subject, betas)
        module = self.module_.eval()
        dev = next(module.parameters()).device
        img, txt = [], []
        for s in range(0, len(x), batch_size):
            i, t = module.translator(module.embed(subject, torch.from_numpy(x[s:s + batch_size])
                                                  .to(dev)))  # fmt: skip
            img.append(F.normalize(i, dim=-1).cpu().numpy())
            if t is not None:
                txt.append(F.normalize(t, dim=-1).cpu().numpy())
        out = {"image": np.concatenate(img)}
        if txt:
            out["text"] = np.concatenate(txt)
        return out

    @torch.no_grad()
    def aggregated(self, subject: str, betas: Any) -> np.ndarray:
        """``f(z_s(v))``: a subject's betas standardised and aggregated, (n, pool_size)."""
        x = self._check_betas(subject, betas)
        dev = next(self.module_.parameters()).device
        return self.module_.pooled(subject, torch.from_numpy(x).to(dev)).cpu().numpy()

    @torch.no_grad()
    def synthesize(self, source_subject: str, betas: Any, target_subject: str) -> np.ndarray:
        """Novel fMRI synthesis: ``B_b(E_a(v_a))``, subject a's brain in b's space.

        Returns
        -------
        ndarray of float32, shape (n, pool_size)
            Predicted aggregated, standardised fMRI of ``target_subject`` (compare with
            :meth:`aggregated` of its real betas for the same images).
        """
        x = self._check_betas(source_subject, betas)
        self._known(target_subject)
        module = self.module_.eval()
        dev = next(module.parameters()).device
        e = module.embed(source_subject, torch.from_numpy(x).to(dev))
        return module.builders[target_subject](e).cpu().numpy()

    # -- the path to pixels: prior and low-level decoders -------------------------------------
    def fit_prior(
        self,
        dataset: FMRIDataset | Sequence[int] | np.ndarray,
        targets: EmbeddingTargets,
        method: str = DEFAULT_PRIOR["method"],
        decoded: Any = None,
        labels: Any = None,
        **prior_params: Any,
    ) -> Any:
        """Fit the embedding prior that :meth:`reconstruct` applies (``prior_``).

        Decoded embeddings are shrunk towards their mean and lie off the manifold of true
        embeddings; the generator turns them into smudges. The prior carries them back
        (:class:`~decoding.generation.prior.EmbeddingPrior`). One prior serves the model,
        every subject: it lives in the shared embedding space.

        Parameters
        ----------
        dataset : FMRIDataset or array of int
            The training data (or its stimulus ids): the true embeddings of these images
            form the prior's bank (``"knn"``) or its target distribution (``"moments"``).
        targets : EmbeddingTargets
            Embeddings from the same registries as at fit time (identifiers checked).
        method : {"knn", "moments", "identity"}
            See :class:`~decoding.generation.prior.EmbeddingPrior`.
        decoded : Conditioning, optional
            ``"moments"`` only, and required there: decoded embeddings of the same images,
            made out-of-fold (:func:`~decoding.generation.prior.cross_fitted_predictions`),
            so that the prior sees the shrinkage it must undo. ``"knn"`` draws from the
            bank and needs none.
        labels : str or array-like of int, optional
            ``"knn"``: a class per stimulus (a key of ``dataset.stimuli.attributes``, e.g.
            ``"colour"``, or an array aligned with ``dataset.stimuli``); the bank keeps each
            image's class, and :meth:`reconstruct` weighs the subject's
            :meth:`fit_label_readout` posterior of it.
        **prior_params
            Other :class:`EmbeddingPrior` arguments (default ``k=4, temperature=0.02``).

        Returns
        -------
        EmbeddingPrior
            The fitted prior, also stored as ``prior_`` (saved with the model).
        """
        from ..generation.pipeline import Conditioning
        from ..generation.prior import EmbeddingPrior

        self._check_fitted()
        targets = self._check_targets(targets)
        if isinstance(dataset, FMRIDataset):
            ids = np.unique(np.concatenate([dataset.subjects[s].stim_ids
                                            for s in dataset.subject_names]))  # fmt: skip
        else:
            ids = np.unique(np.asarray(dataset, dtype=np.int64).ravel())
        if ids.size < 2:
            raise ValueError(f"dataset: expected at least 2 training images, got {ids.size}")
        rows = targets.rows(ids)
        txt = targets.text[rows] if self.text_dim_ and targets.text is not None else None
        true = Conditioning(targets.image[rows], txt, self.image_embedding_id_,
                            self.text_embedding_id_ if txt is not None else None)  # fmt: skip
        params = {k: v for k, v in DEFAULT_PRIOR.items() if k != "method"} if method == (
            DEFAULT_PRIOR["method"]) else {}  # fmt: skip
        params.update(prior_params)
        prior = EmbeddingPrior(method, **params)
        if method == "moments":
            if decoded is None:
                raise ValueError(
                    "decoded: the 'moments' prior needs decoded embeddings of the training "
                    "images made out-of-fold (cross_fitted_predictions); got None"
                )
        elif decoded is None:
            decoded = true  # "knn" / "identity" learn from the true embeddings only
        bank_labels = None
        if labels is not None:
            if not isinstance(dataset, FMRIDataset):
                raise ValueError("labels: need the FMRIDataset (its stimuli), not stimulus ids")
            bank_labels = _stimulus_labels(dataset.stimuli, labels, ids)
        self.prior_ = prior.fit(decoded, true, bank_labels=bank_labels)
        return self.prior_

    def fit_label_readout(self, dataset: FMRIDataset, labels: Any, C: float = 0.01
                          ) -> dict[str, Any]:  # fmt: skip
        """Per subject, a read-out of a class straight from the betas (``readout_``).

        A decoded embedding can lose what the brain still tells (here: the object's colour);
        the prior then weighs this read-out's posterior when it picks true embeddings
        (``EmbeddingPrior(label_weight=...)``), from brain data only.

        Parameters
        ----------
        dataset : FMRIDataset
            Training trials of known subjects (repeats are averaged here).
        labels : str or array-like of int
            A key of ``dataset.stimuli.attributes`` or one class per stimulus; the prior must
            be fitted with the same ``labels``.
        C : float
            :class:`~decoding.generation.prior.LabelReadout`'s inverse penalty.

        Returns
        -------
        dict of str -> LabelReadout
        """
        from ..generation.prior import LabelReadout

        self._check_fitted()
        if not isinstance(dataset, FMRIDataset):
            raise ValueError(f"dataset: expected an FMRIDataset, got {type(dataset).__name__}")
        avg = dataset.average_repeats()
        out = dict(getattr(self, "readout_", None) or {})
        for s in avg.subject_names:
            self._known(s)
            sub = avg.subjects[s]
            y = _stimulus_labels(dataset.stimuli, labels, sub.stim_ids)
            out[s] = LabelReadout(C=C).fit(self._check_betas(s, sub.betas), y)
        self.readout_ = out
        return out

    def fit_low_level(
        self,
        dataset: FMRIDataset,
        pipeline: Any = None,
        rois: str | Sequence[str] | None = "early",
        alphas: Any = None,
    ) -> dict[str, Any]:
        """Fit the low-level path: ridge from (early visual) betas to the autoencoder's latents.

        MindEye's blurry reconstruction: decoded into an image, it seeds the generator
        (image-to-image) in :meth:`reconstruct`, so that layout and colour mass come from
        early visual cortex and the object from the decoded embeddings.

        Parameters
        ----------
        dataset : FMRIDataset
            Training trials of known subjects (repeats are averaged here).
        pipeline : StimulusDiffusionPipeline, optional
            Its autoencoder encodes the training images into the regression targets
            (default :func:`decoding.generation.default_pipeline`).
        rois : "early", list of str or None
            ``"early"``: the subject's ROIs among :data:`EARLY_VISUAL_ROIS` (all voxels when
            it has none of them); a list: those ROIs (unknown names are refused); None: all.
        alphas : array-like, optional
            Ridge penalties (:class:`~decoding.generation.prior.LowLevelDecoder`).

        Returns
        -------
        dict of str -> LowLevelDecoder
            Also stored as ``low_level_`` (saved with the model); the voxel columns each
            reads are in ``low_level_voxels_``.
        """
        from ..generation.prior import LowLevelDecoder
        from ..generation.training import encode_images

        self._check_fitted()
        if not isinstance(dataset, FMRIDataset):
            raise ValueError(f"dataset: expected an FMRIDataset, got {type(dataset).__name__}")
        if pipeline is None:
            from ..generation import default_pipeline

            pipeline = default_pipeline()
        vae = getattr(pipeline, "vae", None)
        if vae is None:
            raise ValueError("pipeline: expected a generator with an autoencoder (`vae`)")
        avg = dataset.average_repeats()
        size = int(pipeline.unet.config.sample_size) * 2 ** (len(vae.config.block_out_channels)
                                                             - 1)  # fmt: skip
        decoders = dict(getattr(self, "low_level_", None) or {})
        voxels = dict(getattr(self, "low_level_voxels_", None) or {})
        for s in avg.subject_names:
            self._known(s)
            sub = avg.subjects[s]
            if sub.n_voxels != self.subjects_[s]:
                raise ValueError(
                    f"dataset.subjects[{s!r}]: {sub.n_voxels} voxels, expected "
                    f"{self.subjects_[s]} (as at fit time)"
                )
            if rois is None:
                cols = np.arange(sub.n_voxels)
            else:
                names = [r for r in EARLY_VISUAL_ROIS if r in sub.roi_names] if rois == "early" \
                    else [rois] if isinstance(rois, str) else list(rois)  # fmt: skip
                unknown = sorted(set(names) - set(sub.roi_names))
                if unknown:
                    raise ValueError(
                        f"rois: {s} has no ROI {unknown}; expected among {sub.roi_names}"
                    )
                cols = np.flatnonzero(np.isin(sub.roi, names)) if names else np.arange(
                    sub.n_voxels)  # fmt: skip
            images = dataset.stimuli.images[dataset.stimuli.index_of(sub.stim_ids)]
            images = _resized(images, size)
            with torch.no_grad():
                latents = encode_images(vae, images).float().cpu().numpy()
            decoders[s] = LowLevelDecoder(alphas=alphas).fit(sub.betas[:, cols], latents)
            voxels[s] = cols
        self.low_level_, self.low_level_voxels_ = decoders, voxels
        return decoders

    @torch.no_grad()
    def low_level_images(self, subject: str, betas: Any, pipeline: Any = None) -> np.ndarray:
        """The blurry low-level reconstructions of a subject's betas, (n, S, S, 3) in [0, 1]."""
        x = self._check_betas(subject, betas)
        dec = (getattr(self, "low_level_", None) or {}).get(subject)
        if dec is None:
            raise ValueError(
                f"subject: no low-level decoder for {subject!r} (fitted for "
                f"{sorted(getattr(self, 'low_level_', None) or {})}); call fit_low_level first"
            )
        if pipeline is None:
            from ..generation import default_pipeline

            pipeline = default_pipeline()
        return dec.predict_images(x[:, self.low_level_voxels_[subject]], pipeline.vae)

    def reconstruct(
        self,
        subject: str,
        betas: Any,
        pipeline: Any = None,
        n_samples: int = 1,
        num_inference_steps: int = 20,
        guidance_scale: float | None = None,
        random_state: int | None = 0,
        use_text: bool = True,
        extractor: Any = None,
        prior: Any = True,
        low_level: Any = True,
        strength: float = 0.6,
        readout: bool = True,
    ) -> np.ndarray:
        """Images from a subject's betas, through the generation layer.

        The decoded embeddings go through the prior (``prior_``, :meth:`fit_prior`) and, with
        a low-level decoder for the subject (:meth:`fit_low_level`), the generator starts
        from the blurry low-level image (image-to-image at ``strength``), as in MindEye2.

        Parameters
        ----------
        subject : str
            A known subject.
        betas : ndarray, shape (n, n_voxels)
            Its betas.
        pipeline : StimulusDiffusionPipeline, optional
            Default :func:`decoding.generation.default_pipeline`; its conditioning widths
            and embedding identifiers must match the model's.
        n_samples : int
            Samples per input; with more than one, :func:`decoding.generation.select_samples`
            keeps one using brain-derived information only (the predicted embedding), never
            the true stimulus.
        num_inference_steps, guidance_scale : optional
            Passed to the pipeline.
        random_state : int, optional
            Seed of the sampling noise.
        use_text : bool
            Condition on the predicted semantic embedding too (when the model has one).
        extractor : FeatureExtractor, optional
            With ``n_samples > 1``: the image features the samples are re-encoded with
            (default ``stimnet``); its identifier must be the model's.
        prior : bool or EmbeddingPrior
            True: the fitted ``prior_`` when there is one; False: the decoded embeddings as
            they are; an :class:`~decoding.generation.prior.EmbeddingPrior`: that one. A prior
            with bank labels also weighs the subject's label read-out
            (:meth:`fit_label_readout`) when there is one.
        low_level : bool
            True: start from the subject's low-level image when a decoder is fitted; False:
            from pure noise.
        strength : float in [0, 1]
            Fraction of the denoising schedule re-run from the low-level image (1: its
            layout is all but ignored; 0: the blurry image itself).
        readout : bool
            Let a prior with bank labels weigh the subject's label read-out (when fitted).

        Returns
        -------
        ndarray of float32, shape (n, H, W, 3)
            Images in [0, 1].
        """
        check_int("n_samples", n_samples, 1)
        if isinstance(strength, bool) or not isinstance(strength, int | float | np.number) or (
            not 0.0 <= float(strength) <= 1.0
        ):
            raise ValueError(f"strength: expected a number in [0, 1], got {strength!r}")
        if not isinstance(low_level, bool | np.bool_):
            raise ValueError(f"low_level: expected True or False, got {low_level!r}")
        x = self._check_betas(subject, betas)
        emb = self.predict_embeddings(subject, x)
        if pipeline is None:
            from ..generation import default_pipeline

            pipeline = default_pipeline()
        self.check_pipeline(pipeline, use_text=use_text)
        if prior is True:
            prior = getattr(self, "prior_", None)
        elif prior is False or prior is None:
            prior = None
        elif not hasattr(prior, "transform"):
            raise ValueError(f"prior: expected True, False or an EmbeddingPrior, got {prior!r}")
        if prior is not None:
            from ..generation.pipeline import Conditioning

            lp = None
            ro = (getattr(self, "readout_", None) or {}).get(subject)
            if readout and ro is not None and getattr(prior, "bank_labels_", None) is not None:
                lp = ro.predict_log_proba(x)
            mapped = prior.transform(Conditioning(emb["image"], emb.get("text"),
                                                  self.image_embedding_id_,
                                                  self.text_embedding_id_),
                                     label_log_proba=lp)  # fmt: skip
            emb = {"image": mapped.image_embeds}
            if mapped.text_embeds is not None:
                emb["text"] = mapped.text_embeds
        init = None
        if low_level and subject in (getattr(self, "low_level_", None) or {}):
            init = self.low_level_images(subject, x, pipeline)
        txt = emb.get("text") if use_text and getattr(pipeline, "text_embed_dim", 0) else None
        gen = torch.Generator().manual_seed(int(random_state)) if random_state is not None \
            else None  # fmt: skip
        kw: dict[str, Any] = dict(num_inference_steps=num_inference_steps, generator=gen,
                                  num_images_per_prompt=n_samples, output_type="np")  # fmt: skip
        if guidance_scale is not None:
            kw["guidance_scale"] = guidance_scale
        if init is not None:
            kw.update(init_images=init, strength=float(strength))
        images = np.asarray(pipeline(image_embeds=torch.from_numpy(emb["image"]),
                                     text_embeds=None if txt is None else torch.from_numpy(txt),
                                     **kw).images, dtype=np.float32)  # fmt: skip
        if n_samples == 1:
            return images
        from ..generation import select_samples

        if extractor is None:
            from ..features import get_extractor

            extractor = get_extractor("stimnet")
        if extractor.identifier != self.image_embedding_id_:
            raise ValueError(
                f"extractor: the samples are chosen in the space the model predicts "
                f"({self.image_embedding_id_!r}), got an extractor of {extractor.identifier!r}"
            )
        n = len(emb["image"])
        cand = images.reshape(n, n_samples, *images.shape[1:])
        chosen = select_samples(cand, emb["image"], extractor=extractor)
        return np.asarray(chosen.images, dtype=np.float32)

    def check_pipeline(self, pipeline: Any, use_text: bool = True) -> None:
        """Refuse a generator whose conditioning does not fit the model's embeddings."""
        self._check_fitted()
        width = getattr(pipeline, "image_embed_dim", None)
        if width != self.image_dim_:
            raise ValueError(
                f"pipeline.image_embed_dim: the model predicts {self.image_dim_}-wide image "
                f"embeddings, the pipeline is conditioned on {width}; expected equal widths"
            )
        pid = getattr(pipeline, "image_embedding_id", None)
        if pid is not None and pid != self.image_embedding_id_:
            raise ValueError(
                f"pipeline.image_embedding_id: the model predicts {self.image_embedding_id_!r} "
                f"embeddings, the pipeline was trained on {pid!r}"
            )
        tdim = getattr(pipeline, "text_embed_dim", 0) or 0
        if use_text and tdim and self.text_dim_:
            if tdim != self.text_dim_:
                raise ValueError(
                    f"pipeline.text_embed_dim: the model predicts {self.text_dim_}-wide text "
                    f"embeddings, the pipeline is conditioned on {tdim}; expected equal widths"
                )
            tid = getattr(pipeline, "text_embedding_id", None)
            if tid is not None and tid != self.text_embedding_id_:
                raise ValueError(
                    f"pipeline.text_embedding_id: the model predicts "
                    f"{self.text_embedding_id_!r} embeddings, the pipeline uses {tid!r}"
                )

    def copy(self) -> MindBridge:
        """A deep copy (e.g. to reset-tune several variants of one trained model)."""
        return copy.deepcopy(self)

    @property
    def n_parameters_(self) -> dict[str, int]:
        """Parameter counts: shared translator and per-subject embedder + builder."""
        m = self.module_
        out = {"translator": sum(p.numel() for p in m.translator.parameters())}
        for s in self.subjects_:
            out[s] = sum(p.numel() for p in (*m.embedders[s].parameters(),
                                             *m.builders[s].parameters()))  # fmt: skip
        return out


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 images at ``size`` x ``size`` (bilinear; unchanged when already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _stimulus_labels(stimuli: Stimuli, labels: Any, ids: np.ndarray) -> np.ndarray:
    """Integer classes of the stimuli ``ids`` from an attribute key or a per-stimulus array."""
    if isinstance(labels, str):
        attrs = stimuli.attributes or {}
        if labels not in attrs:
            raise ValueError(f"labels: {labels!r} is not a stimulus attribute; expected one of "
                             f"{sorted(attrs)}")  # fmt: skip
        values = np.asarray(attrs[labels])
    else:
        values = np.asarray(labels)
    if values.shape != (len(stimuli),) or values.dtype.kind not in "iu":
        raise ValueError(f"labels: expected {len(stimuli)} integer classes (one per stimulus), "
                         f"got {values.dtype} of shape {values.shape}")  # fmt: skip
    return values[stimuli.index_of(ids)].astype(np.int64)
