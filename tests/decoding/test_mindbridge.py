"""MindBridge: aggregation, SoftCLIP, multi-subject training, reset-tuning, save/load, errors."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from data_loaders.schema import FMRIDataset, FMRISubject, Stimuli
from decoding.decoders.mindbridge import (
    EmbeddingTargets,
    MindBridge,
    aggregate,
    clip_targets,
    soft_clip_loss,
)
from decoding.evaluation import two_way_identification

DIM, TDIM = 8, 4
TINY = dict(pool_size=32, hidden_dim=32, n_blocks=1, adapter_dim=4, batch_size=20, n_epochs=30,
            tune_epochs=30, lr=3e-3, tune_lr=3e-3, temperature=0.1, embedder_dropout=0.1,
            verbose=False)  # fmt: skip


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _toy(voxels=(40, 50, 60, 45), n_test=30, n_own=80, noise=0.3, seed=0):
    """Subjects whose betas are linear in a known embedding: decodable by construction.

    Every subject sees the same ``n_test`` images (the shared test set) and its own training
    images, twice each; each has its own voxel count and its own random voxel weights.
    """
    rng = np.random.default_rng(seed)
    n = n_test + len(voxels) * n_own
    ids = np.arange(n) * 3 + 7
    emb = _unit(rng.normal(size=(n, DIM)))
    txt = _unit(emb[:, :TDIM] + 0.1 * rng.normal(size=(n, TDIM)))
    stim = Stimuli(images=rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), ids=ids)
    subs = {}
    for s, v in enumerate(voxels):
        seen = np.concatenate([np.arange(n_test), n_test + s * n_own + np.arange(n_own)])
        rows = np.repeat(seen, 2)
        w = rng.normal(size=(DIM, v))
        betas = emb[rows] @ w + 1.0 + noise * rng.normal(size=(rows.size, v))
        name = f"subj{s + 1:02d}"
        subs[name] = FMRISubject(betas=betas.astype(np.float32), stim_ids=ids[rows],
                                 roi=np.array(["V1"] * v), subject=name)  # fmt: skip
    ds = FMRIDataset(stim, subs)
    return ds, EmbeddingTargets(ids, emb, "toy-image-v1", txt, "toy-text-v1")


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    ds, tg = _toy()
    train, test = ds.split("shared")
    return train, test.average_repeats(), tg


@pytest.fixture(scope="module")
def bridge(toy):
    train, _, tg = toy
    return MindBridge(**TINY).fit(train.select(["subj01", "subj02", "subj03"]), tg)


def _two_way(model, test, tg, subject, field="image"):
    pred = model.predict_embeddings(subject, test.subjects[subject].betas)[field]
    rows = tg.rows(test.subjects[subject].stim_ids)
    return two_way_identification(pred, getattr(tg, field)[rows])


# --------------------------------------------------------------------------------------
# components against independent references
# --------------------------------------------------------------------------------------
def _bins(n, p):
    """PyTorch's adaptive pooling bins: [floor(i n / p), ceil((i + 1) n / p))."""
    return [(math.floor(i * n / p), math.ceil((i + 1) * n / p)) for i in range(p)]


@pytest.mark.parametrize("n", [37, 64, 101])
def test_aggregation_matches_brute_force_and_numpy_interp(n):
    x = np.random.default_rng(n).normal(size=(3, n)).astype(np.float32)
    t = torch.from_numpy(x)
    p = 16
    mx = np.stack([[row[a:b].max() for a, b in _bins(n, p)] for row in x])
    av = np.stack([[row[a:b].mean() for a, b in _bins(n, p)] for row in x])
    np.testing.assert_allclose(aggregate(t, p, "max").numpy(), mx, rtol=1e-6)
    np.testing.assert_allclose(aggregate(t, p, "average").numpy(), av, rtol=1e-5, atol=1e-6)
    # align_corners=False: output i samples the input at (i + 0.5) n / p - 0.5
    pos = np.clip((np.arange(p) + 0.5) * n / p - 0.5, 0, n - 1)
    ip = np.stack([np.interp(pos, np.arange(n), row) for row in x])
    np.testing.assert_allclose(aggregate(t, p, "interpolation").numpy(), ip, rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="aggregation: expected one of"):
        aggregate(t, p, "median")


