"""Operational tools run by people and by the test suite: the restore drill."""
