"""Training: AdamW with warm-up + cosine, atomic per-epoch checkpoints, resume, DDP.

Runs as a single process, or under `torchrun --nproc_per_node N` with DistributedDataParallel
(NCCL on GPUs, gloo on CPU). Only rank 0 writes checkpoints, logs and progress bars.
Every epoch re-seeds from (seed, epoch), so a run resumed from its last checkpoint follows the
same random path as one that was never interrupted; a resumed run takes every training setting
from its checkpoint (`resumed_config`) and refuses to change one.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from backend.model.checkpoint import build_model, load_checkpoint, save_atomic
from backend.frame.mnist import MNIST_MEAN, MNIST_STD, resolve_data_dir
from backend.training.data import batch_augment, styled_parts, train_val_split
from backend.model.device import resolve_device
from backend.errors import OutputError, UserError
from backend.training.config import TrainConfig
from backend.model.vit import PRESETS, ViTConfig, VisionTransformer, count_parameters


def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def check_writable(out: Path) -> None:
    """Fail before training if checkpoints could not be written to `out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror or e}") from None


# Settings a resumed run may change: where the data and outputs are and what runs it, not what is trained.
RESUME_FREE = frozenset({"data_dir", "device", "workers", "out", "resume"})


def resume_file(tc: TrainConfig) -> Path | None:
    """The checkpoint a run resumes from (--resume: OUT/last.pt), or None."""
    return Path(tc.out) / "last.pt" if tc.resume == "auto" else Path(tc.resume) if tc.resume else None


def resumed_config(given: dict) -> TrainConfig:
    """The TrainConfig of a command line: `given` holds the settings given as flags. A --resume
    run takes every other one from the checkpoint it resumes (train() refuses given ones that
    differ), so it continues the run that was interrupted, not a new one."""
    tc = TrainConfig(**given)
    path = resume_file(tc)
    if path is None or not path.is_file():
        return tc
    saved = load_checkpoint(path).get("train_config") or {}
    names = {f.name for f in fields(TrainConfig)}
    return replace(tc, **{k: v for k, v in saved.items() if k in names and k not in given and k != "resume"})


def check_settings(tc: TrainConfig, saved: dict, path: Path) -> None:
    """UserError when a resumed run's settings differ from those it was started with."""
    for k, v in asdict(tc).items():
        if k not in RESUME_FREE and k in saved and saved[k] != v:
            flag = "--" + k.replace("_", "-")
            raise UserError(f"{flag} {v} differs from the run in {path} ({saved[k]}): a resumed run keeps its "
                            f"settings (to train on with others, start a new run with --init {path})")


def check_config(tc: TrainConfig) -> None:
    """UserError for settings that cannot train (nan passes no comparison, so it fails here too)."""
    ranges = {"epochs": tc.epochs >= 1, "batch_size": tc.batch_size >= 1, "lr": 0 < tc.lr < math.inf,
              "weight_decay": 0 <= tc.weight_decay < math.inf, "warmup_epochs": 0 <= tc.warmup_epochs < math.inf,
              "label_smoothing": 0 <= tc.label_smoothing < 1, "workers": tc.workers >= 0,
              "distill": 0 <= tc.distill <= 1}
    for name, ok in ranges.items():
        if not ok:
            raise UserError(f"--{name.replace('_', '-')} {getattr(tc, name)} is out of range")
    if tc.model_config is None and tc.preset not in PRESETS:
        raise UserError(f"unknown preset {tc.preset!r}; choose one of {', '.join(PRESETS)}")


def kept(out: Path, epoch: int) -> str:
    """What a run that stops during `epoch` (0-based) leaves behind."""
    if epoch > 0 and (out / "last.pt").is_file():
        return f"{out / 'last.pt'} holds epoch {epoch}"
    return "no checkpoint was kept"


def lr_lambda(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def train(tc: TrainConfig) -> dict:
    """Train (or resume) a model; returns the final metrics of rank 0."""
    rank, local_rank, world = _dist_info()
    t_start = time.time()
    check_config(tc)
    # Saved absolute, so that the resume hint works as printed whatever $DIGITS_DATA_DIR then is.
    tc = replace(tc, data_dir=str(resolve_data_dir(tc.data_dir).absolute()))
    out = Path(tc.out)
    resume_path = resume_file(tc)
    if rank == 0:
        check_writable(out)

    device = resolve_device(tc.device)
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    cfg = ViTConfig.from_dict(tc.model_config) if tc.model_config else replace(PRESETS[tc.preset])
    ckpt = None  # the training checkpoint being resumed
    start = resume_path or tc.init  # weights to start from; resuming wins over --init
    torch.manual_seed(tc.seed)
    if start is None:
        model = VisionTransformer(cfg)
    else:
        loaded = load_checkpoint(start)
        if resume_path is not None:
            if "optimizer" not in loaded:
                raise UserError(f"{resume_path} holds weights only; --resume needs a training checkpoint (last.pt)")
            check_settings(tc, loaded.get("train_config") or {}, resume_path)
            ckpt = loaded
        model = build_model(loaded, start)
        cfg = replace(model.cfg, temperature=1.0)  # new weights need their calibration refitted
        tc = replace(tc, preset=loaded.get("preset", tc.preset))
    model.to(device)
    train_ds, val_ds = train_val_split(tc.data_dir, tc.limit, tc.seed, tc.extra_data, tc.augment)
    augment = batch_augment(tc.augment)
    if tc.teacher:
        attach_teacher_logits(train_ds, tc.teacher, device, out / "teacher_logits.pt")
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=tc.seed) if world > 1 else None
    gen = torch.Generator()
    pin = device.type == "cuda"
    per_rank = len(sampler) if sampler is not None else len(train_ds)  # each rank sees 1/world of the data
    train_dl = DataLoader(train_ds, tc.batch_size, shuffle=sampler is None, sampler=sampler, generator=gen,
                          num_workers=tc.workers, pin_memory=pin, drop_last=per_rank > tc.batch_size)
    val_dl = DataLoader(val_ds, 512, num_workers=0)

    # No weight decay on biases, norms, the CLS token and the embeddings.
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embed" not in n and "token" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.999))
    steps_per_epoch = len(train_dl)
    total, warmup = tc.epochs * steps_per_epoch, max(1, int(tc.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, total, warmup))

    start_epoch, best_acc = 0, 0.0
    history = []
    if start is not None and ckpt is None:  # fine-tuning (--init) carries its weights' history, as earlier phases
        history = [{**r, "phase": r.get("phase", 0)} for r in loaded.get("history", [])]
    phase = 1 + max(r["phase"] for r in history) if history else 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, best_acc = int(ckpt["epoch"]), float(ckpt.get("best_val_acc", 0.0))
        history = list(ckpt.get("history", []))
        phase = history[-1].get("phase", 0) if history else 0
        if rank == 0 and start_epoch < tc.epochs:
            print(f"resuming from {resume_path} at epoch {start_epoch + 1}/{tc.epochs}")
        elif rank == 0:
            print(f"{resume_path} has finished all {tc.epochs} epochs; nothing to resume")

    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else model
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    n_params = count_parameters(model)
    if rank == 0:
        print(f"model {tc.preset}: {n_params:,} parameters on {device}, {world} process(es), "
              f"effective batch {tc.batch_size * world}")

    for epoch in range(start_epoch, tc.epochs):
        torch.manual_seed(tc.seed * 1000 + epoch)  # same path whether resumed or not
        gen.manual_seed(tc.seed * 1000 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        ddp.train()
        t0 = time.time()
        loss_sum = correct = seen = 0
        bar = tqdm(train_dl, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=rank != 0, leave=False,
                   dynamic_ncols=True)
        for x, y, *soft in bar:
            if augment is not None:
                x = augment(x)  # on the CPU, before the upload
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = ddp(x)
                loss = F.cross_entropy(logits, y, label_smoothing=tc.label_smoothing)
                if soft:
                    loss = (1 - tc.distill) * loss + tc.distill * distill_loss(logits, soft[0].to(device),
                                                                               tc.distill_temperature)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            value = loss.item()
            if not math.isfinite(value):  # nothing after this could be saved as a model
                raise UserError(f"training diverged: the loss is {value} in epoch {epoch + 1}; try a lower --lr "
                                f"(now {tc.lr:g}) or a longer --warmup-epochs; {kept(out, epoch)}")
            loss_sum += value * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        epoch_time = time.time() - t0
        if rank != 0:
            continue
        val_loss, val_acc = evaluate_loader(model, val_dl, device)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "lr": sched.get_last_lr()[0],
               "epoch_time_s": epoch_time, "world_size": world, "phase": phase}
        history.append(row)
        print(f"epoch {epoch + 1}/{tc.epochs} train_loss={row['train_loss']:.4f} train_acc={row['train_acc']:.4f} "
              f"val_loss={val_loss:.4f} val_acc={val_acc:.4f} time={epoch_time:.1f}s", flush=True)
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = {"config": cfg.to_dict(), "model": weights, "epoch": epoch + 1, "preset": tc.preset,
                "val_acc": val_acc, "params": n_params, "train_config": asdict(tc), "history": history}
        try:
            if val_acc > best_acc:
                best_acc = val_acc
                save_atomic(meta, out / "best.pt")
            save_atomic({**meta, "best_val_acc": best_acc, "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict()}, out / "last.pt")
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError as e:
            raise OutputError(f"cannot write checkpoint to {out} ({e.strerror or e}); {kept(out, epoch)}") from None
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0 and history and history[-1].get("phase", 0) == phase:
        print(summary(out, [r for r in history if r.get("phase", 0) == phase], time.time() - t_start), flush=True)
    return history[-1] if history else {}


def summary(out: Path, rows: list[dict], seconds: float) -> str:
    """What a finished run says: where its checkpoints are, how good it got, and what to run next."""
    best = max(rows, key=lambda r: r["val_acc"])
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    return (f"done in {took}: best validation accuracy {100 * best['val_acc']:.2f} % "
            f"(epoch {best['epoch']}) in {out / 'best.pt'}; the last epoch in {out / 'last.pt'}\n"
            f"  evaluate it:  python main.py --eval --checkpoint {out / 'best.pt'}\n"
            f"  use it:       python camera_inferencer.py --checkpoint {out / 'best.pt'} --source demo")


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at `temperature`, scaled by its square (Hinton et al., 2015) so
    its gradients keep their size whatever the temperature."""
    t = temperature
    return F.kl_div(F.log_softmax(logits.float() / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t


@torch.inference_mode()
def attach_teacher_logits(train_ds, teacher: str, device: torch.device, cache: Path) -> None:
    """The teacher's logits for every training image, once and unaugmented, as soft targets.

    Once rather than per batch: the teacher costs several times the student per image, and on
    the style-augmented images (bars, flags) it was never trained on it would be wrong anyway.
    Kept in `cache` (the run's folder) for a resumed or repeated run with the same teacher.
    """
    parts = styled_parts(train_ds)
    key = [str(Path(teacher).resolve()), os.path.getmtime(teacher), [len(p) for p in parts]]
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == key:
            for part, soft in zip(parts, saved["logits"]):
                part.soft = soft
            return
    model = build_model(load_checkpoint(teacher), teacher).to(device)
    for part in parts:
        part.soft = torch.cat([model(((b.float() / 255 - MNIST_MEAN) / MNIST_STD).to(device)).float().cpu()
                               for b in part.images().split(1024)])
    save_atomic({"key": key, "logits": [p.soft for p in parts]}, cache)


@torch.inference_mode()
def evaluate_loader(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` over `loader`."""
    model.eval()
    loss_sum = correct = seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return loss_sum / max(seen, 1), correct / max(seen, 1)
