"""The stimulus world: procedural images of 3D objects on textured backgrounds.

Each image shows one or two solid objects (a shape class out of :data:`SHAPE_CLASSES`)
with a colour, a size, a position in the image and a 3D rotation, rendered with simple
Blinn-Phong shading from its 3D description, over a textured background (two oriented
gratings and smooth noise). Rendering sphere-traces the signed distance function (SDF) of
each object (Hart 1996, "Sphere tracing", The Visual Computer 12:527) under an orthographic
camera, vectorised over every pixel of every object of a batch, so 10,000 images of
64x64 render in well under a minute on two cores.

Coordinates: image ``x`` to the right, ``y`` down, ``z`` away from the viewer (a right-
handed camera frame). Positions are fractions of the image width/height, origin at the
top-left corner of the top-left pixel; pixel ``(row i, col j)`` has centre
``((j + 0.5) / W, (i + 0.5) / H)``.

The scene description (:func:`sample_scenes`) is independent of the image size, so the
same seed re-creates the same scenes at any resolution, and :func:`object_mesh` /
:func:`object_points` re-create each object in 3D (for scoring 3D decoders such as
Brain3D against the true shape).
"""

from __future__ import annotations

import numpy as np

from ..schema import Stimuli

__all__ = [
    "SHAPE_CLASSES",
    "SHAPE_PROPERTIES",
    "COLOUR_NAMES",
    "COLOUR_RGB",
    "sample_scenes",
    "render_scenes",
    "render_stimuli",
    "scenes_to_stimuli",
    "SHAPE_PROPERTY_NAMES",
    "shape_sdf",
    "object_mesh",
    "object_points",
]

#: Shape classes; the class index is the position in this tuple.
SHAPE_CLASSES: tuple[str, ...] = (
    "sphere",
    "cube",
    "cone",
    "cylinder",
    "torus",
    "pyramid",
    "capsule",
    "ring",
)

#: Coarse 3D shape descriptors per class (columns: roundness, elongation, has_hole,
#: flat_faces), each in [0, 1]. The simulated higher visual cortex is tuned over them, so
#: classes that share properties (sphere/capsule, torus/ring) evoke similar responses.
SHAPE_PROPERTIES: np.ndarray = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],  # sphere
        [0.0, 0.0, 0.0, 1.0],  # cube
        [0.5, 0.6, 0.0, 0.3],  # cone
        [0.5, 0.6, 0.0, 0.6],  # cylinder
        [1.0, 0.0, 1.0, 0.0],  # torus
        [0.0, 0.3, 0.0, 1.0],  # pyramid
        [1.0, 1.0, 0.0, 0.0],  # capsule
        [0.5, 0.0, 1.0, 0.6],  # ring
    ],
    dtype=np.float32,
)
SHAPE_PROPERTY_NAMES: tuple[str, ...] = ("roundness", "elongation", "has_hole", "flat_faces")

#: Named object colours; the colour index is the position in this tuple.
COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "orange",
    "yellow",
    "green",
    "cyan",
    "blue",
    "purple",
    "white",
)
#: Linear RGB in [0, 1] of each named colour (objects get a small jitter around it).
COLOUR_RGB: np.ndarray = np.array(
    [
        [0.90, 0.12, 0.10],
        [0.95, 0.50, 0.08],
        [0.92, 0.85, 0.12],
        [0.15, 0.75, 0.20],
        [0.10, 0.80, 0.85],
        [0.12, 0.25, 0.92],
        [0.60, 0.15, 0.80],
        [0.92, 0.92, 0.92],
    ],
    dtype=np.float32,
)

# Radius of a sphere around the origin that contains every canonical shape (object units).
_BOUND = 1.0
# Light from the upper left, towards the viewer (camera frame: x right, y down, z away).
_LIGHT = np.array([-0.45, -0.65, -0.62], dtype=np.float32)
_LIGHT /= np.linalg.norm(_LIGHT)
_HALF = _LIGHT + np.array([0.0, 0.0, -1.0], dtype=np.float32)
_HALF /= np.linalg.norm(_HALF)
_AMBIENT, _DIFFUSE, _SPECULAR, _SHININESS = 0.22, 0.78, 0.35, 24.0


# --------------------------------------------------------------------------------------
# signed distance functions of the canonical shapes (object frame, all inside |p| <= 1)
# --------------------------------------------------------------------------------------
def _len2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(a * a + b * b)


