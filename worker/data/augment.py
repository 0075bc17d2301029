"""Batched train-time augmentation: whole minibatches at once, no per-image Python.

Semantics follow torchvision's CIFAR pipeline exactly:
- crop: the image is zero-padded by ``padding`` on every side *before* normalisation (black pixels,
  like ``RandomCrop(size, padding)`` on a PIL image) and a window of the original size is cut at
  ``offsets`` = (top, left), each in 0..2*padding. Equivalently, the content shifts by
  (padding - top, padding - left) pixels and the uncovered border is zero.
- flip: the cropped image is mirrored left-right (``RandomHorizontalFlip`` after the crop).
- cutout (DARTS): *after* normalisation, the square of side ``size`` whose top-left corner is
  (cy - size//2, cx - size//2) is set to 0, clipped to the image; centres are uniform over all pixels,
  so the square may be partly outside. For even sizes this is DARTS' ``Cutout`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_and_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, padding: int
) -> torch.Tensor:
    """Random-crop-with-padding and optional mirroring of (B, C, H, W) images as two gathers.

    ``offsets`` (B, 2) int64 holds each crop window's top and left in the padded image; ``flips`` (B,)
    bool marks the images to mirror (None: none). A mirror is folded into the column indices, so both
    operations cost one pass over the batch.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    padded_height, padded_width = height + 2 * padding, width + 2 * padding
    row_range = torch.arange(height, device=images.device)
    col_range = torch.arange(width, device=images.device)
    # Select the window's rows of every (image, channel) plane: one index_select over all rows.
    rows = offsets[:, :1] + row_range  # (B, H)
    plane_starts = (
        torch.arange(batch * channels, device=images.device).view(batch, channels, 1) * padded_height
    )
    picked_rows = padded.reshape(batch * channels * padded_height, padded_width).index_select(
        0, (plane_starts + rows[:, None, :]).reshape(-1)
    )
    # Then its columns, reversed for mirrored images.
    cols = col_range if flips is None else torch.where(flips[:, None], width - 1 - col_range, col_range)
    cols = offsets[:, 1:2] + cols  # (B, W)
    picked = picked_rows.view(batch, channels * height, padded_width).gather(
        2, cols[:, None, :].expand(batch, channels * height, width)
    )
    return picked.view(batch, channels, height, width)


def cutout_(images: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square per image, in place; ``centres`` (B, 2) int64 = (row, col)."""
    _, _, height, width = images.shape
    first = centres - size // 2  # (B, 2): top, left (may be negative: the square is clipped)
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    in_rows = (rows >= first[:, :1]) & (rows < first[:, :1] + size)  # (B, H)
    in_cols = (cols >= first[:, 1:]) & (cols < first[:, 1:] + size)  # (B, W)
    return images.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
