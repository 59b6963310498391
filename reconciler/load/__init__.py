"""Loading: finding the project's files, parsing YAML (``sources``, the only YAML parser), classifying
and validating each document, content digests, and building the canonical desired state (``builder``)
with every problem reported at its file and line."""
