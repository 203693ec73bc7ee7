"""Real servers and harnesses for tests and bench scripts, with public names."""
