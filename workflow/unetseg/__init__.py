"""unetseg: U-Net segmentation of microscopy and EM volumes (Ronneberger, Fischer & Brox 2015)."""

from unetseg.errors import UnetsegError

__version__ = "0.1.0"
__all__ = ["UnetsegError", "__version__"]
