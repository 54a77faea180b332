"""The label vocabulary shared by every model, the bundle format and the feed.

Order matters: probability vectors everywhere are in this order.
"""

# The four classes the seed kept ("basic emotions most clearly expressed"), alphabetical.
LABELS: tuple[str, ...] = ("angry", "happiness", "neutral", "sadness")

# All seven emotions AI Hub annotators could choose (dataset 263).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
