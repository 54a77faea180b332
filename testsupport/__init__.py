"""What the tests and the benchmarks share: real test speech (espeak-ng), synthetic emotional audio,
tiny Hugging Face models built on the fly, and the headless-browser driver. Not part of the
installed product; import it from the repository root (pytest, `python -m bench.NAME`).
"""
