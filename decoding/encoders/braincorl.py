"""BraInCoRL: an in-context transformer that writes each voxel's encoding model.

Yu, Nan, Adeli, Prince, Pyles, Wehbe, Henderson, Tarr & Luo (2025), "Meta-Learning an
In-Context Transformer Model of Human Higher Visual Cortex", NeurIPS (arXiv 2505.15813;
code github.com/leomqyu/BraInCoRL, ``scripts/model.py``).

Every voxel is a task. The transformer reads a *set* of in-context pairs
``(x_i, y_i)`` -- a unit-norm image feature and that voxel's response -- and returns the
voxel's linear encoding model, a hyper-weight vector ``w = (w_1..w_E, b)``:

.. math::

    w = H\\big(T([r_1..r_R; \\phi(x_1, y_1) .. \\phi(x_n, y_n)])_{r_1}\\big),
    \\qquad \\hat y(x) = w_{1:E} \\cdot x + b

with ``phi`` a pre-LN residual MLP over ``[x; y]`` (E + 1 inputs), ``R`` learnable register
tokens, ``T`` pre-LN attention blocks with a SwiGLU feed-forward and no positional encoding
(the context is a set), queries scaled by ``log L`` for ``L`` tokens so attention stays
sharp as the context grows (the code's ``SwigluAttentionBlock``), and ``H`` a residual MLP
reading the first register token. A new subject needs no gradient step: one forward pass,
batched over voxels.

Differences from the released code, all documented choices:

- Responses are z-scored per voxel over its context (``mu``, ``sd``) before they enter the
  model, and predictions are mapped back (``mu + sd * y_hat``), so one model serves betas of
  any scale (raw percent signal change or z-scores).
- ``product_tokens=True`` (default) adds ``y x`` to each token's input (``[x; y; y x]``,
  2E + 1 inputs): an average over tokens is then the cross-covariance ``X^T y / n``, the
  first step of any regression, which a small model trained for minutes on a CPU otherwise
  has to discover. Set it False for the paper's ``[x; y]`` tokens.
- ``gd_readout=True`` (default) adds to the head's output a learnt, context-size dependent
  multiple of that cross-covariance (one in-context gradient step, von Oswald et al. 2023),
  so the transformer learns a correction instead of the whole regression.
- Sizes are small by default (2 blocks of width 64; the paper's CLIP model has 20 of 560).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from .. import _distributed as ddp
from .._checks import check_int
from .._device import resolve_device
from .._pretrained import PretrainedMixin
from .ridge import _refuse_text

__all__ = ["BraInCoRL", "BraInCoRLModule", "MetaTask", "DEFAULT_PRETRAINED"]

#: The meta-trained model that ships in the package (``decoding/weights/<name>/``, 0.7 MB)
#: and that ``pretrained="default"`` loads: the meta-training of the ``braincorl`` job's
#: quick level (subj01-03 of the embedded simulated NSD, subj04 held out; 100 synthetic +
#: 1000 real steps, contexts of 30-300 images, seed 0) on the shipped ``stimnet`` features,
#: whose identifier the name carries. On subj04 with 100 context images it explains 0.17
#: of the test variance where ridge explains 0.04 (mean of 3 context draws, all voxels).
DEFAULT_PRETRAINED = "braincorl-stimnet-v3-24f7351d78-v1"


def _pretrained_folder(pretrained: str | os.PathLike) -> Path:
    """The folder a ``pretrained`` argument names (``"default"``: the shipped model)."""
    if isinstance(pretrained, str) and pretrained == "default":
        folder = Path(__file__).resolve().parents[1] / "weights" / DEFAULT_PRETRAINED
        if not folder.is_dir():
            raise FileNotFoundError(
                f"pretrained: 'default' names the shipped model {DEFAULT_PRETRAINED}, which "
                f"this installation lacks ({folder}); pass a save_pretrained folder"
            )
        return folder
    return Path(pretrained)


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------
class _ResidualMLP(nn.Module):
    """Pre-LN residual MLP ``in -> d``: ``proj(x) + fc2(lrelu(fc1(LN(x))))`` (LeakyReLU 0.1)."""

    def __init__(self, d_in: int, d_out: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.fc2(F.leaky_relu(self.fc1(self.norm(x)), 0.1))


class _Block(nn.Module):
    """Pre-LN attention block with log(L)-scaled queries and a SwiGLU feed-forward."""

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model: expected a multiple of n_heads={n_heads}, got {d}")
        self.h = n_heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.w12 = nn.Linear(d, 2 * ffn)
        self.w3 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """``x`` (B, L, d) -> (B, L, d); with ``first_only``, only token 0's output (B, 1, d).

        ``first_only`` is exact for the last block, whose other outputs nobody reads: the
        keys and values still come from every token.
        """
        B, L, d = x.shape
        dh = d // self.h
        h = self.norm1(x)
        (w_q, w_kv), (b_q, b_kv) = (
            self.qkv.weight.split([d, 2 * d]), self.qkv.bias.split([d, 2 * d])
        )
        xq = x[:, :1] if first_only else x
        q = F.linear(h[:, :1] if first_only else h, w_q, b_q)
        k, v = F.linear(h, w_kv, b_kv).chunk(2, dim=-1)
        q = q.view(B, -1, self.h, dh).transpose(1, 2)
        k = k.view(B, L, self.h, dh).transpose(1, 2)
        v = v.view(B, L, self.h, dh).transpose(1, 2)
        # query scaling by log(L): keeps attention entropy stable across context lengths
        a = F.scaled_dot_product_attention(q, k, v, scale=math.log(L) / math.sqrt(dh))
        y = xq + self.drop(self.out(a.transpose(1, 2).reshape(B, -1, d)))
        g, u = self.w12(self.norm2(y)).chunk(2, dim=-1)
        return y + self.drop(self.w3(F.silu(g) * u))


class _TokenEmbed(nn.Module):
    """Residual MLP on the raw token ``t = [x; y]`` (or ``[x; y; y x]``) -> ``d_model``.

    ``skip(t) + fc2(lrelu(fc1(t)))``. Both ``fc1`` and ``skip`` are linear in ``t``, so with
    ``x`` shared by every voxel they factorise as ``x A + y (a + x C)``: the
    ``(n_images, E) x (E, hidden)`` products are computed once per context, not once per
    voxel, which makes the token cost independent of E. (The raw token has no LayerNorm
    for that reason; ``x`` is unit-norm and ``y`` standardised, so its scale is fixed.)
    """

    def __init__(self, feature_dim: int, d_model: int, hidden: int, product: bool) -> None:
        super().__init__()
        self.hidden = hidden
        out = hidden + d_model
        self.x_proj = nn.Linear(feature_dim, out)  # x A (+ bias)
        self.y_proj = nn.Parameter(0.02 * torch.randn(out))  # y a
        self.xy_proj = nn.Linear(feature_dim, out, bias=False) if product else None  # y x C
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` (n, E) shared or (B, n, E); ``y`` (B, n) -> tokens (B, n, d_model)."""
        px = self.x_proj(x)
        gain = self.y_proj if self.xy_proj is None else self.y_proj + self.xy_proj(x)
        z = px + y.unsqueeze(-1) * gain  # broadcasts over voxels when x is 2-D
        h, skip = z.split([self.hidden, z.shape[-1] - self.hidden], dim=-1)
        return skip + self.fc2(F.leaky_relu(h, 0.1))


