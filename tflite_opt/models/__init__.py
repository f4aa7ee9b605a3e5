"""Models: example architectures and loading of users' model files."""
