"""Data: identity-folder trees, pair protocols and the synthetic face generator."""
