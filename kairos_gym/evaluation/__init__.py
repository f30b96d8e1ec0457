"""Evaluation as a library: frame metrics, open-loop fidelity, real-vs-imagined episodes.

The benchmark scripts that use it live in ``eval/`` (``kairos_gym.eval``).
"""
