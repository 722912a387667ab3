import numpy as np
import pytest

from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES, render_stimuli
from decoding.features import WEIGHTS_DIR
from decoding.semantics import (
    VOCABULARY,
    available_text_encoders,
    captions_from_attributes,
    get_text_encoder,
    tokenize,
)


def _attrs(shapes, colours, sizes, positions):
    return {"shapes": np.array(shapes), "colours": np.array(colours),
            "sizes": np.array(sizes, float), "positions": np.array(positions, float)}


def test_caption_grammar():
    attrs = _attrs([[4, 1], [0, -1], [7, -1]], [[0, 5], [3, -1], [6, -1]],
                   [[0.25, 0.15], [0.19, 0], [0.2, 0]],
                   [[[0.2, 0.2], [0.7, 0.8]], [[0.5, 0.5], [0, 0]], [[0.9, 0.5], [0, 0]]])
    assert captions_from_attributes(attrs) == [
        "a large red torus in the upper left, and a small blue cube",
        "a small green sphere in the centre",  # both central -> "centre"
        "a large purple ring in the middle right",  # 0.2 is the first "large" radius
    ]
    # main-object attributes only (no per-object arrays): one phrase
    single = {"shape": np.array([2]), "colour": np.array([7]), "size": np.array([0.1]),
              "position": np.array([[0.1, 0.9]])}
    assert captions_from_attributes(single) == ["a small white cone in the lower left"]


def test_captions_follow_rendered_scenes():
    stim = render_stimuli(20, image_size=16, random_state=5)
    caps = captions_from_attributes(stim)
    a = stim.attributes
    for i, cap in enumerate(caps):
        first = f"{COLOUR_NAMES[a['colour'][i]]} {SHAPE_CLASSES[a['shape'][i]]} in the"
        assert first in cap
        assert cap.count(", and a ") == int(a["n_objects"][i]) - 1


@pytest.mark.parametrize(
    ("attrs", "err", "match"),
    [
        ({"shapes": np.zeros((1, 1))}, KeyError, "expected keys"),
        (_attrs([[9]], [[0]], [[0.2]], [[[0.5, 0.5]]]), ValueError, "expected indices"),
        (_attrs([[-1]], [[-1]], [[0]], [[[0, 0]]]), ValueError, "no object"),
        (_attrs([[1]], [[0]], [[0.2]], [[0.5, 0.5]]), ValueError, "positions"),
        ([1, 2], ValueError, "attributes dict"),
    ],
)
def test_caption_errors(attrs, err, match):
    with pytest.raises(err, match=match):
        captions_from_attributes(attrs)


def test_tokenize():
    tok = tokenize(["a large red torus, and a zebra", "a"], max_tokens=10)
    words = [VOCABULARY[i] for i in tok[0] if i]
    assert words == ["a", "large", "red", "torus", ",", "and", "a", "<unk>"]
    assert tok.shape == (2, 10) and tok[1, 1:].sum() == 0
    with pytest.raises(ValueError, match="list of strings"):
        tokenize("a red cube")


def test_registry_errors(tmp_path):
    assert {"stimtext", "clip"} <= set(available_text_encoders())
    with pytest.raises(ValueError, match="unknown text encoder 'bert'"):
        get_text_encoder("bert")
    with pytest.raises(FileNotFoundError, match="config.json"):
        get_text_encoder("clip", path=tmp_path)
    with pytest.raises(ValueError, match="n_steps"):
        get_text_encoder("stimtext", n_steps=0)


def test_shipped_stimtext_loads_without_training(tmp_path):
    enc = get_text_encoder("stimtext", data_home=tmp_path, verbose=False)
    assert enc.folder.parent == WEIGHTS_DIR and enc.identifier.startswith("stimtext-v1-")
    assert not any(tmp_path.iterdir())  # nothing trained or cached
    stim = render_stimuli(600, image_size=16, random_state=21)
    T = enc.encode(captions_from_attributes(stim))
    assert T.shape == (600, enc.dim) and T.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(T, enc.encode(captions_from_attributes(stim)))
    # the embedding keeps the main object's colour and shape: a linear probe reads them
    from sklearn.linear_model import LogisticRegression

    for key in ("colour", "shape"):
        y = stim.attributes[key]
        clf = LogisticRegression(max_iter=2000).fit(T[:400], y[:400])
        assert clf.score(T[400:], y[400:]) > 0.9, key
    # binding: swapping which object is red changes the embedding
    a, b = enc.encode(["a large red cube in the centre, and a small blue torus",
                       "a large blue cube in the centre, and a small red torus"])
    assert a @ b < 0.999


def test_tiny_stimtext_trains_caches_and_names_its_features(tmp_path):
    feats = {"name": "stimnet", "n_train_images": 32, "n_epochs": 1, "dim": 8, "width": 4}
    kw = dict(dim=8, features=feats, n_train_images=32, n_steps=3, data_home=tmp_path,
              verbose=False)
    enc = get_text_encoder("stimtext", **kw)
    assert enc.folder.is_relative_to(tmp_path) and (enc.folder / "model.safetensors").is_file()
    mtime = (enc.folder / "model.safetensors").stat().st_mtime_ns
    again = get_text_encoder("stimtext", **kw)
    assert (again.folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert again.identifier == enc.identifier
    np.testing.assert_array_equal(again.encode(["a red cube"]), enc.encode(["a red cube"]))
    other = get_text_encoder("stimtext", **{**kw, "features": {**feats, "dim": 6}})
    assert other.identifier != enc.identifier  # other image features, another model


def test_local_clip_text_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *VOCABULARY[2:]])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]",
                                                unk_token="[UNK]")
    fast.save_pretrained(tmp_path)
    cfg = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=16,
                                      intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, projection_dim=8,
                                      max_position_embeddings=32)
    transformers.CLIPTextModelWithProjection(cfg).save_pretrained(tmp_path)
    enc = get_text_encoder("clip", path=tmp_path)
    T = enc.encode(["a large red torus in the centre", "a small blue cube"])
    assert T.shape == (2, 8) and enc.dim == 8 and enc.identifier == f"clip-text-{tmp_path.name}"
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
