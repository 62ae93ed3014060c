"""Losses: generic pure functions in :mod:`cellnb.losses.functional`, paper-specific ones in
``cellnb.losses.<paper>``."""

from cellnb.losses.functional import (
    bce_dice_loss,
    ce_dice_loss,
    count_l1,
    density_mse,
    focal_loss,
    multitask,
    soft_dice_loss,
    weighted_bce,
)

__all__ = [
    "bce_dice_loss", "ce_dice_loss", "count_l1", "density_mse", "focal_loss", "multitask",
    "soft_dice_loss", "weighted_bce",
]
