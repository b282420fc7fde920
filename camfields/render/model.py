"""A radiance-field model as a renderer: its config, the field with its occupancy grid and
sampler (``NeRFModel``), built from the config alone so that a decoder needs no training code.

Example::

    >>> import torch
    >>> from camfields.fields import EncodingConfig, FieldConfig
    >>> enc = EncodingConfig("sinusoidal", num_freqs=4)
    >>> cfg = RadianceConfig(FieldConfig(enc, hidden=16, depth=2), FieldConfig(enc, hidden=16, depth=1), features=8)
    >>> field = build_radiance_field(cfg, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    >>> model = NeRFModel(field, SamplerConfig(grid_resolution=8))
    >>> rays = torch.zeros(2, 3), torch.nn.functional.normalize(torch.ones(2, 3), dim=-1)
    >>> model.render(*rays, torch.ones(3)).color.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from camfields.config import check_choice
from camfields.errors import CamfieldsError
from camfields.fields import FieldConfig, build_encoding, build_field, build_mlp
from camfields.modules.radiance import TRUNK_MODULATION_COORDS, TRUNK_MODULATION_DIMS, RadianceField
from camfields.render.contraction import CONTRACTED_BOX, Contraction
from camfields.render.occupancy import OccupancyGrid
from camfields.render.radiance import render_rays
from camfields.render.rays import NDCCamera
from camfields.render.sampling import HierarchicalSampler, OccupancySampler, Sampler
from camfields.render.volume import RenderResult

SAMPLERS = ("occupancy", "hierarchical")
#: how rays reach the field: as cast in the world, in normalised device coordinates (forward-facing
#: scenes), or whole, at contracted positions (unbounded scenes)
RAY_SPACES = ("world", "ndc", "contract")
#: the near distance of each ray space when ``rays.near`` is not set: NDC's near plane at world depth 1
#: (LLFF scenes are scaled so the nearest bound is 1 / 0.75); contracted rays start just off the camera
DEFAULT_NEAR = {"world": 0.0, "ndc": 1.0, "contract": 0.05}
#: the scene box of NDC rays: the frustum from the near plane to infinity
NDC_BOX = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
#: the most occupancy-grid cells per axis (512^3 cells: 128 MiB of booleans)
MAX_GRID_RESOLUTION = 512


@dataclass
class RadianceConfig:
    """Trunk (its encoding: the position's) and head (its encoding: the view direction's);
    for dynamic scenes a deformation MLP over (x, t), time as a trunk input, and where the
    trunk's modulation grid is read (position, time or space_time)."""

    trunk: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    head: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    features: int = 256  # trunk features passed to the head
    density_bias: float = -2.0  # density = softplus(raw + bias)
    deformation: FieldConfig | None = None  # T-NeRF: (x, t) -> offset into the canonical field
    time_input: bool = False  # the trunk reads (x, t) instead of x
    trunk_modulation: str = "position"  # position | time | space_time | direction

    def validate(self) -> None:
        check_choice(self.trunk_modulation, TRUNK_MODULATION_COORDS, "field.trunk_modulation")
        if not 1 <= self.features <= 1 << 16 or not math.isfinite(self.density_bias):
            raise CamfieldsError(
                f"field.features must be from 1 to 65536 and density_bias finite, got {self.features} "
                f"and {self.density_bias}"
            )
        for part in (self.trunk, self.head, self.deformation):
            if part is not None:
                part.validate()


