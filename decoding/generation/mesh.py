"""3D generation: implicit occupancy fields of the stimulus world, meshes, export and renders.

The stage-2 decoder of Brain3D (Guo et al. 2024, arXiv 2405.15239, "Generating 3D Objects
from fMRI" in its v3) turns a 3D-aware latent into an object. Here it is a *conditional
implicit occupancy field* (Mescheder et al. 2019, "Occupancy Networks", CVPR): an MLP over
Fourier-encoded 3D points (Tancik et al. 2020, NeurIPS) and a shape latent ``z``, trained
on the stimulus world's analytic signed distance functions
(:func:`data_loaders.simulate.stimuli.shape_sdf`). Pose is factored out: a query point
``p`` of the object-centred camera frame is mapped to the canonical frame by
``R^T p / s`` before the MLP sees it, so the latent holds the shape only (with pose inside
the latent, the same MLP learnt blobs; see the Brain3D issue).

Meshes come out by marching cubes (Lorensen & Cline 1987; scikit-image's implementation),
are written as ``.ply`` / ``.obj`` through trimesh, and are drawn from any view without a
GPU or a display (:func:`render_mesh`, a matplotlib painter's-algorithm rasteriser with
Lambert shading). :func:`render_occupancy` is a differentiable orthographic volume render
of the field (silhouette and flat colour), used by Brain3D's 2D-prior guidance.

Shap-E (Jun & Nichol 2023, arXiv 2305.02463) is the optional pretrained image-to-3D path:
:func:`shap_e_meshes` runs a local diffusers ``ShapEImg2ImgPipeline`` folder, never
downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "Mesh",
    "MIN_RESOLUTION",
    "marching_cubes_mesh",
    "OccupancyDecoder",
    "ImplicitShapeModel",
    "train_shape_decoder",
    "default_shape_decoder",
    "load_shape_decoder",
    "SHAPE_DECODER_ID",
    "canonical_grid",
    "rotation_from_axis",
    "camera_points_to_object",
    "field_mesh",
    "render_mesh",
    "render_views",
    "render_occupancy",
    "view_rotation",
    "shap_e_meshes",
]

#: Smallest marching-cubes grid (points per axis) that can hold a closed surface of a
#: stimulus-world shape; coarser grids are refused.
MIN_RESOLUTION = 8

#: Identifier of the shipped occupancy decoder (folder under ``decoding/weights``).
SHAPE_DECODER_ID = "brain3d-occupancy-v1"
_BALL = 1.02  # radius beyond which the canonical field is empty (shapes fit in |p| <= 1)
_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


# --------------------------------------------------------------------------------------
# meshes
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class Mesh:
    """A triangle mesh with optional per-vertex colours.

    Parameters
    ----------
    vertices : ndarray of float, shape (n_vertices, 3)
        Positions (camera frame: x right, y down, z away from the viewer).
    faces : ndarray of int, shape (n_faces, 3)
        Vertex indices of each triangle.
    vertex_colors : ndarray of float, shape (n_vertices, 3), optional
        RGB in [0, 1].
    metadata : dict
        Free-form description (e.g. decoded shape class, size, position).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
            raise ValueError(
                f"vertices: expected finite float array of shape (n_vertices, 3), got "
                f"{v.dtype} {v.shape}"
            )
        f = np.asarray(self.faces)
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
            raise ValueError(
                f"faces: expected int array of shape (n_faces, 3), got {f.dtype} {f.shape}"
            )
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(
                f"faces: vertex indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]"
            )
        self.vertices, self.faces = v, f.astype(np.int64)
        if self.vertex_colors is not None:
            c = np.asarray(self.vertex_colors, dtype=np.float64)
            if c.shape == (3,):
                c = np.broadcast_to(c, v.shape).copy()
            if c.shape != v.shape or not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
                raise ValueError(
                    f"vertex_colors: expected RGB in [0, 1] of shape {v.shape} (or (3,)), got "
                    f"{c.shape}"
                )
            self.vertex_colors = c

    def __repr__(self) -> str:
        return f"Mesh({len(self.vertices)} vertices, {len(self.faces)} faces)"

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return len(self.vertices)

    @property
    def n_faces(self) -> int:
        """Number of triangles."""
        return len(self.faces)

    def area(self) -> float:
        """Total surface area."""
        t = self.vertices[self.faces]
        return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]),
                                          axis=1).sum())

    def sample_points(
        self, n_points: int = 2048, random_state: int | np.random.Generator | None = 0
    ) -> np.ndarray:
        """Points drawn uniformly by area on the surface, (n_points, 3)."""
        if self.n_faces == 0:
            raise ValueError("mesh: cannot sample points on a mesh without faces")
        t = self.vertices[self.faces]
        area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
        rng = np.random.default_rng(random_state)
        if area.sum() <= 0:
            return t[rng.integers(0, len(t), n_points), 0]
        f = rng.choice(len(t), size=int(n_points), p=area / area.sum())
        a, b = rng.random((2, int(n_points)))
        flip = a + b > 1
        a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
        t = t[f]
        return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])

    def transformed(
        self, rotation: np.ndarray | None = None, scale: float = 1.0,
        translation: np.ndarray | None = None,
    ) -> Mesh:
        """A new mesh with vertices ``scale * R v + t``."""
        v = self.vertices
        if rotation is not None:
            v = v @ np.asarray(rotation, dtype=np.float64).T
        v = v * float(scale)
        if translation is not None:
            v = v + np.asarray(translation, dtype=np.float64)
        return Mesh(v, self.faces, self.vertex_colors, dict(self.metadata))

    def to_trimesh(self):
        """The mesh as a :class:`trimesh.Trimesh` (vertex colours as uint8 RGBA)."""
        import trimesh

        colors = None
        if self.vertex_colors is not None:
            rgb = np.round(self.vertex_colors * 255).astype(np.uint8)
            colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=colors, process=False)

    def export(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the mesh as ``.ply`` or ``.obj`` (chosen by the suffix), atomically.

        Parameters
        ----------
        path : path-like
            Destination; its suffix must be ``.ply`` or ``.obj``.
        force : bool
            Overwrite an existing file. Without it an existing ``path`` raises
            ``FileExistsError``.
        """
        from data_loaders._io import atomic_path

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".ply", ".obj"):
            raise ValueError(f"path: expected a .ply or .obj file name, got {str(path)!r}")
        if path.exists() and not force:
            raise FileExistsError(
                f"path: {path} exists; expected a new file name, or pass force=True to "
                "overwrite it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_trimesh().export(file_type=suffix[1:])
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mesh:
        """Read a ``.ply`` / ``.obj`` file written by :meth:`export` (or any triangle mesh)."""
        import trimesh

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no mesh file at {path}")
        tm = trimesh.load(path, force="mesh", process=False)
        colors = None
        vc = getattr(tm.visual, "vertex_colors", None)
        if vc is not None and len(vc) == len(tm.vertices):
            colors = np.asarray(vc)[:, :3] / 255.0
        return cls(np.asarray(tm.vertices), np.asarray(tm.faces), colors)


def marching_cubes_mesh(
    volume: np.ndarray,
    bound: float = 1.0,
    level: float = 0.0,
    color: np.ndarray | None = None,
    inside: str = "below",
) -> Mesh:
    """Extract the ``level`` surface of a scalar field sampled on a cube (marching cubes).

    Parameters
    ----------
    volume : ndarray, shape (R, R, R)
        Field values at ``linspace(-bound, bound, R)`` along x, y, z (``indexing="ij"``),
        e.g. a signed distance or an occupancy logit. ``R >= MIN_RESOLUTION``.
    bound : float
        Half-width of the cube.
    level : float
        Iso-value of the surface.
    color : ndarray (3,), optional
        One RGB colour in [0, 1] for every vertex.
    inside : {"below", "above"}
        Whether the object is where the field is below the level (an SDF) or above it (an
        occupancy logit); faces are oriented with outward normals either way.

    Returns
    -------
    Mesh
    """
    from skimage.measure import marching_cubes

    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume: expected a cubic grid (R, R, R), got shape {vol.shape}")
    res = vol.shape[0]
    if res < MIN_RESOLUTION:
        raise ValueError(
            f"resolution: a {res}^3 grid is too coarse for marching cubes; expected at least "
            f"{MIN_RESOLUTION} points per axis"
        )
    if not np.isfinite(vol).all():
        raise ValueError("volume: expected finite field values, got NaN or inf")
    if inside not in ("below", "above"):
        raise ValueError(f"inside: expected 'below' or 'above', got {inside!r}")
    if not vol.min() < level < vol.max():
        raise ValueError(
            f"volume: the field never crosses level={level} (range [{vol.min():.3g}, "
            f"{vol.max():.3g}]); expected an object inside the grid"
        )
    step = 2.0 * bound / (res - 1)
    field_ = vol if inside == "below" else -vol
    verts, faces, _, _ = marching_cubes(field_, level=level if inside == "below" else -level,
                                        spacing=(step,) * 3)
    verts = verts - bound
    # the field handed to skimage is below the level inside, so its faces wind outwards
    colors = None if color is None else np.broadcast_to(np.asarray(color, float), verts.shape)
    return Mesh(verts, faces.astype(np.int64), None if colors is None else colors.copy())


# --------------------------------------------------------------------------------------
# the conditional occupancy field
# --------------------------------------------------------------------------------------
class OccupancyDecoder(nn.Module):
    """Occupancy logit of canonical-frame points given a shape latent.

    ``f(p, z) = MLP([p, sin(2^k pi p), cos(2^k pi p), z])``, ``k = 0..n_frequencies-1``
    (Fourier features, Tancik et al. 2020), ``n_layers`` hidden layers of ``hidden`` SiLU
    units; positive logits are inside.

    Parameters
    ----------
    latent_dim : int
        Size of the shape latent ``z``.
    hidden : int
        Width of the hidden layers.
    n_layers : int
        Number of hidden layers.
    n_frequencies : int
        Octaves of the Fourier encoding.
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 128, n_layers: int = 4,
                 n_frequencies: int = 6) -> None:
        super().__init__()
        self.latent_dim, self.n_frequencies = latent_dim, n_frequencies
        self.register_buffer(
            "freqs", (2.0 ** torch.arange(n_frequencies, dtype=torch.float32)) * np.pi,
            persistent=False,
        )
        d_in = 3 + 6 * n_frequencies + latent_dim
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, points: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits (B, N) of points (B, N, 3) for latents (B, latent_dim)."""
        ang = points[..., None] * self.freqs  # (B, N, 3, F)
        enc = torch.cat([points, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)
        zz = z[:, None, :].expand(-1, points.shape[1], -1)
        return self.mlp(torch.cat([enc, zz], dim=-1)).squeeze(-1)


class ImplicitShapeModel(nn.Module):
    """The occupancy decoder and one learnt code per shape class (an auto-decoder).

    Parameters
    ----------
    n_classes : int
        Shape classes (codes).
    latent_dim, hidden, n_layers, n_frequencies : int
        As :class:`OccupancyDecoder`.
    """

    def __init__(self, n_classes: int = 8, latent_dim: int = 16, hidden: int = 128,
                 n_layers: int = 4, n_frequencies: int = 6) -> None:
        super().__init__()
        self.config = dict(n_classes=n_classes, latent_dim=latent_dim, hidden=hidden,
                           n_layers=n_layers, n_frequencies=n_frequencies)
        self.codes = nn.Parameter(torch.randn(n_classes, latent_dim) * 0.5)
        self.decoder = OccupancyDecoder(latent_dim, hidden, n_layers, n_frequencies)
        self.identifier = "untrained"

    @property
    def latent_dim(self) -> int:
        """Size of the shape latent."""
        return int(self.codes.shape[1])

    def forward(self, points_obj: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Occupancy logits (B, N) of canonical-frame points (B, N, 3).

        Every canonical shape lies inside the unit ball, and the MLP was trained on
        ``[-1.1, 1.1]^3`` only: points beyond radius ``_BALL`` are outside by construction
        (their logit is capped at -8), so the field never extrapolates into phantom blobs
        when a posed grid reaches the far corners.
        """
        logits = self.decoder(points_obj, z)
        far = points_obj.norm(dim=-1) > _BALL
        return torch.where(far, torch.clamp(logits, max=-8.0), logits)

    def posed_logits(
        self, points_cam: torch.Tensor, z: torch.Tensor, rotation: torch.Tensor,
        scale: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of object-centred camera-frame points (B, N, 3), pose factored out.

        ``rotation`` (B, 3, 3) maps the object frame to the camera frame and ``scale`` (B,)
        is the object's radius in the units of ``points_cam``: the MLP sees ``R^T p / s``.
        """
        return self.decoder(camera_points_to_object(points_cam, rotation, scale), z)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically)."""
        from safetensors.torch import save_file

        from data_loaders._io import atomic_path, atomic_write_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(out / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_json(out / "config.json",
                          {"_class_name": type(self).__name__, "identifier": self.identifier,
                           **self.config})
        return out


def camera_points_to_object(
    points_cam: torch.Tensor, rotation: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """``R^T p / s`` for points (B, N, 3), rotations (B, 3, 3) and scales (B,)."""
    return torch.einsum("bnj,bjk->bnk", points_cam, rotation) / scale[:, None, None]


def load_shape_decoder(folder: str | os.PathLike, device: str = "cpu") -> ImplicitShapeModel:
    """Read an :class:`ImplicitShapeModel` written by :meth:`ImplicitShapeModel.save`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"shape decoder: missing file {p}")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("_class_name") != "ImplicitShapeModel":
        raise ValueError(
            f"{cfg_path}: _class_name is {cfg.get('_class_name')!r}, expected "
            "'ImplicitShapeModel'"
        )
    keys = ("n_classes", "latent_dim", "hidden", "n_layers", "n_frequencies")
    model = ImplicitShapeModel(**{k: int(cfg[k]) for k in keys})
    model.load_state_dict(load_file(str(w_path), device=device))
    model.identifier = str(cfg.get("identifier", folder.name))
    return model.to(device).eval()


def default_shape_decoder(device: str = "cpu") -> ImplicitShapeModel:
    """The shipped occupancy decoder (``decoding/weights/brain3d-occupancy-v1``).

    Made by ``train_shape_decoder(n_steps=2000, random_state=0).save(folder)`` (57k
    parameters, 34 minutes on two cores shared with seven other jobs; mean IoU 0.974 over
    the 8 classes at 64^3, the pyramid lowest at 0.92); loading takes milliseconds.
    """
    folder = _WEIGHTS / SHAPE_DECODER_ID
    if not folder.is_dir():
        raise FileNotFoundError(
            f"shape decoder: the shipped weights are missing (expected {folder}); train them "
            "with decoding.generation.mesh.train_shape_decoder(...).save(folder)"
        )
    return load_shape_decoder(folder, device=device)


def canonical_grid(resolution: int, bound: float = 1.0) -> np.ndarray:
    """Points (R^3, 3) of ``linspace(-bound, bound, R)`` along x, y, z (``ij`` order)."""
    if resolution < MIN_RESOLUTION:
        raise ValueError(
            f"resolution: a {resolution}^3 grid is too coarse; expected at least "
            f"{MIN_RESOLUTION} points per axis"
        )
    g = np.linspace(-bound, bound, int(resolution), dtype=np.float32)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)


def _training_pool(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points (C, n, 3) and occupancies (C, n): half uniform, half near the surface."""
    from data_loaders.simulate.stimuli import SHAPE_CLASSES, object_points, shape_sdf

    pts, occ = [], []
    n_uni = n_per_class // 2
    for k in range(len(SHAPE_CLASSES)):
        uni = rng.uniform(-1.1, 1.1, (n_uni, 3))
        surf = object_points(k, n_points=n_per_class - n_uni, random_state=rng)
        surf = surf + rng.normal(0.0, 1.0, surf.shape) * rng.choice([0.01, 0.03, 0.08],
                                                                    (len(surf), 1))
        p = np.concatenate([uni, surf]).astype(np.float32)
        pts.append(p)
        occ.append((shape_sdf(k, p) < 0).astype(np.float32))
    return np.stack(pts), np.stack(occ)


def train_shape_decoder(
    n_steps: int = 3000,
    shapes_per_step: int = 32,
    points_per_shape: int = 1024,
    latent_dim: int = 16,
    hidden: int = 128,
    n_layers: int = 4,
    n_frequencies: int = 6,
    lr: float = 2e-3,
    code_noise: float = 0.1,
    pool_size: int = 60_000,
    random_state: int = 0,
    verbose: bool | None = None,
) -> ImplicitShapeModel:
    """Fit the occupancy field to the stimulus world's analytic shapes (canonical frame).

    Each step draws ``shapes_per_step`` classes, their codes plus Gaussian noise of sd
    ``code_noise`` (so that latents near a code decode to that shape: the latents Brain3D
    predicts from the brain are never exact), and ``points_per_shape`` points from a pool
    that mixes uniform points in ``[-1.1, 1.1]^3`` with points near the surface; the loss
    is the binary cross-entropy of the occupancy ``shape_sdf < 0``, plus a small penalty on
    the codes' norm. Adam, cosine-decayed learning rate.

    Returns
    -------
    ImplicitShapeModel
        In eval mode, on the CPU.
    """
    from data_loaders.simulate.stimuli import SHAPE_CLASSES

    rng = np.random.default_rng(random_state)
    torch.manual_seed(random_state)
    n_cls = len(SHAPE_CLASSES)
    model = ImplicitShapeModel(n_cls, latent_dim, hidden, n_layers, n_frequencies)
    pts_np, occ_np = _training_pool(pool_size, rng)
    pts, occ = torch.from_numpy(pts_np), torch.from_numpy(occ_np)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, n_steps))
    gen = torch.Generator().manual_seed(random_state)
    steps = range(n_steps)
    if verbose:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="occupancy decoder", unit="step")
    model.train()
    for _ in steps:
        cls = torch.randint(0, n_cls, (shapes_per_step,), generator=gen)
        idx = torch.randint(0, pool_size, (shapes_per_step, points_per_shape), generator=gen)
        p = pts[cls[:, None], idx]
        y = occ[cls[:, None], idx]
        z = model.codes[cls] + code_noise * torch.randn(shapes_per_step, latent_dim,
                                                       generator=gen)
        logits = model(p, z)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss = loss + 1e-3 * model.codes.pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.identifier = f"occupancy-{n_steps}x{shapes_per_step}x{points_per_shape}-s{random_state}"
    return model.eval()


