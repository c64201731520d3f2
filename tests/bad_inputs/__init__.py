"""The bad-input corpus (corpus.py) and the kill-and-resume harness (crash.py) shared by the
reliability tests and ``benchmarks/reliability.py``."""