def test_soft_clip_loss_matches_numpy_and_reduces_to_clip():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    tau = 0.3
    soft = softmax(tn @ tn.T / tau, axis=1)
    logits = pn @ tn.T / tau
    ref = 0.5 * (-(log_softmax(logits, 1) * soft).sum(1).mean()
                 - (log_softmax(logits.T, 1) * soft).sum(1).mean())  # fmt: skip
    got = soft_clip_loss(torch.tensor(p), torch.tensor(t), tau).item()
    assert got == pytest.approx(ref, rel=1e-10)
    # orthogonal targets: the soft labels are one-hot -> CLIP's symmetric cross-entropy
    eye = np.eye(5)
    logits = pn[:5] @ eye.T / 0.05
    clip = 0.5 * (-np.diag(log_softmax(logits, 1)).mean()
                  - np.diag(log_softmax(logits.T, 1)).mean())
    assert soft_clip_loss(torch.tensor(p[:5]), torch.tensor(eye), 0.05).item() == pytest.approx(
        clip, rel=1e-6)


def test_fresh_adapters_are_identity_and_sizes_follow_the_paper_layout(bridge):
    from decoding.decoders.mindbridge import Adapter

    a = Adapter(10, 3)
    x = torch.randn(4, 10)
    torch.testing.assert_close(a(x), x)
    n = bridge.n_parameters_
    # embedder: adapter (P*b + b + b*P + P) + Linear(P, h) + LayerNorm(h); builder: the mirror
    P, h, b = 32, 32, 4
    adapter = 2 * P * b + b + P
    expected = (adapter + P * h + h + 2 * h) + (h * P + P + 2 * P + adapter)
    assert n["subj01"] == n["subj02"] == expected
    assert n["translator"] == (h * h + h + 2 * h) + (h * DIM + DIM) + (h * TDIM + TDIM)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def test_one_model_decodes_every_subject(bridge, toy):
    _, test, tg = toy
    for s in ("subj01", "subj02", "subj03"):
        assert _two_way(bridge, test, tg, s) > 0.85, s
        assert _two_way(bridge, test, tg, s, "text") > 0.75, s
    losses = bridge.history_
    assert len(losses) == TINY["n_epochs"] and losses[-1]["image"] < losses[0]["image"]
    assert {"image", "text", "rec", "cyc"} <= set(losses[-1])


def test_every_step_draws_an_equal_batch_per_subject_and_cycles_a_to_other_b(toy):
    train, _, tg = toy
    seen = []
    model = MindBridge(**{**TINY, "n_epochs": 1})

    def spy(module, args):  # a forward pre-hook on the real module: records what it gets
        betas, subjects, pairs = args
        seen.append(([x.shape for x in betas], list(subjects), list(pairs)))

    # fit builds the module, so hook through a subclass of the real module
    from decoding.decoders import mindbridge as mb

    class Hooked(mb.MindBridgeModule):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.register_forward_pre_hook(spy)

    original = mb.MindBridgeModule
    mb.MindBridgeModule = Hooked
    try:
        model.fit(train.select(["subj01", "subj02", "subj03"]), tg)
    finally:
        mb.MindBridgeModule = original
    n_images = max(np.unique(train.subjects[s].stim_ids).size for s in ("subj01", "subj02"))
    assert len(seen) == math.ceil(n_images / TINY["batch_size"])
    for shapes, subjects, pairs in seen:
        assert subjects == ["subj01", "subj02", "subj03"]
        assert [s[0] for s in shapes] == [TINY["batch_size"]] * 3
        assert [s[1] for s in shapes] == [40, 50, 60]
        assert sorted(a for a, _ in pairs) == [0, 1, 2] and all(a != b for a, b in pairs)
    one = MindBridge(cycle_pairs="one")._pairs(4, np.random.default_rng(0), 0)
    assert len(one) == 1 and one[0][0] != one[0][1]


