"""Experiments: each reproduced figure is a ``compute`` step (writes a self-describing dataset) and a
``plot`` step (reads only that dataset)."""
