"""The base layer: paths, errors, atomic file writes and the value types every other layer shares.

Nothing here imports another part of the package, so any module may import it.
"""
