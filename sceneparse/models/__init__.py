"""The model zoo: one file per network and a plain name -> builder table (filled in by models work)."""
