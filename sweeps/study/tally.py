"""How the trials of a study ended, counted for people: completed, pruned (and at which epochs), failed,
interrupted or lost, running, waiting. The progress bar, the summary and ``sweeps best --json`` share it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeps.study.trial_lifecycle import OUTCOME_ATTR, RUN_ID_ATTR

# Optuna state -> the word shown, for trials without a recorded outcome (still running, or queued).
_STATE_WORDS = {
    "RUNNING": "running",
    "WAITING": "waiting",
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
}
# The order the summary names them in.
ORDER = ("completed", "pruned", "failed", "interrupted", "lost", "running", "waiting")


def outcome_of(trial) -> str:
    """``completed | pruned | failed | interrupted | lost | running | waiting``: the recorded outcome, else the
    Optuna state in words (a trial that is running has no outcome yet)."""
    return trial.user_attrs.get(OUTCOME_ATTR) or _STATE_WORDS.get(trial.state.name, trial.state.name.lower())


def pruned_at(trial) -> int | None:
    """The epoch a pruned trial stopped at: the last validation cost it reported (one report per epoch)."""
    return trial.last_step if outcome_of(trial) == "pruned" else None


@dataclass
class Tally:
    """Counts by outcome (only the outcomes that occur) and the epochs pruned trials stopped at."""

    counts: dict[str, int] = field(default_factory=dict)
    pruned_epochs: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, study) -> Tally:
        tally = cls()
        for t in study.get_trials(deepcopy=False):
            outcome = outcome_of(t)
            tally.counts[outcome] = tally.counts.get(outcome, 0) + 1
            if (epoch := pruned_at(t)) is not None:
                tally.pruned_epochs.append(epoch)
        return tally

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def completed(self) -> int:
        return self.counts.get("completed", 0)

    def pruned_span(self) -> str:
        """``epoch 3`` or ``epochs 2–7``; empty when nothing was pruned."""
        if not self.pruned_epochs:
            return ""
        low, high = min(self.pruned_epochs), max(self.pruned_epochs)
        return f"epoch {low}" if low == high else f"epochs {low}–{high}"

    def describe(self, *, always: tuple[str, ...] = ("completed", "pruned", "failed")) -> str:
        """``6 completed, 2 pruned (at epochs 1–3), 0 failed, 1 running``: the outcomes in ``always``
        even at zero (so a reader sees that nothing was pruned), the others when they occur."""
        parts = []
        for outcome in ORDER:
            n = self.counts.get(outcome, 0)
            if n or outcome in always:
                parts.append(f"{n} {outcome}" + (f" (at {self.pruned_span()})" if outcome == "pruned" and n else ""))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {outcome: self.counts.get(outcome, 0) for outcome in ORDER} | {"pruned_at_epochs": self.pruned_epochs}


def run_id_of(trial) -> str:
    return trial.user_attrs.get(RUN_ID_ATTR, "")
