"""recon: a Terraform-style reconciler for ML online endpoints (Azure ML CLI v2 YAML)."""

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)
