"""Output keys shared by every model's ``forward`` (a ``dict[str, Tensor]``).

Shapes use N = batch, C = classes, H, W = input size (s = super-resolution scale).
"""

MASK_LOGITS = "mask_logits"  # (N, C, H, W) segmentation logits (C = 1 for binary)
DENSITY = "density"  # (N, 1, H, W) non-negative density / distribution map
COUNT = "count"  # (N,) predicted object count
BOUNDARY_LOGITS = "boundary_logits"  # (N, 1, H, W) cell-boundary logits
MARKER_LOGITS = "marker_logits"  # (N, 1, H, W) marker (eroded cell) logits
SR_IMAGE = "sr_image"  # (N, C, sH, sW) super-resolved image
