"""Rendering for radiance fields: camera rays, occupancy-grid ray marching, volume rendering."""

from camfields.render.occupancy import OccupancyGrid, ray_aabb
from camfields.render.rays import camera_rays, focal_from_fov
from camfields.render.volume import RenderResult, render_weights, volume_render

__all__ = [
    "OccupancyGrid",
    "RenderResult",
    "camera_rays",
    "focal_from_fov",
    "ray_aabb",
    "render_weights",
    "volume_render",
]
