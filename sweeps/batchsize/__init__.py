"""Choosing a batch size: `sweeps batch-size` (select), its statistics over seeds (stats), the learning
rate per size (lr_rule), the critical-batch advice (advise, target_runs, tradeoff) and their reports."""
