"""What the live flows share at start-up: where the servers are, the retry policies."""
