"""Test reports a build leaves in its workspace, read by the node."""
