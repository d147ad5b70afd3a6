"""Fixtures and fakes that start the real components the tests talk to."""
