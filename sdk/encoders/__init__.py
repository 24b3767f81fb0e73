"""Encoders built from sentence-transformers-style module stacks."""
