"""Reference networks: EDM preconditioning, a small UNet, Kamb & Ganguli's local ResNet, and the
committed checkpoints as denoisers (``list_pretrained``, ``load_pretrained``)."""
from .precond import EDMPrecond, NetworkDenoiser, edm_coefficients  # noqa: F401
from .pretrained import list_pretrained, load_pretrained  # noqa: F401
from .resnet import LocalResNet  # noqa: F401
from .unet import UNet  # noqa: F401
