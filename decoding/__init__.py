"""Brain encoders and decoders, image generation and the shared evaluation layer."""
