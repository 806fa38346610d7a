"""A run gone bad, caught and healed (not in the paper): the network has no normalisation layers
and trains with momentum 0.99 at batch 1, so one unlucky stretch can throw it into a state it
does not leave (one class everywhere, or far worse than calling every pixel background).

`CollapseGuard` says why a run has gone bad, from each log row's validation errors and mean
loss; the train loop then rolls back to the kept (best) model with the learning rate lowered,
a bounded number of times, instead of training on from the wreck.

One bad validation is only watched: early in ISBI runs the paper's network passes through a
near-constant output and leaves it by itself at the full rate (the fp32 CPU recipe's seed 0,
step 500: Rand error 0.709, pixel error the constant's; at step 750 a new best pixel error), and
a rollback there halves the rate for the rest of the run. A run has gone bad when two
validations in a row are bad, or at once when its network has gone silent.

A rollback never returns twice to a kept model that has barely learned: the run that went bad
again from it starts afresh instead (a new draw of the weights, the planned rate reached by a
warm-up). Halving the rate again there froze an ISBI run at a near-constant output until it
stopped (BENCHMARKS.md, "A fresh start where a rollback cannot heal").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unetseg import evaluate

# Errors that the guard compares with a constant prediction (ISBI definitions, and the plain
# share of wrongly classified pixels, by which calling every pixel background can be best).
# The pixel error counts on its own: a run judged by the Rand error alone (8d99637, BENCHMARKS.md
# "Rollbacks") sat at the constant's pixel error from step 1500 to 5250 with Rand 0.36-0.50,
# where the same run guarded as here (rolled back at step 1250) reached 0.12-0.15.
GUARDED = ("pixel_error", "rand_error", "wrong_fraction")
# A validation that has lost more than this share of the way from its best to the best constant
# prediction has gone bad (ISBI's late swings, 0.087 to 0.175 against 0.906, stay far below).
RISE_SHARE = 0.5
# A loss that rose at this many log rows in a row and ended this far above its lowest row.
LOSS_RISES, LOSS_RISE_RATIO = 3, 1.3
# Errors within this of a constant prediction's are no better than it (float sums differ), and
# a run has been better than it only by more than MARGIN: ISBI's pixel error of an early network
# that calls nearly every pixel interior is the constant's to 4 decimals (seed 3, step 250).
TOLERANCE, MARGIN = 1e-9, 0.01
# A model has barely learned while some guarded error of its validation is above this share of
# a constant prediction's: every ISBI run that learned went below 0.8 of the constant's pixel
# error by step 2500 and ended at 0.40-0.54; the one that never learned stayed above 0.87.
BARELY_LEARNED_SHARE = 0.8


def constant_errors(truths: list[np.ndarray]) -> dict:
    """The errors of the best constant prediction, either class, for each guarded error: every
    pixel cell interior (the best by the ISBI errors) or every pixel background (by the share
    of wrong pixels, where cells are few)."""
    best = {}
    for value in (0.0, 1.0):
        pixel, rand, wrong, n = 0, 0, 0, 0
        for truth in truths:
            constant = np.full(truth.shape, value, np.float32)
            counts = evaluate.pixel_counts(truth, constant, [0.0])
            pixel, rand = pixel + counts, rand + evaluate.rand_counts(truth, constant, [0.0])[0]
            wrong, n = wrong + counts[0, 1] + counts[0, 2], n + truth.size
        errors = {
            "pixel_error": 1 - evaluate.best_f(pixel)[0],
            "rand_error": 1 - evaluate.best_f(rand)[0],
            "wrong_fraction": wrong / max(n, 1),
        }
        best = {key: min(errors[key], best.get(key, np.inf)) for key in GUARDED}
    return {key: float(value) for key, value in best.items()}


@dataclass
class CollapseGuard:
    """What a run has gone bad by, judged at each log row: its validation no better than the
    best constant prediction after it had been better (or ever, once the network has gone
    silent: one output at every pixel), or risen more than halfway from its best back to it, at
    two validations in a row (at once if silent), a validation with a clear new best of any
    guarded error counting as good; or its mean loss rising row after row far above its lowest."""

    constant: dict | None  # constant_errors of the validate volumes; None: no validation
    best: dict = field(default_factory=dict)  # the lowest of each guarded error so far
    losses: list = field(default_factory=list)  # mean loss of each healthy row
    suspect: str | None = None  # why the last validation was bad, if it was: judged at the next

    def verdict(self, metrics: dict, loss: float, silent: bool = False) -> str | None:
        """Why this row shows a run gone bad, or None; a healthy row is remembered, a first bad
        validation kept in `suspect`. `silent`: the network gave one output at every pixel of
        the step's training tile."""
        bad = self.validation_verdict(metrics, silent)
        if bad and not silent and self.improves(metrics):
            bad = None  # a clear new best by some error: still learning, whatever else swings
        if bad and not silent and self.suspect is None:
            self.suspect = bad
            return None
        reason = (f"{bad}; the validation before: {self.suspect}" if bad and self.suspect
                  else bad) or self.loss_verdict(loss)  # fmt: skip
        self.suspect = None
        if reason is None:
            self.losses.append(loss)
            for key in GUARDED:
                if key in metrics:
                    self.best[key] = min(metrics[key], self.best.get(key, np.inf))
        return reason

    def improves(self, metrics: dict) -> bool:
        """Whether some guarded error is lower than its best so far by more than MARGIN (a
        Rand error 0.0002 below its best, at the constant's pixel error, is noise: seed 1)."""
        return any(metrics[key] < self.best.get(key, np.inf) - MARGIN
                   for key in GUARDED if key in metrics)  # fmt: skip

    def validation_verdict(self, metrics: dict, silent: bool) -> str | None:
        for key in GUARDED:
            if self.constant is None or key not in metrics:
                continue
            value, constant = metrics[key], self.constant[key]
            best = self.best.get(key, np.inf)
            was_better = best < constant - MARGIN
            if value >= constant - TOLERANCE and (was_better or silent):
                return (
                    f"validation {key} {value:.4f} is no better than a constant prediction's "
                    f"({constant:.4f}; best so far {best:.4f})"
                    + (", and the network gives one output at every pixel" if silent else "")
                )
            if not was_better:
                continue  # never better than a constant: not learned yet, rather than gone bad
            if value > best + RISE_SHARE * (constant - best):
                return (
                    f"validation {key} rose to {value:.4f} from its best {best:.4f}, more than "
                    f"halfway to a constant prediction's {constant:.4f}"
                )
        return None

    def barely_learned(self, metrics: dict) -> bool:
        """Whether a model with these validation errors has hardly left a constant prediction
        (its Rand error alone can: a few predicted boundaries cut it from 0.906 to 0.37 on ISBI
        while the pixel error stays at 0.91 of the constant's)."""
        if self.constant is None:
            return False
        return any(metrics[key] > BARELY_LEARNED_SHARE * self.constant[key]
                   for key in GUARDED if key in metrics)  # fmt: skip

    def forget(self) -> None:
        """Judge a freshly initialised network from scratch: its bests and losses are not the
        ones it is compared with."""
        self.best, self.losses, self.suspect = {}, [], None

    def loss_verdict(self, loss: float) -> str | None:
        recent = [*self.losses[-LOSS_RISES:], loss]
        rising = len(recent) > LOSS_RISES and all(np.diff(recent) > 0)
        if rising and loss >= LOSS_RISE_RATIO * min(self.losses):
            return (
                f"the mean loss rose at {LOSS_RISES} log rows in a row, to {loss:.4f} "
                f"({loss / min(self.losses):.2f}x its lowest row, {min(self.losses):.4f})"
            )
        return None

    def state_dict(self) -> dict:
        return {"best": dict(self.best), "losses": list(self.losses), "suspect": self.suspect}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.losses = dict(state["best"]), list(state["losses"])
        self.suspect = state.get("suspect")  # checkpoints before 2026-12-06 have none


