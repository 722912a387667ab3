"""EmbeddingPrior, LowLevelDecoder and cross_fitted_predictions against independent references."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from decoding.generation.autoencoder import StimulusAutoencoder
from decoding.generation.pipeline import Conditioning
from decoding.generation.prior import EmbeddingPrior, LowLevelDecoder, cross_fitted_predictions

torch.set_num_threads(1)

D_IMG, D_TXT = 24, 12


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cond(img, txt, img_id="img-v1", txt_id="txt-v1"):
    txt = None if txt is None else np.asarray(txt, dtype=np.float32)
    return Conditioning(np.asarray(img, dtype=np.float32), txt, img_id, txt_id if txt is not None
                        else "")  # fmt: skip


@pytest.fixture(scope="module")
def moments_data():
    """True embeddings: unit-normed around a common mean with anisotropic spread; decoded:
    0.3 * true + noise, unit-normed (shrunk towards the mean, noisy)."""
    rng = np.random.default_rng(0)

    def block(d):
        mean = _unit(rng.standard_normal((1, d)))[0]
        basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
        return mean, basis, np.geomspace(0.4, 0.05, d)

    spec = {"img": block(D_IMG), "txt": block(D_TXT)}

    def draw(n):
        true, dec = {}, {}
        for key, (mean, basis, scales) in spec.items():
            t = _unit(mean + (rng.standard_normal((n, len(mean))) * scales) @ basis.T)
            true[key] = t
            dec[key] = _unit(0.3 * t + 0.04 * rng.standard_normal(t.shape))
        return _cond(true["img"], true["txt"]), _cond(dec["img"], dec["txt"])

    return draw(2000), draw(1000)  # (train true, train decoded), (test true, test decoded)


@pytest.fixture(scope="module")
def cluster_data():
    """A bank of 500 true embeddings around 8 cluster centres; decoded = bank rows shrunk
    towards the bank mean plus noise."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 500)
    centres, bank, dec = {}, {}, {}
    for key, d in (("img", D_IMG), ("txt", D_TXT)):
        c = _unit(rng.standard_normal((8, d)))
        b = _unit(c[labels] + 0.35 * rng.standard_normal((500, d)) / np.sqrt(d))
        centres[key], bank[key] = c, b
        dec[key] = _unit(0.3 * b + 0.7 * b.mean(0) + 0.15 * rng.standard_normal(b.shape)
                         / np.sqrt(d))  # fmt: skip
    return labels, centres, _cond(bank["img"], bank["txt"]), _cond(dec["img"], dec["txt"])


# -- moments -----------------------------------------------------------------------------------
def test_moments_undoes_shrinkage_in_distribution(moments_data):
    (true_tr, dec_tr), (true_te, dec_te) = moments_data
    prior = EmbeddingPrior("moments").fit(dec_tr, true_tr)
    out = prior.transform(dec_te)  # held-out rows
    for field in ("image_embeds", "text_embeds"):
        got, true, dec = (getattr(c, field) for c in (out, true_te, dec_te))
        assert got.dtype == np.float32 and got.shape == true.shape
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        ratio = got.std(0) / true.std(0)
        assert np.all(np.abs(ratio - 1) < 0.15), ratio
        assert np.abs(dec.std(0) / true.std(0) - 1).max() > 0.25  # the decoded ones did not
        assert (got * true).sum(1).mean() >= (dec * true).sum(1).mean()
    assert (out.image_embedding_id, out.text_embedding_id) == ("img-v1", "txt-v1")


def test_moments_image_only(moments_data):
    (true_tr, dec_tr), (true_te, dec_te) = moments_data
    img = lambda c: _cond(c.image_embeds, None)  # noqa: E731
    prior = EmbeddingPrior("moments").fit(img(dec_tr), img(true_tr))
    assert prior.text_dim_ == 0 and prior.n_features_in_ == D_IMG
    out = prior.transform(img(dec_te))
    assert out.text_embeds is None
    full = EmbeddingPrior("moments").fit(dec_tr, true_tr).transform(dec_te)
    np.testing.assert_allclose(out.image_embeds, full.image_embeds, atol=1e-6)  # blockwise


