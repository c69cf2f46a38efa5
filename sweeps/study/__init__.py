"""Running a sweep on an Optuna study: storages, workers and their trial claims, the trial lifecycle
(trial_lifecycle), counting outcomes (tally), interrupts and when to stop."""
