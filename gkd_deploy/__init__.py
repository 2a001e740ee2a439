"""gkd-deploy: distil a vision foundation model into an edge-ready ViT segmenter, export it and
measure it. The library lives here; the command line is `gkd_deploy.cli`."""

__version__ = "0.1.0"