# -- knn ---------------------------------------------------------------------------------------
def test_knn_moves_towards_the_cluster_centre(cluster_data):
    labels, centres, bank, dec = cluster_data
    out = EmbeddingPrior("knn", k=8, temperature=0.05).fit(dec, bank).transform(dec)
    for field, key in (("image_embeds", "img"), ("text_embeds", "txt")):
        c = centres[key][labels]
        before = (getattr(dec, field) * c).sum(1)
        after = (getattr(out, field) * c).sum(1)
        np.testing.assert_allclose(np.linalg.norm(getattr(out, field), axis=1), 1, atol=1e-5)
        assert after.mean() > before.mean() + 0.1, (after.mean(), before.mean())
        assert (after > before).mean() > 0.9


@pytest.mark.parametrize("k, temperature", [(1, 0.05), (8, 1e-6)])
def test_knn_small_temperature_returns_the_nearest_bank_row(cluster_data, k, temperature):
    _, _, bank, dec = cluster_data
    w = 0.7
    prior = EmbeddingPrior("knn", k=k, temperature=temperature, text_weight=w).fit(dec, bank)
    out = prior.transform(dec)
    # brute force: cosine over the concatenated (image, w * text) blocks
    cat = lambda c: _unit(np.hstack([_unit(c.image_embeds.astype(np.float64)),  # noqa: E731
                                     w * _unit(c.text_embeds.astype(np.float64))]))  # fmt: skip
    nearest = np.argmax(cat(dec) @ cat(bank).T, axis=1)
    np.testing.assert_allclose(out.image_embeds, bank.image_embeds[nearest], atol=1e-6)
    np.testing.assert_allclose(out.text_embeds, bank.text_embeds[nearest], atol=1e-6)


def test_knn_bank_differs_from_target(cluster_data):
    _, _, bank, dec = cluster_data
    small = bank.subset(slice(0, 50))
    prior = EmbeddingPrior("knn", k=1).fit(dec, bank, bank=small)
    out = prior.transform(dec)
    sims = out.image_embeds @ small.image_embeds.T
    assert np.allclose(sims.max(1), 1, atol=1e-5)  # every output is a row of the small bank


def test_identity_passes_through(cluster_data):
    _, _, bank, dec = cluster_data
    out = EmbeddingPrior("identity").fit(dec, bank).transform(dec)
    np.testing.assert_array_equal(out.image_embeds, dec.image_embeds)
    np.testing.assert_array_equal(out.text_embeds, dec.text_embeds)


@pytest.mark.parametrize("method", ["knn", "moments", "identity"])
@pytest.mark.parametrize("with_text", [True, False])
def test_prior_save_load_round_trip(tmp_path, cluster_data, method, with_text):
    _, _, bank, dec = cluster_data
    if not with_text:
        bank, dec = _cond(bank.image_embeds, None), _cond(dec.image_embeds, None)
    prior = EmbeddingPrior(method, k=5, temperature=0.1, text_weight=0.5).fit(dec, bank)
    prior.save_pretrained(tmp_path / "prior")
    assert sorted(p.name for p in (tmp_path / "prior").iterdir()) == [
        "config.json", "model.safetensors"]  # fmt: skip
    loaded = EmbeddingPrior.from_pretrained(tmp_path / "prior")
    assert loaded.get_params() == prior.get_params()
    a, b = prior.transform(dec), loaded.transform(dec)
    np.testing.assert_array_equal(a.image_embeds, b.image_embeds)
    if with_text:
        np.testing.assert_array_equal(a.text_embeds, b.text_embeds)
    else:
        assert b.text_embeds is None
    assert (b.image_embedding_id, b.text_embedding_id) == (a.image_embedding_id,
                                                           a.text_embedding_id)  # fmt: skip


