"""Meshes, the shipped occupancy decoder, renders and the Shap-E path (tiny real components)."""

import numpy as np
import pytest
import torch

from data_loaders.simulate.stimuli import SHAPE_CLASSES, shape_sdf
from decoding.evaluation.metrics import voxel_iou
from decoding.generation.mesh import (
    MIN_RESOLUTION,
    Mesh,
    canonical_grid,
    default_shape_decoder,
    field_mesh,
    load_shape_decoder,
    marching_cubes_mesh,
    render_occupancy,
    render_views,
    rotation_from_axis,
    shap_e_meshes,
    train_shape_decoder,
)

torch.set_num_threads(1)
R_SPHERE = 0.85  # radius of the stimulus world's sphere (object units)


def _sphere_mesh(res=40):
    g = canonical_grid(res, 1.0)
    return marching_cubes_mesh(shape_sdf("sphere", g).reshape((res,) * 3), bound=1.0)


def test_marching_cubes_matches_the_analytic_sphere():
    mesh = _sphere_mesh()
    tm = mesh.to_trimesh()
    assert tm.is_watertight
    assert mesh.area() == pytest.approx(4 * np.pi * R_SPHERE**2, rel=0.02)
    assert tm.volume == pytest.approx(4 / 3 * np.pi * R_SPHERE**3, rel=0.03)  # outward faces
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(r - R_SPHERE).max() < 0.02


def test_marching_cubes_refuses_bad_grids():
    with pytest.raises(ValueError, match="resolution.*too coarse"):
        marching_cubes_mesh(np.zeros((MIN_RESOLUTION - 1,) * 3))
    with pytest.raises(ValueError, match="never crosses"):
        marching_cubes_mesh(np.ones((12, 12, 12)))
    with pytest.raises(ValueError, match="cubic grid"):
        marching_cubes_mesh(np.ones((12, 12, 10)))
    with pytest.raises(ValueError, match="resolution"):
        canonical_grid(4)


def test_export_round_trip_and_no_silent_overwrite(tmp_path):
    mesh = _sphere_mesh(16)
    mesh = Mesh(mesh.vertices, mesh.faces, np.array([0.9, 0.2, 0.1]))
    for suffix in (".ply", ".obj"):
        path = mesh.export(tmp_path / f"m{suffix}")
        back = Mesh.load(path)
        assert back.n_faces == mesh.n_faces
        np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
        with pytest.raises(FileExistsError, match="force=True"):
            mesh.export(path)
        mesh.export(path, force=True)
    back = Mesh.load(tmp_path / "m.ply")
    np.testing.assert_allclose(back.vertex_colors[0], [0.9, 0.2, 0.1], atol=1 / 255)
    with pytest.raises(ValueError, match=r"\.ply or \.obj"):
        mesh.export(tmp_path / "m.stl")
    with pytest.raises(ValueError, match="faces"):
        Mesh(mesh.vertices, mesh.faces + len(mesh.vertices))
    with pytest.raises(ValueError, match="vertices"):
        Mesh(np.full((3, 3), np.nan), np.array([[0, 1, 2]]))


def test_rotation_from_axis_is_a_rotation_onto_the_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 3))
    a[0] = [0, -1, 0]  # the antipodal case
    R = rotation_from_axis(a)
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(R[:, :, 1], unit, atol=1e-9)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)


def test_shipped_decoder_reproduces_every_analytic_shape():
    model = default_shape_decoder()
    assert sum(p.numel() for p in model.parameters()) < 100_000
    g = canonical_grid(32, 1.05)
    with torch.no_grad():
        logits = model(torch.from_numpy(g)[None].expand(8, -1, -1), model.codes)
    ious = [voxel_iou(logits[k].numpy() > 0, shape_sdf(k, g) < 0) for k in range(8)]
    assert min(ious) > 0.8, dict(zip(SHAPE_CLASSES, np.round(ious, 3)))
    assert np.mean(ious) > 0.9


def test_posed_field_is_the_rotated_canonical_field():
    model = default_shape_decoder()
    rng = np.random.default_rng(1)
    R = rotation_from_axis(rng.normal(size=(1, 3)))
    p = rng.uniform(-1, 1, (1, 200, 3))
    z = model.codes[2:3]
    with torch.no_grad():
        posed = model.posed_logits(torch.tensor(p, dtype=torch.float32) * 0.5, z,
                                   torch.tensor(R, dtype=torch.float32), torch.tensor([0.5]))
        canon = model(torch.tensor(p @ R[0], dtype=torch.float32), z)  # R^T p
    np.testing.assert_allclose(posed.numpy(), canon.numpy(), atol=1e-4)