@dataclass
class SamplerConfig:
    """How rays are sampled: occupancy-grid marching or hierarchical (coarse + fine)."""

    kind: str = "occupancy"
    steps_per_diagonal: int = 512  # occupancy: marching step = box diagonal / this
    grid_resolution: int = 128  # occupancy grid cells per axis
    threshold: float = 0.01  # occupancy: opacity of one step that marks a cell occupied
    update_every: int = 16  # occupancy: training steps between grid updates
    warmup: int = 256  # occupancy: steps during which updates refresh every cell
    update_fraction: float = 0.5  # occupancy: share of cells refreshed by an update after warm-up
    stop_transmittance: float = 1e-4  # occupancy: early ray termination
    cone_angle: float = 0.0  # occupancy: > 0: steps grow as cone_angle * distance once past step / cone_angle
    coarse: int = 64  # hierarchical: stratified samples per ray
    fine: int = 128  # hierarchical: importance samples per ray

    def validate(self) -> None:
        check_choice(self.kind, SAMPLERS, "sampler")
        counts = {
            "steps_per_diagonal": (self.steps_per_diagonal, 1 << 16),
            "grid_resolution": (self.grid_resolution, MAX_GRID_RESOLUTION),
            "coarse": (self.coarse, 1 << 12),
            "fine": (self.fine, 1 << 12),
        }
        for name, (value, most) in counts.items():
            if not 1 <= value <= most:
                raise CamfieldsError(f"sampler.{name} must be from 1 to {most}, got {value}")
        if not 0 <= self.cone_angle <= 1:
            raise CamfieldsError(f"sampler.cone_angle must be from 0 to 1, got {self.cone_angle}")


@dataclass
class RaysConfig:
    """How rays reach the field. ``space = "world"``: as cast, through the scene box. ``"ndc"``, for
    forward-facing captures (LLFF): every ray mapped by ``render.rays.ndc_rays`` with the training camera
    and the near plane at world depth ``near``; the box must be ``NDC_BOX``. ``"contract"``, for unbounded
    360-degree captures: whole rays from ``near`` to ``far``, the field read at contracted positions
    (``render.contraction``); the box must be ``CONTRACTED_BOX`` and the loader centres and scales the
    poses (``io.centring``). ``near`` unset: ``DEFAULT_NEAR`` of the space."""

    space: str = "world"
    near: float | None = None
    far: float = 1000.0  # contract: where samples end (world units; the cameras lie at distance about 1)

    def near_distance(self) -> float:
        """``near``, or the default of the space."""
        return DEFAULT_NEAR[self.space] if self.near is None else self.near

    def validate(self, aabb: list[float]) -> None:
        check_choice(self.space, RAY_SPACES, "rays.space")
        near = self.near_distance()
        if not (math.isfinite(near) and math.isfinite(self.far) and 0 <= near < self.far):
            raise CamfieldsError(f"rays.near and rays.far must satisfy 0 <= near < far, got {near} and {self.far}")
        if self.space == "ndc" and near <= 0:
            raise CamfieldsError(f"rays.near must be a positive number for NDC rays, got {near}")
        box, cube = {"ndc": (NDC_BOX, "[-1, 1]^3"), "contract": (CONTRACTED_BOX, "[-2, 2]^3")}.get(
            self.space, (None, "")
        )
        if box is not None and [float(v) for v in aabb] != box:
            raise CamfieldsError(f'rays.space = "{self.space}" samples the cube {cube}: set aabb = {box}, got {aabb}')

    def contraction(self) -> Contraction | None:
        """The contraction of ``space = "contract"`` (None for the other spaces)."""
        return Contraction(self.near_distance(), self.far) if self.space == "contract" else None


def check_box(aabb: list[float], background: list[float], where: str = "the scene") -> None:
    """One sentence naming ``where`` unless ``aabb`` is 6 finite numbers (minimum corner first, each
    below the maximum) and ``background`` an RGB colour in [0, 1]."""
    if len(background) != 3 or len(aabb) != 6:
        raise CamfieldsError(f"{where}: background needs 3 numbers (RGB in [0, 1]) and aabb 6 (min xyz, max xyz)")
    if not all(0 <= c <= 1 for c in background) or not all(math.isfinite(v) for v in aabb):
        raise CamfieldsError(
            f"{where}: background must be RGB in [0, 1] and aabb finite numbers, got {background} and {aabb}"
        )
    if any(lo >= hi for lo, hi in zip(aabb[:3], aabb[3:])):
        raise CamfieldsError(f"{where}: aabb {aabb} must list its minimum corner first, each below the maximum")