@torch.no_grad()
def _batched_logits(model: ImplicitShapeModel, points: torch.Tensor, z: torch.Tensor,
                    chunk: int = 65536) -> torch.Tensor:
    out = []
    for s in range(0, points.shape[1], chunk):
        out.append(model(points[:, s:s + chunk], z))
    return torch.cat(out, dim=1)


def rotation_from_axis(axis: np.ndarray) -> np.ndarray:
    """Rotations (n, 3, 3) whose second column (the object's local y) is ``axis`` (n, 3).

    The minimal rotation from ``e_y`` to the unit axis (Rodrigues); the roll about the axis
    is left at zero, which is exact for the shapes that are symmetric about it.
    """
    a = np.asarray(axis, dtype=np.float64)
    a = a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-12)
    ey = np.array([0.0, 1.0, 0.0])
    v = np.cross(ey, a)  # (n, 3)
    c = a @ ey
    out = np.empty(a.shape[:-1] + (3, 3))
    for i in range(len(a)):
        if c[i] < -1 + 1e-8:  # opposite: a half turn about x
            out[i] = np.diag([1.0, -1.0, -1.0])
            continue
        vx = np.array([[0, -v[i, 2], v[i, 1]], [v[i, 2], 0, -v[i, 0]], [-v[i, 1], v[i, 0], 0]])
        out[i] = np.eye(3) + vx + vx @ vx / (1.0 + c[i])
    return out


