"""The `gkd` command line: one thin module per command that parses, calls the library, prints."""
