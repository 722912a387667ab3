"""Bringing decoded embeddings back to what the generator was trained on, and the low-level path.

A decoder regressed from fMRI (MindBridge, ridge) predicts embeddings that are shrunk towards
their mean, noisy and off the manifold of true embeddings; the generator, conditioned on
true embeddings during training, turns such inputs into blobs. MindEye2 (Scotti et al.
2024) closes that gap with a *diffusion prior* trained to map brain-predicted embeddings to
true ones. :class:`EmbeddingPrior` is a light version of that idea, fitted in seconds:

- ``"moments"``: per block (image, text), whitening-colouring of the decoded embeddings so
  that their mean and (Ledoit-Wolf) covariance become those of the true embeddings, then
  unit norm again. It undoes the shrinkage in distribution.
- ``"knn"``: a non-parametric posterior on the manifold: a softmax-weighted mean of the
  ``k`` true embeddings (of training images) most similar to the decoded one.
- ``"identity"``: no change (ablations).

A decoder can lose an attribute the brain still carries (on the simulated visual cortex,
MindBridge's embeddings keep the object's shape but little of its colour, which a linear
read-out of the betas still tells at about 0.6). ``"knn"`` can take that evidence too:
with ``bank_labels`` (the class of each bank image) and, at transform time, the log
posterior of a :class:`LabelReadout` of the same brain, each candidate's logit gains
``label_weight * log p(its class | betas)``.

The prior must see the shrinkage it undoes, so it is fitted on decoded embeddings of the
*training* images made out-of-fold (:func:`cross_fitted_predictions`), never on in-sample
predictions (which are much closer to the truth than test predictions are).

:class:`LowLevelDecoder` is MindEye's low-level path: a ridge regression from (early visual)
betas to the latents of :class:`~decoding.generation.autoencoder.StimulusAutoencoder`,
decoded into blurry images that guide the generator (``init_images``, image-to-image).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from data_loaders._io import CorruptFileError, reading
from decoding._checks import check_int
from decoding._pretrained import CONFIG_NAME, read_pretrained_config, write_pretrained_folder

from .pipeline import Conditioning

__all__ = [
    "EmbeddingPrior",
    "LowLevelDecoder",
    "LabelReadout",
    "cross_fitted_predictions",
    "PRIOR_METHODS",
    "DEFAULT_LOW_LEVEL_ALPHAS",
]

#: The mappings :class:`EmbeddingPrior` knows.
PRIOR_METHODS = ("knn", "moments", "identity")

#: Ridge grid of :class:`LowLevelDecoder` (1 .. 1e5, two values per decade).
DEFAULT_LOW_LEVEL_ALPHAS: np.ndarray = np.logspace(0, 5, 11)


# -- shared helpers ----------------------------------------------------------------------------
def _finite_matrix(name: str, x: Any, ndim: int = 2) -> np.ndarray:
    """``x`` as a float64 array of ``ndim`` dims with at least one row, all values finite."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim or arr.shape[0] < 1:
        what = {2: "(n, width)", 4: "(n, C, S, S)"}.get(ndim, f"of {ndim} dims")
        what += " with n >= 1"
        raise ValueError(f"{name}: expected shape {what}, got {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum())
        raise ValueError(
            f"{name}: contains NaN or inf values (in {bad} of {arr.shape[0]} rows); "
            "expected finite values"
        )
    return arr.astype(np.float64, copy=False)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _blocks(name: str, cond: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The (image, text-or-None) float64 blocks of a :class:`Conditioning`, checked."""
    if not isinstance(cond, Conditioning):
        raise ValueError(
            f"{name}: expected a decoding.generation.Conditioning, got {type(cond).__name__}"
        )
    img = _finite_matrix(f"{name}.image_embeds", cond.image_embeds)
    if cond.text_embeds is None:
        return img, None
    txt = _finite_matrix(f"{name}.text_embeds", cond.text_embeds)
    if len(txt) != len(img):
        raise ValueError(
            f"{name}.text_embeds: expected {len(img)} rows (as image_embeds), got {len(txt)}"
        )
    return img, txt


def _check_same_kind(name: str, cond: Conditioning, ref_name: str, ids: tuple[str, str],
                     dims: tuple[int, int], why: str = "") -> None:  # fmt: skip
    """Refuse ``cond`` if its identifiers or widths differ from ``ids`` / ``dims``."""
    why = why or "embeddings of another feature model"
    for field, got, want in (("image_embedding_id", cond.image_embedding_id, ids[0]),
                             ("text_embedding_id", cond.text_embedding_id, ids[1])):  # fmt: skip
        if str(got) != str(want):
            raise ValueError(
                f"{name}.{field}: got {got!r}, expected {want!r} (that of {ref_name}): {why}"
            )
    got_t = 0 if cond.text_embeds is None else np.shape(cond.text_embeds)[-1]
    for field, got, want in (("image_embeds", np.shape(cond.image_embeds)[-1], dims[0]),
                             ("text_embeds", got_t, dims[1])):  # fmt: skip
        if got != want:
            raise ValueError(
                f"{name}.{field}: width {got}, expected {want} (that of {ref_name}; 0 means "
                f"no text block): {why}"
            )


def _save_folder(est: BaseEstimator, save_directory: str | os.PathLike, extra: dict[str, Any],
                 arrays: dict[str, np.ndarray]) -> Path:  # fmt: skip
    """The :class:`decoding._pretrained.PretrainedMixin` layout, for estimators that hold
    numpy arrays instead of a torch module."""
    from safetensors.numpy import save_file

    data = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return write_pretrained_folder(est, save_directory, extra,
                                   lambda path: save_file(data, str(path)))  # fmt: skip


def _load_folder(cls: type, pretrained_directory: str | os.PathLike, keys: tuple[str, ...]
                 ) -> tuple[Any, dict[str, Any], dict[str, np.ndarray], Path]:  # fmt: skip
    """Read a :func:`_save_folder` folder: (estimator with its params, extra, arrays, path)."""
    from safetensors.numpy import load_file

    est, extra, _, w_path = read_pretrained_config(cls, pretrained_directory)
    with reading(w_path, f"safetensors arrays of {cls.__name__}"):
        arrays = load_file(str(w_path))
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise CorruptFileError(
            w_path, f"safetensors arrays of {cls.__name__}",
            KeyError(f"missing {missing}; has {sorted(arrays)}"),
        )
    return est, dict(extra), arrays, w_path


def _extra_fields(cls: type, pretrained_directory: str | os.PathLike, extra: dict[str, Any],
                  fields: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:  # fmt: skip
    """The fitted fields of a saved config's ``extra``, converted, or a ValueError naming it."""
    try:
        return {key: convert(extra[key]) for key, convert in fields.items()}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{Path(pretrained_directory) / CONFIG_NAME}: field 'extra' does not describe a "
            f"fitted {cls.__name__} ({type(err).__name__}: {err})"
        ) from err


def _set_linear(est: BaseEstimator, arrays: dict[str, np.ndarray]) -> None:
    """The standardised linear model both array estimators hold (x_mean_ ... intercept_)."""
    est.x_mean_, est.x_scale_ = arrays["x_mean"], arrays["x_scale"]
    est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]


