"""The measuring layer: drive load, summarise it, predict it (Little's law), keep the results."""
