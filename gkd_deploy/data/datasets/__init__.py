"""Loaders for the real data sets' folder layouts; `gkd_deploy.data.registry` finds them by name."""
