"""Shared helpers for kdag's integration and end-to-end tests."""