# -- errors ------------------------------------------------------------------------------------
def test_prior_errors_are_named(cluster_data):
    _, _, bank, dec = cluster_data
    with pytest.raises(NotFittedError):
        EmbeddingPrior().transform(dec)
    other_img = Conditioning(dec.image_embeds, dec.text_embeds, "other-net", "txt-v1")
    with pytest.raises(ValueError, match="image_embedding_id.*'other-net'.*'img-v1'"):
        EmbeddingPrior().fit(other_img, bank)
    with pytest.raises(ValueError, match=r"decoded: 100 rows, expected 500"):
        EmbeddingPrior().fit(dec.subset(slice(0, 100)), bank)
    with pytest.raises(ValueError, match="method: expected one of"):
        EmbeddingPrior("diffusion").fit(dec, bank)
    with pytest.raises(ValueError, match="temperature: expected a finite number > 0, got 0"):
        EmbeddingPrior(temperature=0).fit(dec, bank)

    prior = EmbeddingPrior("moments").fit(dec, bank)
    other_txt = Conditioning(dec.image_embeds, dec.text_embeds, "img-v1", "other-text")
    msg = "text_embedding_id.*'other-text'.*'txt-v1'.*a prior trained on another embedding"
    with pytest.raises(ValueError, match=msg):
        prior.transform(other_txt)
    narrow = _cond(dec.image_embeds[:, :10], dec.text_embeds)
    with pytest.raises(ValueError, match=f"image_embeds: width 10, expected {D_IMG}.*or width"):
        prior.transform(narrow)
    with pytest.raises(ValueError, match=f"text_embeds: width 0, expected {D_TXT}"):
        prior.transform(Conditioning(dec.image_embeds, None, "img-v1", "txt-v1"))
    bad = dec.image_embeds.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"decoded.image_embeds: contains NaN or inf.*1 of 500"):
        prior.transform(_cond(bad, dec.text_embeds))


# -- cross-fitting -----------------------------------------------------------------------------
def test_cross_fitted_predictions_are_out_of_fold():
    n = 53
    trains = []

    def fit_predict(train_idx, test_idx):
        trains.append(set(train_idx.tolist()))
        assert not set(test_idx.tolist()) & trains[-1]
        return np.column_stack([test_idx, np.full(len(test_idx), len(trains) - 1)])

    out = cross_fitted_predictions(fit_predict, np.zeros((n, 3)), n_splits=5)
    assert len(trains) == 5
    np.testing.assert_array_equal(out[:, 0], np.arange(n))  # every row, at its place
    for i, fold in enumerate(out[:, 1]):
        assert i not in trains[fold]
    assert sorted(np.bincount(out[:, 1]).tolist()) == [10, 10, 11, 11, 11]


def test_cross_fitted_predictions_match_cross_val_predict():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 7))
    y = X @ rng.standard_normal((7, 3)) + 0.1 * rng.standard_normal((60, 3))
    ours = cross_fitted_predictions(
        lambda tr, te: Ridge(alpha=3.0).fit(X[tr], y[tr]).predict(X[te]), X, 5, random_state=4
    )
    ref = cross_val_predict(Ridge(alpha=3.0), X, y, cv=KFold(5, shuffle=True, random_state=4))
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)

    # dict (MindBridge.predict_embeddings) and Conditioning outputs are put together too
    d = cross_fitted_predictions(lambda tr, te: {"image": X[te], "text": y[te]}, X, 3)
    np.testing.assert_array_equal(d["image"], X)
    np.testing.assert_array_equal(d["text"], y)
    c = cross_fitted_predictions(lambda tr, te: _cond(X[te], y[te]), X, 4)
    np.testing.assert_array_equal(c.image_embeds, X.astype(np.float32))
    assert c.text_embedding_id == "txt-v1"
    with pytest.raises(ValueError, match="n_splits: expected at most len"):
        cross_fitted_predictions(lambda tr, te: X[te], X[:3], 5)
    with pytest.raises(ValueError, match="fit_predict: returned predictions of shape"):
        cross_fitted_predictions(lambda tr, te: X[:2], X, 5)