def test_field_mesh_is_posed_and_scaled():
    model = default_shape_decoder()
    R = rotation_from_axis(np.array([[1.0, 0.0, 0.0]]))[0]  # the cylinder's axis along x
    mesh = field_mesh(model, model.codes[3].detach().numpy(), R, 0.2, resolution=24)
    ext = mesh.vertices.max(0) - mesh.vertices.min(0)
    # the cylinder: half-height 0.68 along the axis, radius 0.52 across (object units)
    np.testing.assert_allclose(ext, 0.2 * 2 * np.array([0.68, 0.52, 0.52]), rtol=0.12)


def test_training_and_save_load_round_trip(tmp_path):
    model = train_shape_decoder(n_steps=3, shapes_per_step=4, points_per_shape=64, hidden=16,
                                n_layers=2, pool_size=400, random_state=0)
    folder = model.save(tmp_path / "dec")
    back = load_shape_decoder(folder)
    p = torch.rand(2, 10, 3)
    with torch.no_grad():
        np.testing.assert_array_equal(model(p, model.codes[:2]).numpy(),
                                      back(p, back.codes[:2]).numpy())
    assert back.identifier == model.identifier
    with pytest.raises(FileNotFoundError, match="missing file"):
        load_shape_decoder(tmp_path / "nowhere")


def test_renders_sphere_silhouette_area():
    model = default_shape_decoder()
    z = model.codes[0:1].detach().clone().requires_grad_(True)
    sil, col = render_occupancy(model, z, torch.eye(3)[None], torch.tensor([[1.0, 0.0, 0.0]]),
                                resolution=32, n_samples=32)
    frac = float((sil > 0.5).float().mean())
    assert frac == pytest.approx(np.pi * R_SPHERE**2 / 4, abs=0.04)  # disc / square
    assert float(col[..., 1].abs().max()) == 0.0  # a red object has no green
    sil.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    imgs = render_views(_sphere_mesh(16), size_px=32)
    assert imgs.shape == (3, 32, 32, 3)
    centre, corner = imgs[:, 16, 16].astype(int), imgs[:, 1, 1].astype(int)
    assert (corner == 255).all() and (centre < 250).all()  # white background, grey sphere


def _tiny_shap_e(folder):
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as Processor
    torch.manual_seed(0)
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=8, num_layers=1, embedding_dim=16,
        num_embeddings=32, additional_embeddings=0, time_embed_act_fn="gelu",
        norm_in_type="layer", embedding_proj_norm_type="layer", encoder_hid_proj_type=None,
        added_emb_type=None, embedding_proj_dim=16, clip_embed_dim=32)
    encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=16, image_size=32, patch_size=8, num_channels=3, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, projection_dim=16))
    scheduler = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024,
                                      prediction_type="sample", use_karras_sigmas=True,
                                      clip_sample=True, clip_sample_range=1.0)
    # the renderer's first four MLP layers (d_hidden = 8) are projected from 32 latent
    # vectors of size 16: 8 + 8 + 8 + 8 rows
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16,
                             d_hidden=8, n_output=12, background=(0.1, 0.1, 0.1))
    pipe = ShapEImg2ImgPipeline(prior=prior, image_encoder=encoder,
                                image_processor=Processor(crop_size=32,
                                                          size={"shortest_edge": 32}),
                                scheduler=scheduler, shap_e_renderer=renderer)
    pipe.save_pretrained(folder)
    return folder


def test_shap_e_path_with_tiny_random_components(tmp_path):
    import json

    folder = _tiny_shap_e(tmp_path / "shap_e")
    img = (np.random.default_rng(0).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    meshes = shap_e_meshes(img, folder, num_inference_steps=2, grid_size=16)
    assert len(meshes) == 2 and all(m.n_faces > 0 for m in meshes)
    assert np.abs(meshes[0].vertices).max() <= 1.0 + 1e-6  # inside the renderer's box
    assert meshes[0].vertex_colors is not None
    again = shap_e_meshes(img[:1], folder, num_inference_steps=2, grid_size=16)
    np.testing.assert_allclose(again[0].vertices, meshes[0].vertices, atol=1e-5)
    with pytest.raises(ValueError, match="grid_size"):
        shap_e_meshes(img, folder, grid_size=4)
    with pytest.raises(FileNotFoundError, match="no Shap-E pipeline"):
        shap_e_meshes(img, tmp_path / "missing")
    index = folder / "model_index.json"
    entries = json.loads(index.read_text())
    entries.pop("shap_e_renderer")
    index.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="missing components"):
        shap_e_meshes(img, folder)
