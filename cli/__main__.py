"""``python -m artifact_lake.cli`` is the ``lake`` command."""

from .main import lake_main

lake_main()
