"""Training settings and the choices the command line lists, without importing torch (so
`main.py --help` answers at once). backend.training.train runs them."""
from __future__ import annotations

from dataclasses import dataclass

AUGMENTS = ("webcam", "styles", "light")  # see backend.training.data.train_transform


@dataclass
class TrainConfig:
    preset: str = "accurate"  # model preset name (backend.model.PRESETS)
    epochs: int = 15  # total epochs of the schedule
    batch_size: int = 128  # per process; the effective batch is batch_size * world size
    lr: float = 1.5e-3  # peak learning rate for the effective batch (not scaled automatically)
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_epochs: float = 1.0  # linear warm-up before the cosine decay
    label_smoothing: float = 0.05  # softens targets; keeps confidences honest
    data_dir: str | None = None  # MNIST root (see backend.frame.mnist.resolve_data_dir)
    device: str = "auto"  # auto|cpu|cuda|mps
    out: str = "runs/train"  # folder for last.pt, best.pt and metrics.jsonl
    resume: str | None = None  # checkpoint to continue from ("auto" = OUT/last.pt)
    seed: int = 0  # seeds init, data split and every epoch's shuffling/augmentation
    workers: int = 2  # DataLoader worker processes per rank
    limit: int | None = None  # train on this many images only (smoke tests)
    init: str | None = None  # start from this checkpoint's weights (fine-tuning; fresh schedule)
    extra_data: str | None = None  # .npz of extra 28x28 digits mixed into training (backend.training.data.ArrayDigits)
    augment: str = "webcam"  # webcam | styles | light (backend.training.data.train_transform)
    teacher: str | None = None  # checkpoint whose logits on the unaugmented images are soft targets (distillation)
    distill: float = 0.7  # weight of the teacher's soft targets in the loss (the labels get the rest)
    distill_temperature: float = 2.0  # softmax temperature of the distillation loss
    model_config: dict | None = None  # a ViTConfig as a dict, instead of the preset's (model search)
