"""Find digit candidates in a frame. (First version: helper will refine.)"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class DetectConfig:
    max_digits: int = 40  # at most this many candidates per frame
    work_size: int = 640  # frames are analysed at this longest side; crops come from full size
    min_height_frac: float = 0.02  # a digit is at least this fraction of the frame height


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or gray uint8 -> gray uint8."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Gray frame -> uint8 mask, 255 where there is ink (dark on light)."""
    bg = cv2.medianBlur(cv2.dilate(gray, np.ones((7, 7), np.uint8)), 21)
    norm = cv2.divide(gray, bg, scale=255)
    _, mask = cv2.threshold(norm, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return mask


def detect(frame: np.ndarray, cfg: DetectConfig = DetectConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Frame (H, W[, C]) uint8 -> (boxes (N, 4) int32 x, y, w, h in frame pixels, mask at work size)."""
    gray = to_gray(frame)
    h, w = gray.shape
    s = min(1.0, cfg.work_size / max(h, w))
    small = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else gray
    mask = ink_mask(small)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    sh = small.shape[0]
    for x, y, bw, bh, area in stats[1:]:
        if bh < cfg.min_height_frac * sh or bh > 0.9 * sh or bw > 1.5 * bh or area < 10:
            continue
        boxes.append([x / s, y / s, bw / s, bh / s])
    boxes = np.array(boxes, np.float32).reshape(-1, 4).round().astype(np.int32)
    return boxes[: cfg.max_digits], mask
