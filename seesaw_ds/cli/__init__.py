"""The ``seesaw-ds`` command line."""
