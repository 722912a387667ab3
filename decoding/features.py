"""Image features for voxelwise encoders: a small registry of feature extractors.

Every extractor maps RGB images (uint8, ``(n, H, W, 3)``) to **unit-norm** feature vectors
(float32, ``(n, dim)``), the input BraInCoRL expects (Yu et al. 2025, "Meta-Learning an
In-Context Transformer Model of Human Higher Visual Cortex", NeurIPS; their dataset code
asserts unit-norm CLIP embeddings). Each extractor has an :attr:`~FeatureExtractor.identifier`
that a trained encoder stores, so a model is never silently used with other features.

Extractors
----------
``"stimnet"`` (default)
    The suite's own image encoder: a 6-layer CNN trained, attribute-supervised, on images
    of the stimulus world (:func:`data_loaders.simulate.stimuli.render_stimuli`): which
    shapes and colours are present, the main object's shape class (8-way softmax), its
    coarse 3D shape properties and viewpoint (what the simulated higher visual cortex is
    tuned to), position and size, one or two objects. Its embedding (global pool of the
    last stage, a 2x2 pool of the stage before so that coarse position survives, and a 4x4
    pool of the first stage for the local edge energy early visual voxels read) is
    PCA-whitened to ``dim`` components on its training images, then unit-normed. Trained
    on first use (about a minute on one CPU core; the main object's class is then read
    correctly on about 65% of held-out images, chance 12.5%) and cached under
    ``data_loaders.cache.data_home()/features/``. The default configuration's trained
    weights ship inside the package (``decoding/weights/<identifier>/``) and are loaded
    first, so every machine gets the same features; any other configuration (another
    identifier) is trained on first use and cached.
``"open_clip"``
    A local open_clip checkpoint (``model_name`` and ``pretrained`` = a local file); never
    downloads.
``"hf"``
    A local Hugging Face folder (CLIP, SigLIP: ``get_image_features``; DINO/ViT: the CLS
    token of ``last_hidden_state``) read with ``transformers`` and ``local_files_only``.

Examples
--------
>>> from decoding.features import get_extractor
>>> fx = get_extractor("stimnet")                                 # doctest: +SKIP
>>> X = fx.transform(stimuli.images)       # (n, 128), rows of norm 1  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from decoding._checks import check_int
from decoding._device import resolve_device
from decoding._registry import Registry

__all__ = [
    "FeatureExtractor",
    "StimNetExtractor",
    "OpenClipExtractor",
    "HFExtractor",
    "register_extractor",
    "get_extractor",
    "available_extractors",
    "unit_norm",
    "shipped_weights",
]

_REGISTRY = Registry("feature extractor")


def register_extractor(name: str) -> Callable:
    """Class decorator: make a :class:`FeatureExtractor` available as ``get_extractor(name)``."""
    return _REGISTRY.register(name)


def available_extractors() -> list[str]:
    """Names accepted by :func:`get_extractor`."""
    return _REGISTRY.names()


def get_extractor(name: str = "stimnet", **kwargs: Any) -> FeatureExtractor:
    """Build a registered feature extractor.

    Parameters
    ----------
    name : str
        One of :func:`available_extractors` (``"stimnet"``, ``"open_clip"``, ``"hf"``).
    **kwargs
        Passed to the extractor's constructor.
    """
    return _REGISTRY.build(name, **kwargs)


#: Weights that ship inside the package, one folder per identifier (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_weights(
    identifier: str, files: tuple[str, ...] = ("model.safetensors",)
) -> Path | None:
    """The package's folder of trained weights for ``identifier``, or None if none ships.

    The suite ships the weights of its default models (``stimnet`` features, the
    ``stimtext`` caption encoder, the image evaluator, the stimulus diffusion pipeline)
    under ``decoding/weights/<identifier>/``, so that every machine loads the same numbers
    instead of training its own copy. A model whose configuration differs from the shipped
    one has another identifier and is trained and cached as before.
    """
    folder = WEIGHTS_DIR / identifier
    if folder.is_dir() and all((folder / f).is_file() for f in files):
        return folder
    return None


def unit_norm(X: np.ndarray) -> np.ndarray:
    """Scale each row to L2 norm 1 (zero rows stay zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norm, 1e-12)


