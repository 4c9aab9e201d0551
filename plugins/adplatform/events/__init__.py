"""Ad events: the versioned schema, the validator, the synthetic market and traffic."""
