"""The teaching layer: helpers the notebooks call, and running the notebooks headless."""
