"""The web UI of ``lake ui`` (extra ``ui``)."""
