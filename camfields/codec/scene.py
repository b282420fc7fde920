"""The scene codec's file side: a fitted radiance field (NeRF or dynamic) to a ``.camf`` file and
back to rendered views.

Post-training quantization as for every field (``codec.fields``): parameters at n bits, a
Fourier projection at 16, the occupancy grid's cells as 0 / 1. The header holds the format
name, the task (``nerf`` or ``dynamic``), the weights' bit depth, the radiance-field and
sampler configs, the scene box and background, and the camera a viewer needs by default:
image size, focal length in pixels and the orbit of the training cameras (radius around the z
axis and height), from which ``turntable_poses`` draws a turntable (``path = "orbit"``: looking at
the origin; ``"forward"``: a circle of cameras looking down -z, for forward-facing scenes). The
header's ``rays`` table says how views become rays: ``{"space": "world"}``; ``{"space": "ndc"}``
with the ``height``, ``width``, ``focal`` and ``near`` of the training camera that defines the NDC
rays (``render.rays.ndc_rays``); or ``{"space": "contract"}`` with the ``near`` and ``far`` distances of
an unbounded scene's contracted rays (``render.contraction``). Files written before that key render
world rays. An optional ``frame`` (a 4x4 similarity, rows, ``io.centring.SceneFrame``) maps the
capture's recorded coordinates to the scene's: ``SceneFile.frame`` applies it to poses given in them.

Decoding needs this module, the bitstream reader and the renderer only: no training code is
imported. Views are camera-to-world matrices (4, 4), Blender convention (the camera looks down
its -z axis); a dynamic field also takes a time in [0, 1].

Example::

    >>> import tempfile, pathlib, torch
    >>> from camfields.fields import EncodingConfig, FieldConfig
    >>> from camfields.render.model import NeRFModel, RadianceConfig, SamplerConfig, build_radiance_field
    >>> enc = EncodingConfig("sinusoidal", num_freqs=4)
    >>> cfg = RadianceConfig(FieldConfig(enc, hidden=16, depth=2), FieldConfig(enc, hidden=16, depth=1), features=8)
    >>> box, sampler = [-1.0, -1, -1, 1, 1, 1], SamplerConfig(grid_resolution=8)
    >>> model = NeRFModel(build_radiance_field(cfg, torch.tensor(box)), sampler)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scene.camf"
    >>> camera = SceneCamera(width=8, height=6, focal=10.0, orbit_radius=3.0, orbit_height=1.0)
    >>> size = encode_scene(path, model, cfg, sampler, box, [1.0, 1, 1], "nerf", camera, bits=8)
    >>> scene = read_scene(path)
    >>> render_view(scene, turntable_poses(scene.camera, 4)[0]).shape
    torch.Size([6, 8, 3])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camfields.codec.bitstream import Bitstream, read_bitstream, write_bitstream
from camfields.codec.fields import (
    check_encodable,
    check_stored,
    check_weight_bits,
    header_of,
    load_levels,
    quantize_state,
    stream_bits,
)
from camfields.config import check_choice, from_dict
from camfields.errors import CamfieldsError
from camfields.io.centring import SceneFrame
from camfields.render.contraction import Contraction
from camfields.render.model import (
    RAY_SPACES,
    NeRFModel,
    RadianceConfig,
    RaySpace,
    SamplerConfig,
    build_radiance_field,
    check_box,
)
from camfields.render.radiance import render_image
from camfields.render.rays import NDCCamera, forward_circle, orbit

SCENE_FORMAT = "camfields-scene/1"
#: the tasks whose fields a scene file holds: static scenes, and scenes over time
SCENE_TASKS = ("nerf", "dynamic")
#: what a header may ask of the decoder: pixels per side and per view
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 24
#: the default camera paths of ``turntable_poses``: around the z axis looking at the origin, or looking down -z
CAMERA_PATHS = ("orbit", "forward")
#: rays rendered at once while decoding
CHUNK = 1 << 13
_HEADER_KEYS = ("task", "weight_bits", "field", "sampler", "aabb", "background", "camera")


@dataclass
class SceneCamera:
    """The default camera of a scene file: view size (pixels), focal length (pixels) and the orbit
    of the training cameras (distance from the z axis and height), for a turntable along ``path``
    (``CAMERA_PATHS``)."""

    width: int
    height: int
    focal: float
    orbit_radius: float
    orbit_height: float
    path: str = "orbit"

    def check(self, where: str) -> None:
        """One sentence naming ``where`` unless the sizes are in bounds and the numbers finite."""
        sides = (self.width, self.height)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in sides):
            raise CamfieldsError(f"{where}: the view's width and height must be from 1 to {MAX_SIDE}, got {sides}")
        if self.width * self.height > MAX_PIXELS:
            raise CamfieldsError(
                f"{where}: views of {self.width}x{self.height} exceed the decoder's {MAX_PIXELS:,} pixels"
            )
        numbers = (self.focal, self.orbit_radius, self.orbit_height)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
            raise CamfieldsError(f"{where}: the camera's focal length and orbit must be finite numbers, got {numbers}")
        if self.focal <= 0 or self.orbit_radius <= 0:
            raise CamfieldsError(f"{where}: the focal length and orbit radius must be positive, got {numbers[:2]}")
        check_choice(self.path, CAMERA_PATHS, f"{where}: the camera path")


@dataclass
class SceneFile:
    """What a scene file describes: the model (float32, CPU, eval mode, weights at their levels),
    its task, default camera and background (3,)."""

    model: NeRFModel
    task: str
    camera: SceneCamera
    background: torch.Tensor
    #: the capture's recorded coordinates -> the scene's (None: the same)
    frame: SceneFrame | None = None

    def recorded_poses(self, poses: torch.Tensor) -> torch.Tensor:
        """Camera-to-world poses (N, 4, 4) given in the capture's recorded coordinates, in the scene's."""
        return poses if self.frame is None else self.frame.apply(poses)

    @property
    def dynamic(self) -> bool:
        return self.model.field.dynamic


def _build(field_cfg: RadianceConfig, sampler: SamplerConfig, aabb: list[float], rays: RaySpace = None) -> NeRFModel:
    """The model the configs describe; under a meta-device context its box stays on the CPU (the
    model reads its marching step from it) and everything else is laid out without memory."""
    box = torch.tensor(aabb, dtype=torch.float32, device="cpu")
    return NeRFModel(build_radiance_field(field_cfg, box), sampler, rays)


def _rays_header(rays: RaySpace) -> dict[str, Any]:
    """The header's ``rays`` table of a model's NDC camera or contraction (None: world rays)."""
    if rays is None:
        return {"space": "world"}
    return {"space": "ndc" if isinstance(rays, NDCCamera) else "contract", **dataclasses.asdict(rays)}


def _rays(value: Any, path: Path) -> RaySpace:
    """The NDC camera or contraction of a header's ``rays`` table (None: world rays), checked."""
    if not isinstance(value, dict) or value.get("space") not in RAY_SPACES:
        raise CamfieldsError(
            f"{path}: the scene header's rays must be a table whose space is one of {', '.join(RAY_SPACES)}"
        )
    settings = {key: v for key, v in value.items() if key != "space"}
    if value["space"] == "world":
        if settings:
            raise CamfieldsError(f"{path}: the scene header's world rays take no settings, got {sorted(settings)}")
        return None
    rays = from_dict(NDCCamera if value["space"] == "ndc" else Contraction, settings, f"{path} header rays")
    rays.check(str(path))
    return rays


