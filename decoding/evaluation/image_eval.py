"""Scoring reconstructions with a network that shares nothing with the conditioning features.

MindEye (Scotti et al. 2023, 2024) and MindBridge (Wang et al. 2024) score reconstructions by
2-way identification at a low and a high layer of networks the decoder never saw
(AlexNet(2)/(5), InceptionV3, CLIP). In the stimulus world the suite trains its own stand-in,
the **referee**: :class:`ImageEvaluator`, a small ResNet (5x5 strided stem, four residual
stages, batch norm; 0.7M parameters) of another architecture, seed and training set than the
``stimnet`` features the generators are conditioned on. Its heads read the main object's
shape class and colour (and which shapes and colours are present), so the same network is
the attribute classifier that says whether a reconstruction shows the object.

A referee has to see shapes before it can say a generator draws them: v1 (a plain 4-stage
CNN trained on 6,000 images) read the shape of held-out TRUE images right only 47% of the
time, so "shape kept" verdicts over blobs passed. v2 trains on 160,000 fresh renders for 3
epochs (about 25 min on one core) and reads held-out true images' shape and colour at the
accuracies its ``config.json`` records (``held_out_shape_accuracy``, over 2,000 renders of
a seed no other model uses); a test holds the shipped one to >= 0.97 / >= 0.98.

- :meth:`ImageEvaluator.low`: the stem, pooled to 8x8 (edges and colour blobs; the
  AlexNet(2) stand-in).
- :meth:`ImageEvaluator.high`: the global pool of the last stage (object identity; the
  AlexNet(5) / CLIP stand-in).
- :meth:`ImageEvaluator.predict_attributes`: main shape class and colour.
- :meth:`ImageEvaluator.object_floor` / :meth:`ImageEvaluator.has_object`: whether a
  reconstruction shows an object at all. The floor is the highest shape-class probability
  the referee gives to renders of backgrounds alone (no object); an image whose maximum
  shape probability is above it shows something the referee takes for an object.

:func:`reconstruction_metrics` gathers PixCorr, SSIM, 2-way identification at both layers
and shape / colour accuracy of the reconstructions. The default evaluator's weights ship
inside the package, so every machine scores with the same network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from decoding._checks import check_int
from decoding._device import resolve_device
from decoding.features import _check_images, shipped_weights

__all__ = ["ImageEvaluator", "get_evaluator", "reconstruction_metrics", "to_uint8"]

_CACHE: dict[tuple, ImageEvaluator] = {}


def to_uint8(images: Any, name: str = "images") -> np.ndarray:
    """Images as uint8 ``(n, H, W, 3)``: uint8 passes through, float in [0, 1] is scaled."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected images of shape (n, H, W, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected uint8 or finite float images, got {arr.dtype}")
    if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise ValueError(
            f"{name}: expected float images in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]"
        )
    return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)


