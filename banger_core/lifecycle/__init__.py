"""VM lifecycle: the objects hooks receive and the manager that drives them."""
