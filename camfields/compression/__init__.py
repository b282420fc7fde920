"""Weight quantization of fitted fields: symmetric n-bit levels (``quantize``), their entropy
estimate (``rate``), encoder-side rounding (``rounding``), quantization-aware training (``qat``)
and the ``[compression]`` config block (``config``)."""
