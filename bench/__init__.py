"""The packager measured against its baselines; `python bench/run.py` (see bench/README.md).

A package so its modules import each other as `bench.<module>`, with no `sys.path` games
beyond the one line in run.py that lets it run as a script.
"""
