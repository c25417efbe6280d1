"""Headwater's benchmark harness (see BENCHMARKS.md in the shared folder)."""
