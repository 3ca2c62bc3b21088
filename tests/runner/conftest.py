"""Fixtures of the action runner's tests: none of their own yet; its end-to-end test is in
tests/e2e/test_end_to_end_actions.py."""
