"""The HTTP front doors. HTTP only: parsing, status codes and bodies."""