# -- out-of-fold predictions -------------------------------------------------------------------
def cross_fitted_predictions(
    fit_predict: Callable[[np.ndarray, np.ndarray], Any],
    X: Any,
    n_splits: int = 5,
    random_state: int | None = 0,
) -> Any:
    """Out-of-fold predictions for every row: each made by a model that never saw that row.

    The :class:`EmbeddingPrior` must be fitted on decoded embeddings of training images that
    are as shrunk and noisy as those of test images; in-sample predictions are not.

    Parameters
    ----------
    fit_predict : callable ``(train_idx, test_idx) -> predictions``
        Fits a fresh model on the rows ``train_idx`` (int arrays into ``X``) and returns its
        predictions for the rows ``test_idx``: an array of ``len(test_idx)`` rows, a dict of
        such arrays (e.g. MindBridge's ``{"image", "text"}``) or a :class:`Conditioning`.
    X : sized
        The samples (only ``len(X)`` is used, e.g. betas of shape (n, n_voxels)).
    n_splits : int
        Folds of a shuffled :class:`sklearn.model_selection.KFold`, 2 <= n_splits <= len(X).
    random_state : int or None
        Seed of the shuffle.

    Returns
    -------
    ndarray, shape (n, ...), dict of such arrays, or Conditioning of n rows
        Row ``i`` is the prediction for sample ``i`` of the fold that held it out; same kind
        as what ``fit_predict`` returns.
    """
    from sklearn.model_selection import KFold

    if not callable(fit_predict):
        raise ValueError(f"fit_predict: expected a callable, got {type(fit_predict).__name__}")
    n = len(X)
    n_splits = check_int("n_splits", n_splits, 2)
    if n_splits > n:
        raise ValueError(f"n_splits: expected at most len(X)={n} folds, got {n_splits}")
    parts: list[tuple[np.ndarray, Any]] = []
    folds = KFold(n_splits, shuffle=True, random_state=random_state)
    for train_idx, test_idx in folds.split(np.zeros((n, 1))):
        parts.append((test_idx, fit_predict(train_idx, test_idx)))

    def gather(get: Callable[[Any], Any], what: str) -> np.ndarray:
        out = None
        for test_idx, pred in parts:
            block = get(pred)
            if hasattr(block, "detach"):
                block = block.detach().cpu().numpy()
            block = np.asarray(block)
            if block.ndim < 1 or len(block) != len(test_idx):
                raise ValueError(
                    f"fit_predict: returned {what} of shape {block.shape} for {len(test_idx)} "
                    f"test rows; expected {len(test_idx)} rows"
                )
            if out is None:
                out = np.empty((n,) + block.shape[1:], dtype=block.dtype)
            out[test_idx] = block
        return out

    first = parts[0][1]
    if isinstance(first, Conditioning):
        txt = None if first.text_embeds is None else gather(lambda c: c.text_embeds,
                                                            "text_embeds")  # fmt: skip
        return Conditioning(gather(lambda c: c.image_embeds, "image_embeds"), txt,
                            first.image_embedding_id, first.text_embedding_id)  # fmt: skip
    if isinstance(first, dict):
        return {key: gather(lambda d, key=key: d[key], f"[{key!r}]") for key in first}
    return gather(lambda p: p, "predictions")


