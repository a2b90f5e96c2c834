"""`python -m fusedrnn.bench`: fusedrnn against torch.nn, side by side on the same weights and inputs."""
