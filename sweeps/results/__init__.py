"""Deciding from a finished sweep: confirm winners over seeds (confirm, comparison), what mattered
(importance), the HTML report, and what a user takes away (export, reproduce)."""