# -- the embedding prior -----------------------------------------------------------------------
def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov ** power`` of a symmetric positive (semi-)definite matrix, eigenvalues floored."""
    w, v = np.linalg.eigh(cov)
    # Ledoit-Wolf keeps cov positive definite; the floor guards round-off only
    w = np.maximum(w, w.max() * 1e-12)
    return (v * w**power) @ v.T


class EmbeddingPrior(BaseEstimator):
    """Map decoded embeddings to the distribution the generator was conditioned on.

    Parameters
    ----------
    method : {"knn", "moments", "identity"}
        ``"knn"``: softmax-weighted mean of the ``k`` most similar true embeddings of the
        bank (output near the manifold). ``"moments"``: per block, whitening-colouring
        ``(x - mu_d) S_d^{-1/2} S_t^{1/2} + mu_t`` with Ledoit-Wolf covariances of the
        decoded (``d``) and true (``t``) embeddings (undoes the shrinkage in distribution).
        ``"identity"``: no change. Each block of the output is unit-normed again.
    k : int
        Neighbours of ``"knn"`` (at most the bank's rows).
    temperature : float
        Softmax temperature on the cosine similarities of ``"knn"`` (small: the nearest
        neighbour only; large: a plain mean of the ``k``).
    text_weight : float
        Weight of the text block in the similarity of ``"knn"`` (0: images only).
    label_weight : float
        ``"knn"`` with ``bank_labels``: weight of the label log posterior given to
        :meth:`transform` (0: ignore it).
    random_state : int or None
        Unused (every method is deterministic); kept for the suite's API.

    Attributes
    ----------
    image_embedding_id_, text_embedding_id_ : str
        Identifiers of the embeddings it was fitted on (``transform`` refuses others).
    image_dim_, text_dim_ : int
        Widths of the blocks (``text_dim_`` 0: no text block).
    n_features_in_ : int
        ``image_dim_ + text_dim_``.
    bank_ : dict of str -> ndarray of float32, shape (n_bank, width)
        ``"knn"``: the unit-normed true embeddings, keys ``"image"`` and ``"text"``.
    bank_labels_ : ndarray of int64, shape (n_bank,), or None
        ``"knn"``: the class of each bank row (``fit(bank_labels=...)``).
    moments_ : dict of str -> dict of str -> ndarray of float64
        ``"moments"``: per block, ``"decoded_mean"`` (width,), ``"map"`` (width, width) and
        ``"target_mean"`` (width,).

    Examples
    --------
    >>> prior = EmbeddingPrior("knn", k=8).fit(decoded_train, true_train)  # doctest: +SKIP
    >>> pipe(prior.transform(decoded_test))                                 # doctest: +SKIP
    """

    def __init__(
        self,
        method: str = "knn",
        k: int = 8,
        temperature: float = 0.05,
        text_weight: float = 1.0,
        label_weight: float = 2.0,
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.k = k
        self.temperature = temperature
        self.text_weight = text_weight
        self.label_weight = label_weight
        self.random_state = random_state

    # -- checks ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.method not in PRIOR_METHODS:
            raise ValueError(f"method: expected one of {PRIOR_METHODS}, got {self.method!r}")
        check_int("k", self.k, 1)
        for name, value, low in (("temperature", self.temperature, "> 0"),
                                 ("text_weight", self.text_weight, ">= 0"),
                                 ("label_weight", self.label_weight, ">= 0")):  # fmt: skip
            ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
                value, bool) and np.isfinite(value) and (value > 0 if low == "> 0" else value >= 0)
            if not ok:
                raise ValueError(f"{name}: expected a finite number {low}, got {value!r}")

    def _ids(self) -> tuple[str, str]:
        return self.image_embedding_id_, self.text_embedding_id_

    def _dims(self) -> tuple[int, int]:
        return self.image_dim_, self.text_dim_

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, decoded: Conditioning, target: Conditioning,
            bank: Conditioning | None = None, bank_labels: Any = None
            ) -> EmbeddingPrior:  # fmt: skip
        """Learn the map from decoded to true embeddings.

        Parameters
        ----------
        decoded : Conditioning, n rows
            Decoded embeddings of training images, made out-of-fold
            (:func:`cross_fitted_predictions`) so that they are as shrunk as test ones.
        target : Conditioning, n rows
            The true embeddings of the same images (same identifiers and widths).
        bank : Conditioning or None
            ``"knn"``: the true embeddings to draw from (e.g. of every training image);
            default ``target``.
        bank_labels : array-like of int, shape (n_bank,), optional
            ``"knn"``: a class (>= 0) per bank row, e.g. the main object's colour, that a
            :class:`LabelReadout` of the brain can weigh at transform time.

        Returns
        -------
        self
        """
        self._check_params()
        d_img, d_txt = _blocks("decoded", decoded)
        t_img, t_txt = _blocks("target", target)
        ids = (str(target.image_embedding_id), str(target.text_embedding_id))
        dims = (t_img.shape[1], 0 if t_txt is None else t_txt.shape[1])
        _check_same_kind("decoded", decoded, "target", ids, dims)
        if len(d_img) != len(t_img):
            raise ValueError(
                f"decoded: {len(d_img)} rows, expected {len(t_img)} (as target: one decoded "
                "embedding per true one)"
            )
        if bank is None:
            bank = target
        b_img, b_txt = _blocks("bank", bank)
        _check_same_kind("bank", bank, "target", ids, dims)

        self.image_embedding_id_, self.text_embedding_id_ = ids
        self.image_dim_, self.text_dim_ = dims
        self.n_features_in_ = dims[0] + dims[1]
        self.bank_: dict[str, np.ndarray] = {}
        self.moments_: dict[str, dict[str, np.ndarray]] = {}
        self.bank_labels_ = None
        if bank_labels is not None:
            labels = np.asarray(bank_labels)
            if self.method != "knn":
                raise ValueError(f"bank_labels: only the 'knn' prior uses them, got method "
                                 f"{self.method!r}")  # fmt: skip
            if labels.shape != (len(b_img),) or labels.dtype.kind not in "iu" or (
                labels < 0
            ).any():
                raise ValueError(
                    f"bank_labels: expected {len(b_img)} integer classes >= 0 (one per bank "
                    f"row), got {labels.dtype} of shape {labels.shape}"
                )
            self.bank_labels_ = labels.astype(np.int64)
        if self.method == "knn":
            if self.k > len(b_img):
                raise ValueError(f"k: expected at most the bank's {len(b_img)} rows, got {self.k}")
            self.bank_["image"] = _unit(b_img).astype(np.float32)
            if b_txt is not None:
                self.bank_["text"] = _unit(b_txt).astype(np.float32)
        elif self.method == "moments":
            from sklearn.covariance import LedoitWolf

            if len(d_img) < 2:
                raise ValueError(
                    f"decoded: 'moments' needs at least 2 rows to estimate a covariance, got "
                    f"{len(d_img)}"
                )
            for block, d, t in (("image", d_img, t_img), ("text", d_txt, t_txt)):
                if d is None:
                    continue
                lw_d, lw_t = LedoitWolf().fit(d), LedoitWolf().fit(t)
                self.moments_[block] = {
                    "decoded_mean": lw_d.location_.astype(np.float64),
                    # row vectors: x @ S_d^{-1/2} @ S_t^{1/2} has covariance S_t
                    "map": _sym_power(lw_d.covariance_, -0.5) @ _sym_power(lw_t.covariance_, 0.5),
                    "target_mean": lw_t.location_.astype(np.float64),
                }
        return self

    # -- mapping ---------------------------------------------------------------------------
    def transform(self, decoded: Conditioning, batch_size: int = 1024,
                  label_log_proba: Any = None) -> Conditioning:  # fmt: skip
        """Map decoded embeddings (e.g. of test images) towards true ones.

        Parameters
        ----------
        decoded : Conditioning, n rows
            Same identifiers and widths as at fit time; finite values.
        label_log_proba : array-like, shape (n, n_classes), optional
            ``"knn"`` fitted with ``bank_labels``: the log posterior of each row's class read
            from the same brain (:meth:`LabelReadout.predict_log_proba`); adds
            ``label_weight * label_log_proba[i, bank_labels_[j]]`` to the logit of bank row
            ``j`` for row ``i``.
        batch_size : int
            Rows compared with the bank at once (``"knn"``; bounds memory).

        Returns
        -------
        Conditioning
            n rows, float32 blocks of unit L2 norm (``"identity"``: ``decoded`` itself), with
            the fitted identifiers.
        """
        check_is_fitted(self)
        batch_size = check_int("batch_size", batch_size, 1)
        if not isinstance(decoded, Conditioning):
            raise ValueError(
                f"decoded: expected a decoding.generation.Conditioning, got "
                f"{type(decoded).__name__}"
            )
        img, txt = _blocks("decoded", decoded)  # 2-d and finite, then the kind
        _check_same_kind("decoded", decoded, "the embeddings this prior was fitted on",
                         self._ids(), self._dims(),
                         "a prior trained on another embedding identifier or width")  # fmt: skip
        lp = None
        if label_log_proba is not None:
            if getattr(self, "bank_labels_", None) is None:
                raise ValueError(
                    "label_log_proba: this prior has no bank_labels (fit(..., bank_labels=...))"
                )
            lp = _finite_matrix("label_log_proba", label_log_proba)
            need = int(self.bank_labels_.max()) + 1
            if lp.shape[0] != len(img) or lp.shape[1] < need:
                raise ValueError(
                    f"label_log_proba: expected shape ({len(img)}, >= {need}) (a row per "
                    f"embedding, a column per class of the bank), got {lp.shape}"
                )
        if self.method == "identity":
            return decoded
        if self.method == "moments":
            out = {}
            for block, x in (("image", img), ("text", txt)):
                if x is None:
                    continue
                m = self.moments_[block]
                y = (x - m["decoded_mean"]) @ m["map"] + m["target_mean"]
                out[block] = _unit(y).astype(np.float32)
            return Conditioning(out["image"], out.get("text"), self.image_embedding_id_,
                                self.text_embedding_id_)  # fmt: skip
        return self._knn(img, txt, batch_size, lp)

    def _knn(self, img: np.ndarray, txt: np.ndarray | None, batch_size: int,
             lp: np.ndarray | None = None) -> Conditioning:  # fmt: skip
        bank_i = self.bank_["image"].astype(np.float64)
        bank_t = self.bank_["text"].astype(np.float64) if "text" in self.bank_ else None
        w2 = float(self.text_weight) ** 2 if bank_t is not None else 0.0
        q_i, q_t = _unit(img), None if txt is None else _unit(txt)
        k = int(self.k)
        out_i = np.empty((len(img), bank_i.shape[1]), dtype=np.float32)
        out_t = None if bank_t is None else np.empty((len(img), bank_t.shape[1]), np.float32)
        for s in range(0, len(img), batch_size):
            # cosine of the concatenated (image, text_weight * text) unit blocks
            sim = q_i[s:s + batch_size] @ bank_i.T
            if bank_t is not None:
                sim = (sim + w2 * (q_t[s:s + batch_size] @ bank_t.T)) / (1.0 + w2)
            full = sim / float(self.temperature)
            if lp is not None:
                full = full + float(self.label_weight) * lp[s:s + batch_size][:, self.bank_labels_]
            top = np.argpartition(-full, k - 1, axis=1)[:, :k] if k < full.shape[1] else (
                np.broadcast_to(np.arange(full.shape[1]), full.shape))
            logits = np.take_along_axis(full, top, axis=1)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            out_i[s:s + batch_size] = _unit(np.einsum("nk,nkd->nd", weights, bank_i[top]))
            if bank_t is not None:
                out_t[s:s + batch_size] = _unit(np.einsum("nk,nkd->nd", weights, bank_t[top]))
        return Conditioning(out_i, out_t, self.image_embedding_id_, self.text_embedding_id_)

    def fit_transform(self, decoded: Conditioning, target: Conditioning,
                      bank: Conditioning | None = None) -> Conditioning:  # fmt: skip
        """``fit(decoded, target, bank).transform(decoded)``."""
        return self.fit(decoded, target, bank).transform(decoded)

    # -- saving ----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"bank.{b}": v for b, v in self.bank_.items()}
        if getattr(self, "bank_labels_", None) is not None:
            arrays["bank_labels"] = self.bank_labels_
        for block, m in self.moments_.items():
            arrays.update({f"moments.{block}.{key}": v for key, v in m.items()})
        return arrays

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` (method, parameters, identifiers) and ``model.safetensors``.

        The folder is replaced as a whole (written beside it, then renamed) and must hold
        nothing else.
        """
        check_is_fitted(self)
        extra = {"image_embedding_id_": self.image_embedding_id_,
                 "text_embedding_id_": self.text_embedding_id_, "image_dim_": self.image_dim_,
                 "text_dim_": self.text_dim_}  # fmt: skip
        return _save_folder(self, save_directory, extra, self._arrays())

    @classmethod
    def from_pretrained(cls, pretrained_directory: str | os.PathLike) -> EmbeddingPrior:
        """Load a :meth:`save_pretrained` folder; transforms are identical to the saved ones."""
        est, extra, arrays, w_path = _load_folder(cls, pretrained_directory, ())
        cfg_path = Path(pretrained_directory) / CONFIG_NAME
        try:
            est._check_params()
            est.image_embedding_id_ = str(extra["image_embedding_id_"])
            est.text_embedding_id_ = str(extra["text_embedding_id_"])
            est.image_dim_, est.text_dim_ = int(extra["image_dim_"]), int(extra["text_dim_"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{cfg_path}: fields 'params' / 'extra' do not describe a fitted {cls.__name__} "
                f"({type(err).__name__}: {err})"
            ) from err
        est.n_features_in_ = est.image_dim_ + est.text_dim_
        est.bank_, est.moments_ = {}, {}
        est.bank_labels_ = arrays["bank_labels"].astype(np.int64) if "bank_labels" in arrays \
            else None  # fmt: skip
        blocks = ["image"] + (["text"] if est.text_dim_ else [])
        if est.method == "knn":
            need = [f"bank.{b}" for b in blocks]
        elif est.method == "moments":
            need = [f"moments.{b}.{k}" for b in blocks
                    for k in ("decoded_mean", "map", "target_mean")]  # fmt: skip
        else:
            need = []
        missing = [k for k in need if k not in arrays]
        if missing:
            raise CorruptFileError(
                w_path, f"arrays of a {est.method!r} {cls.__name__}",
                KeyError(f"missing {missing}; has {sorted(arrays)}"),
            )
        for b in blocks:
            if est.method == "knn":
                est.bank_[b] = arrays[f"bank.{b}"]
            elif est.method == "moments":
                est.moments_[b] = {k: arrays[f"moments.{b}.{k}"]
                                   for k in ("decoded_mean", "map", "target_mean")}  # fmt: skip
        return est


# -- a class read straight from the brain ------------------------------------------------------
class LabelReadout(BaseEstimator):
    """Multinomial logistic regression from standardised betas to a class (e.g. a colour).

    What a decoder's embeddings lose, a read-out trained for it may still find in the betas;
    :meth:`EmbeddingPrior.transform` weighs its log posterior (``label_log_proba``).

    Parameters
    ----------
    C : float
        Inverse L2 penalty of scikit-learn's ``LogisticRegression`` (small: voxels outnumber
        images).
    random_state : int or None
        Unused (lbfgs is deterministic); kept for the suite's API.

    Attributes
    ----------
    n_classes_ : int
        ``max(label) + 1``: columns of :meth:`predict_log_proba` (classes never seen get
        probability 0, log -inf replaced by a large negative number).
    x_mean_, x_scale_ : ndarray of float64, shape (n_voxels,)
    coef_ : ndarray of float64, shape (n_seen, n_voxels)
    intercept_ : ndarray of float64, shape (n_seen,)
    classes_ : ndarray of int64, shape (n_seen,)
    """

    def __init__(self, C: float = 0.01, random_state: int | None = 0) -> None:
        self.C = C
        self.random_state = random_state

    def fit(self, betas: Any, labels: Any) -> LabelReadout:
        """Fit on betas (n, n_voxels) and integer labels (n,) >= 0 (at least 2 classes)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = _finite_matrix("betas", betas)
        y = np.asarray(labels)
        if y.shape != (len(X),) or y.dtype.kind not in "iu" or (y < 0).any():
            raise ValueError(f"labels: expected {len(X)} integer classes >= 0, got {y.dtype} of "
                             f"shape {y.shape}")  # fmt: skip
        if np.unique(y).size < 2:
            raise ValueError(f"labels: expected at least 2 classes, got {np.unique(y).tolist()}")
        sc = StandardScaler().fit(X)
        clf = LogisticRegression(C=float(self.C), max_iter=3000).fit(sc.transform(X), y)
        self.x_mean_, self.x_scale_ = sc.mean_.astype(np.float64), sc.scale_.astype(np.float64)
        self.coef_ = np.asarray(clf.coef_, np.float64)
        self.intercept_ = np.asarray(clf.intercept_, np.float64)
        self.classes_ = np.asarray(clf.classes_, np.int64)
        if len(self.classes_) == 2:  # scikit-learn's binary case: one row for class 1
            self.coef_ = np.vstack([-self.coef_ / 2, self.coef_ / 2])
            self.intercept_ = np.concatenate([-self.intercept_ / 2, self.intercept_ / 2])
        self.n_classes_ = int(y.max()) + 1
        self.n_features_in_ = int(X.shape[1])
        return self

    def predict_log_proba(self, betas: Any) -> np.ndarray:
        """Log posterior over the classes, (n, n_classes_) (unseen classes: -1e4)."""
        check_is_fitted(self)
        X = _finite_matrix("betas", betas)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"betas: {X.shape[1]} voxels given, expected {self.n_features_in_} "
                             "(the count fitted)")  # fmt: skip
        z = ((X - self.x_mean_) / self.x_scale_) @ self.coef_.T + self.intercept_
        z = z - z.max(axis=1, keepdims=True)
        seen = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        out = np.full((len(X), self.n_classes_), -1e4)
        out[:, self.classes_] = seen
        return out

    def predict(self, betas: Any) -> np.ndarray:
        """Most probable class, (n,)."""
        return self.predict_log_proba(betas).argmax(axis=1)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the folder is replaced whole)."""
        check_is_fitted(self)
        extra = {"n_classes_": self.n_classes_, "n_features_in_": self.n_features_in_}
        arrays = {"x_mean": self.x_mean_, "x_scale": self.x_scale_, "coef": self.coef_,
                  "intercept": self.intercept_, "classes": self.classes_}  # fmt: skip
        return _save_folder(self, save_directory, extra, arrays)

    @classmethod
    def from_pretrained(cls, pretrained_directory: str | os.PathLike) -> LabelReadout:
        """Load a :meth:`save_pretrained` folder."""
        keys = ("x_mean", "x_scale", "coef", "intercept", "classes")
        est, extra, arrays, _ = _load_folder(cls, pretrained_directory, keys)
        fields = _extra_fields(cls, pretrained_directory, extra,
                               {"n_classes_": int, "n_features_in_": int})  # fmt: skip
        est.n_classes_, est.n_features_in_ = fields["n_classes_"], fields["n_features_in_"]
        _set_linear(est, arrays)
        est.classes_ = arrays["classes"].astype(np.int64)
        return est


# -- the low-level path ------------------------------------------------------------------------
class LowLevelDecoder(BaseEstimator):
    """Ridge regression from betas to autoencoder latents: MindEye's low-level (blurry) path.

    The betas are standardised per voxel; one penalty, shared by all latent values, is chosen
    from ``alphas`` by efficient leave-one-out cross-validation (scikit-learn ``RidgeCV``).

    Parameters
    ----------
    alphas : array-like of float or None
        Ridge penalties to choose from; None: :data:`DEFAULT_LOW_LEVEL_ALPHAS` (1 .. 1e5).
    random_state : int or None
        Unused (the fit is deterministic); kept for the suite's API.

    Attributes
    ----------
    latent_shape_ : tuple of int
        ``(C, S, S)`` of the latents it predicts.
    n_features_in_ : int
        Voxels.
    alpha_ : float
        Chosen penalty.
    x_mean_, x_scale_ : ndarray of float64, shape (n_voxels,)
        Standardisation of the betas.
    coef_ : ndarray of float32, shape (C * S * S, n_voxels)
    intercept_ : ndarray of float32, shape (C * S * S,)
    """

    def __init__(self, alphas: Any = None, random_state: int | None = 0) -> None:
        self.alphas = alphas
        self.random_state = random_state

    def _alphas(self) -> np.ndarray:
        alphas = DEFAULT_LOW_LEVEL_ALPHAS if self.alphas is None else np.atleast_1d(
            np.asarray(self.alphas, dtype=np.float64))  # fmt: skip
        if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or (
            alphas <= 0
        ).any():
            raise ValueError(f"alphas: expected a non-empty list of finite values > 0, got "
                             f"{alphas}")  # fmt: skip
        return alphas

    def fit(self, betas: Any, latents: Any) -> LowLevelDecoder:
        """Fit the ridge map.

        Parameters
        ----------
        betas : array-like of float, shape (n, n_voxels)
            E.g. early-visual-cortex betas of the training images.
        latents : ndarray or torch.Tensor, shape (n, C, S, S)
            ``StimulusAutoencoder.encode`` of the same images (scaled latents).

        Returns
        -------
        self
        """
        from sklearn.linear_model import RidgeCV
        from sklearn.preprocessing import StandardScaler

        alphas = self._alphas()
        X = _finite_matrix("betas", betas)
        Z = _finite_matrix("latents", latents, ndim=4)
        if len(Z) != len(X):
            raise ValueError(f"latents: {len(Z)} rows, expected {len(X)} (one per row of betas)")
        if len(X) < 3:
            raise ValueError(f"betas: expected at least 3 samples to choose alpha, got {len(X)}")
        scaler = StandardScaler().fit(X)
        model = RidgeCV(alphas=alphas).fit(scaler.transform(X), Z.reshape(len(Z), -1))
        self.x_mean_ = scaler.mean_.astype(np.float64)
        self.x_scale_ = scaler.scale_.astype(np.float64)
        self.coef_ = np.asarray(model.coef_, dtype=np.float32)
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float32)
        self.alpha_ = float(model.alpha_)
        self.latent_shape_ = tuple(int(s) for s in Z.shape[1:])
        self.n_features_in_ = int(X.shape[1])
        return self

    def predict(self, betas: Any) -> np.ndarray:
        """Predicted latents.

        Parameters
        ----------
        betas : array-like of float, shape (n, n_voxels)
            Same voxels as at fit time.

        Returns
        -------
        ndarray of float32, shape (n, C, S, S)
        """
        check_is_fitted(self)
        X = _finite_matrix("betas", betas)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"betas: {X.shape[1]} voxels given, expected {self.n_features_in_} (the count "
                "fitted): a low-level decoder fitted on another voxel count"
            )
        pred = ((X - self.x_mean_) / self.x_scale_) @ self.coef_.T.astype(np.float64)
        pred += self.intercept_
        return pred.astype(np.float32).reshape((len(X),) + self.latent_shape_)

    def predict_images(self, betas: Any, vae: Any, batch_size: int = 64) -> np.ndarray:
        """Blurry images: the predicted latents decoded by the autoencoder.

        Parameters
        ----------
        betas : array-like of float, shape (n, n_voxels)
        vae : StimulusAutoencoder
            The autoencoder whose latents were the targets of :meth:`fit`.
        batch_size : int
            Latents decoded at once.

        Returns
        -------
        ndarray of float32, shape (n, H, W, 3), in [0, 1]
            (64 x 64 for the stimulus autoencoder.)
        """
        import torch

        batch_size = check_int("batch_size", batch_size, 1)
        z = self.predict(betas)
        channels = getattr(getattr(vae, "config", None), "latent_channels", None)
        if channels is not None and int(channels) != self.latent_shape_[0]:
            raise ValueError(
                f"vae: latent_channels={channels}, expected {self.latent_shape_[0]} (the "
                "channels of the latents this decoder was fitted on)"
            )
        param = next(vae.parameters())
        out = []
        with torch.no_grad():
            for s in range(0, len(z), batch_size):
                t = torch.from_numpy(z[s:s + batch_size]).to(param.device, param.dtype)
                ims = ((vae.decode(t).float() + 1) / 2).clamp(0, 1)
                out.append(ims.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the folder is replaced whole)."""
        check_is_fitted(self)
        extra = {"latent_shape_": list(self.latent_shape_), "alpha_": self.alpha_,
                 "n_features_in_": self.n_features_in_}  # fmt: skip
        arrays = {"x_mean": self.x_mean_, "x_scale": self.x_scale_, "coef": self.coef_,
                  "intercept": self.intercept_}  # fmt: skip
        return _save_folder(self, save_directory, extra, arrays)

    @classmethod
    def from_pretrained(cls, pretrained_directory: str | os.PathLike) -> LowLevelDecoder:
        """Load a :meth:`save_pretrained` folder; predictions are identical to the saved ones."""
        keys = ("x_mean", "x_scale", "coef", "intercept")
        est, extra, arrays, w_path = _load_folder(cls, pretrained_directory, keys)
        fields = _extra_fields(cls, pretrained_directory, extra, {
            "latent_shape_": lambda v: tuple(int(s) for s in v), "alpha_": float,
            "n_features_in_": int})  # fmt: skip
        est.latent_shape_, est.alpha_ = fields["latent_shape_"], fields["alpha_"]
        est.n_features_in_ = fields["n_features_in_"]
        _set_linear(est, arrays)
        n_out = int(np.prod(est.latent_shape_))
        if est.coef_.shape != (n_out, est.n_features_in_) or est.intercept_.shape != (n_out,):
            raise CorruptFileError(
                w_path, f"arrays of a {cls.__name__} of latents {est.latent_shape_}",
                ValueError(f"coef {est.coef_.shape}, intercept {est.intercept_.shape}"),
            )
        return est
