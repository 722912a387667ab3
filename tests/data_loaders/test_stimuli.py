"""The stimulus world: renders match closed forms, attributes say where objects are."""

from __future__ import annotations

import numpy as np
import pytest

from data_loaders.schema import Stimuli
from data_loaders.simulate import stimuli as st


def _scene(n_obj: int = 1, **objects) -> dict[str, np.ndarray]:
    """One hand-built scene (max 2 objects) over a flat grey background."""
    sc = st.sample_scenes(1, random_state=0, max_objects=2)
    sc["bg_gratings"][..., 3] = 0.0  # no texture: background = bg_rgb exactly
    sc["bg_noise"][:] = 0.0
    sc["bg_rgb"][:] = 0.4
    sc["present"][:] = np.arange(2)[None] < n_obj
    for key, values in objects.items():
        sc[key][0, : len(values)] = values
    return sc


@pytest.fixture(scope="module")
def stim() -> Stimuli:
    return st.render_stimuli(300, image_size=64, random_state=7)


def test_container_and_attributes(stim):
    assert isinstance(stim, Stimuli)
    assert stim.images.shape == (300, 64, 64, 3) and stim.images.dtype == np.uint8
    assert len(st.SHAPE_CLASSES) >= 8
    a = stim.attributes
    assert set(np.unique(a["shape"])) == set(range(len(st.SHAPE_CLASSES)))
    assert set(np.unique(a["n_objects"])) == {1, 2}
    one = a["n_objects"] == 1
    assert (a["shapes"][one, 1] == -1).all() and (a["colours"][one, 1] == -1).all()
    np.testing.assert_array_equal(a["shape"], a["shapes"][:, 0])
    assert (a["sizes"][~one, 0] >= a["sizes"][~one, 1]).all()  # first = larger object
    # rotations are proper rotations
    R = stim.objects_3d["rotation"].reshape(-1, 3, 3)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)


def test_deterministic_from_seed():
    a = st.render_stimuli(20, image_size=32, random_state=3)
    b = st.render_stimuli(20, image_size=32, random_state=3)
    c = st.render_stimuli(20, image_size=32, random_state=4)
    np.testing.assert_array_equal(a.images, b.images)
    for k in a.attributes:
        np.testing.assert_array_equal(a.attributes[k], b.attributes[k])
    assert not np.array_equal(a.images, c.images)
    # the scene does not depend on the image size
    d = st.render_stimuli(20, image_size=48, random_state=3)
    np.testing.assert_array_equal(a.attributes["position"], d.attributes["position"])


def test_object_pixels_lie_where_position_says(stim):
    scenes = {k: v[:100] for k, v in st.sample_scenes(300, random_state=7).items()}
    images, masks = st.render_scenes(scenes, image_size=64, return_masks=True)
    np.testing.assert_array_equal(images, stim.images[:100])
    c = np.arange(64) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    for i in range(100):
        for k in range(int(stim.attributes["n_objects"][i])):
            pos = stim.attributes["positions"][i, k] * 64
            radius = stim.attributes["sizes"][i, k] * 64
            own = masks[i] == k
            # visible unless fully hidden behind the other object
            if k == 0 or own.any():
                assert own.sum() > 3
            dist = np.hypot(xx[own] - pos[0], yy[own] - pos[1])
            assert (dist <= radius + 1.0).all()  # inside the bounding disc
        # background pixels are the background alone
    blank = {k: v.copy() for k, v in scenes.items()}
    blank["present"][:] = False
    bg = st.render_scenes(blank, image_size=64)
    np.testing.assert_array_equal(images[masks < 0], bg[masks < 0])
    assert (images[masks >= 0] != bg[masks >= 0]).any(axis=-1).mean() > 0.9


