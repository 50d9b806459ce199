"""Subcommands of the ``adrank`` command line, one module each (see ``adrank.cli``)."""
