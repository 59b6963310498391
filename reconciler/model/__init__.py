"""The model: what every document means (schema), the project settings of recon.yaml, the catalog
of instance types, canonical resources and their addresses, and the errors of every stage."""