class _Block(nn.Module):
    """Basic residual block (He et al. 2016): two 3x3 convolutions with batch norm."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )  # fmt: skip
        self.skip = (
            nn.Identity() if c_in == c_out and stride == 1
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                               nn.BatchNorm2d(c_out))
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class _EvalNet(nn.Module):
    """A small ResNet: 5x5 strided stem, then four residual stages (widths w, 2w, 4w, 8w).

    v1 (a 4-stage plain CNN trained on 6,000 images) read the main object's shape of held-out
    images right only 47% of the time, too weak to referee generated shapes; this one is
    trained on 20x as many images (module docstring). ``stimnet`` uses 3x3 plain
    convolutions, another seed and another training set.
    """

    def __init__(self, width: int = 24, n_classes: int = 8) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )  # 32x32
        self.stages = nn.Sequential(
            _Block(w, w, 1), _Block(w, 2 * w, 2), _Block(2 * w, 4 * w, 2), _Block(4 * w, 8 * w, 2)
        )  # 32 -> 4
        self.head = nn.Linear(8 * w, 2 * n_classes + 2 * n_classes)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (x - 0.45) / 0.25
        low = self.stem(x)
        high = self.stages(low).mean(dim=(2, 3))
        return low, high, self.head(high)


def _present_targets(attributes: dict[str, np.ndarray]) -> torch.Tensor:
    """Multi-hot ``(n, 16)``: which shape classes and which colours are in each image."""
    shapes, colours = attributes["shapes"], attributes["colours"]
    present = torch.zeros(len(shapes), 16)
    for k in range(shapes.shape[1]):
        s, c = torch.from_numpy(shapes[:, k]), torch.from_numpy(colours[:, k])
        ok = (s >= 0).nonzero()[:, 0]
        present[ok, s[ok].long()] = 1.0
        present[ok, 8 + c[ok].long()] = 1.0
    return present


class ImageEvaluator:
    """Independent evaluation CNN for reconstructions, the referee (module docstring).

    Parameters
    ----------
    width : int
        Channels of the stem (24 by default: a 0.7M-parameter ResNet; ``stimnet`` uses
        32 and plain 3x3 convs).
    n_train_images : int
        Stimulus-world images rendered to train it (a seed no other suite model uses).
    n_epochs : int
        Training epochs (each image is seen once per epoch, mirrored at random).
    random_state : int
        Seed of its images and weights (default 4242; ``stimnet`` uses 0).
    data_home : path-like, optional
        Cache root (default :func:`data_loaders.cache.data_home`).
    weights : path-like, optional
        A folder holding ``model.safetensors`` (+ ``config.json``) to load instead of the
        shipped or cached weights; a missing or damaged folder is an error naming it.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    verbose : bool | None
        Progress bar while training.

    Attributes
    ----------
    identifier : str
        ``imageeval-v2-<hash of the configuration>``.
    info : dict
        The saved training record (held-out shape / colour accuracy, image count).
    """

    image_size = 64

    def __init__(
        self,
        width: int = 24,
        n_train_images: int = 160_000,
        n_epochs: int = 3,
        random_state: int = 4242,
        data_home: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        device: str = "cpu",
        verbose: bool | None = None,
    ) -> None:
        for name, val, low in (("width", width, 4), ("n_train_images", n_train_images, 16),
                               ("n_epochs", n_epochs, 1)):  # fmt: skip
            check_int(name, val, low)
        self.width, self.n_train_images, self.n_epochs = int(width), int(n_train_images), int(
            n_epochs
        )
        self.random_state = int(random_state)
        self.device = resolve_device(device)
        self.verbose = verbose
        key = dict(v=2, w=self.width, n=self.n_train_images, ep=self.n_epochs,
                   seed=self.random_state)  # fmt: skip
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        self.identifier = f"imageeval-v2-{digest}"
        from data_loaders.cache import data_home as _data_home

        self.net = _EvalNet(self.width)
        if weights is not None:
            self.folder = Path(weights)
            if not (self.folder / "model.safetensors").is_file():
                raise FileNotFoundError(
                    f"weights: expected a folder with model.safetensors, got {str(self.folder)!r}"
                )
        else:
            self.folder = shipped_weights(self.identifier) or (
                _data_home(data_home) / "evaluation" / self.identifier
            )
            if not (self.folder / "model.safetensors").is_file():
                self._train()
        self._load(self.folder)
        self.net.eval().to(self.device)

    def _load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        path = folder / "model.safetensors"
        try:
            state = load_file(str(path))
            self.net.load_state_dict(state)
        except Exception as err:  # truncated file, wrong width, other network
            raise ValueError(
                f"weights: cannot load the image evaluator from {str(path)!r} ({err}); "
                "delete the folder to retrain it, or pass the matching width"
            ) from err
        cfg = folder / "config.json"
        try:
            self.info = json.loads(cfg.read_text()) if cfg.is_file() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"weights: {str(cfg)!r} is not valid JSON ({err})") from err

    def __repr__(self) -> str:
        return f"ImageEvaluator(identifier={self.identifier!r})"

    def object_floor(self, n_images: int = 512, random_state: int = 9090) -> float:
        """The referee's highest shape-class probability on renders of backgrounds alone.

        Parameters
        ----------
        n_images : int
            Background-only renders (the stimulus world's gratings and noise, no object).
        random_state : int
            Seed of the backgrounds (one no model trains on).

        Returns
        -------
        float
            The maximum over the renders of the maximum softmax probability of the shape
            head (computed once per evaluator and arguments).
        """
        n_images = check_int("n_images", n_images, 1)
        key = (n_images, int(random_state))
        floors = self.__dict__.setdefault("_floors", {})
        if key not in floors:
            from data_loaders.simulate.stimuli import render_scenes, sample_scenes

            scenes = sample_scenes(n_images, random_state=int(random_state))
            scenes["present"][:] = False  # the renderer draws only the background
            bg = render_scenes(scenes, image_size=self.image_size)
            floors[key] = float(self.predict_attributes(bg)["shape_proba"].max())
        return floors[key]

    def has_object(self, images: Any) -> np.ndarray:
        """Whether each image's maximum shape probability is above :meth:`object_floor`.

        Parameters
        ----------
        images : ndarray, shape (n, H, W, 3)
            uint8, or float in [0, 1].

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        return self._above_floor(self._run(images)[2][:, :8])

    def _above_floor(self, shape_logits: np.ndarray) -> np.ndarray:
        """Max softmax probability of the shape head above :meth:`object_floor`."""
        proba = torch.from_numpy(shape_logits).softmax(1).numpy()
        return proba.max(axis=1) > self.object_floor()

    def _train(self) -> None:
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        from data_loaders._io import atomic_path, atomic_write_json
        from data_loaders.simulate.stimuli import render_stimuli
        from decoding.features import _to_tensor

        stim = render_stimuli(self.n_train_images, image_size=64,
                              random_state=self.random_state + 31337)  # fmt: skip
        val = render_stimuli(max(16, min(2000, self.n_train_images // 10)), image_size=64,
                             random_state=self.random_state + 31338)  # fmt: skip
        images = stim.images  # uint8: batches become float one at a time (memory)
        shape = torch.from_numpy(stim.attributes["shape"].astype(np.int64))
        colour = torch.from_numpy(stim.attributes["colour"].astype(np.int64))
        present = _present_targets(stim.attributes)
        torch.manual_seed(self.random_state)
        threads = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(1)
        net = self.net.to(self.device).train()
        batch = 64
        n_steps = self.n_epochs * int(np.ceil(len(images) / batch))
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=n_steps,
                                                    pct_start=0.15)  # fmt: skip
        gen = torch.Generator().manual_seed(self.random_state)
        ce, bce = nn.CrossEntropyLoss(label_smoothing=0.05), nn.BCEWithLogitsLoss()
        show = self.verbose is None or bool(self.verbose)
        bar = tqdm(total=n_steps, desc="training image evaluator", disable=not show)
        try:
            for _ in range(self.n_epochs):
                perm = torch.randperm(len(images), generator=gen)
                for s in range(0, len(perm), batch):
                    idx = perm[s : s + batch]
                    xb = _to_tensor(images[idx.numpy()], self.image_size).to(self.device)
                    flip = torch.rand(len(idx), generator=gen) < 0.5
                    xb = torch.where(flip[:, None, None, None].to(xb.device), xb.flip(-1), xb)
                    out = net(xb)[2]
                    loss = (
                        ce(out[:, :8], shape[idx].to(self.device))
                        + ce(out[:, 8:16], colour[idx].to(self.device))
                        + bce(out[:, 16:], present[idx].to(self.device))
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update(1)
                    if bar.n % 100 == 0:
                        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        finally:
            bar.close()
            torch.set_num_threads(threads)
        net.eval()
        out = torch.from_numpy(self._run(val.images)[2])  # self.net is net
        y_s = torch.from_numpy(val.attributes["shape"].astype(np.int64))
        y_c = torch.from_numpy(val.attributes["colour"].astype(np.int64))
        val_shape = float((out[:, :8].argmax(1) == y_s).float().mean())
        val_colour = float((out[:, 8:16].argmax(1) == y_c).float().mean())
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(self.folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_json(self.folder / "config.json", {
            "identifier": self.identifier, "width": self.width,
            "n_train_images": self.n_train_images, "n_epochs": self.n_epochs,
            "random_state": self.random_state, "held_out_shape_accuracy": val_shape,
            "held_out_colour_accuracy": val_colour, "n_held_out": len(val.images),
        })  # fmt: skip
        self.net = net.cpu()

    @torch.no_grad()
    def _run(self, images: Any, batch_size: int = 256):
        from decoding.features import _to_tensor

        images = _check_images(to_uint8(images))
        lows, highs, outs = [], [], []
        for s in range(0, len(images), batch_size):
            x = _to_tensor(images[s : s + batch_size], self.image_size).to(self.device)
            low, high, out = self.net(x)
            lows.append(nn.functional.adaptive_avg_pool2d(low, 8).flatten(1).cpu())
            highs.append(high.cpu())
            outs.append(out.cpu())
        return torch.cat(lows).numpy(), torch.cat(highs).numpy(), torch.cat(outs).numpy()

    def low(self, images: Any) -> np.ndarray:
        """Low-level features: the 5x5 stem's maps pooled to 8x8, flattened ``(n, 64 w)``."""
        return self._run(images)[0]

    def high(self, images: Any) -> np.ndarray:
        """High-level features: global pool of the last stage, ``(n, 4 w)``."""
        return self._run(images)[1]

    def predict_attributes(self, images: Any) -> dict[str, np.ndarray]:
        """Main object's ``"shape"`` and ``"colour"`` class (int arrays ``(n,)``), and their
        probabilities ``"shape_proba"``, ``"colour_proba"`` ``(n, 8)``."""
        out = torch.from_numpy(self._run(images)[2])
        ps, pc = out[:, :8].softmax(1).numpy(), out[:, 8:16].softmax(1).numpy()
        return {"shape": ps.argmax(1), "colour": pc.argmax(1), "shape_proba": ps,
                "colour_proba": pc}  # fmt: skip


def get_evaluator(**kwargs: Any) -> ImageEvaluator:
    """The (default, shipped) :class:`ImageEvaluator`, built once per process and reused."""
    key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
    if key not in _CACHE:
        _CACHE[key] = ImageEvaluator(**kwargs)
    return _CACHE[key]


def reconstruction_metrics(
    pred_images: Any,
    true_images: Any,
    true_attributes: dict[str, np.ndarray] | None = None,
    evaluator: ImageEvaluator | None = None,
) -> dict[str, float]:
    """The reconstruction table's metrics for one set of reconstructions.

    Parameters
    ----------
    pred_images, true_images : ndarray, shape (n, H, W, 3)
        Reconstructions and their ground-truth images, uint8 or float in [0, 1]; n >= 2.
    true_attributes : dict, optional
        ``"shape"`` and ``"colour"`` (int ``(n,)``) of each true image's main object (e.g.
        ``stimuli.attributes``); without it the accuracies are left out.
    evaluator : ImageEvaluator, optional
        Default: the shipped one (:func:`get_evaluator`).

    Returns
    -------
    dict
        ``pixcorr``, ``ssim`` (MindEye's recipe, at the given size), ``two_way_low``,
        ``two_way_high`` (2-way identification at the evaluator's low / high layer,
        chance 0.5), ``object_rate`` (fraction of reconstructions that show an object:
        :meth:`ImageEvaluator.has_object`), and with attributes ``shape_accuracy``,
        ``colour_accuracy`` (of the reconstructions as the evaluator reads them, chance 1/8).
    """
    from decoding.evaluation.metrics import pixcorr, ssim, two_way_identification

    pred, true = to_uint8(pred_images, "pred_images"), to_uint8(true_images, "true_images")
    if pred.shape != true.shape:
        raise ValueError(
            f"pred_images: expected the shape of true_images {true.shape}, got {pred.shape}"
        )
    if len(pred) < 2:
        raise ValueError(f"pred_images: expected at least 2 images, got {len(pred)}")
    ev = evaluator or get_evaluator()
    lp, hp, op = ev._run(pred)
    lt, ht, _ = ev._run(true)
    out = {
        "pixcorr": pixcorr(pred, true),
        "ssim": ssim(pred, true),
        "two_way_low": two_way_identification(lp, lt),
        "two_way_high": two_way_identification(hp, ht),
        "object_rate": float(np.mean(ev._above_floor(op[:, :8]))),
    }
    if true_attributes is not None:
        for name, sl in (("shape", slice(0, 8)), ("colour", slice(8, 16))):
            if name not in true_attributes:
                raise KeyError(
                    f"true_attributes: expected key {name!r}, got {sorted(true_attributes)}"
                )
            y = np.asarray(true_attributes[name])
            if y.shape != (len(pred),):
                raise ValueError(
                    f"true_attributes[{name!r}]: expected shape ({len(pred)},), got {y.shape}"
                )
            out[f"{name}_accuracy"] = float(np.mean(op[:, sl].argmax(1) == y))
    return out