def build_radiance_field(cfg: RadianceConfig, aabb: torch.Tensor) -> RadianceField:
    """The radiance field of ``cfg`` over the box ``aabb`` (6,)."""
    mod_dim = TRUNK_MODULATION_DIMS[cfg.trunk_modulation]
    trunk = build_field(cfg.trunk, in_dim=4 if cfg.time_input else 3, out_dim=1 + cfg.features, mod_dim=mod_dim)
    direction = build_encoding(cfg.head.encoding, 3)
    head = build_mlp(cfg.head, cfg.features + direction.out_dim, 3, encoding=None, mod_dim=2)
    deformation = None if cfg.deformation is None else build_field(cfg.deformation, in_dim=4, out_dim=3)
    return RadianceField(
        trunk, head, direction, aabb, cfg.density_bias, deformation, cfg.time_input, cfg.trunk_modulation
    )


#: how a scene's rays reach its field: as cast (None), as NDC rays of a camera, or contracted
RaySpace = NDCCamera | Contraction | None


class NeRFModel(nn.Module):
    """A radiance field, its occupancy grid (when marching), its sampling settings and how rays reach
    it (``rays``): for a forward-facing scene the camera of its NDC rays, for an unbounded one its
    contraction, else None.

    Checkpoints hold the field and the grid; ``OccupancyRefresh`` keeps the grid up to date
    during training. With ``ndc``, ``render`` maps the world rays it is given to NDC rays (unit
    directions; the field's box must be [-1, 1]^3) and shades them with the world directions, as
    the original NeRF does; depths are then NDC distances. With ``contraction`` the samplers run
    along whole rays and the field and grid (over [-2, 2]^3) are read at contracted positions.
    """

    def __init__(self, field: RadianceField, sampler: SamplerConfig, rays: RaySpace = None):
        super().__init__()
        self.field, self.sampler_cfg, self.rays = field, sampler, rays
        self.grid = (
            OccupancyGrid(field.aabb, sampler.grid_resolution, threshold=sampler.threshold)
            if sampler.kind == "occupancy"
            else None
        )

    @property
    def ndc(self) -> NDCCamera | None:
        """The camera of the model's NDC rays (None unless ``rays`` is one)."""
        return self.rays if isinstance(self.rays, NDCCamera) else None

    @property
    def contraction(self) -> Contraction | None:
        """The contraction of the model's unbounded rays (None unless ``rays`` is one)."""
        return self.rays if isinstance(self.rays, Contraction) else None

    @functools.cached_property
    def step_size(self) -> float:
        """The marching step: the box diagonal over ``steps_per_diagonal``, read from the box once
        (not every step; a model laid out on the meta device never reads it)."""
        box = self.field.aabb
        return float((box[3:] - box[:3]).norm()) / self.sampler_cfg.steps_per_diagonal

    def sampler(self) -> Sampler:
        cfg = self.sampler_cfg
        if self.grid is not None:
            return OccupancySampler(self.grid, self.step_size, cfg.stop_transmittance, cfg.cone_angle, self.contraction)
        return HierarchicalSampler(self.field.aabb, cfg.coarse, cfg.fine, contraction=self.contraction)

    def render(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        background: torch.Tensor,
        generator: torch.Generator | None = None,
        times: torch.Tensor | None = None,
    ) -> RenderResult:
        """Colour, opacity and depth of world rays (R, 3) with unit directions (at ``times`` (R,) for a
        dynamic field); ``generator`` jitters the samples (training)."""
        view_directions = None
        if self.ndc is not None:
            view_directions = directions
            origins, directions = self.ndc(origins, directions)
        return render_rays(
            self.field,
            self.sampler(),
            origins,
            directions,
            background,
            generator,
            times,
            view_directions,
            self.contraction,
        ).result
