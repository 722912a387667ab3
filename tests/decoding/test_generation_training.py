import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from data_loaders.simulate.stimuli import render_stimuli
from decoding.generation import EmbeddingConditioner, StimulusAutoencoder, make_unet
from decoding.generation.diffusion import training_scheduler
from decoding.generation.training import (
    DiffusionLoss,
    encode_images,
    fit,
    train_autoencoder,
    train_diffusion,
)

REPO = Path(__file__).resolve().parents[2]


def _linear_problem():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(128, 4)).astype(np.float32))
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.7
    return X, y


def _mse(parts, batch, gen):
    xb, yb = batch
    return ((parts["lin"](xb) - yb) ** 2).mean()


def test_fit_reaches_the_least_squares_solution():
    X, y = _linear_problem()
    torch.manual_seed(0)
    lin = nn.Linear(4, 1)
    hist = fit({"lin": lin}, _mse, (X, y), n_steps=400, batch_size=32, lr=0.05, progress=False,
               checkpoint_every=100)
    A = np.hstack([X.numpy(), np.ones((len(X), 1))])
    coef = np.linalg.lstsq(A, y.numpy(), rcond=None)[0].ravel()
    got = np.r_[lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy()]
    np.testing.assert_allclose(got, coef, atol=1e-2)
    assert [h["step"] for h in hist] == [100, 200, 300, 400]
    assert hist[-1]["loss"] < hist[0]["loss"]


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_exactly(tmp_path, ema):
    """A run stopped after 6 of 10 steps and resumed from its checkpoint ends bit-identical
    to a run that never stopped."""
    X, y = _linear_problem()
    kw = dict(n_steps=10, batch_size=16, lr=0.05, ema_decay=ema, progress=False)

    def make():
        torch.manual_seed(1)
        return nn.Linear(4, 1)

    straight = make()
    fit({"lin": straight}, _mse, (X, y), **kw)
    calls = []

    def stopping(parts, batch, gen):
        calls.append(1)
        if len(calls) > 6:
            raise KeyboardInterrupt
        return _mse(parts, batch, gen)

    ck = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit({"lin": make()}, stopping, (X, y), checkpoint=ck, checkpoint_every=3, **kw)
    assert torch.load(ck, weights_only=False)["step"] == 6
    resumed = make()
    fit({"lin": resumed}, _mse, (X, y), checkpoint=ck, checkpoint_every=3, **kw)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.load(ck, weights_only=False)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # atomic: no temporary files


def test_fit_errors():
    X, y = _linear_problem()
    with pytest.raises(ValueError, match="n_steps"):
        fit({"lin": nn.Linear(4, 1)}, _mse, (X, y), n_steps=0, batch_size=4, lr=0.1)
    with pytest.raises(ValueError, match="same length"):
        fit({"lin": nn.Linear(4, 1)}, _mse, (X, y[:5]), n_steps=1, batch_size=4, lr=0.1)


def test_autoencoder_and_diffusion_stages_run():
    stim = render_stimuli(32, image_size=64, random_state=2)
    vae, hist = train_autoencoder(stim.images, n_steps=3, batch_size=8, seed=0, progress=False,
                                  vae=StimulusAutoencoder(block_out_channels=(8, 8, 16)))
    z = encode_images(vae, stim.images)
    assert z.shape == (32, 4, 16, 16)
    assert float(z.std()) == pytest.approx(1.0, rel=0.05)  # scaling_factor standardises
    cond = EmbeddingConditioner(6, 4)
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 16))
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(32, 6)), rng.normal(size=(32, 4))
    before = [p.detach().clone() for p in cond.parameters()]
    h = train_diffusion(z, img, txt, unet, cond, n_steps=3, batch_size=8, progress=False,
                        ema_decay=None)
    assert np.isfinite(h[-1]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, cond.parameters()))  # null tokens


