"""diffusers-style ``save_pretrained`` / ``from_pretrained`` for the suite's estimators.

A trained model is a folder anyone can move: ``config.json`` (the estimator's constructor
arguments plus whatever the subclass adds with :meth:`_extra_config`) and
``model.safetensors`` (the ``state_dict`` of the held ``nn.Module``, ``self.module_``).
The pair is written into a temporary sibling folder that is then renamed onto the target
(:func:`data_loaders._io.atomic_dir`), so a kill never leaves a new ``config.json`` beside
old weights. A truncated or damaged file is refused with its path
(:class:`data_loaders._io.CorruptFileError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_loaders._io import CorruptFileError, atomic_dir, atomic_write_json, reading

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_OWN_FILES = (CONFIG_NAME, WEIGHTS_NAME)


def write_pretrained_folder(
    est: Any, save_directory: str | os.PathLike, extra: dict[str, Any],
    write_weights: Callable[[Path], None],
    write_parts: Callable[[Path], None] | None = None, part_names: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """Write ``config.json`` (class name, ``est.get_params()``, ``extra``) and the weights.

    ``write_weights(path)`` writes ``model.safetensors`` at ``path`` (torch or numpy
    safetensors); ``write_parts(folder)``, when given, writes sub-folders (named among
    ``part_names``, e.g. fitted companions of the model) into the new folder. Everything
    goes into a sibling folder renamed onto ``save_directory``, so the folder is replaced as
    a whole and must hold nothing else: a folder with other files is refused rather than
    emptied.
    """
    out = Path(save_directory)
    own = _OWN_FILES + tuple(part_names)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"save_directory: {out} exists and is not a folder")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in own)
        if other:
            raise FileExistsError(
                f"save_directory: {out} holds other files {other[:5]}; expected a folder "
                f"with only {list(own)} (or none): pick another folder"
            )
    config = {"_class_name": type(est).__name__, "params": est.get_params(deep=False),
              "extra": extra}  # fmt: skip
    with atomic_dir(out) as tmp:
        write_weights(tmp / WEIGHTS_NAME)
        if write_parts is not None:
            write_parts(tmp)
        atomic_write_json(tmp / CONFIG_NAME, config)
    return out


def read_pretrained_config(
    cls: type, pretrained_directory: str | os.PathLike
) -> tuple[Any, dict[str, Any], Path, Path]:
    """Check a :func:`write_pretrained_folder` folder and build the estimator from its config.

    Returns
    -------
    est, extra, cfg_path, weights_path
        ``cls(**params)``, the ``extra`` dict, and the two files' paths.
    """
    folder = Path(pretrained_directory)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{cls.__name__}.from_pretrained: missing file {p}")
    with reading(cfg_path, "the JSON config of save_pretrained"):
        config = json.loads(cfg_path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("params"), dict):
        raise CorruptFileError(
            cfg_path, "a JSON object with '_class_name', 'params' and 'extra'",
            TypeError(f"got {type(config).__name__}"),
        )
    name = config.get("_class_name")
    if name != cls.__name__:
        raise ValueError(f"{cfg_path}: _class_name is {name!r}, expected {cls.__name__!r}")
    try:
        est = cls(**config["params"])
    except TypeError as err:
        raise ValueError(
            f"{cfg_path}: field 'params' does not fit {cls.__name__} ({err})"
        ) from err
    extra = config.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{cfg_path}: field 'extra' expected an object, got "
                         f"{type(extra).__name__}")
    return est, extra, cfg_path, w_path


class PretrainedMixin:
    """Mixin for sklearn-style estimators that hold a fitted ``torch.nn.Module`` in ``module_``.

    Subclasses implement ``_build_module(extra: dict) -> nn.Module`` (builds the untrained
    module from the stored hyper-parameters and the extra config), and may override
    ``_extra_config() -> dict`` to store fitted non-tensor state (e.g. class labels, the name
    of the feature extractor) and ``_restore_extra(extra)`` to read it back.
    """

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            setattr(self, key, value)

    #: Sub-folders a subclass writes beside the weights (``_write_parts``).
    _part_names: tuple[str, ...] = ()

    def _write_parts(self, folder: Path) -> None:
        """Write fitted companions (sub-folders named in ``_part_names``) into ``folder``."""

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``save_directory``.

        The folder is replaced as a whole (written beside it, then renamed), so it must
        hold nothing else: a folder with other files is refused rather than emptied.
        """
        from safetensors.torch import save_file

        if not hasattr(self, "module_"):
            raise RuntimeError(
                f"{type(self).__name__}.save_pretrained: the model is not fitted "
                "(no `module_`); call fit(...) first"
            )
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        return write_pretrained_folder(self, save_directory, self._extra_config(),
                                       lambda path: save_file(state, str(path)),
                                       self._write_parts, self._part_names)  # fmt: skip

    @classmethod
    def from_pretrained(cls, pretrained_directory: str | os.PathLike, device: str = "cpu"):
        """Load an estimator written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        est, extra, cfg_path, w_path = read_pretrained_config(cls, pretrained_directory)
        est._restore_extra(extra)
        try:
            module = est._build_module(extra)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{cfg_path}: fields 'params' / 'extra' do not build a {cls.__name__} model "
                f"({type(err).__name__}: {err})"
            ) from err
        with reading(w_path, f"safetensors weights of {cls.__name__}"):
            state = load_file(str(w_path), device=device)
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(
                f"{w_path}: weights do not fit the model of {cfg_path} (expected tensors "
                f"{sorted(module.state_dict())[:4]}...; {str(err).splitlines()[0]})"
            ) from err
        est.module_ = module.to(device).eval()
        return est