class BraInCoRLModule(nn.Module):
    """The hypernetwork: in-context pairs -> per-voxel weights and bias.

    Parameters
    ----------
    feature_dim : int
        E, the image feature size.
    d_model, n_layers, n_heads, ffn_dim : int
        Transformer width, depth, heads and SwiGLU hidden size.
    n_registers : int
        Learnable register tokens (the first one is read out).
    dropout : float
        Dropout in the attention blocks.
    product_tokens : bool
        Token input ``[x; y; y x]`` instead of the paper's ``[x; y]`` (see module docstring).
    gd_readout : bool
        Add ``E sigmoid(a + b log n) * [mean_i y_i x_i; mean_i y_i]`` (learnable ``a``, ``b``)
        to the head's weights: one in-context gradient step from ``w = 0`` with a learnt,
        context-size dependent step (von Oswald et al. 2023, ICML, "Transformers learn
        in-context by gradient descent"), which the transformer then corrects.
    """

    def __init__(
        self,
        feature_dim: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_dim: int = 128,
        n_registers: int = 4,
        dropout: float = 0.0,
        product_tokens: bool = True,
        gd_readout: bool = True,
    ) -> None:
        super().__init__()
        self.gd_readout = gd_readout
        if gd_readout:
            # start with a small step (w ~ 0.12 E X^T y / n): shrinkage suits few noisy images
            self.gd_a = nn.Parameter(torch.full((feature_dim + 1,), -2.0))
            self.gd_b = nn.Parameter(torch.tensor(0.0))
        self.feature_dim = feature_dim
        self.product_tokens = product_tokens
        self.embed = _TokenEmbed(feature_dim, d_model, 2 * d_model, product_tokens)
        self.registers = nn.Parameter(0.02 * torch.randn(n_registers, d_model))
        self.blocks = nn.ModuleList(
            [_Block(d_model, n_heads, ffn_dim, dropout) for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = _ResidualMLP(d_model, feature_dim + 1, 2 * d_model)

    def forward(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor) -> torch.Tensor:
        """Hyper-weights of each voxel.

        Parameters
        ----------
        x_ctx : Tensor, shape (n, E) or (B, n, E)
            Unit-norm context image features (shared by all voxels when 2-D).
        y_ctx : Tensor, shape (B, n)
            Each voxel's (standardised) response to each context image.

        Returns
        -------
        w : Tensor, shape (B, E + 1)
            Weights ``w[:, :E]`` and bias ``w[:, E]``.
        """
        B = y_ctx.shape[0]
        tokens = self.embed(x_ctx, y_ctx)
        regs = self.registers.unsqueeze(0).expand(B, -1, -1)
        h = torch.cat([regs, tokens], dim=1)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            h = blk(h, first_only=i == last)  # only register 0 is read out
        w = self.head(self.norm(h[:, 0]))
        if self.gd_readout:
            n, E = y_ctx.shape[1], self.feature_dim
            if x_ctx.dim() == 2:
                xy = y_ctx @ x_ctx / n  # (B, E): the in-context cross-covariance
            else:
                xy = torch.einsum("bn,bne->be", y_ctx, x_ctx) / n
            step = torch.cat([xy, y_ctx.mean(1, keepdim=True)], dim=1)
            w = w + E * torch.sigmoid(self.gd_a + self.gd_b * math.log(n)) * step
        return w


def _apply_weights(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w (B, E+1)`` on ``x (q, E)`` or ``(B, q, E)`` -> predictions ``(B, q)``."""
    E = w.shape[1] - 1
    if x.dim() == 2:
        return w[:, :E] @ x.T + w[:, E:]
    return torch.einsum("be,bqe->bq", w[:, :E], x) + w[:, E:]


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _as_features(name: str, X: Any, dim: int | None = None) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected float array of shape (n_images, n_features), got "
                         f"{X.dtype} {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: expected finite features, got NaN or inf")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"{name}: expected {dim} features (the model's feature_dim), got "
                         f"{X.shape[1]}")
    return X.astype(np.float32)


def _unit_norm(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class MetaTask:
    """One training subject for :meth:`BraInCoRL.meta_fit`: image features and responses.

    Parameters
    ----------
    X : ndarray of float, shape (n_images, n_features)
        Features of the images the subject saw (unit-normed internally).
    Y : ndarray of float, shape (n_images, n_voxels)
        The subject's (repeat-averaged) response of every voxel to each image.
    name : str
        For messages.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, name: str = "subject") -> None:
        self.X = _unit_norm(_as_features(f"{name}.X", X))
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or Y.shape[0] != self.X.shape[0]:
            raise ValueError(f"{name}.Y: expected shape ({self.X.shape[0]}, n_voxels), got "
                             f"{Y.shape}")
        if not np.all(np.isfinite(Y)):
            raise ValueError(f"{name}.Y: expected finite responses, got NaN or inf")
        self.Y = Y
        self.name = name


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------
class BraInCoRL(PretrainedMixin, RegressorMixin, BaseEstimator):
    """In-context voxelwise encoder (Yu et al. 2025): meta-train once, then fit by reading.

    Use :meth:`meta_fit` on training subjects; then, for a new subject, :meth:`fit` stores
    its context (a few images and responses) and computes every voxel's weights in one
    batched forward pass (no gradient steps), and :meth:`predict` applies them.

    Where the meta-trained transformer comes from, in order (so that ``clone``,
    ``GridSearchCV`` and ``cross_val_score`` work, which copy constructor arguments only):

    1. ``pretrained``, a :meth:`save_pretrained` folder, loaded by :meth:`fit` (once; the
       architecture is the folder's, the sizes given here are not used);
    2. the model this instance got from :meth:`meta_fit` or :meth:`from_pretrained`
       (``from_pretrained`` also sets ``pretrained``, so its clones load the same folder);
    3. otherwise :meth:`fit` meta-trains a model on the context itself (its voxels are the
       tasks: random context/query splits of its images) with this instance's settings,
       then reads the context. A standalone estimator, slower than a pre-trained one.

    Parameters
    ----------
    d_model, n_layers, n_heads, ffn_dim, n_registers : int
        Transformer size (see :class:`BraInCoRLModule`).
    dropout : float
        Dropout during meta-training.
    product_tokens : bool
        ``[x; y; y x]`` tokens (default) or the paper's ``[x; y]``.
    gd_readout : bool
        Add the learnt one-step in-context regression to the head (see
        :class:`BraInCoRLModule`); False for the paper's head alone.
    min_context, max_context : int
        Context sizes drawn uniformly per meta-training step (paper: 30 to 500).
    n_query : int
        Held-out query images per task during meta-training (paper: 100).
    n_steps : int
        Meta-training steps on real voxels.
    n_synthetic_steps : int
        Pre-training steps on synthetic voxels first (random linear-nonlinear models over the
        same features plus noise), as the paper's first stage.
    batch_size : int
        Voxels per step.
    lr, weight_decay : float
        AdamW settings (cosine decay to 1 % of ``lr``).
    voxel_batch_size : int
        Voxels per forward pass in :meth:`fit` (bounds memory; still no loop over voxels).
    feature_extractor : str or None
        Identifier of the features the model is trained on (``FeatureExtractor.identifier``);
        :meth:`check_features` refuses others.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    random_state : int or None
        Seed of the weights and the task sampling.
    verbose : bool | None
        Progress bar during meta-training.
    pretrained : str or None
        A folder written by :meth:`save_pretrained` holding the meta-trained model that
        :meth:`fit` uses (see above), or ``"default"``: the model shipped in the package for
        the ``stimnet`` features (:data:`DEFAULT_PRETRAINED`); None: meta-train in
        :meth:`fit` unless :meth:`meta_fit` was called.

    Attributes
    ----------
    module_ : BraInCoRLModule
    feature_dim_ : int
    meta_history_ : list of float
        Query MSE (standardised units) per logged step of :meth:`meta_fit`.
    coef_ : ndarray of float32, shape (n_features, n_voxels)
        After :meth:`fit`: the in-context weights of each voxel, in response units.
    intercept_ : ndarray of float32, shape (n_voxels,)
    """

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_dim: int = 128,
        n_registers: int = 4,
        dropout: float = 0.0,
        product_tokens: bool = True,
        gd_readout: bool = True,
        min_context: int = 30,
        max_context: int = 500,
        n_query: int = 100,
        n_steps: int = 1000,
        n_synthetic_steps: int = 0,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        voxel_batch_size: int = 512,
        feature_extractor: str | None = None,
        device: str = "cpu",
        random_state: int | None = 0,
        verbose: bool | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ffn_dim = ffn_dim
        self.n_registers = n_registers
        self.dropout = dropout
        self.product_tokens = product_tokens
        self.gd_readout = gd_readout
        self.min_context = min_context
        self.max_context = max_context
        self.n_query = n_query
        self.n_steps = n_steps
        self.n_synthetic_steps = n_synthetic_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.voxel_batch_size = voxel_batch_size
        self.feature_extractor = feature_extractor
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.pretrained = pretrained

    # -- PretrainedMixin hooks ------------------------------------------------------------
    def _extra_config(self) -> dict[str, Any]:
        return {"feature_dim_": int(self.feature_dim_), "meta_history_": list(self.meta_history_)}

    def _build_module(self, extra: dict[str, Any]) -> BraInCoRLModule:
        return BraInCoRLModule(
            int(extra["feature_dim_"]), self.d_model, self.n_layers, self.n_heads, self.ffn_dim,
            self.n_registers, self.dropout, self.product_tokens, self.gd_readout,
        )  # fmt: skip

    @classmethod
    def from_pretrained(cls, pretrained_directory, device: str = "cpu", feature_extractor=None):
        """Load a model written by :meth:`save_pretrained`.

        Parameters
        ----------
        pretrained_directory : path-like or "default"
            A :meth:`save_pretrained` folder, or ``"default"`` for the shipped model
            (:data:`DEFAULT_PRETRAINED`, for the ``stimnet`` features).
        device : str
        feature_extractor : FeatureExtractor or str, optional
            The features you will feed it (an extractor or its ``identifier``). If it is not
            the one the model was meta-trained on, a ``ValueError`` says so.
        """
        folder = _pretrained_folder(pretrained_directory)
        est = super().from_pretrained(folder, device=resolve_device(device))
        # a constructor argument, so clone / GridSearchCV copies load the same model
        est.pretrained = os.fspath(pretrained_directory)
        est.device = device
        est._module_source = str(folder.resolve())
        if feature_extractor is not None:
            est.check_features(feature_extractor)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one voxel per output column
        return tags

    def check_features(self, feature_extractor: Any) -> None:
        """Raise ``ValueError`` unless ``feature_extractor`` is the one the model was trained on.

        Parameters
        ----------
        feature_extractor : FeatureExtractor or str
            An extractor (its ``identifier`` and ``dim`` are compared) or an identifier.
        """
        ident = getattr(feature_extractor, "identifier", feature_extractor)
        if not isinstance(ident, str):
            raise ValueError(
                f"feature_extractor: expected a FeatureExtractor or its identifier str, got "
                f"{type(feature_extractor).__name__}"
            )
        if self.feature_extractor is not None and ident != self.feature_extractor:
            raise ValueError(
                f"feature_extractor: this model was meta-trained on features "
                f"{self.feature_extractor!r}, got {ident!r}; use the same extractor "
                "(decoding.features.get_extractor) or meta-train a new model"
            )
        dim = getattr(feature_extractor, "dim", None)
        if dim is not None and hasattr(self, "feature_dim_") and dim != self.feature_dim_:
            raise ValueError(
                f"feature_extractor: dim {dim} differs from the model's feature_dim "
                f"{self.feature_dim_}"
            )

    # -- meta-training --------------------------------------------------------------------
    def _check_hparams(self) -> None:
        ints = dict(
            d_model=(self.d_model, 4), n_layers=(self.n_layers, 1), n_heads=(self.n_heads, 1),
            ffn_dim=(self.ffn_dim, 1), n_registers=(self.n_registers, 1),
            min_context=(self.min_context, 2), max_context=(self.max_context, 2),
            n_query=(self.n_query, 1), n_steps=(self.n_steps, 0),
            n_synthetic_steps=(self.n_synthetic_steps, 0), batch_size=(self.batch_size, 1),
            voxel_batch_size=(self.voxel_batch_size, 1),
        )  # fmt: skip
        for name, (val, low) in ints.items():
            check_int(name, val, low)
        if self.max_context < self.min_context:
            raise ValueError(
                f"max_context: expected >= min_context={self.min_context}, got {self.max_context}"
            )
        for name, val, low in (("lr", self.lr, "> 0"), ("weight_decay", self.weight_decay, ">= 0")):
            ok = isinstance(val, int | float | np.floating) and not isinstance(val, bool)
            if not (ok and np.isfinite(val) and (val > 0 if low == "> 0" else val >= 0)):
                raise ValueError(f"{name}: expected a finite float {low}, got {val!r}")
        if not (
            isinstance(self.dropout, int | float | np.floating)
            and not isinstance(self.dropout, bool)
            and 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout: expected a finite value in [0, 1), got {self.dropout!r}")
        if self.pretrained is not None and not isinstance(self.pretrained, str | os.PathLike):
            raise ValueError(
                f"pretrained: expected None or a save_pretrained folder path, got "
                f"{type(self.pretrained).__name__}"
            )

    def meta_fit(self, tasks: Sequence[MetaTask] | MetaTask) -> BraInCoRL:
        """Meta-train on the voxels of training subjects (Yu et al. 2025, Sec. 3).

        Each step draws ``batch_size`` voxels of one subject (subjects in proportion to
        their voxel counts), a context size ``n ~ U[min_context, max_context]`` (capped by
        the subject's images) and, per voxel, ``n`` random context images plus
        ``n_query`` other query images; the loss is the MSE between predicted and true
        standardised query responses. ``n_synthetic_steps`` steps on synthetic voxels come
        first: ``y = softplus(g X u) + noise`` with random unit direction ``u``, gain ``g``
        and noise level, over the same image features.

        Parameters
        ----------
        tasks : MetaTask or list of MetaTask
            Training subjects (never the test subject).

        Returns
        -------
        self
        """
        self._check_hparams()
        self._meta_train(tasks)
        self._module_source = "meta_fit"
        return self

    def _meta_train(self, tasks: Sequence[MetaTask] | MetaTask) -> None:
        """The meta-training of :meth:`meta_fit` (sets ``module_``, ``feature_dim_``)."""
        if isinstance(tasks, MetaTask):
            tasks = [tasks]
        if not tasks or not all(isinstance(t, MetaTask) for t in tasks):
            raise ValueError("tasks: expected a non-empty list of MetaTask")
        dims = {t.X.shape[1] for t in tasks}
        if len(dims) != 1:
            raise ValueError(f"tasks: expected the same feature size in every task, got {dims}")
        E = dims.pop()
        for t in tasks:
            if t.X.shape[0] < 2 + 1:
                raise ValueError(f"{t.name}.X: expected at least 3 images, got {t.X.shape[0]}")
        dev = torch.device(resolve_device(self.device))
        seed = 0 if self.random_state is None else int(self.random_state)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.feature_dim_ = E
        self.module_ = self._build_module({"feature_dim_": E}).to(dev).train()
        self.meta_history_ = []
        total = self.n_synthetic_steps + self.n_steps
        if total == 0:
            self.module_.eval()
            return
        opt = torch.optim.AdamW(self.module_.parameters(), lr=self.lr,
                                weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0)))
        )
        Xs = [torch.from_numpy(t.X) for t in tasks]
        Ys = [torch.from_numpy(t.Y) for t in tasks]
        n_vox = np.array([t.Y.shape[1] for t in tasks], dtype=np.float64)
        p_task = torch.from_numpy(n_vox / n_vox.sum())
        show = self.verbose is None or bool(self.verbose)
        self._ddp = ddp.world(dev)  # under torchrun / accelerate launch: data-parallel steps
        threads = torch.get_num_threads()
        if dev.type == "cpu":
            # small matrices: one thread avoids synchronisation stalls (4x faster measured
            # on a shared 2-core machine); restored below
            torch.set_num_threads(1)
        try:
            self._meta_loop(total, Xs, Ys, p_task, gen, dev, opt, sched, show)
        finally:
            torch.set_num_threads(threads)
        self.module_.eval()

    def _meta_loop(self, total, Xs, Ys, p_task, gen, dev, opt, sched, show) -> None:
        from tqdm.auto import tqdm

        running = None
        for step in tqdm(range(total), desc="meta-training BraInCoRL", disable=not show):
            ti = int(torch.multinomial(p_task, 1, generator=gen))
            X = Xs[ti]
            n_img = X.shape[0]
            n_q = min(self.n_query, max(1, n_img // 4))
            hi = min(self.max_context, n_img - n_q)
            lo = min(self.min_context, hi)
            n_c = int(torch.randint(lo, hi + 1, (1,), generator=gen))
            B = self.batch_size
            # one random image subset per step, shared by the step's voxels (the token
            # embedding then factorises; steps differ, so subsets still vary)
            idx = torch.randperm(n_img, generator=gen)[: n_c + n_q]
            x = X[idx]  # (n_c + n_q, E)
            if step < self.n_synthetic_steps:
                y = _synthetic_voxels(x, B, gen)
            else:
                vox = torch.randint(0, Ys[ti].shape[1], (B,), generator=gen)
                y = Ys[ti][idx][:, vox].T  # (B, n_c + n_q)
            rank, world = getattr(self, "_ddp", (0, 1))
            if world > 1:  # this rank's voxels; the summed gradients are the whole batch's
                y = y[ddp.shard(B, rank, world)]
            x, y = x.to(dev), y.to(dev)
            yc, yq = y[:, :n_c], y[:, n_c:]
            mu, sd = _context_stats(yc)
            w = self.module_(x[:n_c], (yc - mu) / sd)
            pred = _apply_weights(w, x[n_c:])
            if world > 1:
                loss = F.mse_loss(pred, (yq - mu) / sd, reduction="sum") / (B * yq.shape[1])
            else:
                loss = F.mse_loss(pred, (yq - mu) / sd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ddp.all_reduce_gradients(self.module_.parameters(), world)
            torch.nn.utils.clip_grad_norm_(self.module_.parameters(), 1.0)
            opt.step()
            sched.step()
            value = ddp.all_reduce_sum(loss.item(), world)
            running = value if running is None else 0.95 * running + 0.05 * value
            if step % 10 == 0 or step == total - 1:
                self.meta_history_.append(float(running))

    # -- in-context fitting ---------------------------------------------------------------
    def fit(self, X, Y) -> BraInCoRL:
        """Read a new subject's context and write every voxel's encoding model.

        No gradient step: one forward pass per ``voxel_batch_size`` voxels (after
        meta-training on the context first when there is no meta-trained model; see the
        class docstring).

        Parameters
        ----------
        X : array-like of float, shape (n_context, n_features)
            Features of the context images (unit-normed internally), the extractor the
            model was meta-trained on.
        Y : array-like of float, shape (n_context, n_voxels) or (n_context,)
            Each voxel's response to each context image (e.g. repeat-averaged betas).
            Voxels with any NaN (masked voxels) are refused: drop them first, e.g.
            ``Y[:, np.isfinite(Y).all(0)]``. A 1-D ``Y`` makes :meth:`predict` 1-D.

        Returns
        -------
        self
        """
        self._check_hparams()
        Ya = np.asarray(Y) if not hasattr(Y, "toarray") else None
        if Ya is not None and Ya.dtype.kind in "iuf" and Ya.ndim in (1, 2):
            bad = ~np.isfinite(Ya.reshape(len(Ya), -1)).all(axis=0)
            if bad.any():
                raise ValueError(
                    f"Y: expected finite responses, got NaN/inf in {int(bad.sum())} voxel(s) "
                    f"(first: {np.flatnonzero(bad)[:5].tolist()}); drop masked voxels first"
                )
        _refuse_text("X", X)
        _refuse_text("Y", Y)
        X, Y = validate_data(
            self, X, Y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32)
        )
        self._single_output = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        if X.shape[0] < 2:
            raise ValueError(
                f"X: expected at least 2 context images, got n_samples={X.shape[0]}"
            )
        self._ensure_module(X, Y)
        if X.shape[1] != self.feature_dim_:
            raise ValueError(
                f"X has {X.shape[1]} features, but BraInCoRL is expecting {self.feature_dim_} "
                "features as input (the feature_dim of its meta-trained model)"
            )
        if X.shape[0] > 2 * self.max_context:
            warnings.warn(
                f"X: {X.shape[0]} context images, more than twice the largest context seen in "
                f"meta-training (max_context={self.max_context})",
                UserWarning,
                stacklevel=2,
            )
        X = X.astype(np.float32)
        dev = next(self.module_.parameters()).device
        Xu = torch.from_numpy(_unit_norm(X)).to(dev)
        Yt = torch.from_numpy(np.array(Y, dtype=np.float32))
        E, V = X.shape[1], Y.shape[1]
        coef = np.empty((E, V), dtype=np.float32)
        icpt = np.empty(V, dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, V, self.voxel_batch_size):
                yc = Yt[:, s : s + self.voxel_batch_size].T.to(dev)  # (b, n)
                mu, sd = _context_stats(yc)
                w = self.module_(Xu, (yc - mu) / sd)
                # back to response units: y = mu + sd (w . x + b)
                coef[:, s : s + yc.shape[0]] = (w[:, :E] * sd).T.cpu().numpy()
                icpt[s : s + yc.shape[0]] = (mu + sd * w[:, E:]).squeeze(1).cpu().numpy()
        self.coef_, self.intercept_ = coef, icpt
        return self

    def _ensure_module(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Set ``module_`` from ``pretrained``, keep a meta-fitted one, or meta-train one."""
        src = getattr(self, "_module_source", None)
        if self.pretrained is not None:
            folder = _pretrained_folder(self.pretrained)
            key = str(folder.resolve())
            if src == key and hasattr(self, "module_"):
                return
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"pretrained: {folder} is not a folder (expected one written by "
                    "BraInCoRL.save_pretrained)"
                )
            loaded = BraInCoRL.from_pretrained(folder, device=self.device)
            if self.feature_extractor is not None and loaded.feature_extractor not in (
                None, self.feature_extractor
            ):
                raise ValueError(
                    f"pretrained: the model in {folder} was meta-trained on features "
                    f"{loaded.feature_extractor!r}, this estimator's feature_extractor is "
                    f"{self.feature_extractor!r}"
                )
            self.module_, self.feature_dim_ = loaded.module_, loaded.feature_dim_
            self.meta_history_ = list(loaded.meta_history_)
            self._module_source = key
            return
        if hasattr(self, "module_") and src != "fit":
            return  # from meta_fit, from_pretrained or set by hand
        if X.shape[0] < 3:
            raise ValueError(
                "X: meta-training inside fit (pretrained=None, no meta_fit) needs at least 3 "
                f"images, got n_samples={X.shape[0]}; or pass pretrained=<folder>"
            )
        self._meta_train(MetaTask(X, Y, name="context"))
        self._module_source = "fit"

    def predict(self, X) -> np.ndarray:
        """Predicted responses of every voxel to query images.

        Parameters
        ----------
        X : array-like of float, shape (n_query, n_features)

        Returns
        -------
        Y_hat : ndarray, shape (n_query, n_voxels), or (n_query,) after a 1-D ``Y``
            float32 for float32 ``X``, else float64.
        """
        check_is_fitted(self, "coef_", msg="BraInCoRL: call fit(X_context, Y_context) first")
        _refuse_text("X", X)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        out_dtype = np.float32 if X.dtype == np.float32 else np.float64
        Xu = _unit_norm(X.astype(np.float64))
        pred = (Xu @ self.coef_.astype(np.float64) + self.intercept_).astype(out_dtype)
        return pred[:, 0] if getattr(self, "_single_output", False) else pred


def _context_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel mean and sd over the context, ``(B, 1)`` each; sd floored (constant voxels)."""
    mu = y.mean(dim=1, keepdim=True)
    sd = y.std(dim=1, keepdim=True, unbiased=False)
    floor = 1e-6 * (1.0 + mu.abs())
    return mu, torch.maximum(sd, floor)


def _synthetic_voxels(x: torch.Tensor, n_voxels: int, gen: torch.Generator) -> torch.Tensor:
    """Synthetic linear-nonlinear voxels over features ``x (n, E)`` -> ``(n_voxels, n)``.

    ``y = z(softplus(g sqrt(E) (x . u) + c)) + eps / snr`` (``z``: standardised over the
    images) with a random direction ``u`` (sparse-ish: Gaussian cubed, normalised), gain
    ``g ~ U(0.3, 3)``, offset ``c ~ N(0, 1)`` and ``snr`` log-uniform in [0.2, 5].
    """
    n, E = x.shape
    B = n_voxels
    u = torch.randn(B, E, generator=gen) ** 3
    u = u / u.norm(dim=1, keepdim=True)
    g = 0.3 + 2.7 * torch.rand(B, 1, generator=gen)
    c = torch.randn(B, 1, generator=gen)
    drive = (u @ x.T) * math.sqrt(E)  # (B, n), about unit variance
    sig = F.softplus(g * drive + c)
    sig = (sig - sig.mean(1, keepdim=True)) / sig.std(1, keepdim=True).clamp_min(1e-6)
    log_snr = math.log(0.2) + (math.log(5) - math.log(0.2)) * torch.rand(B, 1, generator=gen)
    return sig + torch.randn(B, n, generator=gen) / torch.exp(log_snr)
