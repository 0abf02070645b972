"""The Vision Transformer's config (saved inside every checkpoint) and presets; the model is
backend.model.vit. Kept apart so the command lines list the presets without importing torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ViTConfig:
    img_size: int = 28  # input side in pixels (MNIST: 28)
    in_chans: int = 1  # grey images
    num_classes: int = 10  # digits 0-9
    stem_channels: int = 24  # width of the conv stem (two 3x3 convs, 1x then 2x channels); 0 = none
    stem_stride: int = 2  # how much the stem shrinks the image: 2 (stride 1, 2) or 4 (stride 2, 2)
    patch_size: int = 4  # image pixels per token side; the token grid is (img_size // patch_size)^2
    embed_dim: int = 96  # token width
    depth: int = 6  # number of transformer blocks
    num_heads: int = 4  # attention heads per block (embed_dim must divide by it)
    mlp_ratio: float = 2.0  # hidden width of the MLP as a multiple of embed_dim
    dropout: float = 0.0  # dropout on embeddings, attention projection and MLP
    drop_path: float = 0.1  # stochastic depth rate of the last block (linear from 0)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, ViTConfig] = {
    # A 7x7 token grid over a stem at half resolution: the accuracy target at under 1 M
    # parameters. The shipped default.
    "accurate": ViTConfig(),
    # The stem shrinks 28 -> 7 and the patch conv 7 -> 4, so attention runs over 16 tokens: a
    # tenth of the accurate preset's compute, for slow laptops and many digits per frame.
    "fast": ViTConfig(stem_channels=16, stem_stride=4, patch_size=7, embed_dim=64, depth=4, drop_path=0.0),
}
DEFAULT_PRESET = "accurate"
