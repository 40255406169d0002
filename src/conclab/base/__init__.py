"""The base layer: paths, errors and the value types every other layer shares.

Nothing here imports another part of the package, so any module may import it.
"""
