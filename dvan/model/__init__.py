"""The DVAN network: audio branch, image branch, fusion scorer, checkpoints and the factory."""
