"""Figures: the experiment machinery, shared drawing helpers, one module per topic, the registry."""
