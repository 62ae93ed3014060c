"""Model registry. Importing this package imports every model module so that all register.

>>> from cellnb.models import create_model, list_models
>>> "unet" in list_models()
True
"""

from __future__ import annotations

from cellnb.models.registry import create_model, list_models, register_model
from cellnb.models import unet  # noqa: F401  (registers "unet")
from cellnb.models import ssrnet  # noqa: F401  (registers "ssrnet")
from cellnb.models import elmgan  # noqa: F401  (registers elmgan_generator, elmgan_discriminator, pix2pix_generator, patchgan_discriminator)
from cellnb.models import mobilesr, tiny_unet  # noqa: F401  (register "mobilesr", "tiny_unet")
from cellnb.models import mc_unet  # noqa: F401  (registers "mc_unet")
from cellnb.models import u_se_resnet  # noqa: F401  (registers "u_se_resnet")
from cellnb.models import released_unet  # noqa: F401  (registers "released_unet", the SSRNet repository's U_Net)

__all__ = ["create_model", "list_models", "register_model"]
