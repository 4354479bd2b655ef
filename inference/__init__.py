"""Serving: LMI image and environment planning, adapter registration, and the invoke command."""
