"""Models: GemNet-T (the paper's model), baselines, and the domain-conditioning module."""