def test_reset_tune_freezes_the_translator_and_learns_the_new_subject(bridge, toy):
    train, test, tg = toy
    new = train.select("subj04")
    ids = np.unique(new.subjects["subj04"].stim_ids)[:40]
    before = {k: v.clone() for k, v in bridge.module_.state_dict().items()}
    tuned = bridge.copy().reset_tune(new, tg, n_samples=40, source=train.select("subj01"))
    after = tuned.module_.state_dict()
    for k, v in before.items():  # the translator and the source subjects: bitwise unchanged
        torch.testing.assert_close(after[k], v, rtol=0, atol=0)
    assert "subj04" in tuned.subjects_ and "subj04" not in bridge.subjects_
    full = bridge.copy().reset_tune(new, tg, n_samples=40, strategy="full")
    assert not torch.equal(full.module_.translator.head_image.weight,
                           bridge.module_.translator.head_image.weight)
    mask = np.isin(new.subjects["subj04"].stim_ids, ids)
    part = FMRIDataset(new.stimuli, {"subj04": FMRISubject(
        betas=new.subjects["subj04"].betas[mask], stim_ids=new.subjects["subj04"].stim_ids[mask],
        roi=new.subjects["subj04"].roi, subject="subj04")})
    scratch = MindBridge(**{**TINY, "n_epochs": TINY["tune_epochs"]}).fit(part, tg)
    # whether reset-tuning beats scratch is the job's experiment (Table 2); here: both learn
    assert _two_way(tuned, test, tg, "subj04") > 0.75
    assert _two_way(scratch, test, tg, "subj04") > 0.6


def test_save_load_round_trip_and_identifier_checks(bridge, toy, tmp_path):
    _, test, tg = toy
    bridge.save_pretrained(tmp_path / "mb")
    cfg = json.loads((tmp_path / "mb" / "config.json").read_text())
    assert cfg["extra"]["image_embedding_id_"] == "toy-image-v1"
    assert cfg["extra"]["text_embedding_id_"] == "toy-text-v1"
    loaded = MindBridge.from_pretrained(tmp_path / "mb", image_embedding="toy-image-v1")
    x = test.subjects["subj02"].betas
    for k, v in bridge.predict_embeddings("subj02", x).items():
        np.testing.assert_array_equal(loaded.predict_embeddings("subj02", x)[k], v)
    with pytest.raises(ValueError, match="image_embedding: .* trained with 'toy-image-v1'"):
        MindBridge.from_pretrained(tmp_path / "mb", image_embedding="stimnet-v3-other")
    with pytest.raises(ValueError, match="text_embedding"):
        MindBridge.from_pretrained(tmp_path / "mb", text_embedding="stimtext-other")
    other = EmbeddingTargets(tg.ids, tg.image, "other-image", tg.text, tg.text_id)
    with pytest.raises(ValueError, match="targets.image_id: the model was trained with"):
        loaded.reset_tune(_toy_new(toy), other)


def _toy_new(toy):
    return toy[0].select("subj04")


def test_checkpoints_resume_to_the_same_weights(toy, tmp_path):
    train, _, tg = toy
    data = train.select(["subj01", "subj02"])
    kw = {**TINY, "n_epochs": 3}
    straight = MindBridge(**kw).fit(data, tg, checkpoint_dir=tmp_path / "a")
    assert (tmp_path / "a" / "mindbridge-fit.pt").is_file()

    class Kill(Exception):
        pass

    from decoding.decoders import mindbridge as mb

    calls = {"n": 0}
    original = mb.MindBridgeModule.forward

    def dying(self, *a, **k):  # the process "dies" in epoch 2, after epoch 1's checkpoint
        calls["n"] += 1
        if calls["n"] == 5:
            raise Kill
        return original(self, *a, **k)

    mb.MindBridgeModule.forward = dying
    try:
        with pytest.raises(Kill):
            MindBridge(**kw).fit(data, tg, checkpoint_dir=tmp_path / "b")
    finally:
        mb.MindBridgeModule.forward = original
    state = torch.load(tmp_path / "b" / "mindbridge-fit.pt", weights_only=False)
    assert state["epoch"] == 1
    resumed = MindBridge(**kw).fit(data, tg, checkpoint_dir=tmp_path / "b")
    for k, v in straight.module_.state_dict().items():
        torch.testing.assert_close(resumed.module_.state_dict()[k], v, rtol=0, atol=0)
    assert resumed.history_ == straight.history_
    with pytest.raises(ValueError, match="checkpoint_dir: .* another training"):
        MindBridge(**{**kw, "lr": 1e-2}).fit(data, tg, checkpoint_dir=tmp_path / "b")


