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
    temperature: float = 1.0  # logits are divided by it at inference (fitted after training: calibration)

    def __post_init__(self) -> None:
        """ValueError for a config no model can be built from (a crafted checkpoint, a bad sweep spec)."""
        for name in ("img_size", "in_chans", "num_classes", "stem_channels", "stem_stride", "patch_size",
                     "embed_dim", "depth", "num_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "stem_channels" else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name, low, high in (("mlp_ratio", 0.0, 64.0), ("dropout", 0.0, 1.0), ("drop_path", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v < high \
                    or (name == "mlp_ratio" and v == 0):
                raise ValueError(f"{name} must be a number in [{low:g}, {high:g}), got {v!r}")
        if self.stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 or 4, got {self.stem_stride}")
        side = -(-self.img_size // self.stem_stride) if self.stem_channels else self.img_size
        if self.patch_size > self.img_size or self.grid > side:
            raise ValueError(f"patch_size {self.patch_size} does not fit a {self.img_size}px image")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def approx_params(self) -> int:
        """Roughly the transformer blocks' parameter count (attention 4 D^2, MLP 2 r D^2 per block)."""
        return int(self.depth * (4 + 2 * self.mlp_ratio) * self.embed_dim ** 2)

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
