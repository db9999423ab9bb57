"""Test infrastructure shared by tests, bench and demos: never imported by the product."""
