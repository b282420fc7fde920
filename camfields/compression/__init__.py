"""Weight quantization (and, for codecs, entropy coding) of fitted fields."""

from camfields.compression.quantize import quantize_tensor, quantized_copy, quantized_size_bytes

__all__ = ["quantize_tensor", "quantized_copy", "quantized_size_bytes"]