# -- low-level decoder -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def latent_data():
    rng = np.random.default_rng(3)
    n, v = 240, 40
    betas = rng.standard_normal((n, v)) * rng.uniform(0.5, 3, v) + rng.normal(0, 2, v)
    W = rng.standard_normal((4 * 16 * 16, v)) / np.sqrt(v)
    latents = (betas @ W.T + 0.1 * rng.standard_normal((n, 4 * 16 * 16))).reshape(n, 4, 16, 16)
    return betas.astype(np.float32), latents.astype(np.float32)


@pytest.fixture(scope="module")
def low_level(latent_data):
    betas, latents = latent_data
    return LowLevelDecoder().fit(betas[:180], latents[:180])


def test_low_level_decoder_recovers_a_linear_map(latent_data, low_level):
    betas, latents = latent_data
    dec = low_level
    assert dec.latent_shape_ == (4, 16, 16) and dec.n_features_in_ == 40
    assert dec.alpha_ in np.logspace(0, 5, 11)
    pred = dec.predict(betas[180:])
    assert pred.shape == (60, 4, 16, 16) and pred.dtype == np.float32
    assert r2_score(latents[180:].reshape(60, -1), pred.reshape(60, -1)) > 0.9
    ref = make_pipeline(StandardScaler(), Ridge(alpha=dec.alpha_)).fit(
        betas[:180].astype(np.float64), latents[:180].reshape(180, -1).astype(np.float64))
    np.testing.assert_allclose(pred.reshape(60, -1), ref.predict(betas[180:].astype(np.float64)),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    # torch latents give the same fit
    again = LowLevelDecoder().fit(betas[:180], torch.from_numpy(latents[:180]))
    np.testing.assert_array_equal(again.predict(betas[180:]), pred)


def test_low_level_predict_images(latent_data, low_level):
    betas, _ = latent_data
    torch.manual_seed(0)
    vae = StimulusAutoencoder(block_out_channels=(8, 8, 16)).eval()
    ims = low_level.predict_images(betas[:5], vae, batch_size=2)
    assert ims.shape == (5, 64, 64, 3) and ims.dtype == np.float32
    assert ims.min() >= 0 and ims.max() <= 1 and ims.std() > 0
    with torch.no_grad():  # the same decode by hand
        z = torch.from_numpy(low_level.predict(betas[:5]))
        ref = ((vae.decode(z) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ims, ref, atol=1e-6)


def test_low_level_errors_are_named(latent_data, low_level):
    betas, latents = latent_data
    with pytest.raises(NotFittedError):
        LowLevelDecoder().predict(betas)
    with pytest.raises(ValueError, match="betas: 39 voxels given, expected 40.*another voxel"):
        low_level.predict(betas[:, :39])
    bad = betas[:10].copy()
    bad[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"betas: contains NaN or inf values \(in 1 of 10"):
        low_level.predict(bad)
    with pytest.raises(ValueError, match=r"latents: expected shape .*got \(240, 1024\)"):
        LowLevelDecoder().fit(betas, latents.reshape(240, -1))
    with pytest.raises(ValueError, match="alphas: expected a non-empty list"):
        LowLevelDecoder(alphas=[1.0, -2.0]).fit(betas, latents)


def test_low_level_save_load_round_trip(tmp_path, latent_data, low_level):
    betas, _ = latent_data
    low_level.save_pretrained(tmp_path / "ll")
    loaded = LowLevelDecoder.from_pretrained(tmp_path / "ll")
    assert loaded.alpha_ == low_level.alpha_ and loaded.latent_shape_ == (4, 16, 16)
    np.testing.assert_array_equal(loaded.predict(betas), low_level.predict(betas))


# -- a class read from the brain, weighed by the k-NN prior ------------------------------------
def test_label_readout_is_scikit_learns_logistic_regression(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from decoding.generation.prior import LabelReadout

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200) * 2  # classes 0, 2, 4: 1 and 3 never seen
    X = rng.standard_normal((200, 30)) + 0.8 * np.eye(30)[y]
    ro = LabelReadout(C=0.1).fit(X, y)
    sc = StandardScaler().fit(X)
    ref = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(X), y)
    Xt = rng.standard_normal((20, 30))
    lp = ro.predict_log_proba(Xt)
    assert lp.shape == (20, 5) and np.all(lp[:, [1, 3]] == -1e4)
    np.testing.assert_allclose(lp[:, [0, 2, 4]], ref.predict_log_proba(sc.transform(Xt)),
                               atol=1e-8)  # fmt: skip
    np.testing.assert_array_equal(ro.predict(Xt), ref.predict(sc.transform(Xt)))
    ro.save_pretrained(tmp_path / "ro")
    np.testing.assert_allclose(LabelReadout.from_pretrained(tmp_path / "ro")
                               .predict_log_proba(Xt), lp, atol=1e-12)  # fmt: skip
    # two classes: scikit-learn's single row becomes the symmetric pair, same posterior
    y2 = (y > 0).astype(int)
    ro2 = LabelReadout(C=0.1).fit(X, y2)
    ref2 = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(X), y2)
    np.testing.assert_allclose(ro2.predict_log_proba(Xt), ref2.predict_log_proba(
        sc.transform(Xt)), atol=1e-8)  # fmt: skip
    with pytest.raises(ValueError, match="labels: expected 200 integer classes"):
        LabelReadout().fit(X, y.astype(float))
    with pytest.raises(ValueError, match="at least 2 classes"):
        LabelReadout().fit(X, np.zeros(200, int))
    with pytest.raises(ValueError, match="betas: 29 voxels given, expected 30"):
        ro.predict_log_proba(Xt[:, :29])


