"""The control plane: signed, bounded records on compacted topics, and the model gate."""