def field_mesh(
    model: ImplicitShapeModel,
    z: np.ndarray,
    rotation: np.ndarray | None = None,
    scale: float = 1.0,
    resolution: int = 48,
    color: np.ndarray | None = None,
    device: str = "cpu",
) -> Mesh:
    """Marching cubes on the occupancy field of one latent, posed in the camera frame.

    The field is evaluated on a canonical ``resolution^3`` grid over ``[-1.05, 1.05]^3``
    (the canonical shapes fit in the unit ball), meshed at logit 0, then rotated by
    ``rotation`` and scaled by ``scale`` (vertices ``s R v``). An empty field (nothing
    inside the grid) gives a tiny placeholder octahedron so that every input gives a mesh;
    ``metadata["empty"]`` says so.
    """
    bound = 1.05
    g = torch.from_numpy(canonical_grid(resolution, bound)).to(device)[None]
    zt = torch.as_tensor(np.asarray(z, np.float32), device=device)[None]
    vol = _batched_logits(model, g, zt)[0].cpu().numpy().reshape((resolution,) * 3)
    try:
        mesh = marching_cubes_mesh(vol, bound=bound, level=0.0, color=color, inside="above")
        mesh.metadata["empty"] = False
    except ValueError:
        if resolution < MIN_RESOLUTION:
            raise
        v = 0.05 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
                             [0, 0, -1]], float)
        f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5],
                      [3, 1, 5], [0, 3, 5]])
        mesh = Mesh(v, f, None if color is None else np.broadcast_to(color, v.shape).copy(),
                    {"empty": True})
    out = mesh.transformed(rotation, scale)
    return out


