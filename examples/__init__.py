"""Examples shipped with Alpha Panda (tick files, strategy files, example strategies)."""
