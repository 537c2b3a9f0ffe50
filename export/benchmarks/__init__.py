"""Export benchmarks (`faceid bench embed`): embedding throughput printed as ratios to PyTorch eager
measured in the same run. The product modules of `faceid.export` never import them."""