def test_training_through_accelerate_matches_plain_torch(toy):
    pytest.importorskip("accelerate")
    train, _, tg = toy
    data = train.select(["subj01", "subj02"])
    kw = {**TINY, "n_epochs": 1}
    a = MindBridge(**kw, accelerate=True).fit(data, tg)
    b = MindBridge(**kw, accelerate=False).fit(data, tg)
    for k, v in b.module_.state_dict().items():
        torch.testing.assert_close(a.module_.state_dict()[k], v)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
def test_bad_inputs_get_named_errors(bridge, toy):
    train, test, tg = toy
    x = test.subjects["subj01"].betas
    with pytest.raises(ValueError, match="subject: 'subj04' was not seen at fit time"):
        bridge.predict_embeddings("subj04", test.subjects["subj04"].betas)
    with pytest.raises(ValueError, match=r"betas: expected .* \(n, 40\)"):
        bridge.predict_embeddings("subj01", x[:, :39])
    bad = x.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="betas: expected finite values, got 1 NaN"):
        bridge.predict_embeddings("subj01", bad)
    with pytest.raises(ValueError, match="n_samples: 10 samples are fewer than batch_size=20"):
        bridge.copy().reset_tune(train.select("subj04"), tg, n_samples=10)
    with pytest.raises(ValueError, match="batch_size: subject 'subj01' has"):
        MindBridge(**{**TINY, "batch_size": 500}).fit(train.select("subj01"), tg)
    with pytest.raises(ValueError, match="aggregation: expected one of"):
        MindBridge(aggregation="mean").fit(train, tg)
    with pytest.raises(ValueError, match="strategy: expected 'reset' or 'full'"):
        bridge.copy().reset_tune(train.select("subj04"), tg, strategy="lora")
    missing = EmbeddingTargets(tg.ids[:-5], tg.image[:-5], tg.image_id, tg.text[:-5], tg.text_id)
    with pytest.raises(ValueError, match="no embedding for stimulus ids"):
        MindBridge(**TINY).fit(train.select("subj04"), missing)
    with pytest.raises(ValueError, match="image: expected finite embeddings"):
        EmbeddingTargets(tg.ids, np.full_like(tg.image, np.nan), "x")


def _tiny_pipeline(di, dt, image_id, text_id):
    """A real StimulusDiffusionPipeline at tiny size with random weights."""
    gen = pytest.importorskip("decoding.generation")
    from decoding.generation.diffusion import training_scheduler

    torch.manual_seed(0)
    cond = gen.EmbeddingConditioner(di, dt, image_id, text_id)
    unet = gen.make_unet(cond.cond_dim, block_out_channels=(8, 16), layers_per_block=1)
    pipe = gen.StimulusDiffusionPipeline(
        vae=gen.StimulusAutoencoder(block_out_channels=(8, 8, 16)), unet=unet,
        scheduler=gen.make_scheduler("dpmsolver++", training_scheduler().config),
        conditioner=cond)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_reconstruct_through_a_tiny_real_pipeline_and_refuse_mismatches(bridge, toy):
    _, test, _ = toy

    tiny = _tiny_pipeline
    pipe = tiny(DIM, TDIM, "toy-image-v1", "toy-text-v1")
    x = test.subjects["subj01"].betas[:3]
    out = bridge.reconstruct("subj01", x, pipeline=pipe, num_inference_steps=2)
    assert out.shape == (3, 64, 64, 3) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, bridge.reconstruct("subj01", x, pipeline=pipe,
                                                          num_inference_steps=2))  # fmt: skip
    with pytest.raises(ValueError, match="pipeline.image_embed_dim: the model predicts 8-wide"):
        bridge.reconstruct("subj01", x, pipeline=tiny(16, TDIM, "toy-image-v1", "toy-text-v1"))
    with pytest.raises(ValueError, match="pipeline.text_embed_dim"):
        bridge.reconstruct("subj01", x, pipeline=tiny(DIM, 6, "toy-image-v1", "toy-text-v1"))
    with pytest.raises(ValueError, match="pipeline.image_embedding_id"):
        bridge.reconstruct("subj01", x, pipeline=tiny(DIM, TDIM, "stimnet-v3-x", "toy-text-v1"))


