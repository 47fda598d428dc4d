"""Register maps: YAML checked and loaded into frozen specs, value <-> register encodings, docs."""