def test_knn_prior_weighs_the_label_posterior():
    rng = np.random.default_rng(4)
    n_bank = 60
    bank = _cond(_unit(rng.standard_normal((n_bank, D_IMG))), _unit(rng.standard_normal(
        (n_bank, D_TXT))))  # fmt: skip
    labels = np.arange(n_bank) % 3
    query = _cond(_unit(rng.standard_normal((5, D_IMG))), _unit(rng.standard_normal((5, D_TXT))))
    plain = EmbeddingPrior("knn", k=1, temperature=0.05).fit(bank, bank)
    pr = EmbeddingPrior("knn", k=1, temperature=0.05, label_weight=1e3).fit(
        bank, bank, bank_labels=labels)  # fmt: skip
    # no posterior, or a flat one: the plain k-NN
    np.testing.assert_allclose(pr.transform(query).image_embeds, plain.transform(query)
                               .image_embeds)  # fmt: skip
    flat = np.log(np.full((5, 3), 1 / 3))
    np.testing.assert_allclose(pr.transform(query, label_log_proba=flat).image_embeds,
                               plain.transform(query).image_embeds, atol=1e-6)  # fmt: skip
    # a sure posterior on class c: the most similar bank row *of class c*
    want_cls = np.array([0, 1, 2, 1, 0])
    lp = np.log(np.full((5, 3), 1e-6))
    lp[np.arange(5), want_cls] = 0.0
    got = pr.transform(query, label_log_proba=lp).image_embeds
    sim = (query.image_embeds @ bank.image_embeds.T + query.text_embeds @ bank.text_embeds.T) / 2
    for i, c in enumerate(want_cls):
        j = np.flatnonzero(labels == c)[np.argmax(sim[i, labels == c])]
        np.testing.assert_allclose(got[i], bank.image_embeds[j], atol=1e-6)
    with pytest.raises(ValueError, match="label_log_proba: this prior has no bank_labels"):
        plain.transform(query, label_log_proba=lp)
    with pytest.raises(ValueError, match="label_log_proba: expected shape \\(5, >= 3\\)"):
        pr.transform(query, label_log_proba=lp[:, :2])
    with pytest.raises(ValueError, match="bank_labels: only the 'knn' prior"):
        EmbeddingPrior("moments").fit(bank, bank, bank_labels=labels)
    with pytest.raises(ValueError, match="bank_labels: expected 60 integer classes"):
        EmbeddingPrior("knn").fit(bank, bank, bank_labels=labels[:-1])
    with pytest.raises(ValueError, match="label_weight"):
        EmbeddingPrior("knn", label_weight=-1.0).fit(bank, bank)