# --------------------------------------------------------------------------------------
# real-NSD targets: a local CLIP folder (tiny, random, saved to tmp)
# --------------------------------------------------------------------------------------
def test_clip_targets_from_a_tiny_local_clip_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers import CLIPImageProcessor, CLIPTokenizer

    words = ["a", "red", "cube", "blue", "torus"]
    chars = sorted({c for w in words for c in w})
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for tok in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(tok, len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                        model_max_length=12)  # fmt: skip
    torch.manual_seed(0)
    proj = 6
    cfg = transformers.CLIPConfig(
        vision_config=dict(image_size=16, patch_size=8, hidden_size=8, intermediate_size=8,
                           num_hidden_layers=1, num_attention_heads=2, projection_dim=proj),
        text_config=dict(vocab_size=len(vocab), hidden_size=8, intermediate_size=8,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=proj),
        projection_dim=proj)  # fmt: skip
    clip = transformers.CLIPModel(cfg).eval()
    folder = tmp_path / "tiny-clip"  # laid out as a downloaded CLIP folder is
    clip.save_pretrained(folder)
    tok.save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 16},
                                   crop_size={"height": 16, "width": 16})  # fmt: skip
    processor.save_pretrained(folder)

    rng = np.random.default_rng(0)
    stim = Stimuli(images=rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8),
                   ids=np.array([4, 9, 2]))  # fmt: skip
    caps = ["a red cube", "a blue torus", "a cube"]
    pooled = clip_targets(folder, stim, captions=caps)
    assert pooled.image_id == "hf-clip-vision-tiny-clip-pooled"
    assert pooled.text_id == "hf-clip-text-tiny-clip-pooled"
    with torch.no_grad():  # the independent reference: CLIPModel's own joint-space features
        px = processor(images=list(stim.images), return_tensors="pt")["pixel_values"]
        ids = tok(caps, padding="max_length", max_length=12, return_tensors="pt")["input_ids"]

        def tensor(out):  # transformers 5 may return a model output instead of a tensor
            return getattr(out, "pooler_output", out) if not torch.is_tensor(out) else out

        ref_img = tensor(clip.get_image_features(pixel_values=px)).numpy()
        ref_txt = tensor(clip.get_text_features(input_ids=ids)).numpy()
    np.testing.assert_allclose(pooled.image, ref_img, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled.text, ref_txt, rtol=1e-4, atol=1e-5)

    tokens = clip_targets(folder, stim, captions=caps, hidden_states=True)
    n_tok = 1 + (16 // 8) ** 2
    assert tokens.image.shape == (3, n_tok * proj) and tokens.text.shape == (3, 12 * proj)
    # every image token divided by the CLS token's norm: the CLS row has norm 1; every text
    # token divided by the pooled (end-of-text) embedding's norm: that token has norm 1
    np.testing.assert_allclose(np.linalg.norm(tokens.image[:, :proj], axis=1), 1.0, rtol=1e-5)
    eos = (ids == 1).int().argmax(-1).numpy()
    txt = tokens.text.reshape(3, 12, proj)[np.arange(3), eos]
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="CLIP folder with config.json"):
        clip_targets(tmp_path / "nowhere", stim)
    with pytest.raises(ValueError, match="captions: expected one caption per stimulus"):
        clip_targets(folder, stim, captions=caps[:2])

    # the job's real-NSD path: {name: clip, path: ...} and a JSON {id: caption} file
    from decoding.jobs.mindbridge import MindBridgeParams, _targets

    (tmp_path / "caps.json").write_text(json.dumps({"4": caps[0], "9": caps[1], "2": caps[2]}))
    params = MindBridgeParams(image_features={"name": "clip", "path": str(folder)},
                              captions=str(tmp_path / "caps.json"))  # fmt: skip
    got = _targets(params, None, stim)
    np.testing.assert_array_equal(got.text, pooled.text)
    assert got.image_id == pooled.image_id
    (tmp_path / "caps.json").write_text(json.dumps({"4": caps[0]}))
    with pytest.raises(ValueError, match=r"captions: .* no caption for stimulus ids \[9, 2\]"):
        _targets(params, None, stim)


