"""Helpers shared by the tests (and bench/): no tests here."""
