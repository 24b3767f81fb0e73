"""The ground floor: value types, errors, similarity, collection spec, capabilities, fusion formulas,
the store protocol and the adapter registry.

Nothing here imports anything above it (no encoders, no adapters, no drivers, no torch), so
every other layer, and every third-party adapter, can build on it cheaply. The layering is
checked by ``tests/unit/test_layers.py``; the floor plan is docs/ARCHITECTURE.md.
"""
