"""Collections of images with spoken captions: the manifest format and caption speaking."""
