"""The classical scikit-image pipeline as a method with no training (the instance and mask floor).

Otsu's threshold of the σ = 1 smoothed image, then a watershed of the mask's distance transform
from its local maxima (:func:`cellnb.floors.otsu_watershed`). Its count is the number of instances.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from cellnb import floors
from cellnb.methods.base import Method, Prediction, register_method


@register_method
class Classical(Method):
    name = "classical"
    paper = "Otsu (1979) + distance-transform watershed (scikit-image)"
    tasks = ("count", "mask", "instances")
    sizes = {"paper": {}, "slim": {}}
    trainable = False

    def predict(self, model: Any, image: np.ndarray, task: str | None = None, *, sigma: float = 1.0,
                min_distance: int = 3, min_size: int = 10, bright_foreground: bool = True, **_: Any) -> Prediction:
        """No network: ``model`` is ignored (pass None)."""
        self.check_task(task)
        x = self.normalize(image).mean(axis=0)
        mask = floors.otsu_mask(x, sigma, bright_foreground)
        labels = floors.distance_watershed(mask, min_distance, min_size)
        return Prediction(count=float(labels.max()), foreground=mask.astype(np.float32), labels=labels)

    def postprocess(self, outputs: Mapping[str, Any], task: str | None = None, **kwargs: Any) -> Prediction:
        raise NotImplementedError("the classical pipeline works on images: use predict(None, image)")
