"""Choosing among several generated samples per brain sample, without an oracle.

MindEye and MindBridge draw several reconstructions per brain sample and keep one. Their
public code keeps the one whose CLIP embedding is closest to the *ground-truth image's*
embedding (MindBridge ``src/recon.py``: ``clip_image_target = clip_extractor.embed_image(
image)``), which is an oracle: the true stimulus is unknown at decoding time, and the pick
inflates every metric. :func:`select_samples` uses brain-derived information only: each
sample is re-encoded with the same feature extractor the decoder predicts, and the sample
whose embedding agrees best (cosine) with the **predicted** embedding is kept.

The ground-truth images may be passed, but only to report what the oracle *would* have
picked (``oracle_index``), so that a report can show how much an oracle pick inflates the
numbers; they never enter the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SelectionResult", "select_samples"]


@dataclass
class SelectionResult:
    """Result of :func:`select_samples`.

    Attributes
    ----------
    images : ndarray, shape (n, H, W, 3)
        The chosen sample per brain sample (same dtype as the samples).
    index : ndarray of int, shape (n,)
        Which of the k samples was chosen.
    scores : ndarray of float, shape (n, k)
        Cosine between each sample's re-encoded embedding and the predicted embedding.
    oracle_index : ndarray of int, shape (n,) or None
        The sample closest to the true image's embedding (only reported, never used).
    """

    images: np.ndarray
    index: np.ndarray
    scores: np.ndarray
    oracle_index: np.ndarray | None = None


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def select_samples(
    samples: Any,
    image_embeds: Any,
    extractor: Any = None,
    true_images: Any = None,
) -> SelectionResult:
    """Keep, per brain sample, the generated sample that best matches the *predicted* embedding.

    Parameters
    ----------
    samples : ndarray, shape (n, k, H, W, 3) or (n * k, H, W, 3)
        k samples per brain sample (uint8 or float in [0, 1]); the flat form is grouped per
        brain sample, as ``StimulusDiffusionPipeline(num_images_per_prompt=k)`` returns it.
    image_embeds : ndarray, shape (n, d)
        The image embeddings predicted from brain activity.
    extractor : FeatureExtractor, optional
        The extractor whose space ``image_embeds`` lives in (default ``stimnet``).
    true_images : ndarray, shape (n, H, W, 3), optional
        Only to report ``oracle_index``; never used in the choice.

    Returns
    -------
    SelectionResult
    """
    from decoding.evaluation.image_eval import to_uint8

    emb = np.asarray(image_embeds, dtype=np.float64)
    if emb.ndim != 2 or not np.isfinite(emb).all():
        raise ValueError(
            f"image_embeds: expected a finite array of shape (n, d), got shape {emb.shape}"
        )
    n = emb.shape[0]
    arr = np.asarray(samples)
    if arr.ndim == 4:
        if arr.shape[0] % n:
            raise ValueError(
                f"samples: expected n * k images for n = {n} embeddings, got {arr.shape[0]}"
            )
        arr = arr.reshape(n, arr.shape[0] // n, *arr.shape[1:])
    if arr.ndim != 5 or arr.shape[0] != n or arr.shape[-1] != 3:
        raise ValueError(
            f"samples: expected shape ({n}, k, H, W, 3) or ({n} * k, H, W, 3), got {arr.shape}"
        )
    k = arr.shape[1]
    if extractor is None:
        from decoding.features import get_extractor

        extractor = get_extractor("stimnet")
    feats = extractor.transform(to_uint8(arr.reshape(n * k, *arr.shape[2:]), "samples"))
    if feats.shape[1] != emb.shape[1]:
        raise ValueError(
            f"image_embeds: expected width {feats.shape[1]} (the extractor "
            f"{getattr(extractor, 'identifier', '?')}), got {emb.shape[1]}"
        )
    scores = np.einsum("nkd,nd->nk", _unit(feats).reshape(n, k, -1), _unit(emb))
    index = scores.argmax(axis=1)
    oracle = None
    if true_images is not None:  # reported only: what an oracle pick would have been
        true_feats = extractor.transform(to_uint8(true_images, "true_images"))
        if len(true_feats) != n:
            raise ValueError(f"true_images: expected {n} images, got {len(true_feats)}")
        oracle = np.einsum(
            "nkd,nd->nk", _unit(feats).reshape(n, k, -1), _unit(true_feats)
        ).argmax(axis=1)
    return SelectionResult(images=arr[np.arange(n), index], index=index, scores=scores,
                           oracle_index=oracle)  # fmt: skip
