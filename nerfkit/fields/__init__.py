"""Neural fields: encodings and the networks that map positions (and directions) to density and colour."""
