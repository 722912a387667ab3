"""diffusers-style ``save_pretrained`` / ``from_pretrained`` for the suite's estimators.

A trained model is a folder anyone can move: ``config.json`` (the estimator's constructor
arguments plus whatever the subclass adds with :meth:`_extra_config`) and
``model.safetensors`` (the ``state_dict`` of the held ``nn.Module``, ``self.module_``).
Both files are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from data_loaders._io import atomic_path, atomic_write_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``save_directory``."""
        from safetensors.torch import save_file

        if not hasattr(self, "module_"):
            raise RuntimeError(
                f"{type(self).__name__}.save_pretrained: the model is not fitted "
                "(no `module_`); call fit(...) first"
            )
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "_class_name": type(self).__name__,
            "params": self.get_params(deep=False),
            "extra": self._extra_config(),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        with atomic_path(out / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp))
        atomic_write_json(out / CONFIG_NAME, config)
        return out

    @classmethod
    def from_pretrained(cls, pretrained_directory: str | os.PathLike, device: str = "cpu"):
        """Load an estimator written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        folder = Path(pretrained_directory)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"{cls.__name__}.from_pretrained: missing file {p}")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{cfg_path}: not valid JSON ({err})") from err
        name = config.get("_class_name")
        if name != cls.__name__:
            raise ValueError(
                f"{cfg_path}: _class_name is {name!r}, expected {cls.__name__!r}"
            )
        est = cls(**config["params"])
        est._restore_extra(config.get("extra", {}))
        module = est._build_module(config.get("extra", {}))
        module.load_state_dict(load_file(str(w_path), device=device))
        est.module_ = module.to(device).eval()
        return est
