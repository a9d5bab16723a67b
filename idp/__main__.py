"""``python -m idp`` runs the ``idp`` command."""

from idp.cli import main

main()
