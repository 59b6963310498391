"""Applying: the engine that carries out a saved plan (``engine``), its progress hooks and results,
refresh and drift (``refresh``), the project workspace that ties settings, state, provider and planner
together (``project``), and garbage-collection pauses."""
