"""vox1-setup: the right FlashAttention 2 wheel for VOX-1, installed safely, verified, explained."""

__version__ = "0.1.0"
