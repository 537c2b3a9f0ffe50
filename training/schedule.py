"""Learning-rate schedules as a factor of the base rate per step, with linear warmup in front:
constant, cosine, step (×gamma at given epochs), poly, and reduce-on-plateau (×gamma after
`plateau_patience` validations without improvement)."""

import math

from faceid.config import ScheduleConfig


class LearningRateSchedule:
    def __init__(self, config: ScheduleConfig, total_steps: int, steps_per_epoch: int, base_lrs: list[float]):
        self.config, self.total_steps, self.steps_per_epoch = config, max(1, total_steps), max(1, steps_per_epoch)
        self.base_lrs = base_lrs
        self.plateau_factor, self.best, self.bad = 1.0, -math.inf, 0

    def factor(self, step: int) -> float:
        """The multiplier of the base rates at `step` (0-based)."""
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, self.total_steps - c.warmup_steps)
        if c.name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if c.name == "poly":
            return (1 - min(progress, 1.0)) ** c.power
        if c.name == "step":
            return c.gamma ** sum(step >= e * self.steps_per_epoch for e in c.step_epochs)
        if c.name == "plateau":
            return self.plateau_factor
        return 1.0

    def apply(self, optimizer, step: int) -> float:
        factor = self.factor(step)
        for group, base in zip(optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = max(self.config.min_lr, base * factor)
        return optimizer.param_groups[0]["lr"]

    def observe(self, metric: float) -> None:
        """A validation result (higher is better): drives reduce-on-plateau."""
        if metric > self.best:
            self.best, self.bad = metric, 0
            return
        self.bad += 1
        if self.config.name == "plateau" and self.bad > self.config.plateau_patience:
            self.plateau_factor *= self.config.gamma
            self.bad = 0

    def state_dict(self) -> dict:
        return {"plateau_factor": self.plateau_factor, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_factor, self.best, self.bad = state["plateau_factor"], state["best"], state["bad"]