def test_sphere_silhouette_and_shading_match_closed_form():
    size, pos, rgb = 0.3, (0.45, 0.55), (0.2, 0.6, 0.9)
    sc = _scene(1, shape=[0], size=[size], position=[pos], rgb=[rgb])
    img, mask = st.render_scenes(sc, image_size=64, return_masks=True)
    c = np.arange(64) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    r = 0.85 * size * 64  # the sphere's radius in pixels
    u, v = (xx - pos[0] * 64) / r, (yy - pos[1] * 64) / r
    disc = u**2 + v**2 < 1
    iou = (disc & (mask[0] == 0)).sum() / (disc | (mask[0] == 0)).sum()
    assert iou > 0.97
    # Blinn-Phong on the analytic normal (u, v, -sqrt(1 - u^2 - v^2))
    inner = u**2 + v**2 < 0.8
    n = np.stack([u, v, -np.sqrt(np.clip(1 - u**2 - v**2, 0, 1))], -1)
    lam = np.clip(n @ st._LIGHT, 0, None)
    spec = np.clip(n @ st._HALF, 0, None) ** st._SHININESS
    want = np.asarray(rgb) * (st._AMBIENT + st._DIFFUSE * lam)[..., None]
    want = np.clip(want + (st._SPECULAR * spec)[..., None], 0, 1) * 255
    err = np.abs(img[0][inner].astype(float) - want[inner])
    assert err.mean() < 1.0 and err.max() < 8.0
    # the background is the flat grey the scene asks for
    np.testing.assert_array_equal(img[0][mask[0] < 0], round(0.4 * 255))


def test_nearer_object_occludes():
    kw = dict(shape=[0, 0], size=[0.25, 0.25], position=[(0.5, 0.5), (0.5, 0.5)],
              rgb=[(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)])  # fmt: skip
    near_first = _scene(2, depth=[0.0, 0.9], **kw)
    near_second = _scene(2, depth=[0.9, 0.0], **kw)
    for scene, winner in ((near_first, 0), (near_second, 1)):
        img, mask = st.render_scenes(scene, image_size=32, return_masks=True)
        assert mask[0, 16, 16] == winner
        channel = 0 if winner == 0 else 2
        assert img[0, 16, 16, channel] > 100 and img[0, 16, 16, 2 - channel] < 30


@pytest.mark.parametrize(
    "shape, volume",
    [
        ("sphere", 4 / 3 * np.pi * 0.85**3),
        ("cylinder", np.pi * 0.52**2 * 2 * 0.68),
        ("torus", 2 * np.pi**2 * 0.6 * 0.26**2),
        ("cone", np.pi * 0.65**2 * 1.4 / 3),
        ("capsule", np.pi * 0.36**2 * 1.0 + 4 / 3 * np.pi * 0.36**3),
        ("ring", np.pi * (0.84**2 - 0.48**2) * 0.28),
        ("pyramid", (2 * 0.62) ** 2 * 1.2 / 3),
    ],
)
def test_object_mesh_volume_matches_closed_form(shape, volume):
    verts, faces = st.object_mesh(shape, resolution=64)
    tri = verts[faces]
    mesh_volume = abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6
    assert mesh_volume == pytest.approx(volume, rel=0.04)
    assert np.linalg.norm(verts, axis=1).max() <= 1.0 + 1e-6  # inside the bounding ball


def test_object_points_follow_rotation():
    R = st._random_rotations(np.random.default_rng(0), 1)[0]
    p0 = st.object_points("capsule", None, n_points=500, random_state=1)
    p1 = st.object_points("capsule", R, n_points=500, random_state=1)
    np.testing.assert_allclose(p1, p0 @ R.T, atol=1e-9)
    # on the surface: |SDF| small
    assert np.abs(st.shape_sdf("capsule", p0)).max() < 0.03


def test_bad_input():
    with pytest.raises(ValueError, match="n:"):
        st.render_stimuli(0)
    with pytest.raises(ValueError, match="image_size"):
        st.render_stimuli(2, image_size=4)
    with pytest.raises(ValueError, match="size_range"):
        st.sample_scenes(2, size_range=(0.3, 0.1))
    with pytest.raises(ValueError, match="max_objects"):
        st.sample_scenes(2, max_objects=3)
    with pytest.raises(ValueError, match="shape: unknown shape 'dodecahedron'"):
        st.object_mesh("dodecahedron")
    with pytest.raises(ValueError, match="points"):
        st.shape_sdf("cube", np.zeros((4, 2)))
