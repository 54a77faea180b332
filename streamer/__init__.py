"""The live side of the emotion monitor: sources, the VAD segmenter, per-utterance analysis, the
feed and its server, recording, replay and offline analysis. It runs on `core` (ASR, features,
bundles) and never imports the trainer.
"""
