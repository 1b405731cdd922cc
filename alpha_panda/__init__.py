"""Alpha Panda: the command line, settings, the local stack, the demo and the bench."""
