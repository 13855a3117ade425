"""Other projects' names for our modules and their readings of a row's arguments, wrapped around the registry."""
