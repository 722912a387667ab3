"""reconstructions.npz: written atomically, read back checked, named errors."""

import numpy as np
import pytest

from decoding.evaluation import Reconstructions, load_reconstructions, save_reconstructions


def _data(n=5, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    rows = {"generated": rng.random((n, 8, 8, 3), dtype=np.float32),
            "retrieval": rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)}
    return true, np.arange(100, 100 + n), rows


def test_roundtrip(tmp_path):
    true, ids, rows = _data()
    path = save_reconstructions(tmp_path / "reconstructions.npz", true, ids, rows)
    assert [p.name for p in tmp_path.iterdir()] == ["reconstructions.npz"]  # no temp left
    rec = load_reconstructions(path)
    assert isinstance(rec, Reconstructions) and len(rec) == 5
    assert rec.rows == ("generated", "retrieval")
    np.testing.assert_array_equal(rec.true_images, true)
    np.testing.assert_array_equal(rec.stim_ids, ids)
    # float images in [0, 1] are stored as uint8, rounded
    np.testing.assert_array_equal(rec["generated"], np.round(rows["generated"] * 255))
    assert rec["generated"].dtype == np.uint8
    with pytest.raises(KeyError, match="'nope' is not in this file"):
        rec["nope"]
    # string ids work too
    save_reconstructions(path, true, np.array(list("abcde")), rows)
    assert load_reconstructions(path).stim_ids.tolist() == list("abcde")


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("stim_ids"), "missing key 'stim_ids'"),
    (lambda d: d.pop("true_images"), "missing key 'true_images'"),
    (lambda d: d.update(generated=d["generated"][:3]), r"key 'generated' has shape \(3, "),
    (lambda d: d.update(generated=d["generated"].astype(np.float32)),
     "key 'generated' has dtype float32"),
    (lambda d: d.update(stim_ids=d["stim_ids"][:2]), r"key 'stim_ids' has shape \(2,\)"),
    (lambda d: [d.pop("generated"), d.pop("retrieval")], "no reconstruction rows"),
])
def test_load_names_the_bad_key(tmp_path, change, match):
    true, ids, rows = _data()
    path = save_reconstructions(tmp_path / "r.npz", true, ids, rows)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    change(d)
    np.savez(path, **d)
    with pytest.raises(ValueError, match=match):
        load_reconstructions(path)


def test_damaged_or_missing_file_is_named(tmp_path):
    true, ids, rows = _data()
    path = save_reconstructions(tmp_path / "r.npz", true, ids, rows)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=r"r\.npz'.*not a readable reconstructions\.npz"):
        load_reconstructions(path)
    with pytest.raises(FileNotFoundError, match="no reconstructions file"):
        load_reconstructions(tmp_path / "missing.npz")


def test_save_refuses_bad_input(tmp_path):
    true, ids, rows = _data()
    with pytest.raises(ValueError, match=r"rows\['generated'\]: expected shape \(5, 8, 8, 3\)"):
        save_reconstructions(tmp_path / "r.npz", true, ids, {"generated": true[:4]})
    with pytest.raises(ValueError, match=r"stim_ids: expected shape \(5,\)"):
        save_reconstructions(tmp_path / "r.npz", true, ids[:4], rows)
    with pytest.raises(ValueError, match="not a valid row name"):
        save_reconstructions(tmp_path / "r.npz", true, ids, {"true_images": true})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        save_reconstructions(tmp_path / "r.npz", true, ids, {"g": rows["generated"] * 3})
    with pytest.raises(ValueError, match="at least one row"):
        save_reconstructions(tmp_path / "r.npz", true, ids, {})
    assert not any(tmp_path.iterdir())  # nothing written by a refused call
