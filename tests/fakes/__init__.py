"""Local fakes of external services (the SMS providers' HTTP APIs) for tests and benchmarks."""
