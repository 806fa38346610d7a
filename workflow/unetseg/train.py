"""Training loop: weighted softmax cross-entropy (paper §3, Eq. 1), SGD with momentum 0.99;
validated every `validate_every` steps (unetseg/validation.py) on samples made by
unetseg/samples.py, checkpointed, the kept model chosen by unetseg/choice.py's rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from unetseg import (
    augment_device,
    choice,
    headline,
    intensity,
    io,
    samples,
    tiling,
    topology,
    validation,
)
from unetseg.augment import AugmentConfig
from unetseg.averaging import WeightAverage
from unetseg.errors import UnetsegError
from unetseg.model import UNet, autocast, pick_device, prepare, resolved, to_device
from unetseg.rollback import CollapseGuard, Rollbacks, constant_errors, restore
from unetseg.samples import Volume

log = logging.getLogger(__name__)

LOG_COLUMNS = [
    "step",
    "loss",
    "pixel_error",
    "rand_error",
    "learning_rate",
    "seconds",
    "rand_spread",  # max - min of the validation Rand error over the last SPREAD_ROWS rows
    "samples_per_s",  # since the previous row
    "ap50",  # validation instance AP at IoU 0.5, where train.keep_by asks for it
    "wrong_fraction",  # validation share of wrong pixels at the best threshold (rollback.py)
    "event",  # a rollback, a watched validation or a restored rate, and why
]
SPREAD_ROWS = 10


@dataclass
class TrainConfig:
    depth: int = 4  # paper: 4 poolings
    base_channels: int = 64  # paper: 64
    dropout: float = 0.5  # release: 0.5
    norm: str = "none"  # paper: none
    tile_out: int = 388  # paper: 572 -> 388
    normalize: str = intensity.DEFAULT_METHOD  # release: 'unit' (im2double)
    normalize_percentiles: tuple[float, float] = intensity.DEFAULT_PERCENTILES
    batch_size: int = 1  # paper: 1 large tile
    steps: int = 1000
    max_minutes: float = 0.0  # 0: no time budget
    optimizer: str = "sgd"  # paper: SGD with momentum
    learning_rate: float = 0.01
    momentum: float = 0.99  # paper
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0  # paper: none (0); see the config schema
    lr_decay: str = "poly"  # 'constant' or 'poly' ((1 - step/steps)^0.9, as nnU-Net)
    warmup_steps: int = 0  # paper: none; the rate rises linearly to its value over these steps
    ema_decay: float = 0.0  # paper: none (0); validate and keep an average of the weights
    topology_weight: float = 0.0  # paper: none (0); soft-clDice of the membranes (topology.py)
    max_rollbacks: int = 3  # paper: none; rollbacks to the kept model when the run goes bad
    rollback_lr_factor: float = 0.5  # each rollback multiplies the learning rate by this
    rollback_restore_lr: bool = False  # take a rollback's factor back once the run recovers
    fresh_start_warmup_steps: int = 500  # a fresh start's warm-up (rollback.py); paper: none
    augment_device: str = "cpu"  # or cuda (augment_device.py), auto: cuda when training there
    precision: str = "fp32"  # or bf16, fp16 (CUDA), auto (bf16 where native)
    channels_last: bool | str = False  # or "auto" (the faster layout: channels_last)
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    deterministic: bool = True
    validate_every: int = 100
    keep_by: str = "rand_error"  # or ap50 (instances); paper: not stated
    # How validation cuts a slice: output tiles of this size (0: tile_out) within regions of this
    # many px (0: the whole slice). The rule passes the predict step's tile_out and block_px for
    # a GroupNorm network, whose output depends on its tiles, so the model kept is the one that
    # scores best as the workflow predicts.
    validate_tile_out: int = 0
    validate_block_px: int = 0
    # Validation averages the 8 flips and quarter turns where the predict step does (predict.tta,
    # passed by the rule), so the model kept is chosen as the workflow will predict with it.
    validate_tta: bool = False
    checkpoint_every: int = 50
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def model_config(self) -> dict:
        return {
            "depth": self.depth,
            "base_channels": self.base_channels,
            "dropout": self.dropout,
            "norm": self.norm,
        }

    def digest(self) -> str:
        """Hash of everything that shapes the run, except the budgets that only stop it."""
        shaping = {k: v for k, v in asdict(self).items() if k not in ("max_minutes", "workers")}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


class Diverged(UnetsegError):
    """The loss became NaN or infinite."""


def make_optimizer(model: UNet, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper), or AdamW (not in the paper)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    raise UnetsegError(f"train.optimizer: '{config.optimizer}' is not sgd or adamw")


def training_step(
    model, optimizer, scaler, batch, config: TrainConfig, device, step: int, lr_scale: float = 1.0
) -> float:
    """One optimiser step on a batch; returns its loss."""
    images, targets, weights = batch
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, step) * lr_scale
    with autocast(device, config.precision):
        logits = model(to_device(images, device, config.channels_last))
    targets, weights = (t.to(device, non_blocking=True) for t in (targets, weights))
    loss = weighted_cross_entropy(logits, targets, weights)
    if config.topology_weight > 0:  # beyond the paper: gaps in membranes cost their skeleton
        loss = loss + config.topology_weight * topology.cldice_loss(logits, targets, weights)
    value = loss.item()  # one device sync per step
    if not math.isfinite(value):
        raise Diverged(f"train: loss became {value} at step {step}; {unstable_remedy(config)}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.grad_clip_norm > 0:
        scaler.unscale_(optimizer)  # clip the true gradient, not the fp16-scaled one
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return value


def unstable_remedy(config: TrainConfig) -> str:
    if config.grad_clip_norm > 0:
        return "lower train.learning_rate or set train.warmup_steps (500)"
    return "set train.grad_clip_norm (1.0), lower train.learning_rate or set train.warmup_steps"


def stopped_remedy(config: TrainConfig) -> str:
    """What to change after a run stopped with its rollbacks spent: a gentler start, another
    draw (an ISBI seed of the paper's network that never learned, where others did), or
    normalised layers (BENCHMARKS.md, Rollbacks: none of 28 GroupNorm runs rolled back)."""
    return (
        f"To train it again: {unstable_remedy(config)}, choose another train.seed ({config.seed}), "
        "or give the network model.norm: group (BENCHMARKS.md, Rollbacks)"
    )


def kept_beside_constant(kept: dict | None, guard: CollapseGuard) -> str:
    """The kept model's validation errors beside those of one probability at every pixel: how
    much the stopped run learned."""
    if not kept or not guard.constant:
        return ""
    pairs = [f"{key} {kept['metrics'][key]:.4f} (a constant prediction's {guard.constant[key]:.4f})"
             for key in ("pixel_error", "rand_error") if key in kept.get("metrics", {})]  # fmt: skip
    return f", validation {', '.join(pairs)}" if pairs else ""


def weighted_cross_entropy(logits, target, weights) -> torch.Tensor:
    """Mean of w(x) * -log p_l(x)(x) over the annotated pixels (w > 0: all of a densely labelled
    tile) (Eq. 1, mean instead of sum: lr independent of tile size and annotated share)."""
    losses = F.cross_entropy(logits.float(), target, reduction="none") * weights
    return losses.sum() / (weights > 0).sum().clamp(min=1)


def learning_rate(config: TrainConfig, step: int) -> float:
    rate = config.learning_rate
    if config.lr_decay == "poly":
        rate *= (1 - step / config.steps) ** 0.9
    if step < config.warmup_steps:
        rate *= (step + 1) / config.warmup_steps
    return rate


def at_least_as_good(metrics: dict, best: dict | None, keep_by: str) -> bool:
    """Whether a validated model replaces the kept one (ties: the later; no validate volumes:
    the last model)."""
    if best is None or not metrics:
        return True
    error = choice.selection_error
    return error(metrics, keep_by) <= error(best["metrics"], keep_by)


def no_better_than(constant_rand_error: float, rand_error: float) -> bool:
    """Whether a Rand error is no better than that of one probability at every pixel: how a
    collapsed network scores."""
    return bool(rand_error >= constant_rand_error - 1e-9)


def warn_if_no_better_than_constant(metrics: dict, constant: dict, config: TrainConfig, step: int):
    if no_better_than(constant["rand_error"], metrics["rand_error"]):
        log.warning(
            "step %d: on the validate volumes the network scores no better than one probability "
            "at every pixel (Rand error %.4f, pixel error %.4f, as if every pixel were cell "
            "interior): it does not separate cells. If this repeats, it has collapsed; %s",
            step, metrics["rand_error"], metrics["pixel_error"], unstable_remedy(config),
        )  # fmt: skip


def constant_output(model: UNet, images: torch.Tensor, config: TrainConfig, device) -> float | None:
    """P(interior) if the network gives one value at every pixel of these tiles (every unit
    before its last layer is silent for them; when that lasts, it has stopped learning), else
    None."""
    model.eval()
    with torch.inference_mode(), autocast(device, config.precision):
        logits = model(to_device(images, device, config.channels_last)).float()
    model.train()
    prob = torch.softmax(logits, dim=1)[:, 1]
    low, high = prob.min().item(), prob.max().item()
    return (low + high) / 2 if high - low < 1e-4 else None


def warn_if_constant(
    model: UNet, images: torch.Tensor, config: TrainConfig, device, step: int
) -> bool:
    """Whether the network gives one output at every pixel of these tiles (then warns)."""
    value = constant_output(model, images, config, device)
    if value is not None:
        log.warning(
            "step %d: the network gives P = %.3f at every pixel of this step's training tile: "
            "no unit before its last layer responds to it. If this repeats, it has stopped "
            "learning. Its input lies in [%.3g, %.3g] (train.normalize %s); if that is a small "
            "part of 0-1, try percentile; else %s",
            step, value, images.min().item(), images.max().item(), config.normalize,
            unstable_remedy(config),
        )  # fmt: skip
    return value is not None


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save into memory, then to disk: torch reports a full disk as a RuntimeError, a
    plain write as the OSError that io.atomic_output names."""
    buffer = BytesIO()
    torch.save(obj, buffer)
    with io.atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def model_file(model: UNet, config: TrainConfig, step: int, metrics: dict) -> dict:
    return {
        "model_config": model.config,
        "model_state": {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()},
        "train_config": json.loads(json.dumps(asdict(config))),
        "step": step,
        "metrics": metrics,
        "unetseg_version": __import__("unetseg").__version__,
        "torch_version": str(torch.__version__),
    }


@dataclass
class Run:
    """What a checkpoint saves and restores besides the step and the log."""

    model: UNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: WeightAverage
    guard: CollapseGuard
    rollbacks: Rollbacks
    validations: choice.Validations

    @classmethod
    def start(cls, config: TrainConfig, device, val_volumes: list[Volume]) -> Run:
        """A fresh network (seeded), its optimiser and their companions."""
        torch.manual_seed(config.seed)
        model = prepare(
            UNet(in_channels=1, n_classes=2, **config.model_config()), device, config.channels_last
        )
        truths = validation.truths(val_volumes)
        return cls(
            model,
            make_optimizer(model, config),
            torch.amp.GradScaler(device.type, enabled=config.precision == "fp16"),
            WeightAverage(model, config.ema_decay),
            CollapseGuard(constant_errors(truths) if truths else None),
            Rollbacks(
                config.max_rollbacks,
                config.rollback_lr_factor,
                config.rollback_restore_lr,
                config.fresh_start_warmup_steps,
            ),
            choice.Validations(),
        )

    def heal(self, reason: str, kept: dict | None, config: TrainConfig, step: int):
        """What to do about a run gone bad: roll back while rollbacks are left, then stop with
        the kept model (train.max_rollbacks 0: warn and go on). Returns (the log's event,
        whether to stop)."""
        if self.rollbacks.left:
            self.guard.suspect = None  # judged afresh from the restored model
            attempt = len(self.rollbacks.events) + 1
            dead_end = self.rollbacks.dead_end(kept, self.guard)
            to = None if dead_end else kept
            to_step = restore(self.model, self.optimizer, self.average, to, config.seed, attempt)
            event = {"step": step, "to_step": to_step, "reason": reason}
            if dead_end:
                event["dead_end"] = kept["step"]
                self.guard.forget()
            self.rollbacks.events.append(event)
            text = self.rollbacks.describe(event)
            log.warning("step %d: %s", step, text)
            return text, False
        if config.max_rollbacks:
            text = f"stopped: {reason}, after {len(self.rollbacks.events)} rollbacks"
            log.warning("step %d: %s; keeping the model of step %s%s. %s", step, text,
                        kept["step"] if kept else None, kept_beside_constant(kept, self.guard),
                        stopped_remedy(config))  # fmt: skip
            return text, True
        log.warning("step %d: %s (train.max_rollbacks 0: training on); %s", step, reason,
                    unstable_remedy(config))  # fmt: skip
        return "", False


class Preemption:
    """Turn SIGTERM / SIGUSR1 (SLURM preemption) into a flag checked between steps, while
    training runs; the handlers before it are back when it ends (a process that trained, e.g.
    a test session or a notebook, stops on SIGTERM again)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __enter__(self) -> Preemption:
        self.requested = False
        self.before = {signum: signal.signal(signum, self.request) for signum in self.SIGNALS}
        return self

    def __exit__(self, *error) -> None:
        for signum, handler in self.before.items():
            signal.signal(signum, handler)

    def request(self, signum, frame) -> None:
        log.warning("signal %d: checkpointing and stopping", signum)
        self.requested = True


def resolved_for(config: TrainConfig, device: torch.device) -> TrainConfig:
    """`config` with 'auto' precision and layout made what they are on `device` (logged), so
    that the checkpoint's digest records what ran."""
    precision, channels_last = resolved(config.precision, config.channels_last, device)
    return replace(config, precision=precision, channels_last=channels_last)


def train(
    train_volumes: list[Volume],
    val_volumes: list[Volume],
    config: TrainConfig,
    model_path: str | os.PathLike,
    log_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    stop_after: int | None = None,
    validation_path: str | os.PathLike | None = None,
) -> dict:
    """Train, validate and checkpoint; write the best model (by validation Rand error, or what
    config.keep_by names) and the log.
    A run that goes bad is rolled back to the best model with a lower learning rate (at most
    config.max_rollbacks times). stop_after: end after this step, with the rate still planned
    over config.steps (to study the start of a long schedule). validation_path: where to write the
    kept validation beside its leave-one-slice-out estimate (choice.py) as JSON."""
    end = min(config.steps, stop_after or config.steps)
    tile_in = tiling.input_size(
        tiling.check_output_size(config.tile_out, config.depth, "train.tile_out"), config.depth
    )
    tiling.check_output_size(
        validation.tile_out(config), config.depth, "validation tile (predict.tile_out)"
    )
    if config.keep_by not in choice.KEEP_BY:
        raise UnetsegError(
            f"train.keep_by: '{config.keep_by}' is not one of {', '.join(choice.KEEP_BY)}"
        )
    device = pick_device(config.device)
    config = resolved_for(config, device)
    if config.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # else cuBLAS may vary
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    run = Run.start(config, device, val_volumes)
    model, average, guard, rollbacks = run.model, run.average, run.guard, run.rollbacks
    state = resume(Path(checkpoint_path), config, run)
    log_rows, best = state["log_rows"], state["best"]
    on_device = samples.augments_on_device(config.augment_device, device)
    loader = samples.sample_loader(train_volumes, tile_in, config, device, state["step"], on_device)
    batches = iter(loader)  # draws the loader's base seed from the global RNG, so restore after
    if on_device:
        batches = (augment_device.augmented_batch(windows, tile_in, config.tile_out, device)
                   for windows in batches)  # fmt: skip
    if "torch_rng" in state:  # dropout masks continue where they stopped
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)  # dropout on a GPU draws from it
    started, step = time.perf_counter(), state["step"]
    row_started, row_step = started, step
    log.info(
        "training %d -> %d steps, tile %d -> %d, on %s",
        step,
        end,
        tile_in,
        config.tile_out,
        device,
    )
    model.train()
    losses = state.get("pending_losses", [])  # since the last log row, so a resumed mean is exact
    with Preemption() as preemption:
        for batch in batches:
            if step >= end:
                break
            try:
                losses.append(
                    training_step(
                        model,
                        run.optimizer,
                        run.scaler,
                        batch,
                        config,
                        device,
                        step,
                        rollbacks.scale(step),
                    )
                )
            except Diverged as error:
                if not (rollbacks.left or (config.max_rollbacks and best)):
                    raise
                event, stop = run.heal(str(error), best, config, step)
                log_rows.append(event_row(step, learning_rate(config, step), started, event))
                losses = []
                if stop:
                    break
                continue
            average.update()
            step += 1
            now = time.perf_counter()
            elapsed = now - started
            out_of_time = config.max_minutes > 0 and elapsed > 60 * config.max_minutes
            last = step == end or out_of_time
            gave_up = False
            if step % config.validate_every == 0 or last:
                silent = warn_if_constant(model, batch[0], config, device, step)
                network = average.network
                counts = validation.counts(network, val_volumes, config, device)
                metrics = validation.metrics(counts, val_volumes) if counts else {}
                row = {
                    "step": step,
                    "loss": float(np.mean(losses)),
                    **{
                        k: metrics.get(k, "")
                        for k in ("pixel_error", "rand_error", "ap50", "wrong_fraction")
                    },
                    "learning_rate": learning_rate(config, step - 1) * rollbacks.scale(step - 1),
                    "seconds": round(elapsed, 2),
                    "rand_spread": rand_spread([*log_rows, {**metrics, "step": step}]),
                    "samples_per_s": round(
                        (step - row_step) * config.batch_size / (now - row_started), 3
                    ),
                    "event": "",
                }
                row_started, row_step = now, step
                if metrics:
                    warn_if_no_better_than_constant(metrics, guard.constant, config, step)
                new_best = guard.improves(metrics)  # before the verdict moves the bests
                reason = guard.verdict(metrics, row["loss"], silent)
                if reason is not None:
                    row["event"], gave_up = run.heal(reason, best, config, step)
                elif guard.suspect and config.max_rollbacks:
                    row["event"] = f"watched: {guard.suspect}"
                    log.warning("step %d: %s; a second bad validation in a row rolls the run back",
                                step, row["event"])  # fmt: skip
                elif new_best and (restored := rollbacks.recover(step)):
                    row["event"] = restored
                    log.info("step %d: %s", step, restored)
                healthy = reason is None and guard.suspect is None
                keepable = healthy or not config.max_rollbacks  # unguarded: as the paper
                run.validations.add(step, counts, keepable)
                if keepable and at_least_as_good(metrics, best, config.keep_by):
                    best = model_file(network, config, step, metrics)
                log_rows.append(row)
                losses = []
                rate = (step - state["step"]) / elapsed
                log.info(
                    "step %d/%d loss %.4f val %s %.2f steps/s elapsed %.0f s eta %.0f s",
                    step,
                    end,
                    row["loss"],
                    metrics,
                    rate,
                    elapsed,
                    (end - step) / rate,
                )
            if step % config.checkpoint_every == 0 or last or gave_up or preemption.requested:
                save_checkpoint(Path(checkpoint_path), config, run, step, log_rows, losses, best)
            if preemption.requested:
                raise UnetsegError(f"train: stopped by a signal at step {step}; rerun to resume")
            if gave_up:
                break
            if out_of_time:
                log.info("train.max_minutes reached at step %d", step)
                break
    if best is None:
        last = rollbacks.events[-1]["reason"] if rollbacks.events else "no validation kept one"
        raise UnetsegError(f"train: the run went bad before any model could be kept ({last}); "
                           f"{unstable_remedy(config)}")  # fmt: skip
    best = {**best, "choice": choice_summary(run.validations, val_volumes, config)}
    write_log(Path(log_path), log_rows)
    if validation_path is not None:
        io.write_json(validation_path, best["choice"])
    save_atomic(best, Path(model_path))
    return best