def _box2(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """SDF of a 2D box given the per-axis distances |q| - half_size."""
    return np.minimum(np.maximum(dx, dy), 0.0) + _len2(np.maximum(dx, 0.0), np.maximum(dy, 0.0))


def _sdf_sphere(x, y, z):
    return np.sqrt(x * x + y * y + z * z) - 0.85


def _sdf_cube(x, y, z):
    b, r = 0.48, 0.06  # rounded box, half-extent b + r
    qx, qy, qz = np.abs(x) - b, np.abs(y) - b, np.abs(z) - b
    out = np.sqrt(
        np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2 + np.maximum(qz, 0.0) ** 2
    )
    return out + np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0.0) - r


def _sdf_cone(x, y, z):
    # capped cone along y (Quilez, "distance functions"), base radius r1 at y=-h, tip at +h
    h, r1 = 0.7, 0.65
    qx, qy = _len2(x, z), y
    k2x, k2y = -r1, 2.0 * h
    cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, 0.0))
    cay = np.abs(qy) - h
    t = np.clip(((0.0 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
    cbx = qx + k2x * t
    cby = qy - h + k2y * t
    s = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
    return s * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))


def _sdf_cylinder(x, y, z):
    return _box2(_len2(x, z) - 0.52, np.abs(y) - 0.68)


def _sdf_torus(x, y, z):
    return _len2(_len2(x, z) - 0.6, y) - 0.26


def _sdf_pyramid(x, y, z):
    # square pyramid (Quilez): base side 2*s at y=-0.45, apex at y=0.75
    s, y0 = 0.62, -0.45
    h = (0.75 - y0) / (2.0 * s)  # height in units of the base side
    px, py, pz = np.abs(x) / (2 * s), (y - y0) / (2 * s), np.abs(z) / (2 * s)
    swap = pz > px
    px, pz = np.where(swap, pz, px), np.where(swap, px, pz)
    px, pz = px - 0.5, pz - 0.5
    m2 = h * h + 0.25
    qx = pz
    qy = h * py - 0.5 * px
    qz = h * px + 0.5 * py
    sv = np.maximum(-qx, 0.0)
    t = np.clip((qy - 0.5 * pz) / (m2 + 0.25), 0.0, 1.0)
    a = m2 * (qx + sv) ** 2 + qy * qy
    b = m2 * (qx + 0.5 * t) ** 2 + (qy - m2 * t) ** 2
    d2 = np.where(np.minimum(qy, -qx * m2 - qy * 0.5) > 0.0, 0.0, np.minimum(a, b))
    return np.sqrt((d2 + qz * qz) / m2) * np.sign(np.maximum(qz, -py)) * (2 * s)


def _sdf_capsule(x, y, z):
    yc = y - np.clip(y, -0.5, 0.5)
    return np.sqrt(x * x + yc * yc + z * z) - 0.36


def _sdf_ring(x, y, z):
    # a flat washer: annulus of radii 0.48..0.84, half-thickness 0.14
    return _box2(np.abs(_len2(x, z) - 0.66) - 0.18, np.abs(y) - 0.14)


_SDFS = (
    _sdf_sphere,
    _sdf_cube,
    _sdf_cone,
    _sdf_cylinder,
    _sdf_torus,
    _sdf_pyramid,
    _sdf_capsule,
    _sdf_ring,
)


def _check_shape(shape: int | str) -> int:
    if isinstance(shape, str):
        if shape not in SHAPE_CLASSES:
            raise ValueError(f"shape: unknown shape {shape!r}; expected one of {SHAPE_CLASSES}")
        return SHAPE_CLASSES.index(shape)
    k = int(shape)
    if not 0 <= k < len(SHAPE_CLASSES):
        raise ValueError(f"shape: expected a class index in [0, {len(SHAPE_CLASSES)}), got {shape}")
    return k


def shape_sdf(shape: int | str, points: np.ndarray) -> np.ndarray:
    """Signed distance of points to a canonical shape (object frame, bounding radius 1).

    Parameters
    ----------
    shape : int or str
        Class index or name from :data:`SHAPE_CLASSES`.
    points : ndarray, shape (..., 3)
        Points in the object frame (object units: the shape fits in the unit ball).

    Returns
    -------
    distance : ndarray, shape (...)
        Negative inside, positive outside; a lower bound of the Euclidean distance.
    """
    k = _check_shape(shape)
    p = np.asarray(points, dtype=np.float32)
    if p.shape[-1:] != (3,):
        raise ValueError(f"points: expected an array of shape (..., 3), got {p.shape}")
    return _SDFS[k](p[..., 0], p[..., 1], p[..., 2]).astype(np.float32)


# --------------------------------------------------------------------------------------
# scene sampling
# --------------------------------------------------------------------------------------
def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random rotation matrices (n, 3, 3) from unit quaternions (Shoemake 1992)."""
    u1, u2, u3 = rng.random((3, n))
    q = np.stack(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ],
        axis=1,
    )
    x, y, z, w = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def sample_scenes(
    n: int,
    random_state: int | np.random.Generator | None = 0,
    max_objects: int = 2,
    p_two: float = 0.35,
    size_range: tuple[float, float] = (0.13, 0.3),
) -> dict[str, np.ndarray]:
    """Draw ``n`` scene descriptions (objects and background), independent of image size.

    Parameters
    ----------
    n : int
        Number of scenes (>= 1).
    random_state : int | Generator | None
        Seed; the same seed gives the same scenes.
    max_objects : int
        1 or 2 objects per image at most.
    p_two : float in [0, 1]
        Probability that a scene shows two objects (when ``max_objects == 2``).
    size_range : (float, float)
        Range of object radii, as fractions of the image width. The first object of a
        scene is the larger one.

    Returns
    -------
    scenes : dict of str -> ndarray
        Object arrays have shape ``(n, max_objects, ...)``; absent second objects have
        ``present == False``, ``shape == -1`` and zeros elsewhere:
        ``present`` bool, ``shape`` int, ``colour`` int, ``rgb`` float (.., 3) in [0, 1],
        ``size`` float (radius, fraction of width), ``position`` float (.., 2) (x, y
        fractions), ``depth`` float (object centre z, in widths; smaller is nearer),
        ``rotation`` float (.., 3, 3) object-to-camera rotation.
        Background: ``bg_rgb`` (n, 3), ``bg_gratings`` (n, 2, 4) (cycles per image,
        orientation rad, phase rad, contrast), ``bg_noise`` (n, 6, 6) smooth-noise seeds.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected a positive number of images, got {n!r}")
    if max_objects not in (1, 2):
        raise ValueError(f"max_objects: expected 1 or 2, got {max_objects!r}")
    if not 0.0 <= p_two <= 1.0:
        raise ValueError(f"p_two: expected a probability in [0, 1], got {p_two!r}")
    lo, hi = size_range
    if not 0.0 < lo <= hi < 0.5:
        raise ValueError(f"size_range: expected 0 < low <= high < 0.5, got {size_range!r}")
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    n = int(n)
    m = max_objects
    n_obj = np.ones(n, dtype=np.int64)
    if m == 2:
        n_obj += rng.random(n) < p_two
    present = np.arange(m)[None, :] < n_obj[:, None]

    shape = rng.integers(0, len(SHAPE_CLASSES), size=(n, m))
    colour = rng.integers(0, len(COLOUR_NAMES), size=(n, m))
    rgb = np.clip(COLOUR_RGB[colour] + rng.normal(0, 0.04, size=(n, m, 3)), 0.0, 1.0)
    size = np.sort(rng.uniform(lo, hi, size=(n, m)), axis=1)[:, ::-1].copy()
    size[:, 1:] *= 0.85  # the second object is a little smaller again
    rotation = _random_rotations(rng, n * m).reshape(n, m, 3, 3)
    depth = rng.uniform(0.0, 1.0, size=(n, m))

    # positions: inside the frame; a second object keeps its centre out of the first's disc
    position = np.empty((n, m, 2))
    margin = size[:, 0] * 0.9
    position[:, 0] = margin[:, None] + rng.random((n, 2)) * (1 - 2 * margin[:, None])
    if m == 2:
        pos2 = np.empty((n, 2))
        todo = np.arange(n)
        for _ in range(100):  # rejection sampling, vectorised over the scenes still to do
            mg = size[todo, 1] * 0.9
            cand = mg[:, None] + rng.random((todo.size, 2)) * (1 - 2 * mg[:, None])
            dist = np.linalg.norm(cand - position[todo, 0], axis=1)
            ok = dist > 0.8 * (size[todo, 0] + size[todo, 1])
            pos2[todo[ok]] = cand[ok]
            todo = todo[~ok]
            if todo.size == 0:
                break
        if todo.size:  # extremely rare: fall back to the opposite corner
            pos2[todo] = 1.0 - position[todo, 0]
        position[:, 1] = pos2

    # absent objects: neutral values so every attribute stays finite
    shape = np.where(present, shape, -1)
    colour = np.where(present, colour, -1)
    rgb[~present] = 0.0
    size[~present] = 0.0
    position[~present] = 0.0
    depth[~present] = 0.0
    rotation[~present] = np.eye(3)

    bg_rgb = rng.uniform(0.25, 0.6, size=(n, 1)) * rng.uniform(0.75, 1.25, size=(n, 3))
    bg_gratings = np.stack(
        [
            rng.uniform(2.0, 12.0, size=(n, 2)),  # cycles per image
            rng.uniform(0.0, np.pi, size=(n, 2)),  # orientation (rad)
            rng.uniform(0.0, 2 * np.pi, size=(n, 2)),  # phase (rad)
            rng.uniform(0.02, 0.12, size=(n, 2)),  # contrast
        ],
        axis=-1,
    )
    bg_noise = rng.normal(0.0, 0.06, size=(n, 6, 6))
    return {
        "present": present,
        "shape": shape.astype(np.int64),
        "colour": colour.astype(np.int64),
        "rgb": rgb.astype(np.float32),
        "size": size,
        "position": position,
        "depth": depth,
        "rotation": rotation,
        "bg_rgb": np.clip(bg_rgb, 0.0, 1.0).astype(np.float32),
        "bg_gratings": bg_gratings,
        "bg_noise": bg_noise,
    }


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
def _render_background(scenes: dict[str, np.ndarray], sl: slice, size: int) -> np.ndarray:
    """Textured backgrounds (B, H, W, 3) float32 in [0, 1]: gratings + smooth noise."""
    g = scenes["bg_gratings"][sl]
    b = g.shape[0]
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    lum = np.zeros((b, size, size), dtype=np.float32)
    for k in range(g.shape[1]):
        f, th, ph, ct = (g[:, k, i].astype(np.float32)[:, None, None] for i in range(4))
        arg = 2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph
        lum += ct * np.sin(arg)
    # smooth noise: bilinear upsampling of a 6x6 seed grid
    noise = scenes["bg_noise"][sl].astype(np.float32)
    t = c * (noise.shape[1] - 1)
    i0 = np.clip(np.floor(t).astype(int), 0, noise.shape[1] - 2)
    w = (t - i0)[None, :]
    rows = noise[:, i0] * (1 - w[..., None]) + noise[:, i0 + 1] * w[..., None]  # (b, S, 6)
    lum += rows[:, :, i0] * (1 - w[:, None, :]) + rows[:, :, i0 + 1] * w[:, None, :]
    img = scenes["bg_rgb"][sl][:, None, None, :] * (1.0 + lum[..., None])
    return np.clip(img, 0.0, 1.0)


def _sphere_trace(
    shape_idx: np.ndarray, ox: np.ndarray, oy: np.ndarray, oz: np.ndarray,
    dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, t0: np.ndarray, t1: np.ndarray,
    max_steps: int = 200, eps: float = 2e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """March rays o + t d (object frame) until the SDF falls below ``eps``.

    Rays are grouped by shape class; only the rays still marching are evaluated at each
    step (an active set), so the cost follows the number of unresolved rays.

    Returns
    -------
    hit : bool (n_rays,), t : float32 (n_rays,)
    """
    n = ox.shape[0]
    t = t0.astype(np.float32).copy()
    hit = np.zeros(n, dtype=bool)
    for k in np.unique(shape_idx):
        sdf = _SDFS[int(k)]
        active = np.flatnonzero(shape_idx == k)
        tk = t[active]
        ax, ay, az = ox[active], oy[active], oz[active]
        bx, by, bz = dx[active], dy[active], dz[active]
        tend = t1[active]
        for _ in range(max_steps):
            d = sdf(ax + tk * bx, ay + tk * by, az + tk * bz)
            done = d < eps
            if done.any():
                hit[active[done]] = True
                t[active[done]] = tk[done]
            tk = tk + d
            keep = ~done & (tk < tend)
            if not keep.all():
                active, tk = active[keep], tk[keep]
                ax, ay, az, bx, by, bz = ax[keep], ay[keep], az[keep], bx[keep], by[keep], bz[keep]
                tend = tend[keep]
            if active.size == 0:
                break
    return hit, t


def _normals(shape_idx, px, py, pz):
    """Unit SDF gradients (object frame) by the tetrahedron technique (Quilez)."""
    h = 1e-3
    nx = np.zeros_like(px)
    ny = np.zeros_like(px)
    nz = np.zeros_like(px)
    offsets = ((1, -1, -1), (-1, -1, 1), (-1, 1, -1), (1, 1, 1))
    for k in np.unique(shape_idx):
        sel = np.flatnonzero(shape_idx == k)
        sdf = _SDFS[int(k)]
        for ex, ey, ez in offsets:
            v = sdf(px[sel] + ex * h, py[sel] + ey * h, pz[sel] + ez * h)
            nx[sel] += ex * v
            ny[sel] += ey * v
            nz[sel] += ez * v
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
    return nx / norm, ny / norm, nz / norm


def _render_chunk(
    scenes: dict[str, np.ndarray], sl: slice, size: int, return_masks: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    img = _render_background(scenes, sl, size)  # (b, S, S, 3)
    b = img.shape[0]
    present = scenes["present"][sl]
    m = present.shape[1]
    flat = img.reshape(-1, 3)
    zbuf = np.full(b * size * size, np.inf, dtype=np.float32)
    labels = np.full(b * size * size, -1, dtype=np.int8) if return_masks else None
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres, in pixels

    # gather, for every present object, the pixels inside its bounding disc
    ray_img, ray_slot, ray_pix, ray_u, ray_v = [], [], [], [], []
    obj_img, obj_slot = np.nonzero(present)
    radius_px = scenes["size"][sl][obj_img, obj_slot] * size
    centre_px = scenes["position"][sl][obj_img, obj_slot] * size
    for o in range(obj_img.size):
        r = radius_px[o] * _BOUND + 1.0
        cx, cy = centre_px[o]
        j0, j1 = max(0, int(np.floor(cx - r))), min(size, int(np.ceil(cx + r)) + 1)
        i0, i1 = max(0, int(np.floor(cy - r))), min(size, int(np.ceil(cy + r)) + 1)
        ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
        u = (coords[jj] - cx) / radius_px[o]  # object units: radius 1 = bounding sphere
        v = (coords[ii] - cy) / radius_px[o]
        inside = u * u + v * v < 1.0
        ii, jj, u, v = ii[inside], jj[inside], u[inside], v[inside]
        ray_img.append(np.full(u.size, obj_img[o]))
        ray_slot.append(np.full(u.size, obj_slot[o]))
        ray_pix.append((obj_img[o] * size + ii) * size + jj)
        ray_u.append(u)
        ray_v.append(v)
    if not ray_u:
        return img, None if labels is None else labels.reshape(b, size, size)
    ri = np.concatenate(ray_img)
    rs = np.concatenate(ray_slot)
    pix = np.concatenate(ray_pix)
    u = np.concatenate(ray_u).astype(np.float32)
    v = np.concatenate(ray_v).astype(np.float32)

    # camera ray (u, v, -w0) + t (0, 0, 1) rotated into the object frame: p_obj = R^T p_cam
    R = scenes["rotation"][sl][ri, rs].astype(np.float32)  # (n_rays, 3, 3)
    w0 = np.sqrt(np.maximum(1.0 - u * u - v * v, 0.0))  # enter the bounding sphere at t=0
    ox = R[:, 0, 0] * u + R[:, 1, 0] * v - R[:, 2, 0] * w0
    oy = R[:, 0, 1] * u + R[:, 1, 1] * v - R[:, 2, 1] * w0
    oz = R[:, 0, 2] * u + R[:, 1, 2] * v - R[:, 2, 2] * w0
    dx, dy, dz = R[:, 2, 0], R[:, 2, 1], R[:, 2, 2]
    shape_idx = scenes["shape"][sl][ri, rs]
    hit, t = _sphere_trace(shape_idx, ox, oy, oz, dx, dy, dz, np.zeros_like(u), 2 * w0 + 1e-3)

    sel = np.flatnonzero(hit)
    ri, rs, pix, t, R, shape_idx = ri[sel], rs[sel], pix[sel], t[sel], R[sel], shape_idx[sel]
    px = ox[sel] + t * dx[sel]
    py = oy[sel] + t * dy[sel]
    pz = oz[sel] + t * dz[sel]
    nx, ny, nz = _normals(shape_idx, px, py, pz)
    # back to the camera frame: n_cam = R n_obj
    cx_ = R[:, 0, 0] * nx + R[:, 0, 1] * ny + R[:, 0, 2] * nz
    cy_ = R[:, 1, 0] * nx + R[:, 1, 1] * ny + R[:, 1, 2] * nz
    cz_ = R[:, 2, 0] * nx + R[:, 2, 1] * ny + R[:, 2, 2] * nz
    lam = np.maximum(cx_ * _LIGHT[0] + cy_ * _LIGHT[1] + cz_ * _LIGHT[2], 0.0)
    spec = np.maximum(cx_ * _HALF[0] + cy_ * _HALF[1] + cz_ * _HALF[2], 0.0) ** _SHININESS
    base = scenes["rgb"][sl][ri, rs]
    colour = base * (_AMBIENT + _DIFFUSE * lam)[:, None] + (_SPECULAR * spec)[:, None]
    # depth in image widths: the object's centre depth plus the hit point's camera z
    radius = scenes["size"][sl][ri, rs]
    z = scenes["depth"][sl][ri, rs] + radius * (t - w0[sel])
    z = z.astype(np.float32)
    # z-buffer, one slot at a time (pixels are unique within a slot)
    for s in range(m):
        k = np.flatnonzero(rs == s)
        nearer = z[k] < zbuf[pix[k]]
        k = k[nearer]
        zbuf[pix[k]] = z[k]
        flat[pix[k]] = colour[k]
        if labels is not None:
            labels[pix[k]] = s
    img = np.clip(flat.reshape(b, size, size, 3), 0.0, 1.0)
    return img, None if labels is None else labels.reshape(b, size, size)


def render_scenes(
    scenes: dict[str, np.ndarray],
    image_size: int = 64,
    batch_size: int = 500,
    return_masks: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render scene descriptions from :func:`sample_scenes` into RGB images.

    Parameters
    ----------
    scenes : dict
        As returned by :func:`sample_scenes`.
    image_size : int
        Output images are ``image_size x image_size`` pixels (>= 8).
    batch_size : int
        Scenes rendered together (bounds memory: about 3 kB per pixel-ray).
    return_masks : bool
        Also return, for every pixel, which object it shows (0 or 1, -1 for background).

    Returns
    -------
    images : ndarray of uint8, shape (n, image_size, image_size, 3)
    masks : ndarray of int8, shape (n, image_size, image_size)
        Only when ``return_masks``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise ValueError(f"image_size: expected an int >= 8, got {image_size!r}")
    if image_size < 8:
        raise ValueError(f"image_size: expected an int >= 8, got {image_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    n = scenes["present"].shape[0]
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((n, image_size, image_size), dtype=np.int8) if return_masks else None
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        img, lab = _render_chunk(scenes, sl, int(image_size), return_masks)
        images[sl] = np.round(img * 255.0).astype(np.uint8)
        if masks is not None:
            masks[sl] = lab
    return (images, masks) if return_masks else images


def render_stimuli(
    n: int,
    image_size: int = 64,
    random_state: int | np.random.Generator | None = 0,
    ids: np.ndarray | None = None,
    max_objects: int = 2,
    p_two: float = 0.35,
    verbose: bool | None = None,
) -> Stimuli:
    """Draw and render ``n`` images of the stimulus world.

    Parameters
    ----------
    n : int
        Number of images.
    image_size : int
        Height and width in pixels (default 64).
    random_state : int | Generator | None
        Seed: the same seed gives the same images (at any ``image_size``, the same scenes).
    ids : ndarray of int, shape (n,), optional
        Stimulus ids (default ``0..n-1``).
    max_objects, p_two : int, float
        At most ``max_objects`` (1 or 2) objects; two with probability ``p_two``.
    verbose : bool | None
        Show a progress bar.

    Returns
    -------
    Stimuli
        ``images`` uint8 (n, S, S, 3). ``attributes`` (first object = the larger one):
        ``shape`` (n,) class index into :data:`SHAPE_CLASSES`; ``colour`` (n,) index into
        :data:`COLOUR_NAMES`; ``size`` (n,) radius as a fraction of the width;
        ``position`` (n, 2) centre (x, y) as fractions of width/height; ``n_objects`` (n,);
        and the same for every object: ``shapes``, ``colours`` (n, 2) with -1 when absent,
        ``sizes`` (n, 2), ``positions`` (n, 2, 2). ``objects_3d``: dict of arrays of
        shape (n, max_objects, ...) with ``present``, ``shape``, ``rgb``, ``size``,
        ``position``, ``depth``, ``rotation`` (3x3, object to camera frame), which with
        :func:`shape_sdf` / :func:`object_mesh` re-create each object.

    Examples
    --------
    >>> stim = render_stimuli(4, image_size=32, random_state=0)
    >>> stim.images.shape, SHAPE_CLASSES[stim.attributes["shape"][0]]  # doctest: +SKIP
    ((4, 32, 32, 3), 'torus')
    """
    scenes = sample_scenes(n, random_state=random_state, max_objects=max_objects, p_two=p_two)
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    batch = 500
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    starts = range(0, n, batch)
    if verbose:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=len(starts), desc="rendering stimuli", unit="batch")
    for s in starts:
        part = {k: v[s : s + batch] for k, v in scenes.items()}
        images[s : s + batch] = render_scenes(part, image_size=image_size, batch_size=batch)
    return scenes_to_stimuli(scenes, images, ids)


def scenes_to_stimuli(
    scenes: dict[str, np.ndarray], images: np.ndarray, ids: np.ndarray
) -> Stimuli:
    """Wrap rendered scenes into a :class:`Stimuli` with attributes and ``objects_3d``."""
    attributes = {
        "shape": scenes["shape"][:, 0],
        "colour": scenes["colour"][:, 0],
        "size": scenes["size"][:, 0],
        "position": scenes["position"][:, 0],
        "n_objects": scenes["present"].sum(axis=1),
        "shapes": scenes["shape"],
        "colours": scenes["colour"],
        "sizes": scenes["size"],
        "positions": scenes["position"],
    }
    keys = ("present", "shape", "rgb", "size", "position", "depth", "rotation")
    objects_3d = {k: scenes[k] for k in keys}
    return Stimuli(images=images, ids=np.asarray(ids), attributes=attributes,
                   objects_3d=objects_3d)


# --------------------------------------------------------------------------------------
# 3D re-creation (for scoring 3D decoders)
# --------------------------------------------------------------------------------------
def object_mesh(
    shape: int | str, rotation: np.ndarray | None = None, resolution: int = 48
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of a shape (marching cubes on its SDF), in the camera frame.

    Parameters
    ----------
    shape : int or str
        Class index or name.
    rotation : ndarray (3, 3), optional
        Object-to-camera rotation (``objects_3d["rotation"][i, k]``); identity if None.
    resolution : int
        Grid points per axis over [-1, 1]^3.

    Returns
    -------
    vertices : ndarray (n_vertices, 3), in object units (bounding radius 1; multiply by
        ``size`` for image widths). faces : ndarray of int (n_faces, 3).
    """
    from skimage.measure import marching_cubes

    k = _check_shape(shape)
    g = np.linspace(-1.0, 1.0, int(resolution), dtype=np.float32)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    vol = _SDFS[k](X, Y, Z)
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(g[1] - g[0],) * 3)
    verts = verts - 1.0
    if rotation is not None:
        verts = verts @ np.asarray(rotation, dtype=np.float64).T
    return verts, faces


def object_points(
    shape: int | str,
    rotation: np.ndarray | None = None,
    n_points: int = 2048,
    random_state: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Points sampled uniformly (by area) on a shape's surface, in the camera frame.

    Returns
    -------
    points : ndarray (n_points, 3), object units. Use with a Chamfer distance to score a
        decoded 3D object against the true one.
    """
    verts, faces = object_mesh(shape, rotation)
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(random_state)
    f = rng.choice(len(faces), size=int(n_points), p=area / area.sum())
    a, b = rng.random((2, int(n_points)))
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    t = tri[f]
    return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])
