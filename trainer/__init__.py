"""Offline side of the emotion monitor: AI Hub data, training, evaluation, model bundles.

The streamer imports only the inference pieces from here (labels, features, model definitions,
bundle loading, ASR loading); training loops never get imported by it.
"""