def _frame(value: Any, path: Path) -> SceneFrame | None:
    """The scene frame of a header's ``frame`` (4 rows of 4 numbers; absent: None), checked."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise CamfieldsError(f"{path}: the header's frame must be 4 rows of 4 numbers")
    rows = [_numbers(row, 4, "frame rows", str(path)) for row in value]
    return SceneFrame.of_matrix(torch.tensor(rows, dtype=torch.float64), f"{path}: the header's frame")


def encode_scene(
    path: Path,
    model: NeRFModel,
    field_cfg: RadianceConfig,
    sampler: SamplerConfig,
    aabb: list[float],
    background: list[float],
    task: str,
    camera: SceneCamera,
    bits: int,
    frame: SceneFrame | None = None,
) -> int:
    """Write a fitted scene model (``NeRFModel(build_radiance_field(field_cfg, aabb), sampler, rays)``)
    with ``bits``-bit weights to ``path``; returns the file size in bytes. The model must be the one the
    configs describe; its NDC camera or contraction (``model.rays``) goes to the header's ``rays``, and
    ``frame`` (the capture's coordinates -> the scene's), when given, to its ``frame``."""
    where = f"scene file {path}"
    check_weight_bits(bits, where)
    if task not in SCENE_TASKS:
        raise CamfieldsError(f"{where}: the task must be one of {', '.join(SCENE_TASKS)}, got {task!r}")
    camera.check(where)
    rays = model.rays
    if rays is not None:
        rays.check(where)
    field_cfg.validate()
    sampler.validate()
    check_box(aabb, background, where)
    check_encodable(model, lambda: _build(field_cfg, sampler, aabb), bits, where)
    header = {
        "format": SCENE_FORMAT,
        "task": task,
        "weight_bits": bits,
        "field": dataclasses.asdict(field_cfg),
        "sampler": dataclasses.asdict(sampler),
        "aabb": [float(v) for v in aabb],
        "background": [float(v) for v in background],
        "camera": dataclasses.asdict(camera),
        "rays": _rays_header(rays),
    }
    if frame is not None:
        header["frame"] = frame.matrix().tolist()
    return write_bitstream(path, header, stream_bits(model, bits), quantize_state(model, bits))


def _numbers(value: Any, count: int, what: str, where: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise CamfieldsError(f"{where}: the header's {what} must be a list of {count} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise CamfieldsError(f"{where}: the header's {what} must hold numbers only")
    return [float(v) for v in value]


def _header(stream: Bitstream, path: Path) -> tuple[RadianceConfig, SamplerConfig, list[float], dict[str, Any]]:
    """(field config, sampler config, box, the rest of the header with ``rays`` as an NDC camera, a
    contraction or None and ``frame`` as a scene frame or None) of a scene file, checked."""
    where = str(path)
    header = header_of(stream, path, SCENE_FORMAT, "scene", _HEADER_KEYS, ("field", "sampler", "camera"))
    if header["task"] not in SCENE_TASKS:
        raise CamfieldsError(
            f"{path}: the scene's task must be one of {', '.join(SCENE_TASKS)}, got {header['task']!r}"
        )
    check_weight_bits(header["weight_bits"], where)
    field_cfg = from_dict(RadianceConfig, header["field"], f"{path} header")
    sampler = from_dict(SamplerConfig, header["sampler"], f"{path} header")
    camera = from_dict(SceneCamera, header["camera"], f"{path} header")
    aabb = _numbers(header["aabb"], 6, "aabb", where)
    background = _numbers(header["background"], 3, "background", where)
    try:
        field_cfg.validate()
        sampler.validate()
        check_box(aabb, background, where)
    except CamfieldsError as e:
        raise CamfieldsError(f"{path}: its header describes no scene: {e}") from None
    camera.check(where)
    rays = _rays(header.get("rays", {"space": "world"}), path)
    frame = _frame(header.get("frame"), path)
    return field_cfg, sampler, aabb, header | {"camera": camera, "background": background, "rays": rays, "frame": frame}


def scene_from_bitstream(stream: Bitstream, path: Path | str = "the bitstream") -> SceneFile:
    """The scene a bitstream describes.

    The header is checked first and the model it names is laid out without memory (on the meta
    device): the stored tensors' names and shapes must be exactly those it stores, every
    tensor's integers within its bit depth, before anything is allocated.
    """
    path = Path(path)
    field_cfg, sampler, aabb, header = _header(stream, path)
    bits = header["weight_bits"]
    try:
        with torch.device("meta"):
            layout = _build(field_cfg, sampler, aabb, header["rays"])
    except CamfieldsError as e:
        raise CamfieldsError(f"{path}: its header describes no scene: {e}") from None
    check_stored(stream, layout, bits, str(path), "the field its config describes")
    if layout.field.dynamic != (header["task"] == "dynamic"):
        raise CamfieldsError(f"{path}: its header names a {header['task']} scene but its field is not one")
    model = load_levels(_build(field_cfg, sampler, aabb, header["rays"]), stream.tensors).eval()
    return SceneFile(model, header["task"], header["camera"], torch.tensor(header["background"]), header["frame"])


def read_scene(path: Path) -> SceneFile:
    """The scene of a file (checksum and header verified): see ``scene_from_bitstream``."""
    return scene_from_bitstream(read_bitstream(path), path)


def turntable_poses(camera: SceneCamera, frames: int) -> torch.Tensor:
    """``frames`` camera-to-world matrices (F, 4, 4) on the orbit of the scene's training cameras, looking
    at the origin (``path = "orbit"``) or down -z (``"forward"``, ``render.rays.forward_circle``)."""
    path = orbit if camera.path == "orbit" else forward_circle
    return path(camera.orbit_radius, camera.orbit_height, frames)


@torch.no_grad()
def render_view(
    scene: SceneFile,
    pose: torch.Tensor,
    time: float | None = None,
    camera: SceneCamera | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The scene's view (H, W, 3) in [0, 1] from camera-to-world ``pose`` (4, 4) with ``camera``'s size
    and focal length (default: the file's), at ``time`` in [0, 1] for a dynamic scene (default 0)."""
    camera = camera or scene.camera
    device = device or torch.device("cpu")
    model = scene.model.to(device)
    time = (0.0 if time is None else time) if scene.dynamic else None
    return render_image(
        model, pose, camera.height, camera.width, camera.focal, scene.background.to(device), CHUNK, time
    ).cpu()
