"""absl-py command-line entry points; ``scripts/*.py`` and the console scripts call these."""
