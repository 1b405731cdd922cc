"""I/O only: Kafka, Redis and PostgreSQL, tick files, simulators and market-data feeds."""
