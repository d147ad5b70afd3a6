"""The azlift command line (typer): parses, calls the library, renders."""
