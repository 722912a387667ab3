"""Semantic (caption-like) embeddings: the text-like target decoded beside the image embedding.

MindBridge (Wang et al., CVPR 2024) decodes two embeddings from fMRI, a CLIP image
embedding and a CLIP *text* embedding of the image's caption, and Versatile Diffusion is
guided by both. The stimulus world has no human captions, so :func:`captions_from_attributes`
writes them from the scene attributes with a small fixed grammar, and the default encoder
``"stimtext"`` maps captions into the space of the suite's image features.

Caption grammar
---------------
One phrase per object, the larger (main) object first::

    caption  := object1 [", and " object2]
    object1  := "a " size " " colour " " shape " in the " place
    object2  := "a " size " " colour " " shape
    size     := "small" (radius < 0.2 of the width) | "large"
    place    := vertical " " horizontal | "centre"  (when both are central)
    vertical := "upper" (y < 1/3) | "middle" | "lower" (y > 2/3)
    horizontal := "left" (x < 1/3) | "centre" | "right" (x > 2/3)

e.g. ``"a large red torus in the upper left, and a small blue cube"``. Colours and shapes
are :data:`~data_loaders.simulate.stimuli.COLOUR_NAMES` and
:data:`~data_loaders.simulate.stimuli.SHAPE_CLASSES`.

Encoders
--------
``"stimtext"`` (default)
    A small transformer over the caption's words (2 layers, width 64, a fixed vocabulary
    of the grammar's words; unknown words map to one ``<unk>`` token), trained
    contrastively (symmetric InfoNCE, as CLIP, Radford et al. 2021) against a linear map
    of the ``stimnet`` image features of the same images, so that captions and images
    share one space. Trained on first use (well under a minute) and cached under
    ``data_loaders.cache.data_home()/semantics/``; the default configuration's weights
    ship inside the package. Its identifier names the image features it was trained
    against.
``"clip"``
    A local CLIP text model (``CLIPTextModelWithProjection`` + tokenizer) read with
    ``transformers`` and ``local_files_only=True``; never downloads.

Every encoder has an :attr:`~TextEncoder.identifier` that trained models store and check.

Examples
--------
>>> from decoding.semantics import captions_from_attributes, get_text_encoder
>>> caps = captions_from_attributes(stimuli)                      # doctest: +SKIP
>>> T = get_text_encoder("stimtext").encode(caps)   # (n, 64), unit rows  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from decoding._checks import check_int
from decoding._device import resolve_device
from decoding._registry import Registry
from decoding.features import shipped_weights, unit_norm

__all__ = [
    "captions_from_attributes",
    "TextEncoder",
    "StimTextEncoder",
    "CLIPTextEncoder",
    "register_text_encoder",
    "get_text_encoder",
    "available_text_encoders",
    "tokenize",
    "VOCABULARY",
]

_SMALL_BELOW = 0.2  # object radius (fraction of width) below which an object is "small"


def _shape_colour_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES

    return SHAPE_CLASSES, COLOUR_NAMES


def _place(x: float, y: float) -> str:
    h = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "centre")
    v = "upper" if y < 1 / 3 else ("lower" if y > 2 / 3 else "middle")
    return "centre" if (h, v) == ("centre", "middle") else f"{v} {h}"


def captions_from_attributes(stimuli: Any) -> list[str]:
    """Captions of stimulus-world images from their scene attributes (grammar: module doc).

    Parameters
    ----------
    stimuli : Stimuli or dict
        A :class:`~data_loaders.schema.Stimuli` with ``attributes`` (as
        :func:`~data_loaders.simulate.stimuli.render_stimuli` makes them), or that
        attributes dict. Per-object arrays ``shapes``, ``colours`` ``(n, k)`` (-1 = absent),
        ``sizes`` ``(n, k)``, ``positions`` ``(n, k, 2)`` are used; without them the
        main-object arrays ``shape``, ``colour``, ``size``, ``position``.

    Returns
    -------
    list of str
        One caption per image.

    Examples
    --------
    >>> attrs = {"shapes": np.array([[4, 1]]), "colours": np.array([[0, 5]]),
    ...          "sizes": np.array([[0.25, 0.15]]),
    ...          "positions": np.array([[[0.2, 0.2], [0.7, 0.8]]])}
    >>> captions_from_attributes(attrs)
    ['a large red torus in the upper left, and a small blue cube']
    """
    attrs = getattr(stimuli, "attributes", stimuli)
    if not isinstance(attrs, dict):
        raise ValueError(
            f"stimuli: expected a Stimuli with attributes or an attributes dict, got "
            f"{type(stimuli).__name__}"
        )
    if all(k in attrs for k in ("shapes", "colours", "sizes", "positions")):
        shapes = np.asarray(attrs["shapes"])
        colours = np.asarray(attrs["colours"])
        sizes = np.asarray(attrs["sizes"], dtype=float)
        positions = np.asarray(attrs["positions"], dtype=float)
    elif all(k in attrs for k in ("shape", "colour", "size", "position")):
        shapes = np.asarray(attrs["shape"])[:, None]
        colours = np.asarray(attrs["colour"])[:, None]
        sizes = np.asarray(attrs["size"], dtype=float)[:, None]
        positions = np.asarray(attrs["position"], dtype=float)[:, None]
    else:
        raise KeyError(
            "stimuli.attributes: expected keys shapes, colours, sizes, positions (or shape, "
            f"colour, size, position), got {sorted(attrs)}"
        )
    if shapes.ndim != 2 or positions.shape != (*shapes.shape, 2):
        raise ValueError(
            f"stimuli.attributes: expected shapes (n, k) and positions (n, k, 2), got "
            f"{shapes.shape} and {positions.shape}"
        )
    shape_names, colour_names = _shape_colour_names()
    out = []
    for i in range(shapes.shape[0]):
        phrases = []
        for k in range(shapes.shape[1]):
            s, c = int(shapes[i, k]), int(colours[i, k])
            if s < 0:
                continue
            if not (0 <= s < len(shape_names) and 0 <= c < len(colour_names)):
                raise ValueError(
                    f"stimuli.attributes: image {i} object {k} has shape {s} / colour {c}; "
                    f"expected indices below {len(shape_names)} / {len(colour_names)}"
                )
            size = "small" if sizes[i, k] < _SMALL_BELOW else "large"
            phrase = f"a {size} {colour_names[c]} {shape_names[s]}"
            if not phrases:
                phrase += f" in the {_place(*positions[i, k])}"
            phrases.append(phrase)
        if not phrases:
            raise ValueError(f"stimuli.attributes: image {i} has no object")
        out.append(", and ".join(phrases))
    return out


def _vocabulary() -> tuple[str, ...]:
    shape_names, colour_names = _shape_colour_names()
    words = ("a", "and", ",", "in", "the", "small", "large", "upper", "middle", "lower",
             "left", "centre", "right")  # fmt: skip
    return ("<pad>", "<unk>", *words, *colour_names, *shape_names)


#: The ``stimtext`` vocabulary: padding, unknown, the grammar's words, colours, shapes.
VOCABULARY: tuple[str, ...] = _vocabulary()
_MAX_TOKENS = 24


def tokenize(captions: Sequence[str], max_tokens: int = _MAX_TOKENS) -> np.ndarray:
    """Word tokens of captions (lower-cased; commas are tokens), padded with 0.

    Returns
    -------
    ndarray of int64, shape (n, max_tokens)
        Indices into :data:`VOCABULARY`; unknown words are ``1`` (``<unk>``); longer
        captions are cut at ``max_tokens``.
    """
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise ValueError("captions: expected a list of strings")
    index = {w: i for i, w in enumerate(VOCABULARY)}
    out = np.zeros((len(captions), max_tokens), dtype=np.int64)
    for i, cap in enumerate(captions):
        words = re.findall(r"[a-z<>]+|,", cap.lower())[:max_tokens]
        out[i, : len(words)] = [index.get(w, 1) for w in words]
    return out


_REGISTRY = Registry("text encoder")


def register_text_encoder(name: str) -> Callable:
    """Class decorator: make a :class:`TextEncoder` available as ``get_text_encoder(name)``."""
    return _REGISTRY.register(name)


def available_text_encoders() -> list[str]:
    """Names accepted by :func:`get_text_encoder`."""
    return _REGISTRY.names()


def get_text_encoder(name: str = "stimtext", **kwargs: Any) -> TextEncoder:
    """Build a registered text encoder (``"stimtext"`` or ``"clip"``)."""
    return _REGISTRY.build(name, **kwargs)


class TextEncoder:
    """Base class: ``encode(captions) -> (n, dim)`` unit-norm float32 embeddings."""

    #: Embedding size.
    dim: int
    #: Names the encoder and its weights; models conditioned on it store and check it.
    identifier: str

    def _encode(self, captions: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, captions: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Embeddings of captions.

        Parameters
        ----------
        captions : list of str
            E.g. from :func:`captions_from_attributes`.
        batch_size : int
            Captions per forward pass.

        Returns
        -------
        ndarray of float32, shape (n, dim)
            Rows of L2 norm 1.
        """
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError("captions: expected a list of strings")
        captions = list(captions)
        if not captions:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._encode(captions[s : s + batch_size])
            for s in range(0, len(captions), batch_size)
        ]
        return unit_norm(np.concatenate(parts))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identifier={self.identifier!r}, dim={self.dim})"


