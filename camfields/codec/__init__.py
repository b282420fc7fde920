"""Neural video codec pieces: entropy coding, the bitstream file, rate-distortion metrics."""
