"""Neural video representation and compression: a NeRV-style generator (plain or with CAM)
fitted to a clip, quantization-aware training to n-bit weights, and a bitstream file that the
decoder (``codec.video``, no training code) turns back into the frames on its own.

One module per job: ``config`` (settings and presets), ``sizing`` (widths for a parameter
budget), ``model`` (the quantized model and its QAT / pruning hooks), ``fit`` (the objective,
the task and ``fit_video``), ``budget`` (fits in a time budget).
"""

from camfields.compression.config import QUANT_STEPS
from camfields.tasks.video.config import PRESETS, VideoConfig, resolve_config
from camfields.tasks.video.fit import VIDEO, fit_video, load_clip, quality

__all__ = ["PRESETS", "QUANT_STEPS", "VIDEO", "VideoConfig", "fit_video", "load_clip", "quality", "resolve_config"]
