"""gradcheck: verify the analytic gradients of neural-network layers against numerical ones."""
__version__ = "0.1.0"