class _CaptionNet(nn.Module):
    """Word + position embeddings -> small transformer -> masked mean -> linear."""

    def __init__(self, vocab: int, dim: int, width: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(_MAX_TOKENS, width))
        layer = nn.TransformerEncoderLayer(
            width, nhead=4, dim_feedforward=2 * width, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        h = self.encoder(self.tok(tokens) + self.pos[: tokens.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).float()[..., None]
        return self.out((h * keep).sum(1) / keep.sum(1).clamp_min(1.0))


@register_text_encoder("stimtext")
class StimTextEncoder(TextEncoder):
    """The suite's caption encoder, trained contrastively against image features.

    Parameters
    ----------
    dim : int
        Embedding size.
    features : dict
        The image features it is aligned with: ``get_extractor(**features)``
        (default the shipped ``stimnet``).
    n_train_images : int
        Stimulus-world images rendered (and captioned) to train it.
    n_steps : int
        AdamW steps at batch 256.
    random_state : int
        Seed of the training images and weights.
    data_home : path-like, optional
        Cache root (default :func:`data_loaders.cache.data_home`).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    verbose : bool | None
        Progress bar while training.
    """

    def __init__(
        self,
        dim: int = 64,
        features: dict | None = None,
        n_train_images: int = 4000,
        n_steps: int = 600,
        random_state: int = 0,
        data_home: str | os.PathLike | None = None,
        device: str = "cpu",
        verbose: bool | None = None,
    ) -> None:
        for name, val, low in (("dim", dim, 2), ("n_train_images", n_train_images, 16),
                               ("n_steps", n_steps, 1)):  # fmt: skip
            check_int(name, val, low)
        self.dim, self.n_train_images, self.n_steps = int(dim), int(n_train_images), int(n_steps)
        self.random_state = int(random_state)
        self.features = dict(features or {"name": "stimnet"})
        self.device = resolve_device(device)
        self.verbose = verbose
        self._data_home = data_home
        self.feature_identifier = self._extractor().identifier
        key = dict(v=1, dim=self.dim, n=self.n_train_images, steps=self.n_steps,
                   seed=self.random_state, features=self.feature_identifier)  # fmt: skip
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        self.identifier = f"stimtext-v1-{digest}"
        from data_loaders.cache import data_home as _data_home

        self.folder = shipped_weights(self.identifier) or (
            _data_home(data_home) / "semantics" / self.identifier
        )
        self.net = _CaptionNet(len(VOCABULARY), self.dim)
        if not (self.folder / "model.safetensors").is_file():
            self._train()
        from safetensors.torch import load_file

        self.net.load_state_dict(load_file(str(self.folder / "model.safetensors")))
        self.net.eval().to(self.device)

    def _extractor(self):
        from decoding.features import get_extractor

        kw = dict(self.features)
        name = kw.pop("name", "stimnet")
        if name == "stimnet":
            kw.setdefault("data_home", self._data_home)
            kw.setdefault("verbose", self.verbose)
        return get_extractor(name, **kw)

    def _train(self) -> None:
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        from data_loaders._io import atomic_path, atomic_write_json
        from data_loaders.simulate.stimuli import render_stimuli

        # 104729: a seed offset neither the simulated NSD nor stimnet's training uses
        stim = render_stimuli(self.n_train_images, image_size=64,
                              random_state=self.random_state + 104729)  # fmt: skip
        img = torch.from_numpy(self._extractor().transform(stim.images))
        tok = torch.from_numpy(tokenize(captions_from_attributes(stim)))
        torch.manual_seed(self.random_state)
        threads = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(1)
        net = self.net.to(self.device).train()
        image_tower = nn.Linear(img.shape[1], self.dim).to(self.device)
        log_t = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        params = [*net.parameters(), *image_tower.parameters(), log_t]
        opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=self.n_steps)
        gen = torch.Generator().manual_seed(self.random_state)
        batch = min(256, len(img))
        show = self.verbose is None or bool(self.verbose)
        try:
            for _ in tqdm(range(self.n_steps), desc="training stimtext", disable=not show):
                idx = torch.randperm(len(img), generator=gen)[:batch]
                t = nn.functional.normalize(net(tok[idx].to(self.device)), dim=1)
                v = nn.functional.normalize(image_tower(img[idx].to(self.device)), dim=1)
                logits = log_t.exp().clamp(max=100) * t @ v.T
                # images with the same caption are positives of each other
                same = (tok[idx][:, None] == tok[idx][None]).all(-1).float().to(self.device)
                target = same / same.sum(1, keepdim=True)
                loss = 0.5 * (
                    -(target * logits.log_softmax(1)).sum(1).mean()
                    - (target * logits.T.log_softmax(1)).sum(1).mean()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        finally:
            torch.set_num_threads(threads)
        net.eval()
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(self.folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_json(self.folder / "config.json", {
            "identifier": self.identifier, "dim": self.dim, "n_train_images": self.n_train_images,
            "n_steps": self.n_steps, "random_state": self.random_state,
            "features": self.feature_identifier, "final_loss": float(loss.item()),
        })  # fmt: skip
        self.net = net.cpu()

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> np.ndarray:
        tok = torch.from_numpy(tokenize(captions)).to(self.device)
        return self.net(tok).float().cpu().numpy()


@register_text_encoder("clip")
class CLIPTextEncoder(TextEncoder):
    """Text embeddings of a local CLIP folder (``text_embeds`` of
    ``CLIPTextModelWithProjection``), read with ``local_files_only=True``.

    Parameters
    ----------
    path : path-like
        Folder with the text model's ``config.json``, weights and tokenizer files.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"path: expected a local CLIP text-model folder with config.json, got {folder}"
            )
        try:
            from transformers import AutoTokenizer, CLIPTextModelWithProjection
        except ImportError as err:  # pragma: no cover - optional dependency
            raise ImportError(
                "CLIPTextEncoder needs the optional package transformers "
                "(pip install 'neurosuite[pretrained]')"
            ) from err
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True)
        self.model = self.model.eval().to(self.device)
        self.dim = int(self.model.config.projection_dim)
        self.identifier = f"clip-text-{folder.name}"

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> np.ndarray:
        inputs = self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
        out = self.model(**inputs.to(self.device)).text_embeds
        return out.float().cpu().numpy()
