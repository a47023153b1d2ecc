"""The Characters page: the roster (new, switch, archive), the current character's editor, its reference images
and its lineage."""