# --------------------------------------------------------------------------------------
# the job, through the front door
# --------------------------------------------------------------------------------------
def test_job_runs_through_the_cli_at_smoke_level(tmp_path, monkeypatch):
    from pathlib import Path

    import yaml

    from decoding.features import get_extractor
    from decoding.semantics import get_text_encoder
    from neurosuite import cli

    monkeypatch.setenv("NEUROSUITE_DATA", str(tmp_path / "data"))
    config = Path(__file__).parents[2] / "configs" / "decode" / "mindbridge.yaml"
    smoke = yaml.safe_load(config.read_text())["smoke"]
    # a tiny real generator conditioned on the smoke level's (tiny) embeddings
    fx = get_extractor(**{**smoke["image_features"], "verbose": False})
    tx = get_text_encoder(**{**smoke["text_encoder"], "features": smoke["image_features"],
                             "verbose": False})  # fmt: skip
    _tiny_pipeline(fx.dim, tx.dim, fx.identifier, tx.identifier).save_pretrained(tmp_path / "p")
    out = tmp_path / "run"
    assert cli.main(["run", str(config), "--smoke", "--quiet", "--out", str(out),
                     "--set", f"params.pipeline={tmp_path / 'p'}", "--set",
                     "params.experiments=[table1,table2,ablations,synthesis,reconstructions,"
                     "pixels]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert {"table1", "table2", "ablations", "synthesis"} <= set(metrics["tables"])
    rows = {(r["model"], r["subject"]): r for r in metrics["tables"]["table1"]}
    for key in (("MindBridge (1 model)", "mean"), ("per-subject", "mean"),
                ("upper bound (true embeddings)", "mean")):
        assert {"pixcorr", "ssim", "two_way_low", "two_way_high", "shape_accuracy",
                "colour_accuracy"} <= set(rows[key]), key
    assert {r["strategy"] for r in metrics["tables"]["table2"]} == {"reset", "full", "scratch"}
    paths = {r["path"] for r in metrics["tables"]["pixels"]}
    assert paths == {"decoded embeddings", "+ prior", "+ prior + read-out", "+ low-level image",
                     "+ prior + read-out + low-level (default)", "low-level image alone",
                     "read-out from the betas (reference)"}
    claims = {c["name"]: c for c in json.loads((out / "claims.json").read_text())}
    assert {"one_model", "reset_tuning", "aggregation", "losses", "synthesis", "prior",
            "readout", "low_level", "reconstructions"} <= set(claims)
    assert all(c["verdict"] in ("holds", "weaker", "does not hold") for c in claims.values())
    saved = MindBridge.from_pretrained(out / "checkpoints" / "mindbridge")
    assert list(saved.subjects_) == ["subj01", "subj02"]
    assert (out / "figures" / "grid.png").is_file() and (out / "figures" / "pixels.png").is_file()
    for part in ("prior", "low_level", "readout"):
        assert (out / "checkpoints" / "mindbridge" / part).is_dir(), part


# --------------------------------------------------------------------------------------
# the path to pixels: embedding prior and low-level decoders held by the model
# --------------------------------------------------------------------------------------
def test_prior_is_applied_by_reconstruct_and_saved_with_the_model(bridge, toy, tmp_path):
    from decoding.generation import Conditioning
    from decoding.generation.prior import EmbeddingPrior

    train, test, tg = toy
    pipe = _tiny_pipeline(DIM, TDIM, "toy-image-v1", "toy-text-v1")
    m = bridge.copy()
    prior = m.fit_prior(train.select(["subj01", "subj02", "subj03"]), tg)
    assert m.prior_ is prior and prior.method == "knn" and prior.k == 4
    ids = np.unique(np.concatenate([train.subjects[s].stim_ids for s in ("subj01", "subj02",
                                                                           "subj03")]))
    np.testing.assert_allclose(prior.bank_["image"], _unit(tg.image[tg.rows(ids)]), atol=1e-6)
    x = test.subjects["subj01"].betas[:4]
    kw = dict(pipeline=pipe, num_inference_steps=2, low_level=False)
    # reconstruct = the pipeline on the prior's output (the wiring), and differs without it
    dec = m.predict_embeddings("subj01", x)
    mapped = prior.transform(Conditioning(dec["image"], dec["text"], tg.image_id, tg.text_id))
    want = pipe(image_embeds=torch.from_numpy(mapped.image_embeds),
                text_embeds=torch.from_numpy(mapped.text_embeds), num_inference_steps=2,
                generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    got = m.reconstruct("subj01", x, **kw)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - m.reconstruct("subj01", x, prior=False, **kw)).max() > 1e-3
    # an explicit prior fitted on other embeddings is refused, naming it
    other = EmbeddingPrior("knn", k=2).fit(*[Conditioning(_unit(tg.image), None, "other-id",
                                                          None)] * 2)  # fmt: skip
    with pytest.raises(ValueError, match="another embedding identifier"):
        m.reconstruct("subj01", x, prior=other, **kw)
    with pytest.raises(ValueError, match="prior: expected True, False or an EmbeddingPrior"):
        m.reconstruct("subj01", x, prior="knn", **kw)
    with pytest.raises(ValueError, match="'moments' prior needs decoded embeddings"):
        m.copy().fit_prior(train, tg, method="moments")
    # saved with the model, same images after loading
    m.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "prior" / "config.json").is_file()
    back = MindBridge.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(back.reconstruct("subj01", x, **kw), got)
    # a new fit forgets the prior of the old one
    assert not hasattr(MindBridge(**{**TINY, "n_epochs": 1}).fit(train.select("subj01"), tg),
                       "prior_")  # fmt: skip


def test_low_level_path_is_ridge_on_latents_and_seeds_img2img(bridge, toy, tmp_path):
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    from decoding.generation.training import encode_images

    train, test, tg = toy
    pipe = _tiny_pipeline(DIM, TDIM, "toy-image-v1", "toy-text-v1")
    m = bridge.copy()
    decs = m.fit_low_level(train.select("subj01"), pipe, alphas=[1.0, 100.0])
    assert set(decs) == {"subj01"} and m.low_level_ is decs
    # the reference: sklearn ridge on the repeat-averaged betas -> latents of the 64 px images
    avg = train.select("subj01").average_repeats().subjects["subj01"]
    from decoding.decoders.mindbridge import _resized

    ims = _resized(train.stimuli.images[train.stimuli.index_of(avg.stim_ids)], 64)
    with torch.no_grad():
        z = encode_images(pipe.vae, ims).numpy()
    sc = StandardScaler().fit(avg.betas)
    ref = RidgeCV(alphas=[1.0, 100.0]).fit(sc.transform(avg.betas), z.reshape(len(z), -1))
    x = test.subjects["subj01"].betas[:3]
    np.testing.assert_allclose(decs["subj01"].predict(x).reshape(3, -1),
                               ref.predict(sc.transform(x)), rtol=1e-3, atol=1e-3)  # fmt: skip
    low = m.low_level_images("subj01", x, pipe)
    assert low.shape == (3, 64, 64, 3)
    # strength 0: the low-level image through the autoencoder, untouched by the denoiser
    kw = dict(pipeline=pipe, num_inference_steps=4, prior=False)
    out0 = m.reconstruct("subj01", x, strength=0.0, **kw)
    want = pipe(image_embeds=torch.zeros(3, DIM), init_images=low, strength=0.0).images
    np.testing.assert_allclose(out0, want, atol=1e-5)
    full = m.reconstruct("subj01", x, strength=1.0, **kw)
    assert np.abs(full - out0).max() > 1e-3
    # subjects without a decoder start from noise, as low_level=False does
    y = test.subjects["subj02"].betas[:3]
    np.testing.assert_array_equal(m.reconstruct("subj02", y, **kw),
                                  m.reconstruct("subj02", y, low_level=False, **kw))
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ValueError, match="strength: expected a number in \\[0, 1\\]"):
            m.reconstruct("subj01", x, strength=bad, **kw)
    with pytest.raises(ValueError, match="rois: subj01 has no ROI \\['FFA'\\]"):
        m.fit_low_level(train.select("subj01"), pipe, rois=["FFA"])
    with pytest.raises(ValueError, match="no low-level decoder for 'subj03'"):
        m.low_level_images("subj03", test.subjects["subj03"].betas[:2], pipe)
    m.save_pretrained(tmp_path / "m")
    back = MindBridge.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(back.low_level_voxels_["subj01"], m.low_level_voxels_["subj01"])
    np.testing.assert_array_equal(back.reconstruct("subj01", x, **kw),
                                  m.reconstruct("subj01", x, **kw))


