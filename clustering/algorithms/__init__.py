"""Clustering algorithms on arrays: k-means, spectral, neighbours, metrics.

Pure JAX/NumPy/SciPy; nothing here imports flax, optax, grain or TFDS.
"""
