"""cellnb: models, losses, data, metrics and training for the cellnb book.

Importing ``cellnb`` is cheap: subpackages are imported on use
(``from cellnb import data, metrics, models, train``).
"""

from __future__ import annotations

__version__ = "0.1.0"