def choice_summary(validations: choice.Validations, volumes: list[Volume], config) -> dict:
    """The kept validation beside its leave-one-slice-out estimate (choice.py), logged."""
    names = [choice.slice_name(v.name, z) for v in volumes for z in range(v.depth)]
    summary = validations.summary(config.keep_by, names)
    log.info("%s", headline.choice_sentence(summary))
    return summary


def event_row(step: int, rate: float, started: float, event: str) -> dict:
    """A log row for a rollback between validations (the loss became NaN)."""
    row = dict.fromkeys(LOG_COLUMNS, "")
    seconds = round(time.perf_counter() - started, 2)
    return {**row, "step": step, "learning_rate": rate, "seconds": seconds, "event": event}


def rand_spread(rows: list[dict]) -> float | str:
    """max - min of the validation Rand error over the last SPREAD_ROWS validations: how much
    the choice of the kept model is luck."""
    errors = [row["rand_error"] for row in rows if row.get("rand_error", "") != ""]
    recent = errors[-SPREAD_ROWS:]
    return round(max(recent) - min(recent), 4) if recent else ""


def save_checkpoint(path: Path, config, run: Run, step, log_rows, losses, best) -> None:
    device = next(run.model.parameters()).device
    save_atomic(
        {
            "digest": config.digest(),
            "step": step,
            "model_state": run.model.state_dict(),
            "optimizer_state": run.optimizer.state_dict(),
            "scaler_state": run.scaler.state_dict(),
            "average_state": run.average.state_dict(),
            "guard": run.guard.state_dict(),
            "rollbacks": run.rollbacks.events,
            "rates_restored": run.rollbacks.restored,
            "validations": run.validations.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "log_rows": log_rows,
            "pending_losses": losses,
            "best": best,
        },
        path,
    )


