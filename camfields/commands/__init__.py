"""The subcommands of the ``camfields`` command (``camfields.__main__``), one module each.

Each module has ``main(argv, prog)``; ``scripts/*.py`` call the same functions.
"""

from __future__ import annotations

#: Command words -> (module under camfields.commands, one line of help).
COMMANDS: dict[str, tuple[str, str]] = {
    "fit image": ("fit_image", "fit an image or every image of a folder (ffn, cam, ngp)"),
    "fit nerf": ("fit_nerf", "fit a Blender, LLFF or nerfstudio scene with a NeRF model (vanilla, CAM variants, ngp)"),
    "fit dynamic": ("fit_dynamic", "fit a dynamic scene (T-NeRF, T-NeRF + CAM, space-time models)"),
    "fit video": ("fit_video", "fit a video with a NeRV-style generator and write its bitstream"),
    "eval-rd": ("eval_rd", "rate-distortion: video vs x264 / x265, or (--task image) vs JPEG, WebP, AVIF, JPEG 2000"),
    "decode": ("decode_video", "rebuild the frames of a .camf video bitstream (decompress does too)"),
    "compress": ("compress", "compress a finished fit of any task into one .camf file (n-bit weights)"),
    "decompress": ("decompress", "rebuild an image, a scene's views or a video's frames from a .camf file alone"),
    "presets": ("presets", "list the config presets (scenes/) with one line each"),
    "info": ("info", "show what a run folder or a .camf file holds (task, data, steps, quality, sizes)"),
}
