"""A scene folder of any format camfields reads, its loader picked by what the folder holds.

In this order: ``transforms_train.json`` is a Blender scene (``io.blender``), ``transforms.json`` a
nerfstudio / Instant-NGP capture (``io.nerfstudio``), ``sparse/0/cameras.*`` or ``sparse/cameras.*`` a
COLMAP capture (``io.colmap``), ``poses_bounds.npy`` an LLFF capture (``io.llff``). A capture holding both
a COLMAP model and the ``poses_bounds.npy`` made from it is read from the model: LLFF's file keeps one
focal length for all photos (the first camera's), the model each photo's. (NDC rays always read
``poses_bounds.npy``, for its depth bounds.)
A folder holding none of them is refused in one sentence listing what was looked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from camfields.errors import CamfieldsError
from camfields.io.blender import CameraSplit, load_blender
from camfields.io.colmap import load_colmap
from camfields.io.llff import load_llff
from camfields.io.nerfstudio import load_transforms

#: reads one split of a scene: (folder, split, downscale factor, background RGB) -> the split
Loader = Callable[[Path, str, int, tuple[float, float, float]], CameraSplit]

#: (glob patterns of the files that mark the format, the format's name, its loader), in the order they are tried
FORMATS = (
    (("transforms_train.json",), "Blender", load_blender),
    (("transforms.json",), "nerfstudio / Instant-NGP", load_transforms),
    (("sparse/0/cameras.*", "sparse/cameras.*"), "COLMAP", load_colmap),
    (("poses_bounds.npy",), "LLFF", load_llff),
)


def scene_loader(root: Path) -> Loader:
    """The loader of the scene folder ``root``, picked by the first of ``FORMATS`` whose file it holds."""
    root = Path(root)
    if not root.is_dir():
        raise CamfieldsError(f"scene folder {root} does not exist or is not a folder")
    for markers, _, loader in FORMATS:
        if any(path.is_file() for marker in markers for path in root.glob(marker)):
            return loader
    looked_for = ", ".join(f"{' or '.join(markers)} ({name})" for markers, name, _ in FORMATS)
    raise CamfieldsError(f"{root} holds no scene camfields reads: looked for {looked_for}")


def load_scene(
    root: Path, split: str, downscale_factor: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> CameraSplit:
    """Load one split of the scene in folder ``root`` with the loader its files call for (arguments as
    ``io.blender.load_blender``; captures hold out every 8th view for "val" and "test")."""
    return scene_loader(root)(Path(root), split, downscale_factor, background)
