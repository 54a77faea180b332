"""What the daemon and the trainer both run: the label vocabulary, config loading, errors, the
command runner, audio decoding, features, ASR and the embedded Whisper, the model contract,
bundles, and the inference side of every model kind.

The arrows run one way: `streamer` -> core <- `trainer`. Nothing here imports either of them, not
even inside a function (tests/test_layering.py checks every import), so loading a bundle for the
daemon never pulls in a training loop.
"""
import os

# Whisper (CTranslate2), torch and numpy share two cores; OpenMP threads that spin after a call
# starve the next model (see core/asr.py). Set before any of them is imported; a value the user
# set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
