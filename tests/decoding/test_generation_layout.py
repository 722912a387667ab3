"""The v2 generator's layout map, the Conditioning call, and resume checks (tiny models)."""

import numpy as np
import pytest
import torch
from torch import nn

from decoding.generation import (
    Conditioning,
    EmbeddingConditioner,
    StimulusAutoencoder,
    StimulusDiffusionPipeline,
    load_pipeline,
    make_scheduler,
    make_unet,
)
from decoding.generation.diffusion import training_scheduler
from decoding.generation.training import DiffusionLoss, fit, train_diffusion

DI, DT = 6, 4


def _layout_pipe(seed=0):
    torch.manual_seed(seed)
    vae = StimulusAutoencoder(block_out_channels=(8, 8, 16))
    cond = EmbeddingConditioner(DI, DT, "img-a", "text-a", layout_channels=4, layout_size=16,
                                layout_width=16)
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 16), layout_channels=4)
    sched = make_scheduler("dpmsolver++", training_scheduler().config)
    pipe = StimulusDiffusionPipeline(vae=vae, unet=unet, scheduler=sched, conditioner=cond)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _emb(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_layout_map_shapes_and_unet_input():
    pipe = _layout_pipe()
    assert pipe.unet.config.in_channels == 8 and pipe.unet.config.out_channels == 4
    c = pipe.conditioner(torch.from_numpy(_emb(3, DI)), torch.from_numpy(_emb(3, DT)))
    assert pipe.conditioner.layout_map(c).shape == (3, 4, 16, 16)
    ims = pipe(_emb(3, DI), _emb(3, DT), num_inference_steps=2, generator=0).images
    assert ims.shape == (3, 64, 64, 3)
    lay = pipe.layout_images(_emb(3, DI), _emb(3, DT))
    assert lay.shape == (3, 64, 64, 3) and lay.min() >= 0 and lay.max() <= 1
    # a v1 conditioner has none
    v1 = EmbeddingConditioner(DI, DT)
    assert v1.layout_channels == 0 and v1.layout_map(torch.zeros(2, DI + DT)) is None


def test_layout_map_changes_the_images():
    """The UNet reads the layout map: zeroing the map's last layer changes the output."""
    pipe = _layout_pipe()
    with torch.no_grad():
        for p in pipe.unet.parameters():  # random non-zero output layer (diffusers zeros none)
            p.add_(torch.randn_like(p) * 0.05)
    kw = dict(num_inference_steps=3, generator=0, guidance_scale=1.0)
    a = pipe(_emb(2, DI), _emb(2, DT), **kw).images
    with torch.no_grad():
        pipe.conditioner.layout[-1].weight.zero_()
        pipe.conditioner.layout[-1].bias.zero_()
    b = pipe(_emb(2, DI), _emb(2, DT), **kw).images
    assert np.abs(a - b).max() > 1e-3


def test_layout_loss_term_is_the_mse_to_the_clean_latent():
    torch.manual_seed(0)
    cond = EmbeddingConditioner(DI, DT, layout_channels=4, layout_size=8, layout_width=16)
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 8), sample_size=8, layout_channels=4)
    parts = nn.ModuleDict({"unet": unet, "conditioner": cond})
    batch = (torch.randn(16, 4, 8, 8), torch.from_numpy(_emb(16, DI)),
             torch.from_numpy(_emb(16, DT)))
    with torch.no_grad():
        with_term = DiffusionLoss(training_scheduler(), layout_weight=2.0)(
            parts, batch, torch.Generator().manual_seed(1))
        without = DiffusionLoss(training_scheduler(), layout_weight=0.0)(
            parts, batch, torch.Generator().manual_seed(1))
        # the same draws of rows to drop as the loss made (p_drop 0.1 over 16 rows)
        gen = torch.Generator().manual_seed(1)
        torch.randn(batch[0].shape, generator=gen)
        torch.randint(0, 1000, (16,), generator=gen)
        r = torch.rand(16, generator=gen)
        drop_both = r < 0.1
        drop_img = drop_both | ((r >= 0.1) & (r < 0.15))
        drop_txt = drop_both | ((r >= 0.15) & (r < 0.2))
        lay = cond.layout_map(cond(batch[1], batch[2], drop_img, drop_txt))
        mse = nn.functional.mse_loss(lay, batch[0])
    assert float(with_term - without) == pytest.approx(2.0 * float(mse), rel=1e-5)


def test_layout_map_learns_the_conditional_mean():
    """On a toy world (a bump whose position the condition gives), the layout map regresses
    the clean latent: its correlation with the true latents of unseen conditions is high."""
    rng = np.random.default_rng(0)

    def world(n):
        pos = rng.uniform(1.5, 6.5, size=(n, 2))
        yy, xx = np.mgrid[0:8, 0:8]
        bump = np.exp(-((xx[None] - pos[:, :1, None]) ** 2
                        + (yy[None] - pos[:, 1:, None]) ** 2) / 2.0)
        lat = np.repeat(bump[:, None], 4, axis=1).astype(np.float32) * 2 - 0.5
        img = np.hstack([pos / 8 - 0.5, np.zeros((n, DI - 2))]).astype(np.float32)
        return torch.from_numpy(lat), img, np.zeros((n, DT), np.float32)

    torch.manual_seed(0)
    cond = EmbeddingConditioner(DI, DT, layout_channels=4, layout_size=8, layout_width=32)
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 8), sample_size=8, layout_channels=4)
    lat, img, txt = world(512)
    train_diffusion(lat, img, txt, unet, cond, n_steps=400, batch_size=32, lr=3e-3,
                    progress=False, ema_decay=None, p_drop=0.0)
    lat_t, img_t, txt_t = world(64)
    with torch.no_grad():
        pred = cond.layout_map(cond(torch.from_numpy(img_t), torch.from_numpy(txt_t)))
    r = np.corrcoef(pred.numpy().ravel(), lat_t.numpy().ravel())[0, 1]
    assert r > 0.9, r


