"""Neural video representation and compression: a NeRV-style generator (plain or with CAM)
fitted to a clip, quantization-aware training to n-bit weights, and a bitstream file that the
decoder (``codec.video``, no training code) turns back into the frames on its own.

One module per job: ``config`` (settings and presets), ``sizing`` (widths for a parameter
budget), ``model`` (the quantized model and its QAT / pruning hooks), ``fit`` (the objective,
the task and ``fit_video``), ``budget`` (fits in a time budget).
"""

from camfields.codec.video import BITSTREAM_FORMAT, decode_frames, encode, frame_times, to_8bit, write_frames
from camfields.fields import count_parameters
from camfields.modules.nerv import GeneratorConfig, build_generator
from camfields.tasks.video.config import PRESETS, QUANT_STEPS, VideoConfig, check_model_identity, resolve_config
from camfields.tasks.video.fit import VIDEO, Clip, FrameObjective, fit_video, load_clip, mean_psnr, quality
from camfields.tasks.video.model import MagnitudePruning, QuantizationSchedule, VideoModel, prune_masks
from camfields.tasks.video.sizing import one_wider, scale_widths, size_for_params

__all__ = [
    "BITSTREAM_FORMAT",
    "PRESETS",
    "QUANT_STEPS",
    "VIDEO",
    "Clip",
    "FrameObjective",
    "GeneratorConfig",
    "MagnitudePruning",
    "QuantizationSchedule",
    "VideoConfig",
    "VideoModel",
    "build_generator",
    "check_model_identity",
    "count_parameters",
    "decode_frames",
    "encode",
    "fit_video",
    "frame_times",
    "load_clip",
    "mean_psnr",
    "one_wider",
    "prune_masks",
    "quality",
    "resolve_config",
    "scale_widths",
    "size_for_params",
    "to_8bit",
    "write_frames",
]
