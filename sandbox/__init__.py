"""Local stand-ins for external services (Lago billing) used by development and tests."""
