"""Machine-learning code run by workers only: model loading, captioning and the tiny offline models.

Everything here may import torch and transformers; ``core/`` and the UI never import this package.
"""
