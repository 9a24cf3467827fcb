"""Results on disk: the CSV schema as code (``schema``: every column, its meaning and its producer) and
writes that are whole or absent (``writes``)."""
