"""The data inquiry portal: the commons' catalogue and data dictionary, counts of persons
before access, and applications for access."""