def _check_images(images: Any) -> np.ndarray:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] != 3
    ):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise ValueError(f"images: expected uint8 array of shape (n, H, W, 3), got {got}")
    if images.shape[1] < 8 or images.shape[2] < 8:
        raise ValueError(f"images: expected images of at least 8x8 pixels, got {images.shape}")
    return images


class FeatureExtractor:
    """Base class: ``transform(images) -> (n, dim)`` unit-norm float32 features.

    Subclasses set :attr:`dim` and :attr:`identifier` and implement :meth:`_features`.
    """

    #: Feature size.
    dim: int
    #: A string naming the extractor and its weights; encoders store it and refuse others.
    identifier: str

    def _features(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Features of a batch of images.

        Parameters
        ----------
        images : ndarray of uint8, shape (n, H, W, 3)
            RGB images.
        batch_size : int
            Images per forward pass (bounds memory).

        Returns
        -------
        X : ndarray of float32, shape (n, dim)
            Rows of L2 norm 1.
        """
        images = _check_images(images)
        out = np.empty((images.shape[0], self.dim), dtype=np.float32)
        for s in range(0, images.shape[0], batch_size):
            out[s : s + batch_size] = self._features(images[s : s + batch_size])
        return unit_norm(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identifier={self.identifier!r}, dim={self.dim})"


# --------------------------------------------------------------------------------------
# the suite's own CNN
# --------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class StimNet(nn.Module):
    """Small CNN for 32x32 stimulus-world images with attribute heads (~10 MMAC per image).

    Three stages of two 3x3 convolutions each (the first of a stage strided):
    ``width`` at 16x16, ``2 width`` at 8x8, ``4 width`` at 4x4, so the last layer sees the
    whole object (receptive field 35 px at 32 px input) with two convolutions per scale
    to build shape from edges. The embedding concatenates the global average of the last
    layer, a 2x2 average of the second stage and a 4x4 average of the first (coarse
    position and local edge / colour energy survive, which early visual voxels need).

    Parameters
    ----------
    width : int
        Channels of the first stage.
    n_shapes, n_colours : int
        Sizes of the multi-label heads (shapes / colours present) and of the main object's
        shape-class head.
    n_properties : int
        Size of the main object's 3D shape-property head (``SHAPE_PROPERTIES`` columns).
    """

    def __init__(
        self, width: int = 32, n_shapes: int = 8, n_colours: int = 8, n_properties: int = 4
    ) -> None:
        super().__init__()
        w = width
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(_conv(3, w, 2), _conv(w, w, 1)),
                nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1)),
                nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1)),
            ]
        )
        self.embed_dim = 4 * w + 4 * 2 * w + 16 * w
        # heads: shapes present, colours present, main position (2), size (1), two objects,
        # main shape class, main shape properties, main viewpoint (end-on)
        self.n_shapes, self.n_colours, self.n_properties = n_shapes, n_colours, n_properties
        self.n_out = 2 * n_shapes + n_colours + 4 + n_properties + 1
        self.head = nn.Linear(4 * w, self.n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` float (B, 3, H, W) in [0, 1] -> (embedding (B, embed_dim), head outputs)."""
        x = (x - 0.5) / 0.25
        x = self.blocks[0](x)
        # a 4x4 map of the first stage: local edge / colour energy, what early visual
        # voxels (pRFs over a Gabor energy bank) read
        local = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        x = self.blocks[1](x)
        pooled = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        x = self.blocks[2](x)
        g = x.mean(dim=(2, 3))
        return torch.cat([g, pooled, local], dim=1), self.head(g)

    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs (B, n_out) -> named slices."""
        sizes = {
            "shapes": self.n_shapes, "colours": self.n_colours, "position": 2, "size": 1,
            "two": 1, "main_shape": self.n_shapes, "properties": self.n_properties,
            "end_on": 1,
        }  # fmt: skip
        return dict(zip(sizes, torch.split(out, list(sizes.values()), dim=1), strict=True))


def _to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def _attribute_targets(stim) -> dict[str, np.ndarray]:
    """Supervision targets from a :func:`render_stimuli` result.

    Besides which shapes / colours are present (multi-label, ambiguous about which object
    is which in two-object images), the main (largest) object's shape class, its coarse 3D
    shape properties and viewpoint are targets of their own: the things higher visual
    cortex is tuned to (:mod:`data_loaders.simulate.fmri`).
    """
    from data_loaders.simulate.stimuli import SHAPE_PROPERTIES

    attrs = stim.attributes
    shapes, colours = attrs["shapes"], attrs["colours"]
    n = shapes.shape[0]
    shape_hot = np.zeros((n, 8), np.float32)
    colour_hot = np.zeros((n, 8), np.float32)
    for k in range(shapes.shape[1]):
        ok = shapes[:, k] >= 0
        shape_hot[np.flatnonzero(ok), shapes[ok, k]] = 1.0
        ok = colours[:, k] >= 0
        colour_hot[np.flatnonzero(ok), colours[ok, k]] = 1.0
    main = shapes[:, 0].astype(np.int64)
    # |cos| between the main object's symmetry axis (local y) and the line of sight
    end_on = np.abs(np.asarray(stim.objects_3d["rotation"])[:, 0, 2, 1]).astype(np.float32)
    return {
        "shapes": shape_hot,
        "colours": colour_hot,
        "position": attrs["position"].astype(np.float32),
        "size": attrs["size"].astype(np.float32)[:, None],
        "two": (attrs["n_objects"] > 1).astype(np.float32)[:, None],
        "main_shape": main,
        "properties": SHAPE_PROPERTIES[main].astype(np.float32),
        "end_on": end_on[:, None],
    }


@register_extractor("stimnet")
class StimNetExtractor(FeatureExtractor):
    """The suite's own image encoder, trained on the stimulus world (see module docstring).

    Parameters
    ----------
    dim : int
        Output size (PCA components kept, whitened, then unit-normed).
    n_train_images : int
        Stimulus-world images rendered to train it (a seed the simulated NSD never uses).
    n_epochs : int
        Training epochs (AdamW, batch 32, one-cycle learning rate).
    width : int
        Channels of the first CNN block.
    image_size : int
        Input size; other image sizes are resized (bilinear, anti-aliased).
    random_state : int
        Seed for the training images and the weights.
    data_home : path-like, optional
        Cache root (default :func:`data_loaders.cache.data_home`).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    verbose : bool | None
        Progress bar while training.
    """

    def __init__(
        self,
        dim: int = 128,
        n_train_images: int = 4000,
        n_epochs: int = 10,
        width: int = 32,
        image_size: int = 32,
        random_state: int = 0,
        data_home: str | os.PathLike | None = None,
        device: str = "cpu",
        verbose: bool | None = None,
    ) -> None:
        for name, val, low in (
            ("dim", dim, 2),
            ("n_train_images", n_train_images, 16),
            ("n_epochs", n_epochs, 1),
            ("width", width, 4),
            ("image_size", image_size, 16),
        ):
            check_int(name, val, low)
        self.dim = int(dim)
        self.n_train_images = int(n_train_images)
        self.n_epochs = int(n_epochs)
        self.width = int(width)
        self.image_size = int(image_size)
        self.random_state = int(random_state)
        self.device = resolve_device(device)
        self.verbose = verbose
        key = dict(
            v=3, dim=self.dim, n=self.n_train_images, ep=self.n_epochs, w=self.width,
            size=self.image_size, seed=self.random_state,
        )  # fmt: skip
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        self.identifier = f"stimnet-v3-{digest}"
        from data_loaders.cache import data_home as _data_home

        self.folder = _data_home(data_home) / "features" / self.identifier
        self._load_or_train()

    # -- training ------------------------------------------------------------------------
    def _load_or_train(self) -> None:
        from safetensors.torch import load_file

        shipped = shipped_weights(self.identifier, ("model.safetensors", "pca.npz"))
        if shipped is not None:  # the package's own copy: the same features on any machine
            self.folder = shipped
        w_path, p_path = self.folder / "model.safetensors", self.folder / "pca.npz"
        self.net = StimNet(self.width)
        if not (w_path.is_file() and p_path.is_file()):
            self._train()
        from data_loaders._io import load_npz, reading

        # a damaged cached file names itself (delete that folder to train it again)
        with reading(w_path, f"the {self.identifier} weights (safetensors)"):
            state = load_file(str(w_path))
        self.net.load_state_dict(state)
        self.net.eval().to(self.device)
        pca = load_npz(p_path, ("mean", "proj"))
        self._mean, self._proj = pca["mean"], pca["proj"]

    def _train(self) -> None:
        from data_loaders.simulate.stimuli import render_stimuli

        # 7919: a seed offset the simulated NSD does not use, so these images are new
        stim = render_stimuli(
            self.n_train_images, image_size=64,
            random_state=self.random_state + 7919, verbose=self.verbose,
        )  # fmt: skip
        targets = {k: torch.from_numpy(v) for k, v in _attribute_targets(stim).items()}
        threads = torch.get_num_threads()
        if self.device == "cpu":
            # small convolutions: one thread is barely slower alone and far faster when
            # the cores are shared (measured 10x on a loaded 2-core machine)
            torch.set_num_threads(1)
        try:
            loss = self._fit_net(stim, targets)
        finally:
            torch.set_num_threads(threads)
        self._save(stim, loss)

    def _fit_net(self, stim, targets) -> torch.Tensor:
        from tqdm.auto import tqdm

        x_all = _to_tensor(stim.images, self.image_size)
        torch.manual_seed(self.random_state)
        net = self.net.to(self.device).train()
        lr = 5e-3  # with batchnorm and a one-cycle schedule; 2e-3 under-trained the shape heads
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        batch = 32  # many small steps: on a CPU, per-image cost hardly depends on batch
        n_steps = self.n_epochs * int(np.ceil(len(x_all) / batch))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n_steps)
        gen = torch.Generator().manual_seed(self.random_state)
        bce, mse, ce = nn.BCEWithLogitsLoss(), nn.MSELoss(), nn.CrossEntropyLoss()
        show = self.verbose is None or bool(self.verbose)
        bar = tqdm(total=n_steps, desc="training stimnet features", disable=not show)
        for _ in range(self.n_epochs):
            perm = torch.randperm(len(x_all), generator=gen)
            for s in range(0, len(perm), batch):
                idx = perm[s : s + batch]
                xb = x_all[idx].to(self.device)
                t = {k: v[idx].to(self.device) for k, v in targets.items()}
                # augmentation that keeps every attribute known: brightness jitter, and
                # horizontal flips of half the batch with the x position mirrored (shape
                # classes, sizes and viewpoint are mirror-invariant)
                xb = (xb * (0.8 + 0.4 * torch.rand(len(idx), 1, 1, 1, generator=gen))).clamp(0, 1)
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None].to(xb.device), xb.flip(-1), xb)
                pos = t["position"].clone()
                pos[flip, 0] = 1.0 - pos[flip, 0]
                o = net.split(net(xb)[1])
                # the main object's shape class and 3D properties carry most weight: they are
                # what higher visual cortex is tuned to, and the hardest to learn
                loss = (
                    bce(o["shapes"], t["shapes"])
                    + bce(o["colours"], t["colours"])
                    + 10.0 * mse(o["position"], pos)
                    + 10.0 * mse(o["size"], t["size"])
                    + bce(o["two"], t["two"])
                    + ce(o["main_shape"], t["main_shape"])
                    + 4.0 * mse(o["properties"], t["properties"])
                    + 2.0 * mse(o["end_on"], t["end_on"])
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        net.eval()
        return loss

    def _save(self, stim, loss) -> None:
        from safetensors.torch import save_file

        from data_loaders._io import atomic_path, atomic_write_json

        net = self.net
        # PCA whitening of the embedding on the training images
        emb = self._embed(stim.images).astype(np.float64)
        mean = emb.mean(axis=0)
        _, s, vt = np.linalg.svd(emb - mean, full_matrices=False)
        k = min(self.dim, vt.shape[0])
        scale = s[:k] / np.sqrt(max(len(emb) - 1, 1))
        proj = (vt[:k].T / np.maximum(scale, 1e-8)).astype(np.float32)
        if k < self.dim:  # fewer training images than dims: pad with zero columns
            proj = np.pad(proj, ((0, 0), (0, self.dim - k)))
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / "pca.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=mean.astype(np.float32), proj=proj)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(self.folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_json(
            self.folder / "config.json",
            {"identifier": self.identifier, "dim": self.dim, "width": self.width,
             "n_train_images": self.n_train_images, "n_epochs": self.n_epochs,
             "image_size": self.image_size, "random_state": self.random_state,
             "final_loss": float(loss.item())},
        )  # fmt: skip
        self.net = net.cpu()

    @torch.no_grad()
    def _embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch_size):
            x = _to_tensor(images[s : s + batch_size], self.image_size).to(self.device)
            out.append(self.net(x)[0].cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _features(self, images: np.ndarray) -> np.ndarray:
        return (self._embed(images) - self._mean) @ self._proj

    @torch.no_grad()
    def predict_attributes(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The attribute heads: probabilities of each shape / colour present, position, size,
        the main object's shape-class probabilities, 3D shape properties and viewpoint.

        Useful to check the encoder learnt the stimulus world (see the tests).
        """
        images = _check_images(images)
        x = _to_tensor(images, self.image_size).to(self.device)
        o = self.net.split(self.net(x)[1].cpu())
        return {
            "shapes": torch.sigmoid(o["shapes"]).numpy(),
            "colours": torch.sigmoid(o["colours"]).numpy(),
            "position": o["position"].numpy(),
            "size": o["size"][:, 0].numpy(),
            "main_shape": torch.softmax(o["main_shape"], dim=1).numpy(),
            "properties": o["properties"].numpy(),
            "end_on": o["end_on"][:, 0].numpy(),
        }


# --------------------------------------------------------------------------------------
# optional third-party checkpoints (local only)
# --------------------------------------------------------------------------------------
@register_extractor("open_clip")
class OpenClipExtractor(FeatureExtractor):
    """Image embeddings of a local open_clip checkpoint (CLIP as in BraInCoRL's default).

    Parameters
    ----------
    model_name : str
        open_clip architecture, e.g. ``"ViT-B-32"``.
    pretrained : path-like
        Local checkpoint file (nothing is downloaded).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(self, model_name: str, pretrained: str | os.PathLike, device: str = "cpu"):
        try:
            import open_clip
        except ImportError as err:
            raise ImportError(
                "OpenClipExtractor needs the optional package open_clip_torch "
                "(pip install open_clip_torch)"
            ) from err
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained: expected a local checkpoint file, got {path}")
        self.device = resolve_device(device)
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(path)
        )
        self.model = model.eval().to(self.device)
        self.preprocess = preprocess
        with torch.no_grad():
            probe = self._features(np.zeros((1, 32, 32, 3), np.uint8))
        self.dim = int(probe.shape[1])
        self.identifier = f"open_clip-{model_name}-{path.name}"

    @torch.no_grad()
    def _features(self, images: np.ndarray) -> np.ndarray:
        from PIL import Image

        x = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        return self.model.encode_image(x).float().cpu().numpy()


@register_extractor("hf")
class HFExtractor(FeatureExtractor):
    """Image embeddings of a local Hugging Face ``transformers`` folder (CLIP, SigLIP, DINO).

    Parameters
    ----------
    path : path-like
        Folder with ``config.json`` and weights (read with ``local_files_only=True``).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        try:
            from transformers import AutoImageProcessor, AutoModel
        except ImportError as err:
            raise ImportError(
                "HFExtractor needs the optional package transformers (pip install transformers)"
            ) from err
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"path: expected a local model folder with config.json, got {folder}"
            )
        self.device = resolve_device(device)
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval().to(self.device)
        with torch.no_grad():
            probe = self._features(np.zeros((1, 32, 32, 3), np.uint8))
        self.dim = int(probe.shape[1])
        self.identifier = f"hf-{folder.name}"

    @torch.no_grad()
    def _features(self, images: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        if hasattr(self.model, "get_image_features"):  # CLIP / SigLIP: the joint space
            out = self.model.get_image_features(**inputs)
            if not isinstance(out, torch.Tensor):  # transformers >= 5 returns an output object
                out = out.pooler_output
        else:  # DINO / ViT: the CLS token
            out = self.model(**inputs).last_hidden_state[:, 0]
        return out.float().cpu().numpy()
