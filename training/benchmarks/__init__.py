"""Training benchmarks (`faceid bench train`): speed figures printed as ratios to a baseline measured in
the same run. The product modules of `faceid.training` never import them."""