def test_label_readout_is_weighed_by_the_prior_in_reconstruct(bridge, toy, tmp_path):
    from decoding.generation import Conditioning

    train, test, tg = toy
    pipe = _tiny_pipeline(DIM, TDIM, "toy-image-v1", "toy-text-v1")
    m = bridge.copy()
    # a class per stimulus that the betas tell (the sign of the first embedding dimension)
    rows = tg.rows(train.stimuli.ids)
    labels = (tg.image[rows, 0] > 0).astype(np.int64)
    srcs = train.select(["subj01", "subj02", "subj03"])
    prior = m.fit_prior(srcs, tg, labels=labels, label_weight=50.0)
    readouts = m.fit_label_readout(srcs, labels)
    assert set(readouts) == {"subj01", "subj02", "subj03"} and prior.bank_labels_ is not None
    x = test.subjects["subj01"].betas[:4]
    truth = (tg.image[tg.rows(test.subjects["subj01"].stim_ids[:4]), 0] > 0).astype(int)
    lp = readouts["subj01"].predict_log_proba(x)
    assert np.mean(lp.argmax(1) == truth) >= 0.75  # the read-out reads the class
    dec = m.predict_embeddings("subj01", x)
    mapped = prior.transform(Conditioning(dec["image"], dec["text"], tg.image_id, tg.text_id),
                             label_log_proba=lp)  # fmt: skip
    kw = dict(pipeline=pipe, num_inference_steps=2, low_level=False)
    want = pipe(image_embeds=torch.from_numpy(mapped.image_embeds),
                text_embeds=torch.from_numpy(mapped.text_embeds), num_inference_steps=2,
                generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    got = m.reconstruct("subj01", x, **kw)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the chosen true embeddings carry the class the read-out gave
    bank_cls = prior.bank_labels_[np.argmax(mapped.image_embeds @ prior.bank_["image"].T, 1)]
    np.testing.assert_array_equal(bank_cls, lp.argmax(1))
    m.save_pretrained(tmp_path / "m")
    back = MindBridge.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(back.reconstruct("subj01", x, **kw), got)
    with pytest.raises(ValueError, match="labels: 'hue' is not a stimulus attribute"):
        m.fit_label_readout(srcs, "hue")
    with pytest.raises(ValueError, match="labels: expected .* integer classes"):
        m.fit_prior(srcs, tg, labels=labels[:-1])
