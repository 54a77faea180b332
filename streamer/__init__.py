"""The live side of the emotion monitor: sources, VAD segmenter, per-utterance analysis, the feed
and its server, recording and replay. Nothing imports the streamer; it imports only inference
pieces from `trainer`.
"""

import os

# Whisper (CTranslate2), torch and numpy share two cores in the streamer; OpenMP threads that spin
# after a call starve the next model (see trainer/asr.py). Set before any of them is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