# --------------------------------------------------------------------------------------
# renders without a GPU or a display
# --------------------------------------------------------------------------------------
_LIGHT = np.array([-0.45, -0.65, -0.62])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)


def view_rotation(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Rotation (3, 3) from the camera frame to a view: azimuth about y, then elevation."""
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return rx @ ry


def render_mesh(
    mesh: Mesh,
    ax=None,
    elevation: float = 0.0,
    azimuth: float = 0.0,
    extent: float | None = None,
    color: np.ndarray | None = None,
    background: str = "white",
):
    """Draw a mesh with Lambert shading from one view (orthographic, painter's algorithm).

    The view looks along +z of the rotated frame (``view_rotation(elevation, azimuth)``
    applied to the vertices); ``(0, 0)`` is the stimulus camera. Works with the Agg backend
    (no display, no GPU).

    Parameters
    ----------
    mesh : Mesh
    ax : matplotlib Axes, optional
        Where to draw; a new 2x2-inch figure otherwise.
    elevation, azimuth : float
        View angles (degrees).
    extent : float, optional
        Half-width of the drawn square (default: the mesh's largest |coordinate| x 1.1).
    color : (3,), optional
        Colour when the mesh has no vertex colours (default grey).

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    if ax is None:
        _, ax = plt.subplots(figsize=(2, 2))
    R = view_rotation(elevation, azimuth)
    v = mesh.vertices @ R.T
    tri = v[mesh.faces]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    facing = normals[:, 2] < 0  # towards the viewer (who looks along +z)
    lam = np.clip(normals @ _LIGHT, 0.0, 1.0)  # _LIGHT points from the surface to the light
    if mesh.vertex_colors is not None:
        base = mesh.vertex_colors[mesh.faces].mean(axis=1)
    else:
        base = np.broadcast_to(np.asarray(color if color is not None else (0.7, 0.7, 0.7)),
                               (len(tri), 3))
    shade = np.clip(base * (0.25 + 0.75 * lam)[:, None], 0.0, 1.0)
    order = np.argsort(-tri[facing, :, 2].mean(axis=1))  # far first
    polys = tri[facing][order][:, :, :2]
    polys[..., 1] *= -1  # image y points down
    pc = PolyCollection(polys, facecolors=shade[facing][order], edgecolors="none",
                        antialiased=False)
    ax.add_collection(pc)
    r = extent if extent is not None else 1.1 * float(np.abs(v).max() + 1e-9)
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.set_facecolor(background)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


#: The three views of the report: the stimulus camera, a side view, a view from above.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (15.0, 90.0), (-70.0, 30.0))


def render_views(mesh: Mesh, views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS,
                 size_px: int = 96, extent: float | None = None) -> np.ndarray:
    """Render a mesh from several views into an RGB array (n_views, size_px, size_px, 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = np.empty((len(views), size_px, size_px, 3), dtype=np.uint8)
    for i, (el, az) in enumerate(views):
        fig = plt.figure(figsize=(1, 1), dpi=size_px)
        ax = fig.add_axes((0, 0, 1, 1))
        render_mesh(mesh, ax, el, az, extent=extent)
        ax.set_axis_off()
        fig.canvas.draw()
        out[i] = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        plt.close(fig)
    return out


def render_occupancy(
    model: ImplicitShapeModel,
    z: torch.Tensor,
    rotation: torch.Tensor,
    rgb: torch.Tensor,
    views: torch.Tensor | None = None,
    resolution: int = 24,
    n_samples: int = 24,
    sharpness: float = 4.0,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable orthographic renders of posed occupancy fields: silhouette and colour.

    Each pixel ``(u, v)`` of ``[-1, 1]^2`` (units of the object's radius) casts a ray along
    +z of the view through ``n_samples`` points in ``[-1, 1]``; the occupancy
    ``o_k = sigmoid(sharpness * logit)`` is composited front to back, ``w_k = o_k prod_{j<k}
    (1 - o_j)`` (the alpha compositing of volume rendering, Max 1995), giving the silhouette
    ``sum_k w_k`` and a colour ``rgb * sum_k w_k * shade_k`` with a depth cue ``shade``
    (nearer is brighter). Everything is differentiable in ``z``, ``rotation`` and ``rgb``.

    Parameters
    ----------
    model : ImplicitShapeModel
    z : Tensor (B, latent_dim)
    rotation : Tensor (B, 3, 3)
        Object-to-camera rotations.
    rgb : Tensor (B, 3)
    views : Tensor (V, 3, 3), optional
        Camera-to-view rotations (default: the camera itself).
    resolution, n_samples : int
        Pixels per side and samples per ray.
    sharpness : float
        Multiplies the logits before the sigmoid, so that the slightly negative logits
        just outside the surface do not add up along a ray.
    scale : Tensor (B,), optional
        Object radius in render units (default 1): the field is queried at ``R^T p / s``.

    Returns
    -------
    silhouette : Tensor (B, V, resolution, resolution)
    colour : Tensor (B, V, resolution, resolution, 3)
        Premultiplied by the silhouette (composite over a background ``bg`` with
        ``colour + (1 - silhouette) * bg``).
    """
    if views is None:
        views = torch.eye(3, dtype=z.dtype, device=z.device)[None]
    b, nv = z.shape[0], views.shape[0]
    c = (torch.arange(resolution, dtype=z.dtype, device=z.device) + 0.5) / resolution * 2 - 1
    t = torch.linspace(-1.0, 1.0, n_samples, dtype=z.dtype, device=z.device)
    vv, uu, tt = torch.meshgrid(c, c, t, indexing="ij")  # rows are image y
    ray_pts = torch.stack([uu, vv, tt], dim=-1).reshape(-1, 3)  # view frame
    # view frame -> camera frame: p_cam = Rv^T p_view; then -> object frame: R^T p_cam
    cam = torch.einsum("vij,ni->vnj", views, ray_pts)  # (V, N, 3)
    cam = cam[None].expand(b, -1, -1, -1).reshape(b, -1, 3)
    obj = torch.einsum("bnj,bjk->bnk", cam, rotation)
    if scale is not None:
        obj = obj / scale[:, None, None]
    logits = model(obj, z).reshape(b, nv, resolution, resolution, n_samples)
    occ = torch.sigmoid(sharpness * logits)
    trans = torch.cumprod(torch.cat([torch.ones_like(occ[..., :1]), 1 - occ[..., :-1]], -1), -1)
    w = occ * trans
    sil = w.sum(-1)
    shade = 1.0 - 0.35 * (t + 1) / 2  # nearer samples brighter
    lum = (w * shade).sum(-1)
    colour = lum[..., None] * rgb[:, None, None, None, :]
    return sil, colour


# --------------------------------------------------------------------------------------
# Shap-E (optional, a local folder)
# --------------------------------------------------------------------------------------
_SHAP_E_COMPONENTS = ("prior", "image_encoder", "image_processor", "scheduler", "shap_e_renderer")


@torch.no_grad()
def _shap_e_surface(renderer, latent: torch.Tensor, grid_size: int, index: int):
    """Mesh the Shap-E renderer's signed distance field with scikit-image.

    diffusers' ``ShapERenderer.decode_to_mesh`` runs its own marching cubes whose case
    tables are buffers read from the checkpoint (zeros in a freshly built renderer); the
    field itself is the renderer's MLP with the layers the latent projects to, queried here
    on the same grid (``volume_query_points``), and its ``channels`` colour the vertices.
    """
    from diffusers.pipelines.shap_e.renderer import volume_query_points

    proj = renderer.params_proj(latent)
    for name, param in renderer.mlp.state_dict().items():
        if f"nerstf.{name}" in proj:
            param.copy_(proj[f"nerstf.{name}"].squeeze(0))
    pts = volume_query_points(renderer.volume, grid_size)[None].to(dtype=renderer.mlp.dtype)
    sdf = []
    for s in range(0, pts.shape[1], 4096):
        o = renderer.mlp(position=pts[:, s:s + 4096], direction=None, ts=None,
                         nerf_level="fine", rendering_mode="stf")
        sdf.append(o.signed_distance)
    vol = torch.cat(sdf, 1).float().reshape((grid_size,) * 3).cpu().numpy()
    lo = renderer.volume.bbox_min.cpu().numpy()
    hi = renderer.volume.bbox_max.cpu().numpy()
    try:  # Shap-E's field is positive inside
        m = marching_cubes_mesh(vol, bound=1.0, level=0.0, inside="above")
    except ValueError as err:
        raise ValueError(
            f"images[{index}]: the Shap-E signed distance field has no surface on the "
            f"{grid_size}^3 grid ({err})"
        ) from err
    verts = (m.vertices + 1.0) / 2.0 * (hi - lo) + lo  # [-1, 1] grid -> the bounding box
    q = torch.as_tensor(verts[None], dtype=renderer.mlp.dtype)
    ch = renderer.mlp(position=q, direction=None, ts=None, nerf_level="fine",
                      rendering_mode="stf").channels[0].float().cpu().numpy()
    colors = np.clip(ch[:, :3], 0.0, 1.0) if ch.shape[1] >= 3 else None
    return verts, m.faces, colors


def shap_e_meshes(
    images: np.ndarray,
    path: str | os.PathLike,
    num_inference_steps: int = 64,
    guidance_scale: float = 3.0,
    grid_size: int = 128,
    random_state: int = 0,
    device: str = "cpu",
) -> list[Mesh]:
    """Image-to-3D with a local diffusers ``ShapEImg2ImgPipeline`` folder (never downloaded).

    Parameters
    ----------
    images : ndarray, shape (n, H, W, 3)
        uint8, or float in [0, 1] (e.g. the images Brain3D's 2D stage decodes).
    path : path-like
        A ``save_pretrained`` folder of the pipeline: ``model_index.json`` with the
        components prior, image_encoder, image_processor, scheduler, shap_e_renderer.
    num_inference_steps, guidance_scale : int, float
        Sampling settings (Shap-E's defaults: 64 steps, guidance 3).
    grid_size : int
        Marching-cubes grid of the renderer's signed distance field (>= 8).

    Returns
    -------
    list of Mesh
        With the renderer's vertex colours, in the pipeline's frame.
    """
    from diffusers import ShapEImg2ImgPipeline
    from PIL import Image

    path = Path(path)
    index = path / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"path: no Shap-E pipeline folder at {path} (no {index.name})")
    try:
        entries = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{index}: not valid JSON ({err})") from err
    missing = [c for c in _SHAP_E_COMPONENTS if c not in entries]
    if entries.get("_class_name") != "ShapEImg2ImgPipeline" or missing:
        raise ValueError(
            f"path: {path} is not a ShapEImg2ImgPipeline folder (class "
            f"{entries.get('_class_name')!r}, missing components {missing}); expected the "
            f"components {list(_SHAP_E_COMPONENTS)}"
        )
    if grid_size < MIN_RESOLUTION:
        raise ValueError(
            f"grid_size: a {grid_size}^3 grid is too coarse for marching cubes; expected at "
            f"least {MIN_RESOLUTION}"
        )
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images: expected an array (n, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    pipe = ShapEImg2ImgPipeline.from_pretrained(path, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator(device="cpu").manual_seed(random_state)
    out = []
    for img in arr:
        latents = pipe(Image.fromarray(img), num_inference_steps=num_inference_steps,
                       guidance_scale=guidance_scale, generator=gen,
                       output_type="latent").images
        verts, faces, colors = _shap_e_surface(pipe.shap_e_renderer, latents[:1], grid_size,
                                               len(out))
        out.append(Mesh(verts, faces, colors, {"source": "shap-e", "path": str(path)}))
    return out
