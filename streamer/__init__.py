"""The live side of the emotion monitor: sources, VAD segmenter, per-utterance analysis, the feed
and its server, recording and replay. Nothing imports the streamer; it imports only inference
pieces from `trainer`.
"""