def resume(path: Path, config: TrainConfig, run: Run) -> dict:
    """Restore the last checkpoint of this same configuration, if there is one."""
    fresh = {"step": 0, "log_rows": [], "best": None}
    if not path.exists():
        return fresh
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for a truncated or damaged file
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        log.warning("checkpoint %s is unreadable (%s); set aside as %s, training starts afresh",
                    path, error, aside.name)  # fmt: skip
        return fresh
    if checkpoint.get("digest") != config.digest():
        log.info("ignoring checkpoint %s: it belongs to another configuration", path)
        return fresh
    run.model.load_state_dict(checkpoint["model_state"])
    run.optimizer.load_state_dict(checkpoint["optimizer_state"])
    if checkpoint.get("scaler_state"):  # fp16: the loss scale it had reached
        run.scaler.load_state_dict(checkpoint["scaler_state"])
    run.average.load_state_dict(checkpoint["average_state"])
    run.guard.load_state_dict(checkpoint["guard"])
    run.rollbacks.events = checkpoint["rollbacks"]
    run.rollbacks.restored = checkpoint.get("rates_restored", [])  # none before 2026-12-06
    if "validations" in checkpoint:
        run.validations.load_state_dict(checkpoint["validations"])
    else:  # written before 2026-12-07
        log.info("the checkpoint keeps no validation counts: the kept model's leave-one-slice-out "
                 "estimate covers the validations from step %d on", checkpoint["step"])  # fmt: skip
    log.info("resuming from %s at step %d", path, checkpoint["step"])
    return checkpoint


def write_log(path: Path, rows: list[dict]) -> None:
    with io.atomic_output(path) as tmp:
        lines = ["\t".join(LOG_COLUMNS)] + [
            "\t".join(str(row.get(c, "")) for c in LOG_COLUMNS) for row in rows
        ]
        tmp.write_text("\n".join(lines) + "\n")