def test_save_load_keeps_the_layout(tmp_path):
    pipe = _layout_pipe()
    pipe.save_pretrained(tmp_path / "p")
    back = load_pipeline(tmp_path / "p")
    assert back.conditioner.layout_channels == 4
    kw = dict(num_inference_steps=2, generator=3)
    np.testing.assert_allclose(back(_emb(2, DI), _emb(2, DT), **kw).images,
                               pipe(_emb(2, DI), _emb(2, DT), **kw).images, atol=1e-6)


def test_conditioning_identifiers_are_checked():
    pipe = _layout_pipe()
    good = Conditioning(_emb(2, DI), _emb(2, DT), "img-a", "text-a")
    kw = dict(num_inference_steps=2, generator=0)
    np.testing.assert_array_equal(pipe(good, **kw).images,
                                  pipe(good.image_embeds, good.text_embeds, **kw).images)
    assert len(good.subset([1])) == 1
    with pytest.raises(ValueError, match=r"image_embedding_id: .*'img-b'.*'img-a'"):
        pipe(Conditioning(_emb(2, DI), _emb(2, DT), "img-b", "text-a"), **kw)
    with pytest.raises(ValueError, match=r"text_embedding_id: .*'text-b'"):
        pipe(Conditioning(_emb(2, DI), _emb(2, DT), "img-a", "text-b"), **kw)
    with pytest.raises(ValueError, match="text_embeds: expected None"):
        pipe(good, _emb(2, DT), **kw)
    with pytest.raises(ValueError, match="no layout map"):
        StimulusDiffusionPipeline(vae=pipe.vae, unet=pipe.unet, scheduler=pipe.scheduler,
                                  conditioner=EmbeddingConditioner(DI, DT)).layout_images(
            _emb(1, DI))
    with pytest.raises(ValueError, match="layout_channels / layout_size"):
        EmbeddingConditioner(DI, DT, layout_channels=4, layout_size=6)


def _mse(parts, batch, gen):
    xb, yb = batch
    return ((parts["lin"](xb) - yb) ** 2).mean()


def test_resume_refuses_other_hyper_parameters(tmp_path):
    X = torch.randn(64, 4)
    y = X.sum(1, keepdim=True)
    ck = tmp_path / "ck.pt"
    torch.manual_seed(0)
    fit({"lin": nn.Linear(4, 1)}, _mse, (X, y), n_steps=4, batch_size=8, lr=0.1,
        checkpoint=ck, progress=False, hparams={"width": 4})
    with pytest.raises(ValueError, match=r"other hyper-parameters \(lr: 0\.1 there, 0\.2 now; "
                                         r"width: 4 there, 8 now\)"):
        fit({"lin": nn.Linear(4, 1)}, _mse, (X, y), n_steps=4, batch_size=8, lr=0.2,
            checkpoint=ck, progress=False, hparams={"width": 8})
    # the same ones resume (nothing left to do: the history is the stored one)
    h = fit({"lin": nn.Linear(4, 1)}, _mse, (X, y), n_steps=4, batch_size=8, lr=0.1,
            checkpoint=ck, progress=False, hparams={"width": 4})
    assert h[-1]["step"] == 4
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint: cannot read .*ck\.pt"):
        fit({"lin": nn.Linear(4, 1)}, _mse, (X, y), n_steps=4, batch_size=8, lr=0.1,
            checkpoint=ck, progress=False)


def test_autoencoder_loss_weights_objects_and_edges():
    """AutoencoderLoss by hand: object pixels (mask grown by one pixel) count object_weight
    times, and the Sobel-gradient term is added with edge_weight."""
    from decoding.generation.training import AutoencoderLoss, autoencoder_loss

    torch.manual_seed(0)
    vae = StimulusAutoencoder(block_out_channels=(8, 8, 16))
    parts = nn.ModuleDict({"vae": vae})
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    masks = -torch.ones(2, 16, 16, dtype=torch.int8)
    masks[:, 5:8, 5:8] = 0
    with torch.no_grad():
        rec = vae(x)
        err = (rec - x) ** 2 + 0.5 * (rec - x).abs()
        w = torch.ones(2, 1, 16, 16)
        w[:, :, 4:9, 4:9] = 3.0  # the 3x3 object grown by one pixel on each side
        pix = (err * w).sum() / (w.sum() * 3)
        plain = AutoencoderLoss(object_weight=3.0, edge_weight=0.0)(parts, (x, masks), None)
        assert float(plain) == pytest.approx(float(pix), rel=1e-5)
        with_edges = AutoencoderLoss(object_weight=3.0, edge_weight=0.7)(parts, (x, masks), None)
        kx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]) / 4
        k = torch.stack([kx, kx.T])[:, None].repeat(3, 1, 1, 1)
        g = (nn.functional.conv2d(rec, k, padding=1, groups=3)
             - nn.functional.conv2d(x, k, padding=1, groups=3)).abs()
        edge = (g * w).sum() / (w.sum() * 6)
        assert float(with_edges - plain) == pytest.approx(0.7 * float(edge), rel=1e-4)
        # without masks: the v1 loss (MSE + 0.5 L1), unweighted
        v1 = nn.functional.mse_loss(rec, x) + 0.5 * nn.functional.l1_loss(rec, x)
        assert float(autoencoder_loss(parts, (x,), None)) == pytest.approx(float(v1), rel=1e-6)
