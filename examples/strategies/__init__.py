"""Complete example strategies for the strategy interface (see the README, "Your own strategies")."""