def test_diffusion_loss_drops_conditions_at_the_stated_rates():
    loss = DiffusionLoss(training_scheduler(), p_drop=0.1)
    seen = {}

    class Spy(EmbeddingConditioner):
        def forward(self, image_embeds, text_embeds=None, drop_image=None, drop_text=None,
                    batch_size=None):
            seen["img"], seen["txt"] = drop_image, drop_text
            return super().forward(image_embeds, text_embeds, drop_image, drop_text, batch_size)

    cond = Spy(3, 2)
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 8))
    b = 8000
    batch = (torch.zeros(b, 4, 4, 4), torch.zeros(b, 3), torch.zeros(b, 2))
    parts = nn.ModuleDict({"unet": unet, "conditioner": cond})
    with torch.no_grad():
        loss(parts, batch, torch.Generator().manual_seed(0))
    both = (seen["img"] & seen["txt"]).float().mean()
    assert float(both) == pytest.approx(0.1, abs=0.015)
    assert float(seen["img"].float().mean()) == pytest.approx(0.15, abs=0.015)
    assert float(seen["txt"].float().mean()) == pytest.approx(0.15, abs=0.015)


@pytest.mark.slow  # two fresh interpreters importing torch + diffusers: ~30 s when loaded
def test_two_cpu_processes_data_parallel(tmp_path):
    """torchrun with 2 CPU processes (gloo) runs the same loop; the data-parallel result
    equals one process on the same global batches."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    port = str(29500 + os.getpid() % 400)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", port, str(REPO / "tests/decoding/_ddp_fit.py"), str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(a, b)
    single = tmp_path / "single"
    single.mkdir()
    sys.path.insert(0, str(REPO))
    from tests.decoding._ddp_fit import run

    run(str(single))
    np.testing.assert_allclose(a, np.load(single / "rank0.npy"), atol=1e-5)


def test_warm_restart_from_a_saved_pipeline_and_architecture_check(tmp_path):
    """``init=``: the UNet stage starts from a saved pipeline's weights (a tiny real one)."""
    from decoding.features import get_extractor
    from decoding.generation import StimulusDiffusionPipeline, make_scheduler
    from decoding.generation.training import train_stimulus_diffusion
    from decoding.semantics import get_text_encoder

    fx, tx = get_extractor("stimnet"), get_text_encoder("stimtext")
    torch.manual_seed(1)
    cond = EmbeddingConditioner(fx.dim, tx.dim, fx.identifier, tx.identifier,
                                layout_channels=4, layout_size=16)  # fmt: skip
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 16), layout_channels=4)
    StimulusDiffusionPipeline(
        vae=StimulusAutoencoder(block_out_channels=(8, 8, 16)), unet=unet, conditioner=cond,
        scheduler=make_scheduler("dpmsolver++", training_scheduler().config),
    ).save_pretrained(tmp_path / "init")
    kw = dict(n_train_images=16, n_val_images=4, unet_batch=8, unet_channels=(8, 16),
              layout_channels=4, eval_every=0, ema_decay=None, progress=False,
              log=lambda m: None)  # fmt: skip
    # one step at a vanishing learning rate: the saved weights come back (nearly) unchanged
    res = train_stimulus_diffusion(tmp_path / "out", unet_steps=1, lr=1e-12, init=tmp_path / "init",
                                   **kw)  # fmt: skip
    for a, b in zip(res["pipeline"].unet.state_dict().values(), unet.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert res["ae_history"] == [{"reused": str(tmp_path / "init" / "vae")}]
    with pytest.raises(ValueError, match="init: the unet in .* has another architecture"):
        train_stimulus_diffusion(tmp_path / "out2", unet_steps=1, init=tmp_path / "init",
                                 **{**kw, "unet_channels": (8, 32)})  # fmt: skip
    with pytest.raises(FileNotFoundError, match="init: .* is not a pipeline folder"):
        train_stimulus_diffusion(tmp_path / "out3", unet_steps=1, init=tmp_path / "none", **kw)