# How the training log's event column starts on a row whose model was not keepable: a rollback,
# the stop after the last one, or a first bad validation being watched (the report's kept row
# skips them as training does; a restored learning rate is a healthy row).
NOT_KEPT_EVENTS = ("rollback", "stopped", "watched")
# How a rollback's event names a fresh start from a dead end (counted by bench/recipe.py).
FRESH_START = "a fresh start"


@dataclass
class Rollbacks:
    """The rollbacks a run may make and has made; each lowers the learning rate by `factor`, and
    with `restore` a recovery after one (a clear new best of some guarded error, beyond every
    validation before the run went bad) takes one such factor back. A fresh start (see the
    module's text) counts as a rollback and sets the rate back to the plan's, reached linearly
    over `fresh_warmup` steps."""

    limit: int  # train.max_rollbacks
    factor: float  # train.rollback_lr_factor
    restore: bool = False  # train.rollback_restore_lr
    fresh_warmup: int = 0  # train.fresh_start_warmup_steps
    events: list = field(default_factory=list)  # {"step", "to_step", "reason"[, "dead_end"]}
    restored: list = field(default_factory=list)  # the steps at which a factor was taken back

    def last_fresh_start(self) -> int:
        """The index in `events` of the last fresh start from a dead end (-1: none)."""
        starts = [index for index, event in enumerate(self.events) if "dead_end" in event]
        return starts[-1] if starts else -1

    @property
    def fresh_step(self) -> int | None:
        """The step of the last fresh start from a dead end, if any."""
        last = self.last_fresh_start()
        return self.events[last]["step"] if last >= 0 else None

    @property
    def lr_scale(self) -> float:
        """The rate's factor from the rollbacks and recoveries since the last fresh start."""
        last = self.last_fresh_start()
        lowered = len(self.events) - (last + 1)
        since = self.events[last]["step"] if last >= 0 else -1
        return self.factor ** (lowered - sum(step > since for step in self.restored))

    def scale(self, step: int) -> float:
        """The rate's factor at `step`, with a fresh start's warm-up."""
        fresh = self.fresh_step
        if fresh is not None and step - fresh < self.fresh_warmup:
            return self.lr_scale * (step - fresh + 1) / self.fresh_warmup
        return self.lr_scale

    def dead_end(self, kept: dict | None, guard: CollapseGuard) -> bool:
        """Whether rolling back to `kept` again is futile: a rollback went back to it before,
        and it has barely learned."""
        returned = kept is not None and any(
            event["to_step"] == kept["step"] for event in self.events
        )
        return returned and guard.barely_learned(kept.get("metrics", {}))

    def recover(self, step: int) -> str | None:
        """After a clear new best at `step`: take one rollback's factor back, if enabled and one
        is left to take back; the log's event text, or None."""
        if not self.restore or self.lr_scale >= 1:
            return None
        self.restored.append(step)
        return (
            f"learning rate restored to x{self.lr_scale:g}: a new best by more than {MARGIN} "
            f"after the rollback at step {self.events[-1]['step']}"
        )

    @property
    def left(self) -> int:
        return self.limit - len(self.events)

    def describe(self, event: dict) -> str:
        if "dead_end" in event:
            where = (
                f"{FRESH_START} (a rollback went back to the model of step {event['dead_end']} "
                "before, and it has barely learned), learning rate x1"
                + (f" reached over {self.fresh_warmup} steps" if self.fresh_warmup else "")
            )
        else:
            where = f"{event['to_step'] or FRESH_START}, learning rate x{self.lr_scale:g}"
        number = f"{len(self.events)} of {self.limit}"
        return f"rollback {number} at step {event['step']} to {where}: {event['reason']}"


def restore(model, optimizer, average, kept: dict | None, seed: int, attempt: int) -> int:
    """Put the network back to the kept model's weights (a fresh initialisation if none was kept
    yet), forget the optimiser's momentum, restart the weight average; returns the kept step."""
    import torch

    if kept is None:
        torch.manual_seed(seed + 1_000_003 * attempt)  # another draw than the first start's
        model.reset_parameters()
    else:
        model.load_state_dict(kept["model_state"])
    optimizer.state.clear()
    average.restart()
    return kept["step"] if kept else 0
