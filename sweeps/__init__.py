"""sweeps — spec-driven Optuna searches over optcore training, tracked in MLflow, with the ``sweeps`` CLI.

    import sweeps
    result = sweeps.run("examples/quickstart.yaml")      # or a Spec from sweeps.load_spec(path, overrides)
    result.best_params, result.best_value, result.parent_run_id, result.trials   # trials: a DataFrame
    sweeps.export_model("examples/quickstart.yaml").model_uri   # the best trial as an MLflow pyfunc model

Attributes are imported on first use, so ``import sweeps`` (and ``sweeps --help``) stays instant.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run": "sweeps.study.runner",
    "load_result": "sweeps.study.runner",
    "SweepResult": "sweeps.study.result",
    "load_spec": "sweeps.spec",
    "Spec": "sweeps.spec",
    "SpecError": "sweeps.spec",
    "run_parallel": "sweeps.study.workers",
    "select_batch_size": "sweeps.batchsize.select",
    "advise_batch_size": "sweeps.batchsize.advise",
    "confirm": "sweeps.results.confirm",
    "load_confirmed": "sweeps.results.confirm_report",
    "reproduce": "sweeps.results.reproduce",
    "export_model": "sweeps.results.export",
    "write_report": "sweeps.results.html_report",
    "importances": "sweeps.results.importance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
