"""The agent: watches a source, translates, programs the data path, serves state."""
