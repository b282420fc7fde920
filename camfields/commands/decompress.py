"""Rebuild what a camfields file (.camf) holds, from the file alone: an image as a PNG, a scene's
views or turntable, a video's frames.

- An image file gives a PNG (--out x.png) of the bit depth of the image that was fitted.
- A scene file (NeRF or dynamic) gives a turntable of --frames views on the orbit of its
  training cameras (time sweeping 0 to 1 for a dynamic scene), or with --views the cameras of a
  Blender transforms_*.json (times from its frames), at the file's view size: PNGs in the
  folder --out, or an mp4 when --out ends in .mp4.
- A video file gives its frames, as `camfields decode` does: PNGs in a folder or an mp4.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from camfields.codec.bitstream import Bitstream, read_bitstream
from camfields.codec.image import IMAGE_FORMAT, field_from_bitstream, render
from camfields.codec.scene import SCENE_FORMAT, SceneFile, render_view, scene_from_bitstream, turntable_poses
from camfields.codec.video import BITSTREAM_FORMAT, iter_frames, write_frames
from camfields.errors import CamfieldsError
from camfields.io.blender import read_cameras
from camfields.io.images import save_png
from camfields.render.rays import focal_from_fov
from camfields.runtime import resolve_device


@dataclass
class DecodeOptions:
    """How to decode: a scene's cameras (a transforms file) or turntable views, an mp4's frame rate,
    the device (auto: CUDA when available)."""

    views: Path | None = None
    frames: int = 60
    fps: int = 25
    device: str = "auto"


def _image(stream: Bitstream, path: Path, out: Path, options: DecodeOptions) -> str:
    if out.suffix.lower() != ".png":
        raise CamfieldsError(f"--out {out} must be a .png file for an image")
    field = field_from_bitstream(stream, path)
    save_png(
        out, render(field.model.to(resolve_device(options.device)), field.height, field.width), bits=field.png_bits
    )
    return f"decoded {field.width}x{field.height} image to {out}"


def _scene_views(scene: SceneFile, views: Path, device: torch.device) -> tuple[list[str], Iterator[torch.Tensor]]:
    """The names and rendered views of the cameras of a transforms file (poses in the capture's recorded
    coordinates, moved into the scene's by the file's frame), at the scene's view size."""
    cameras = read_cameras(views)
    camera = scene.camera
    camera = type(camera)(camera.width, camera.height, focal_from_fov(camera.width, cameras.fov), 0.0, 0.0)
    times = cameras.times.tolist() if cameras.times is not None else [None] * len(cameras.names)
    if scene.dynamic and cameras.times is None:
        raise CamfieldsError(f"{views} gives no frame a 'time', which a dynamic scene needs")
    poses = scene.recorded_poses(cameras.poses)
    frames = (render_view(scene, pose, t, camera, device) for pose, t in zip(poses, times))
    return cameras.names, frames


def _scene(stream: Bitstream, path: Path, out: Path, options: DecodeOptions) -> str:
    scene = scene_from_bitstream(stream, path)
    device = resolve_device(options.device)
    if options.views:
        names, frames = _scene_views(scene, Path(options.views), device)
        if out.suffix.lower() == ".mp4":
            count = write_frames(frames, out, options.fps)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, frame in zip(names, frames):
                save_png(out / f"{name}.png", frame)
            count = len(names)
    else:
        if options.frames < 1:
            raise CamfieldsError(f"--frames must be at least 1, got {options.frames}")
        poses = turntable_poses(scene.camera, options.frames)
        times = [k / max(options.frames - 1, 1) for k in range(options.frames)]
        count = write_frames((render_view(scene, p, t, device=device) for p, t in zip(poses, times)), out, options.fps)
    camera = scene.camera
    return f"rendered {count} {scene.task} views of {camera.width}x{camera.height} to {out}"


def _video(stream: Bitstream, path: Path, out: Path, options: DecodeOptions) -> str:
    count = write_frames(iter_frames(path, resolve_device(options.device)), out, options.fps)
    return f"decoded {count} video frames to {out}"


#: what each format decodes to, by the format name its header holds
DECODERS: dict[str, Callable[[Bitstream, Path, Path, DecodeOptions], str]] = {
    IMAGE_FORMAT: _image,
    SCENE_FORMAT: _scene,
    BITSTREAM_FORMAT: _video,
}


def decompress(path: Path, out: Path, options: DecodeOptions | None = None) -> str:
    """Decode the file ``path`` to ``out`` (which must not exist, or be an empty folder); returns
    what was written, in one line. A format this decoder does not know is refused."""
    out, options = Path(out), options or DecodeOptions()
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise CamfieldsError(f"{out} already exists; give a new file or folder for --out")
    if options.fps < 1:
        raise CamfieldsError(f"--fps must be a frame rate of at least 1, got {options.fps}")
    stream = read_bitstream(path)
    kind = stream.config.get("format") if isinstance(stream.config, dict) else None
    if kind not in DECODERS:
        raise CamfieldsError(
            f"{path} holds {kind!r}, a field this decoder does not know (it decodes {', '.join(DECODERS)})"
        )
    return DECODERS[kind](stream, Path(path), out, options)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", help="a .camf file written by camfields compress or by a fit")
    parser.add_argument("--out", required=True, help="a .png (image), a folder of PNGs or an .mp4; must not exist")
    parser.add_argument("--views", help="scene: render the cameras of this Blender transforms_*.json")
    parser.add_argument("--frames", type=int, default=60, help="scene: turntable views when no --views (60)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of an mp4 output")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    options = DecodeOptions(Path(args.views) if args.views else None, args.frames, args.fps, args.device)
    done = decompress(Path(args.file), Path(args.out), options)
    print(f"{done} in {time.perf_counter() - t0:.2f} s")
