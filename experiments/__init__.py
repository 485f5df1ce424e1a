"""Entry points and the training loop (nothing imports this package)."""
